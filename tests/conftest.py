"""Fixtures: an app per test in its own instance folder, its client, and a running bot."""
from __future__ import annotations

import os
import re
import time

import pytest

# requests honours HTTP(S)_PROXY even for loopback; the fake WeChat server is on 127.0.0.1.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from databases import DATABASES, copy_sqlite, postgres_or_skip  # noqa: E402
from geekai import create_app  # noqa: E402
from geekai.db import db  # noqa: E402
from geekai.bot import runtime as bot_runtime  # noqa: E402
from geekai.bot.wxpy_patches import import_wxpy  # noqa: E402

# itchat's first import writes to stdout, and the adapter silences it by swapping sys.stdout for
# the whole process; done here once, that swap can never overlap CliRunner's own capture.
import_wxpy()

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_TOKEN = "test-token-0123456789"
ADMIN_PASSWORD = "correct horse battery"

FAST = {
    "BOT_LOGIN_TIMEOUT": 2,
    "BOT_RETRY_FIRST_SECONDS": 0.2,
    "BOT_RETRY_MAX_SECONDS": 1,
    "BOT_STOP_GRACE_SECONDS": 2,
}


TEST_SETTINGS = {"TESTING": True, "API_TOKEN": API_TOKEN, "ADMIN_PASSWORD": ADMIN_PASSWORD,
                 "SECRET_KEY": "test-secret-key", "WECHAT_BASE_URL": "http://127.0.0.1:9", **FAST}


def pytest_addoption(parser):
    parser.addoption("--db", action="append", choices=DATABASES, default=None,
                     help="run the tests that touch the database on this one only (default: both)")


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: reaches into the SQLite file itself (runs once)")


def pytest_generate_tests(metafunc):
    if "database" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("db") or DATABASES
        if metafunc.definition.get_closest_marker("sqlite_only"):
            chosen = [name for name in chosen if name == "sqlite"]
        metafunc.parametrize("database", chosen, indirect=True)


@pytest.fixture(autouse=True)
def transitions_follow_the_table(caplog):
    """The state table in geekai/bot/states.py is true: no test may make a transition it lacks."""
    yield
    wrong = [r.getMessage() for r in caplog.get_records("call") + caplog.get_records("teardown")
             if r.getMessage().startswith("unexpected bot transition")]
    assert wrong == [], "transitions missing from geekai/bot/states.py: %s" % wrong


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """A SQLite file the real migrations brought to the head, made once per test run.

    Each test's app starts from a copy of it: create_app() finds it current and skips the ~0.1 s
    the migrations take on a new file. tests/test_schema.py runs the migrations themselves.
    """
    instance = tmp_path_factory.mktemp("migrated")
    create_app(dict(TEST_SETTINGS), instance_path=str(instance))
    return instance / "geekai.sqlite"


@pytest.fixture(scope="session")
def postgres_cache():
    cache = {}
    yield cache
    if cache.get("server") is not None:
        cache["server"].close()


