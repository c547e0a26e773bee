"""Migrations: a new database, the last release's database upgraded in place, failures, `flask db`."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import ROOT_DIR, TEST_SETTINGS, wait_for
from geekai import create_app, schema

LAST_RELEASE = os.path.join(ROOT_DIR, "tests", "fixtures", "schema", "sqlite-last-release.sql")
TABLES = ("bot_state", "bot_event", "alert_incident", "payment", "payment_notice", "payment_order", "outbox")
AUTH = {"Authorization": f"Bearer {TEST_SETTINGS['API_TOKEN']}"}


def build(instance, **config):
    return create_app({**TEST_SETTINGS, **config}, instance_path=str(instance))


def last_release_database(instance) -> str:
    """A database as the last release without migrations left it, rows included."""
    instance.mkdir(mode=0o700, exist_ok=True)
    path = str(instance / "geekai.sqlite")
    with sqlite3.connect(path) as conn:
        with open(LAST_RELEASE, encoding="utf-8") as script:
            conn.executescript(script.read())
    return path


def dump(path, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of the release's tables; `columns` limits each table to the columns it had then."""
    with sqlite3.connect(path) as conn:
        return {table: conn.execute(f"SELECT {', '.join((columns or {}).get(table, ['*']))} FROM {table} "
                                    "ORDER BY id").fetchall() for table in TABLES}


