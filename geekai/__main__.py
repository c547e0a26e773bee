"""`python -m geekai bot status|login|logout|events`: the CLI without building the app."""
from __future__ import annotations

import click

from .cli import bot


@click.group()
def main():
    """geekai command line (talks to the running service over HTTP)."""


main.add_command(bot)

if __name__ == "__main__":
    main(prog_name="python -m geekai")
