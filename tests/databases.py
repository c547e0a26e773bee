"""The databases the tests run on: SQLite files, and a real PostgreSQL server when there is one.

Every test that touches the database runs once on each (`--db sqlite` or `--db postgresql` picks
one). PostgreSQL comes from TEST_POSTGRES_URL (default: the role tests/postgres-setup creates on
the local server); without a server its runs are skipped, except under CI=true, where they fail.
Each test gets a new database copied from a template the real migrations made once per run.
"""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

DATABASES = ("sqlite", "postgresql")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL",
                              "postgresql+psycopg://geekai_test:geekai_test@127.0.0.1:5432/postgres")


class PostgresServer:
    """A PostgreSQL server that hands out a fresh, migrated database per test."""

    def __init__(self, admin_url: str):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.url = make_url(admin_url)
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT", pool_size=1)
        with self.admin.connect() as connection:  # raises when there is no server
            connection.exec_driver_sql("SELECT 1")
        self.template = f"geekai_template_{os.getpid()}"
        self.created: list[str] = []

    def database_url(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def make_template(self, build) -> None:
        """Create the template database and let `build(url)` (the app) migrate it."""
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}"')
        self._execute(f'CREATE DATABASE "{self.template}"')
        build(self.database_url(self.template))

    def new_database(self, template: bool = True) -> str:
        name = f"geekai_test_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{self.template}"' if template else ""))
        self.created.append(name)
        return self.database_url(name)

    def drop(self, url: str) -> None:
        """Drop a test's database; one still in use (autovacuum) is left for close()."""
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        try:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:
            return
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created) + [self.template]:
            try:
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"could not drop the test database {name}: {exc}")
        self.admin.dispose()

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(sql)


def postgres_or_skip(session_cache: dict, build) -> PostgresServer:
    """The session's server, connected on first use; skip (fail under CI) when there is none."""
    if "server" not in session_cache:
        try:
            server = PostgresServer(POSTGRES_URL)
            server.make_template(build)
        except Exception as exc:  # no server, no role, no driver: say which
            session_cache["server"] = None
            session_cache["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            session_cache["server"] = server
    if session_cache["server"] is None:
        message = f"no PostgreSQL at {POSTGRES_URL} ({session_cache['error']}); run tests/postgres-setup"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return session_cache["server"]


def copy_sqlite(template, instance) -> None:
    """A test's SQLite database: a copy of the migrated template, private like the real one."""
    instance.mkdir(mode=0o700, exist_ok=True)
    if not (instance / "geekai.sqlite").exists():
        shutil.copyfile(template, instance / "geekai.sqlite")
        os.chmod(instance / "geekai.sqlite", 0o600)