def columns(path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as conn:
        return {table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")] for table in TABLES}


def indexes(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                               "AND name NOT LIKE 'sqlite_%'")}


def revision(path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def migration_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Config(os.path.join(schema.MIGRATIONS, "alembic.ini")))


def all_revisions() -> list[str]:
    return [step.revision for step in reversed(list(migration_scripts().walk_revisions()))]


def test_head_is_the_newest_migration():
    assert migration_scripts().get_heads() == [schema.HEAD]


def test_a_new_database_gets_exactly_the_schema_of_the_models(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from geekai.db import db

    app = build(tmp_path / "instance")
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                       db.metadata)
    assert differences == []
    assert revision(tmp_path / "instance" / "geekai.sqlite") == schema.HEAD


def schema_of(url: str) -> dict:
    """Every table's columns (name, type, nullable, default), indexes, unique and foreign keys."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        found = inspect(engine)
        return {table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in found.get_columns(table)],
            "primary": found.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in found.get_indexes(table)),
            "unique": sorted((u["name"] or "", tuple(u["column_names"])) for u in found.get_unique_constraints(table)),
            "foreign": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                              for f in found.get_foreign_keys(table)),
        } for table in sorted(found.get_table_names())}
    finally:
        engine.dispose()


def test_a_new_database_made_at_once_equals_one_made_by_every_migration(tmp_path, database, request):
    urls = {}   # `database` names the backend; each way gets a new, empty database of it
    for way, every_step in (("at once", False), ("every step", True)):
        if database.startswith("sqlite"):
            url = "sqlite:///" + str(tmp_path / way / "geekai.sqlite")
        else:
            url = request.getfixturevalue("postgres").new_database(template=False)
        app = build(tmp_path / way, SQLALCHEMY_DATABASE_URI=url, DB_AUTO_UPGRADE=False)
        applied = schema.upgrade(app, every_step=every_step)
        assert applied == ([schema.HEAD] if not every_step else all_revisions())
        with app.app_context():
            from geekai.db import db
            db.engine.dispose()
        urls[way] = url
    made_at_once, migrated = schema_of(urls["at once"]), schema_of(urls["every step"])
    assert "alembic_version" in made_at_once and "payment" in made_at_once
    assert made_at_once == migrated


def test_the_last_releases_database_is_upgraded_in_place_without_losing_a_row(tmp_path):
    path = last_release_database(tmp_path / "instance")
    before, indexes_before, columns_before = dump(path), indexes(path), columns(path)
    app = build(tmp_path / "instance")
    assert revision(path) == schema.HEAD
    # Every row keeps every value it had; columns added since are new, not replacements.
    assert dump(path, columns_before) == before
    assert all(set(columns_before[table]) <= set(names) for table, names in columns(path).items())
    assert indexes_before <= indexes(path)
    build(tmp_path / "new")
    assert indexes(path) == indexes(tmp_path / "new" / "geekai.sqlite")
    client = app.test_client()
    payments = client.get("/api/payments", headers=AUTH).get_json()["payments"]
    assert sorted(p["amount"] for p in payments) == ["12.88", "21474836.47"]
    events = client.get("/api/bot/events", headers=AUTH).get_json()["events"]
    assert [e["to"] for e in events] == ["logged_in", "waiting_for_confirm", "waiting_for_scan", "starting"]
    assert client.get("/api/orders/1", headers=AUTH).get_json()["status"] == "paid"


def test_an_older_database_gets_the_indexes_added_since(tmp_path):
    path = last_release_database(tmp_path / "instance")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX ix_bot_event_to_state_id")  # as made by a release before it existed
        conn.execute("DROP INDEX ix_payment_received_at")
    build(tmp_path / "instance")
    assert {"ix_bot_event_to_state_id", "ix_payment_received_at"} <= indexes(path)


def test_a_database_already_current_is_left_alone(tmp_path):
    build(tmp_path / "instance")
    app = build(tmp_path / "instance")
    assert schema.upgrade(app) == []


def test_a_step_that_fails_is_named_and_the_service_refuses_to_start(tmp_path, service):
    path = last_release_database(tmp_path / "instance")
    with sqlite3.connect(path) as conn:  # not geekai's table: the baseline cannot index it
        conn.executescript("DROP TABLE bot_event; CREATE TABLE bot_event (id INTEGER PRIMARY KEY, at DATETIME);")
    with pytest.raises(schema.SchemaError, match=r"step 0001 \(Baseline.*no such column: to_state"):
        build(tmp_path / "instance")
    svc = service()  # binds first (/healthz answers at once), then builds the app and gives up
    assert svc.proc.wait(timeout=30) == 1
    assert wait_for(lambda: "cannot start: database upgrade step 0001 (Baseline" in "".join(svc.log))
    assert dump_one(path, "payment") == 2  # the rest of the database is untouched


def dump_one(path, table) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def flask_db(instance, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    env.update(GEEKAI_INSTANCE_PATH=str(instance), GEEKAI_DB_AUTO_UPGRADE="false")
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", *args], cwd=ROOT_DIR,
                          env=env, capture_output=True, text=True, timeout=60)


def test_flask_db_upgrade_and_downgrade_by_hand(tmp_path):
    instance = tmp_path / "instance"
    path = last_release_database(instance)
    before, columns_before = dump(path), columns(path)
    current = flask_db(instance, "current")
    assert current.returncode == 0 and schema.HEAD not in current.stdout
    upgrade = flask_db(instance, "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert schema.HEAD + " (head)" in flask_db(instance, "current").stdout
    assert dump(path, columns_before) == before
    history = flask_db(instance, "history")
    assert "0001" in history.stdout and "Baseline" in history.stdout


def test_processes_starting_together_upgrade_the_new_database_once(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    code = ("import sys; from conftest import TEST_SETTINGS; from geekai import create_app, schema; "
            "app = create_app({**TEST_SETTINGS, 'DB_AUTO_UPGRADE': False}, instance_path=sys.argv[1]); "
            "print(','.join(schema.upgrade(app)))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    env["PYTHONPATH"] = os.pathsep.join([ROOT_DIR, os.path.join(ROOT_DIR, "tests")])
    procs = [subprocess.Popen([sys.executable, "-c", code, str(instance)], cwd=ROOT_DIR, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [proc.communicate(timeout=60) + (proc.returncode,) for proc in procs]
    assert [code for _, _, code in results] == [0, 0, 0, 0], results
    applied = sorted(out.strip() for out, _, _ in results)
    assert applied == ["", "", "", schema.HEAD], "one process made the new database, at once"
    assert revision(instance / "geekai.sqlite") == schema.HEAD


def last_release_rows() -> list[str]:
    with open(LAST_RELEASE, encoding="utf-8") as script:
        return [line for line in script.read().splitlines() if line.startswith("INSERT INTO")]


def test_an_old_postgresql_database_gets_64_bit_amounts_and_keeps_its_rows(tmp_path, postgres):
    from sqlalchemy import BigInteger, create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    from geekai.db import db

    url = postgres.new_database(template=False)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:  # the tables as releases before 64-bit amounts made them
            db.metadata.create_all(connection, tables=[db.metadata.tables[name] for name in TABLES])
            for table in ("payment", "payment_order", "payment_notice"):
                connection.execute(text(f"ALTER TABLE {table} ALTER COLUMN amount_cents TYPE INTEGER"))
            for insert in last_release_rows():
                connection.execute(text(insert.replace(":", r"\:")))
        with engine.connect() as connection:
            before = {table: sorted(map(tuple, connection.execute(text(f"SELECT * FROM {table}"))))
                      for table in TABLES}
        app = build(tmp_path / "instance", SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            db.engine.dispose()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == schema.HEAD
            after = {table: sorted(map(tuple, connection.execute(text(f"SELECT * FROM {table}"))))
                     for table in TABLES}
            columns = {table: {c["name"]: c["type"] for c in inspect(connection).get_columns(table)}
                       for table in ("payment", "payment_order", "payment_notice")}
        assert after == before
        assert all(isinstance(types["amount_cents"], BigInteger) for types in columns.values())
        with engine.begin() as connection:  # 100,000,000.00 yuan: past what 32 bits hold
            connection.execute(text("UPDATE payment SET amount_cents = 10000000000 WHERE id = 2"))
    finally:
        engine.dispose()
        postgres.drop(url)


def test_alert_deliveries_and_watchdog_restarts_of_older_releases_are_named_by_column(tmp_path):
    """Migration 0007: an older release's alert messages get their incident from their key, once;
    its watchdog restarts (actor "bot", reason "watchdog: ...") get the actor "watchdog"."""
    path = last_release_database(tmp_path / "instance")
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO outbox VALUES (3, 'alert.webhook', 'http', 'http://127.0.0.1:9/a', '{}', '{}', "
                     "'incident-1-opened-webhook', NULL, 'delivered', 1, '2026-11-29 10:02:00', '', NULL, "
                     "'2026-11-29 10:02:00', '2026-11-29 10:02:01')")
        conn.execute("INSERT INTO outbox VALUES (4, 'alert.wecom', 'http', 'http://127.0.0.1:9/b', '{}', '{}', "
                     "'test-0123456789ab-wecom', NULL, 'failed', 5, '2026-11-29 11:00:00', 'HTTP 500', NULL, "
                     "'2026-11-29 11:00:00', NULL)")
        conn.execute("INSERT INTO bot_event VALUES (5, '2026-11-30 09:00:00.000000', 'logged_in', 'starting', "
                     "'watchdog: no sync with WeChat for 50 s (limit 45 s)', '', 'bot')")
    app = build(tmp_path / "instance")
    client = app.test_client()
    [incident] = client.get("/api/alerts", headers=AUTH).get_json()["incidents"]
    assert [(d["id"], d["notice"], d["channel"]) for d in incident["deliveries"]] == [(3, "opened", "webhook")]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT incident_id, notice, channel FROM alert_delivery WHERE outbox_id = 4").fetchone() \
            == (None, "test", "wecom")
        assert conn.execute("SELECT actor FROM bot_event WHERE id = 5").fetchone() == ("watchdog",)