@pytest.fixture
def postgres(tmp_path, postgres_cache):
    """The PostgreSQL server of this run (skips, or fails under CI, when there is none)."""
    def migrate_template(url):
        template = create_app({**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": url},
                              instance_path=str(tmp_path / "template-instance"))
        with template.app_context():
            db.engine.dispose()  # a template must have no connections left to be copied

    return postgres_or_skip(postgres_cache, migrate_template)


@pytest.fixture
def database(request, tmp_path, migrated_sqlite):
    """The test's database URL: a copy of the migrated SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        copy_sqlite(migrated_sqlite, tmp_path / "instance")
        yield "sqlite:///" + str(tmp_path / "instance" / "geekai.sqlite")
        return
    server = request.getfixturevalue("postgres")
    url = server.new_database()
    yield url
    server.drop(url)


def instance_folder(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700, exist_ok=True)
    return instance


@pytest.fixture
def make_app(tmp_path, monkeypatch, database):
    """Build apps in a private instance folder, with GEEKAI_* from the outer environment removed."""
    for key in list(os.environ):
        if key.startswith("GEEKAI_"):
            monkeypatch.delenv(key)
    instance = instance_folder(tmp_path)
    built = []

    # SQLite: the default file in the instance folder, where `database` put the migrated copy.
    chosen = {} if database.startswith("sqlite:") else {"SQLALCHEMY_DATABASE_URI": database}

    def build(**config):
        app = create_app({**TEST_SETTINGS, **chosen, **config}, instance_path=str(instance))
        built.append(app)
        return app

    yield build
    for app in built:  # PostgreSQL counts connections: give them back
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth():
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def run_bot():
    """Start the bot of an app as `python app.py` would (minus the socket); stop it afterwards."""
    started = []

    def start(app):
        runtime = bot_runtime.install(app)
        runtime.take_part()
        runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.shutdown(grace=3)


def wait_for(predicate, timeout=10.0, interval=0.02):
    """Poll until predicate() is truthy; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def bot_state(client, auth):
    return client.get("/api/bot", headers=auth).get_json()


def wait_for_state(client, auth, *states, timeout=10.0):
    """Wait until the API shows one of `states`; fail with the last state seen."""
    seen = wait_for(lambda: bot_state(client, auth)["state"] in states and bot_state(client, auth), timeout)
    assert seen, f"bot never reached {states}; last: {bot_state(client, auth)}"
    return seen


def record(app, old, new, reason="", **fields):
    """Write one transition as the bot's store does, and wait until it is in the database."""
    from geekai.bot.store import StateStore

    store = StateStore(app)
    store.transition(old, new, reason, **fields)
    assert store.close(10), "the state was not written"


def csrf_token(client, path="/login") -> str:
    """The CSRF token a browser would find in the page's form."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token in {path}"
    return match.group(1)


def sign_in(client, password=ADMIN_PASSWORD):
    """Log in through the admin form, as a browser does."""
    return client.post("/login", data={"password": password, "csrf_token": csrf_token(client)})


@pytest.fixture
def emulator():
    """The fake web-WeChat server, with short long-polls so tests take seconds."""
    from geekai.bot.emulator import WeChatEmulator

    emu = WeChatEmulator(login_poll_hold=0.2, synccheck_hold=0.2).start()
    yield emu
    emu.stop()


@pytest.fixture
def bot_app(make_app, emulator):
    """An app whose bot talks to the emulator."""
    return make_app(WECHAT_BASE_URL=emulator.base_url)


def log_in_by_scan(client, auth, emulator):
    """Fetch the QR as the admin, scan and confirm it on the 'phone', wait for logged_in."""
    wait_for_state(client, auth, "waiting_for_scan")
    assert client.get("/api/bot/qr.png", headers=auth).data.startswith(b"\x89PNG")
    emulator.scan()
    wait_for_state(client, auth, "waiting_for_confirm")
    emulator.confirm()
    return wait_for_state(client, auth, "logged_in")


@pytest.fixture
def serve():
    """Serve apps over real HTTP in threads; return their URLs."""
    import threading

    from werkzeug.serving import make_server

    servers = []

    def start(app) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def service(tmp_path, request):
    """Start `python app.py` processes (see tests/service.py); kill what is left afterwards.

    On the test's `database` when it asks for one; otherwise on the instance folder's SQLite file,
    which the service creates and migrates itself.
    """
    from service import Service

    database = request.getfixturevalue("database") if "database" in request.fixturenames else None
    started = []

    def start(**env):
        started.append(Service(tmp_path / "instance", database=database, **env))
        return started[-1]

    yield start
    for svc in started:
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait()
        svc.proc.stderr.close()


CALLBACK_SECRET = "callback-secret-123"


@pytest.fixture
def receiver():
    """A local webhook receiver (tests/receivers.py) that checks callback signatures."""
    from receivers import WebhookReceiver

    hook = WebhookReceiver(secret=CALLBACK_SECRET).start()
    yield hook
    hook.stop()


@pytest.fixture
def ilink():
    """The fake iLink server (Tencent's bot API), with short long-polls so tests take seconds."""
    from geekai.bot.ilink_emulator import IlinkEmulator

    emu = IlinkEmulator(qr_poll_hold=0.2, updates_hold=0.3).start()
    yield emu
    emu.stop()


@pytest.fixture
def ilink_app(make_app, ilink):
    """An app whose bot is the iLink backend, talking to the fake iLink server."""
    return make_app(BOT_BACKEND="ilink", ILINK_BASE_URL=ilink.base_url)


def ilink_log_in(client, auth, emu):
    """Scan and confirm the iLink QR on the 'phone', wait for logged_in."""
    wait_for_state(client, auth, "waiting_for_scan")
    assert client.get("/api/bot/qr.png", headers=auth).data.startswith(b"\x89PNG")
    emu.scan()
    wait_for_state(client, auth, "waiting_for_confirm")
    emu.confirm()
    return wait_for_state(client, auth, "logged_in")


def decode_qr(png_bytes: bytes) -> str:
    """The text a phone's camera reads from a QR PNG (zxing-cpp)."""
    import png
    import zxingcpp

    width, height, rows, _ = png.Reader(bytes=png_bytes).asRGBA8()
    pixels = b"".join(bytes(row) for row in rows)  # kept alive: the view does not own its buffer
    found = zxingcpp.read_barcodes(zxingcpp.ImageView(pixels, width, height, zxingcpp.ImageFormat.RGBA))
    assert len(found) == 1, f"{len(found)} QR codes in the image"
    return found[0].text
