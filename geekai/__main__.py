"""`geekai bot status|login|logout|events` (or `python -m geekai ...`): the CLI without building the app.

`geekai` is the entry point `make` installs in the project's .venv (pyproject.toml). Scripts read
the exit codes (geekai/cli.py): 0 logged in or done, 1 not logged in, 2 anything else. So this
module imports nothing outside the standard library before it can say, in one line and with exit
code 2, that the environment is wrong (a Python without the project's packages) or that the
command crashed.
"""
from __future__ import annotations

import sys

TROUBLE = 2
NO_ENVIRONMENT = ("geekai: this Python lacks the project's packages ({error}); run the command from the "
                  "project's environment: .venv/bin/geekai (`make run` or `make test` sets it up)")


def run(argv: list[str] | None = None, prog_name: str = "geekai") -> None:
    """The command line; any failure is one line on stderr and exit code 2."""
    try:
        from .cli import bot  # noqa: F401 (click, Flask: the project's environment)
    except ImportError as exc:
        sys.stderr.write(NO_ENVIRONMENT.format(error=exc) + "\n")
        sys.exit(TROUBLE)
    try:
        group()(argv, prog_name=prog_name)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("geekai: interrupted\n")
        sys.exit(TROUBLE)
    except Exception as exc:  # a bug, not a state: never a traceback a script would read as exit 1
        sys.stderr.write(f"geekai: unexpected error: {type(exc).__name__}: {exc}".splitlines()[0] + "\n")
        sys.exit(TROUBLE)


def group():
    """The click group (`geekai --help`), built on first use."""
    import click

    from .cli import bot

    @click.group()
    def geekai():
        """geekai command line (talks to the running service over HTTP)."""

    geekai.add_command(bot)
    return geekai


if __name__ == "__main__":
    run(prog_name="python -m geekai")
