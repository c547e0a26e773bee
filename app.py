"""Entry point: `python app.py [--host H] [--port P] [--instance DIR] [--demo [ilink]]`.

`flask --app app ...` finds create_app() here; `flask run` starts one bot (geekai/bot/runtime.py).
"""
from __future__ import annotations

import argparse
import os
import sys

from geekai import create_app  # light: heavy imports happen inside it; `flask --app app` finds it
from geekai import logs
from geekai.config import ConfigError, check


DEMO_BACKENDS = {"wechat": "demo", "ilink": "demo-ilink"}
HERE = os.path.dirname(os.path.abspath(__file__))
# A demo's logins, history and made-up payments never mix with the real service's (instance/).
DEMO_INSTANCES = {"wechat": "demo", "ilink": "demo-ilink"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="geekai: web service with a supervised WeChat bot")
    parser.add_argument("--host", default=os.environ.get("GEEKAI_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=os.environ.get("GEEKAI_PORT", "5000"))
    parser.add_argument("--instance", default=os.environ.get("GEEKAI_INSTANCE_PATH"),
                        help="folder for the database, config.py, secrets and the session cache (default: "
                             "instance/, or instance/demo/ and instance/demo-ilink/ with --demo)")
    parser.add_argument("--demo", nargs="?", const="wechat", choices=("wechat", "ilink"),
                        help="run the bot against a built-in emulator: web WeChat's (BOT_BACKEND=demo, the "
                             "default) or iLink's (`--demo ilink`, BOT_BACKEND=demo-ilink)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535 (got {args.port})")
    return args


def instance_folder(args: argparse.Namespace) -> str:
    """--instance (or GEEKAI_INSTANCE_PATH), else instance/, or a demo's own folder inside it."""
    if args.instance:
        return os.path.abspath(args.instance)
    if args.demo:
        return os.path.join(HERE, "instance", DEMO_INSTANCES[args.demo])
    return os.path.join(HERE, "instance")


def main(argv=None) -> int:
    args = parse_args(argv)
    logs.configure()
    overrides = {"BOT_BACKEND": DEMO_BACKENDS[args.demo]} if args.demo else None
    instance = instance_folder(args)
    try:
        config = check(instance, overrides)
    except ConfigError as exc:
        print(f"geekai: {exc}", file=sys.stderr)
        return 2
    from geekai.server import serve

    def build():
        # SQLAlchemy, the models and the bot load here, while the socket already answers.
        return create_app(overrides, instance_path=instance)

    try:
        return serve(build, args.host, args.port, config=config)
    except OSError as exc:
        print(f"geekai: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
