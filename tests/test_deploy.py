"""deploy/: the Docker image, the systemd units and the nginx snippet agree with the repository.

No Docker daemon or systemd runs here, so these are checks of the files themselves: the image
installs the same pinned set as `make`, and every path, port and route the units and the nginx
snippet name exists in this checkout and in the app. The bytecode steps of the Makefile and the
image are run for real, on a copy of the code.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from geekai.config import DEFAULTS
from geekai.web.stream import HEARTBEAT_SECONDS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# A requirement line: a distribution name, ==, an exact version (PEP 440 characters only).
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][0-9A-Za-z.+!-]*$")


def requirement_lines():
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def dockerfile_instructions():
    """The Dockerfile's instructions, continuation lines joined, comments dropped: [(word, rest)]."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def pip_installs(commands):
    """The argument lists of every `pip install` in a list of shell command lines."""
    found = []
    for command in commands:
        for part in re.split(r"&&|;", command):
            if "pip install" not in part:
                continue
            words = shlex.split(part)
            if "pip" in words and words[words.index("pip") + 1:words.index("pip") + 2] == ["install"]:
                found.append(words[words.index("pip") + 2:])
            elif words[:1] and words[0].endswith("/pip") and words[1:2] == ["install"]:
                found.append(words[2:])
    return found


