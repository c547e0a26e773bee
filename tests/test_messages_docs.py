"""The examples of docs/messages.md, run as written: the reply bot against a served app whose real
wxpy talks to the fake WeChat, and the signature check against a real callback."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import API_TOKEN, CALLBACK_SECRET, ROOT_DIR, log_in_by_scan, wait_for
from message_helpers import feed, sent_texts

DOC = os.path.join(ROOT_DIR, "docs", "messages.md")


def example(first_line: str) -> str:
    """The ```python block of docs/messages.md that starts with `first_line`."""
    with open(DOC, encoding="utf-8") as doc:
        blocks = re.findall(r"```python\n(.*?)```", doc.read(), re.S)
    found = [block for block in blocks if block.startswith(first_line)]
    assert len(found) == 1, f"no example starting with {first_line!r} in {DOC}"
    return found[0]


def test_the_reply_bot_answers_each_text_once_across_restarts(make_app, run_bot, emulator, serve, auth, tmp_path):
    app = make_app(WECHAT_BASE_URL=emulator.base_url, MESSAGE_SEND_INTERVAL_SECONDS=0.1)
    client = app.test_client()
    run_bot(app)
    log_in_by_scan(client, auth, emulator)
    script = tmp_path / "reply_bot.py"
    script.write_text(example("# reply_bot.py"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    env.update(GEEKAI_URL=serve(app), GEEKAI_API_TOKEN=API_TOKEN, NO_PROXY="127.0.0.1")

    def start():
        return subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    bot = start()
    try:
        emulator.send_text("你好")
        emulator.send_text("<b>订单</b> 42", from_user="李四")
        assert wait_for(lambda: len(emulator.sent) == 2, timeout=15), bot.poll()
        assert sorted(sent_texts(emulator)) == sorted(["收到：你好", "收到：<b>订单</b> 42"])
    finally:
        bot.kill()
        bot.communicate()
    emulator.send_text("还在吗")  # while the reply bot is down
    assert wait_for(lambda: len(feed(client, auth, direction="in")) == 3, timeout=10)
    again = start()
    try:
        assert wait_for(lambda: len(emulator.sent) == 3, timeout=15), again.poll()
        wait_for(lambda: False, timeout=1.0)  # a few more polls: nothing is answered twice
    finally:
        again.kill()
        output = again.communicate()[0]
    assert sent_texts(emulator)[-1] == "收到：还在吗" and len(emulator.sent) == 3, output
    assert (tmp_path / "cursor.txt").read_text() == str(feed(client, auth, direction="in")[-1]["id"])


def test_the_signature_check_accepts_a_real_callback_and_nothing_else(make_app, receiver):
    from geekai import outbox
    from geekai.bot.backend import IncomingMessage
    from geekai.messages.feed import record_incoming

    app = make_app(MESSAGE_CALLBACK_URL=receiver.url, MESSAGE_CALLBACK_SECRET=CALLBACK_SECRET)
    record_incoming(app, IncomingMessage(id="1", type="Text", text="在吗？", sender="@x", sender_name="张三",
                                         contact_id="张三"))
    assert outbox.deliver_due(app) == 1
    namespace: dict = {}
    exec(example("# verify.py"), namespace)  # noqa: S102 (the documented code, as a reader copies it)
    verify = namespace["verify"]
    request = receiver.accepted()[0]
    headers = {"X-Geekai-Timestamp": request["headers"]["x-geekai-timestamp"],
               "X-Geekai-Signature": request["headers"]["x-geekai-signature"]}
    assert verify(CALLBACK_SECRET, headers, request["body"])
    assert not verify(CALLBACK_SECRET, headers, request["body"].replace("在吗".encode(), "再见".encode()))
    assert not verify("another-secret-1", headers, request["body"])
    assert not verify(CALLBACK_SECRET, headers | {"X-Geekai-Timestamp": "1000000000"}, request["body"])
