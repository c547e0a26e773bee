"""`bot send` and `bot messages` against a served app whose real wxpy talks to the fake WeChat."""
from __future__ import annotations

import json

import pytest

from conftest import API_TOKEN, log_in_by_scan, wait_for, wait_for_state
from geekai.display_time import shown
from message_helpers import feed
from test_cli import closed_port_url


@pytest.fixture
def bot_cli(make_app, run_bot, emulator, serve, auth):
    """(run(*args), app client): the CLI against a service whose bot is logged in."""
    app = make_app(WECHAT_BASE_URL=emulator.base_url, MESSAGE_SEND_INTERVAL_SECONDS=0.1, MESSAGE_MAX_CHARS=50)
    run_bot(app)
    client = app.test_client()
    log_in_by_scan(client, auth, emulator)
    url = serve(app)
    runner = app.test_cli_runner()

    def run(*args, at=None):
        return runner.invoke(args=["bot", *args], env={"GEEKAI_URL": at or url, "GEEKAI_API_TOKEN": API_TOKEN})

    return run, client


def test_send_exits_0_once_sent(bot_cli, emulator):
    run, _ = bot_cli
    result = run("send", "张三", "部署完成 ✅", "--key", "deploy-1")
    assert result.exit_code == 0, result.output
    assert "message 1 to '张三': sent" in result.output
    assert [s["Msg"]["Content"] for s in emulator.sent] == ["部署完成 ✅"]
    again = run("send", "张三", "部署完成 ✅", "--key", "deploy-1", "--json")
    assert again.exit_code == 0 and json.loads(again.output)["id"] == 1
    assert len(emulator.sent) == 1  # the key made it the same message


def test_send_to_an_unknown_contact_exits_1_with_the_reason(bot_cli):
    run, _ = bot_cli
    result = run("send", "nobody", "hi")
    assert result.exit_code == 1 and "failed (unknown contact 'nobody'" in result.output


def test_send_that_stays_queued_exits_1_and_says_so(bot_cli, auth):
    run, client = bot_cli
    assert client.post("/api/bot/stop", headers=auth).status_code == 202
    wait_for_state(client, auth, "stopped")
    result = run("send", "张三", "later", "--timeout", "0.5")
    assert result.exit_code == 1 and "queued" in result.output and "once the bot is online" in result.output
    queued = run("send", "张三", "later too", "--no-wait")
    assert queued.exit_code == 0 and "queued" in queued.output


def test_send_with_bad_input_or_no_service_exits_2(bot_cli):
    run, _ = bot_cli
    too_long = run("send", "张三", "x" * 51)
    assert too_long.exit_code == 2 and "over the limit of 50 (MESSAGE_MAX_CHARS)" in too_long.output
    gone = run("send", "张三", "hi", at=closed_port_url())
    assert gone.exit_code == 2 and "the service is not running" in gone.output


def test_messages_lists_the_feed_oldest_at_the_top(bot_cli, emulator):
    run, client = bot_cli
    emulator.send_text("在吗？")
    assert wait_for(lambda: feed(client, {"Authorization": f"Bearer {API_TOKEN}"}), timeout=10)
    run("send", "张三", "在")
    run("send", "赵六", "hello")
    result = run("messages")
    header, *lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and len(lines) == 3 and "time (UTC+8)" in header
    assert lines[0].split()[-3:] == ["in", "张三", "在吗？"]
    assert shown(feed(client, {"Authorization": f"Bearer {API_TOKEN}"})[0]["created_at"]) in lines[0]  # China time
    assert "out  张三  [sent] 在" in lines[1]
    assert "[failed: unknown contact '赵六'" in lines[2]
    failed = run("messages", "--status", "failed", "--json")
    assert [m["contact"] for m in json.loads(failed.output)["messages"]] == ["赵六"]
    after = run("messages", "--after-id", "1", "--limit", "1", "--json")
    assert [m["id"] for m in json.loads(after.output)["messages"]] == [2]