def unit_settings(name):
    """A systemd unit's Key=value lines (the last value of a repeated key; Environment= kept whole)."""
    settings, environment = {}, {}
    for line in (DEPLOY / name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        if key == "Environment":
            var, _, val = value.partition("=")
            environment[var] = val
        else:
            settings[key] = value
    return settings, environment


def test_every_requirement_is_pinned_exactly():
    lines = requirement_lines()
    assert len(lines) > 20
    loose = [line for line in lines if not PINNED.match(line)]
    assert loose == [], f"requirements.txt lines not pinned with ==: {loose}"
    names = [line.split("==")[0].lower().replace("_", "-") for line in lines]
    assert len(names) == len(set(names)), "a package is pinned twice in requirements.txt"


def test_the_image_installs_the_whole_pinned_set_as_the_makefile_does():
    instructions = dockerfile_instructions()
    copied = [rest.split() for word, rest in instructions if word == "COPY"]
    installs = pip_installs([rest for word, rest in instructions if word == "RUN"])
    # requirements.txt itself, not a filtered copy of it.
    assert any("requirements.txt" in sources[:-1] for sources in copied)
    assert any(args[-2:] == ["-r", "requirements.txt"] for args in installs), installs
    assert not any(re.search(r"\bsed\b|\bgrep\b", rest) and "requirements" in rest
                   for word, rest in instructions if word == "RUN")
    # The Makefile's installs, with the same options that matter (the editable `geekai` command).
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    make_installs = pip_installs([line.strip().replace("$(BIN)/pip", "pip") for line in makefile])
    assert make_installs, "the Makefile installs nothing?"
    for make_args in make_installs:
        wanted = [arg for arg in make_args if arg not in ("--quiet", "--disable-pip-version-check")]
        assert any(all(arg in args for arg in wanted) for args in installs), \
            f"the Makefile runs pip install {' '.join(make_args)}; the Dockerfile does not"
    if any("-e" in args for args in installs):
        assert any("pyproject.toml" in sources[:-1] for sources in copied)


def test_the_image_is_sent_every_file_it_copies():
    """BuildKit reads deploy/Dockerfile.dockerignore: what the Dockerfile COPYs must be let through."""
    allowed = {line.strip().lstrip("!").rstrip("/") for line in
               (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
               if line.strip().startswith("!")}
    for word, rest in dockerfile_instructions():
        if word == "COPY":
            for source in rest.split()[:-1]:
                source = source.rstrip("/")
                assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
                assert source in allowed, f"{source} is copied but Dockerfile.dockerignore leaves it out"


def test_the_image_serves_on_the_port_it_exposes_and_probes():
    instructions = dockerfile_instructions()
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    port = re.search(r"GEEKAI_PORT=(\d+)", env).group(1)
    assert ("EXPOSE", port) in instructions
    healthcheck = next(rest for word, rest in instructions if word == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "GEEKAI_PORT" in healthcheck
    assert ("CMD", '["python", "app.py"]') in instructions and (ROOT / "app.py").is_file()


def test_the_systemd_unit_names_what_the_checkout_has():
    settings, environment = unit_settings("geekai.service")
    home = Path(settings["WorkingDirectory"])
    command = shlex.split(settings["ExecStart"])
    # /opt/geekai/.venv/bin/python app.py: the Makefile's venv, the checkout's entry point.
    venv = re.search(r"^VENV := (\S+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M).group(1)
    assert Path(command[0]) == home / venv / "bin" / "python"
    assert command[1:] == ["app.py"] and (ROOT / "app.py").is_file()
    documentation = settings["Documentation"].removeprefix("file://")
    assert (ROOT / Path(documentation).relative_to(home)).is_file()
    assert environment["GEEKAI_PORT"] == "5000" and environment["GEEKAI_HOST"] == "127.0.0.1"
    # The state directory is the instance folder (database, secrets, session cache).
    assert environment["GEEKAI_INSTANCE_PATH"] == "/var/lib/" + settings["StateDirectory"]
    # SIGTERM is answered within the stop grace; systemd waits longer before it kills.
    assert settings["KillSignal"] == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) > DEFAULTS["BOT_STOP_GRACE_SECONDS"]
    # A bad config exits 2 (tests/test_config.py runs it): that exit must not be restarted for ever.
    assert settings["RestartPreventExitStatus"] == "2"


def test_the_healthcheck_units_probe_the_service_they_restart():
    settings, _ = unit_settings("geekai-healthcheck.service")
    assert "/healthz" in settings["ExecStart"]
    assert "${GEEKAI_PORT:-5000}" in settings["ExecStart"].replace("$$", "$")
    assert "try-restart geekai.service" in settings["ExecStart"] and (DEPLOY / "geekai.service").is_file()
    assert settings["After"] == "geekai.service"
    # The timer starts the service of its own name.
    assert (DEPLOY / "geekai-healthcheck.timer").is_file()


@pytest.fixture
def nginx():
    return (DEPLOY / "nginx-geekai.conf").read_text(encoding="utf-8")


def test_nginx_proxies_to_the_port_the_unit_serves_on(nginx):
    _, environment = unit_settings("geekai.service")
    upstream = re.search(r"upstream geekai \{\s*server ([\d.]+):(\d+);", nginx)
    assert upstream.groups() == (environment["GEEKAI_HOST"], environment["GEEKAI_PORT"])
    # The proxy address geekai trusts by default is this nginx on the same host.
    assert DEFAULTS["PROXY_ADDRESS"] == upstream.group(1)


def test_nginx_locations_are_routes_of_the_app(nginx, app):
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    for path in re.findall(r"location = (\S+)", nginx):
        assert path in routes, f"nginx-geekai.conf has a location for {path}, which the app does not serve"
    assert "/healthz" in routes and "/readyz" in routes


def test_nginx_keeps_the_stream_open_and_the_body_limit_equal(nginx):
    stream = re.search(r"location = /api/bot/stream \{(.*?)\}", nginx, re.S).group(1)
    assert "proxy_buffering off;" in stream
    timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", stream)
    seconds = int(timeout.group(1)) * {"s": 1, "m": 60, "h": 3600}[timeout.group(2)]
    assert seconds > HEARTBEAT_SECONDS
    body = re.search(r"client_max_body_size (\d+)m;", nginx)
    assert int(body.group(1)) * 1024 * 1024 == DEFAULTS["MAX_CONTENT_LENGTH"]


COMPILES_ON_START = """
import importlib.machinery, os, sys
compiled = []
original = importlib.machinery.SourceFileLoader.source_to_code
def counting(self, data, path, *args, **kwargs):
    compiled.append(os.path.relpath(path))
    return original(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = counting
sys.path.insert(0, os.getcwd())
from geekai import create_app
create_app({"ADMIN_PASSWORD": "deploy-test-password", "BOT_ENABLED": False}, instance_path=sys.argv[1])
import geekai.server, geekai.bot.runtime, app
print("\\n".join(path for path in compiled if not path.startswith(("..", "/"))))
"""


def bytecode_commands():
    """The commands that make geekai's own bytecode: the Makefile's `bytecode` recipe, the image's RUN."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^bytecode:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has no bytecode target"
    make_command = recipe.group(1).strip().replace("$(BIN)/python", "python")
    for target in ("install", "run", "demo", "test", "bench"):
        assert re.search(rf"^{target}:.*\bbytecode\b", makefile, re.M), f"`make {target}` skips the bytecode"
    image = [rest for word, rest in dockerfile_instructions() if word == "RUN" and "compileall" in rest]
    assert len(image) == 1, "the image does not compile geekai's bytecode"
    copies = [i for i, (word, rest) in enumerate(dockerfile_instructions()) if word == "COPY" and "geekai/" in rest]
    runs = [i for i, (word, rest) in enumerate(dockerfile_instructions()) if word == "RUN" and "compileall" in rest]
    assert copies and runs[0] > copies[-1], "the image compiles before it copies geekai/"
    return {"Makefile": make_command, "Dockerfile": image[0]}


@pytest.mark.parametrize("source", ["Makefile", "Dockerfile"])
def test_a_start_compiles_none_of_geekai_after_the_install_step(source, tmp_path):
    """Where bytecode is not written at run time (the image sets PYTHONDONTWRITEBYTECODE; the unit's
    user cannot write /opt/geekai), the install step must have made it, or every start compiles
    every module again."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(ROOT / "app.py", checkout)
    shutil.copytree(ROOT / "geekai", checkout / "geekai", ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEEKAI_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    start = [sys.executable, "-c", COMPILES_ON_START, str(tmp_path / "instance")]

    before = subprocess.run(start, cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    assert before.returncode == 0, before.stderr
    assert "geekai/__init__.py" in before.stdout.split()  # no bytecode yet: the count is real

    command = shlex.split(bytecode_commands()[source])
    subprocess.run([sys.executable, *command[1:]], cwd=checkout, env=env, check=True, timeout=120)
    after = subprocess.run(start, cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stderr
    assert after.stdout.split() == [], f"compiled at start after `{' '.join(command)}`: {after.stdout.split()}"
