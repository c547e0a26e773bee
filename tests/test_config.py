"""Configuration layering and the one-line error for a bad value."""
from __future__ import annotations

import subprocess
import sys

import pytest

from geekai import create_app
from geekai.config import ConfigError

from conftest import ROOT_DIR, sign_in


@pytest.mark.sqlite_only
def test_defaults_and_test_config(make_app):
    app = make_app(BOT_QR_MAX_REFRESH=3)
    assert app.config["BOT_ENABLED"] is True
    assert app.config["BOT_QR_MAX_REFRESH"] == 3
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("geekai.sqlite")


def test_environment_overrides_instance_config(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text("BOT_LOGIN_TIMEOUT = 30\nBOT_RETRY_MAX_SECONDS = 100\n")
    monkeypatch.setenv("GEEKAI_BOT_LOGIN_TIMEOUT", "45")
    app = create_app(instance_path=str(instance))
    assert app.config["BOT_LOGIN_TIMEOUT"] == 45
    assert app.config["BOT_RETRY_MAX_SECONDS"] == 100


@pytest.mark.parametrize("key, value, expected", [
    ("BOT_LOGIN_TIMEOUT", "abc", "a number of seconds"),
    ("BOT_LOGIN_TIMEOUT", -1, "a number of seconds"),
    ("BOT_ENABLED", "maybe", "true or false"),
    ("BOT_BACKEND", "telegram", "'wxpy', 'ilink', 'demo' or 'demo-ilink'"),
    ("WECHAT_BASE_URL", "login.weixin.qq.com", "an http(s) URL"),
    ("ILINK_BASE_URL", "ilinkai.weixin.qq.com", "an http(s) URL"),
    ("ILINK_POLL_SECONDS", "0", "a number of seconds >= 0.1"),
    ("ILINK_TOKEN_FILE", "", "a file name"),
    ("BOT_QR_MAX_REFRESH", 2.5, "a whole number"),
    ("METRICS", "public", "'open', 'token' or 'off'"),
    ("API_TOKEN", "short", "at least 8 characters"),
    ("PROXY_ADDRESS", "nginx", "the IP address the reverse proxy connects from"),
    ("MAX_CONTENT_LENGTH", 100, "a number of bytes >= 1024"),
    ("MAX_CONTENT_LENGTH", "1M", "a number of bytes >= 1024"),
    ("SESSION_LIFETIME_SECONDS", 5, "a number of seconds >= 60"),
])
def test_bad_value_names_the_key(make_app, key, value, expected):
    with pytest.raises(ConfigError) as info:
        make_app(**{key: value})
    assert info.value.key == key
    assert key in str(info.value) and expected in str(info.value)


def test_bad_value_stops_start_up_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "GEEKAI_BOT_RETRY_MAX_SECONDS": "soon", "NO_PROXY": "*"}
    result = subprocess.run([sys.executable, "app.py", "--instance", str(tmp_path / "i"), "--port", "0"],
                            cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["geekai: config error: BOT_RETRY_MAX_SECONDS must be a number of seconds >= 0.1 (got 'soon')"]


def test_bad_port_flag_is_refused(tmp_path):
    result = subprocess.run([sys.executable, "app.py", "--port", "http"], cwd=ROOT_DIR,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--port" in result.stderr and "invalid int value" in result.stderr


def test_secrets_are_generated_once_and_private(tmp_path, capfd):
    instance = tmp_path / "instance"
    first = create_app(instance_path=str(instance))
    printed = capfd.readouterr().err
    assert "generated admin password" in printed
    second = create_app(instance_path=str(instance))
    assert "generated admin password" not in capfd.readouterr().err
    assert first.config["API_TOKEN"] == second.config["API_TOKEN"]
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert (instance / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert (instance / "geekai.sqlite").stat().st_mode & 0o777 == 0o600
    password = printed.split("generated admin password: ")[1].split()[0]
    client = second.test_client()
    assert sign_in(client, password).status_code == 302
    assert client.get("/api/bot").status_code == 200


@pytest.mark.parametrize("content, expected", [
    ("BOT_LOGIN_TIMEOUT = (\n", "must be valid Python"),
    ("import not_a_module\n", "No module named"),
])
def test_broken_instance_config_file_is_one_line(tmp_path, content, expected):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text(content)
    result = subprocess.run([sys.executable, "app.py", "--instance", str(instance), "--port", "0"],
                            cwd=ROOT_DIR, capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin", "NO_PROXY": "*"})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("geekai: config error: " + str(instance / "config.py")) and expected in line


def test_misspelt_environment_variable_is_named(make_app, monkeypatch, caplog):
    monkeypatch.setenv("GEEKAI_BOT_LOGIN_TIMEOUTT", "30")
    monkeypatch.setenv("GEEKAI_BOT_QR_MAX_REFRESH", "3")
    app = make_app()
    assert "GEEKAI_BOT_LOGIN_TIMEOUTT is not a geekai setting" in caplog.text
    assert "GEEKAI_BOT_QR_MAX_REFRESH" not in caplog.text
    assert app.config["BOT_LOGIN_TIMEOUT"] == 2  # the test config's value: the typo changed nothing


@pytest.mark.parametrize("base_url, warned", [("https://login.weixin.qq.com", True), ("http://127.0.0.1:9", False)])
def test_login_timeout_shorter_than_wechats_long_poll_is_named(make_app, caplog, base_url, warned):
    make_app(BOT_LOGIN_TIMEOUT=20, WECHAT_BASE_URL=base_url)
    assert ("BOT_LOGIN_TIMEOUT is 20 s" in caplog.text) is warned


@pytest.mark.parametrize("timeout, warned", [(30, True), (60, False)])
def test_login_timeout_shorter_than_ilinks_long_poll_is_named(make_app, caplog, timeout, warned):
    make_app(BOT_BACKEND="ilink", BOT_LOGIN_TIMEOUT=timeout, ILINK_BASE_URL="https://ilinkai.weixin.qq.com")
    assert (f"BOT_LOGIN_TIMEOUT is {timeout} s, but WeChat holds a login poll about 35 s" in caplog.text) is warned


@pytest.mark.parametrize("watchdog, warned", [(30, True), (45, False)])
def test_a_watchdog_shorter_than_ilinks_wait_for_messages_is_named(make_app, caplog, watchdog, warned):
    make_app(BOT_BACKEND="ilink", WATCHDOG_SECONDS=watchdog)
    assert ("the watchdog would restart a bot that is only quiet" in caplog.text) is warned
