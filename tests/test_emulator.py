"""The fake web-WeChat server, proven against the real wxpy 0.3.9.8 / itchat 1.2.32."""

import atexit
import html
import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

# pytest puts tests/ (not the repository) on sys.path when there is no rootdir config.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itchat  # noqa: E402
import itchat.config  # noqa: E402
import itchat.utils  # noqa: E402
import wxpy  # noqa: E402

from geekai.bot.emulator import WeChatEmulator  # noqa: E402

itchat.set_logging(showOnCmd=False)

HOLD = 0.05
WAIT = 5.0
CGI = "/cgi-bin/mmwebwx-bin"


class Cancelled(Exception):
    """Raised from qr_callback to unwind a Bot() that is still waiting for a login."""


class BotRun:
    """Runs wxpy.Bot(...) in a thread (it blocks until login) and records its callbacks."""

    def __init__(self, **kwargs):
        self.qr = []  # (uuid, status, qrcode bytes) per qr_callback
        self.logged_in = threading.Event()
        self.logged_out = threading.Event()
        self.cancel = False
        self.bot = None
        self.error = None
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, **kwargs):
        try:
            self.bot = wxpy.Bot(qr_callback=self._on_qr, login_callback=self.logged_in.set,
                                logout_callback=self.logged_out.set, **kwargs)
        except BaseException as e:  # itchat may sys.exit(); never let that pass silently
            self.error = e

    def _on_qr(self, uuid, status, qrcode):
        self.qr.append((uuid, status, qrcode))
        if self.cancel:
            raise Cancelled()

    def statuses(self):
        return [status for _, status, _ in self.qr]

    def new_qr_uuids(self):
        return [uuid for uuid, status, _ in self.qr if status == "0"]

    def wait_status(self, status, count=1, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.statuses().count(status) >= count:
                return True
            time.sleep(0.01)
        return False

    def join(self, timeout=WAIT):
        """Wait for Bot() to return and give the bot (fails the test if it did not)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "Bot() did not return; statuses %s" % self.statuses()
        assert self.error is None, repr(self.error)
        return self.bot


def stop_without_logout(run):
    """End a bot's loops without telling the server, as a process exit would (session stays valid)."""
    run.bot.core.alive = False
    assert run.logged_out.wait(WAIT)


@pytest.fixture
def emulator_factory(monkeypatch):
    """Builds started emulators with small holds, points itchat at the last one, stops them all."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # Python >= 3.9 lost HTMLParser.unescape: without this every 1:1 message is dropped.
    monkeypatch.setattr(itchat.utils.htmlParser, "unescape", html.unescape, raising=False)
    made = []

    def make(**kwargs):
        kwargs.setdefault("login_poll_hold", HOLD)
        kwargs.setdefault("synccheck_hold", HOLD)
        emu = WeChatEmulator(**kwargs).start()
        monkeypatch.setattr(itchat.config, "BASE_URL", emu.base_url)
        made.append(emu)
        return emu

    yield make
    for emu in made:
        emu.stop()


@pytest.fixture
def emu(emulator_factory):
    return emulator_factory()


@pytest.fixture
def bots(emulator_factory):
    """Starts BotRuns; afterwards logs them out and undoes wxpy's and itchat's leftovers."""
    before = list(itchat.instanceList)
    runs = []

    def start(**kwargs):
        run = BotRun(**kwargs)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.cancel = True
        run.thread.join(WAIT)
        bot = run.bot
        if bot is None:
            continue
        if bot.alive:
            try:
                bot.logout()
            except Exception:
                pass
        bot.core.alive = False
        atexit.unregister(bot._cleanup)
        bot.temp_dir.cleanup()
        bot.core.s.close()
    itchat.instanceList[:] = before


def login(emu, run):
    """Scan and confirm the run's QR; return the logged-in bot."""
    assert run.wait_status("0")
    assert emu.wait_for(lambda: emu.state == "waiting_for_scan")
    assert emu.scan()
    assert run.wait_status("201")
    assert emu.confirm()
    bot = run.join()
    assert run.logged_in.is_set()
    return bot


# ----- login ---------------------------------------------------------------------------

def test_qr_scan_confirm_logs_in(emu, bots):
    assert emu.state == "idle" and emu.qr_uuid is None
    run = bots()
    assert run.wait_status("0")
    uuid, status, png = run.qr[0]
    assert status == "0" and png.startswith(b"\x89PNG")
    assert uuid == emu.qr_uuid and emu.state == "waiting_for_scan"
    assert run.wait_status("408")  # the long-poll answers "nothing yet" while nobody scans

    assert emu.scan()
    assert run.wait_status("201")
    assert emu.state == "scanned"
    assert emu.confirm()
    bot = run.join()

    assert run.statuses()[-1] == "200"
    assert bot.self.name == "GeekAI测试号"
    assert emu.state == "logged_in" and emu.qr_uuid is None
    assert {f.name for f in bot.friends()} >= {"张三", "李四", "微信支付"}
    assert {m.name for m in bot.mps()} == {"微信支付", "微信收款助手"}
    assert [g.name for g in bot.groups()] == ["GeekAI 用户群"]
    for path in ("/", "/jslogin", CGI + "/webwxnewloginpage", CGI + "/webwxinit",
                 CGI + "/webwxstatusnotify", CGI + "/webwxgetcontact"):
        assert emu.request_counts[path] >= 1, path


def test_confirm_without_scan_still_reports_201_first(emu, bots):
    run = bots()
    assert run.wait_status("0")
    assert emu.confirm()
    run.join()
    assert run.statuses().index("201") < run.statuses().index("200")


def test_expired_qr_is_replaced(emu, bots):
    run = bots()
    assert run.wait_status("0")
    first = emu.qr_uuid
    assert emu.expire_qr()
    assert run.wait_status("0", count=2)
    assert run.wait_status("400")
    uuids = run.new_qr_uuids()
    assert uuids[0] == first and uuids[1] != first
    assert emu.wait_for(lambda: emu.qr_uuid == uuids[1])
    assert emu.request_counts["/jslogin"] == 2
    login(emu, run)


def test_qr_lifetime_expires_by_itself(emulator_factory, bots):
    emulator_factory(qr_lifetime=0.2, login_poll_hold=5.0)  # the bots below log in to it
    run = bots()
    # The 5 s hold must not delay the 400: the poll wakes when the QR's lifetime ends.
    assert run.wait_status("0", count=2, timeout=2.0)
    assert len(set(run.new_qr_uuids())) >= 2
    run.cancel = True


def test_cancel_after_scan_gives_a_new_qr(emu, bots):
    run = bots()
    assert run.wait_status("0")
    assert emu.scan() and run.wait_status("201")
    assert emu.cancel()
    assert run.wait_status("0", count=2)
    assert emu.state == "waiting_for_scan"
    assert emu.scan()  # the new QR can be used
    assert emu.confirm()
    run.join()


# ----- messages ------------------------------------------------------------------------

def test_text_reaches_handler_and_reply_is_recorded(emu, bots):
    bot = login(emu, bots())
    received = []

    @bot.register()
    def on_message(msg):
        received.append(msg)
        msg.reply("pong: " + msg.text)

    entry = emu.send_text('1 < 2 & "ok"\nline 2')
    assert entry["Content"] == '1 &lt; 2 &amp; "ok"<br/>line 2'
    assert emu.wait_for(lambda: len(emu.sent) == 1)
    msg = received[0]
    assert msg.text == '1 < 2 & "ok"\nline 2'
    assert msg.sender.name == "张三"
    sent = emu.sent[0]["Msg"]
    assert sent["Content"] == 'pong: 1 < 2 & "ok"\nline 2'
    assert sent["ToUserName"] == emu.friend_username("张三")
    assert sent["FromUserName"] == bot.self.user_name
    assert emu.pending_messages == 0


def test_app_message_from_official_account(emu, bots):
    bot = login(emu, bots())
    received = []
    bot.register(msg_types=wxpy.SHARING)(received.append)
    xml = ("<msg><appmsg><title>微信支付收款0.01元</title><des>收款金额￥0.01\n付款方备注GK7Q2</des>"
           "<url>https://payapp.weixin.qq.com/x?trans_id=1000050001202401011234567890</url>"
           "</appmsg></msg>")
    emu.inject_message({"MsgType": 49, "AppMsgType": 5, "FileName": "微信支付收款0.01元",
                        "FromUserName": emu.mp_username("微信支付"), "Content": html.escape(xml)})
    assert emu.wait_for(lambda: received)
    msg = received[0]
    assert isinstance(msg.sender, wxpy.MP) and msg.sender.name == "微信支付"
    assert msg.raw["Content"] == xml  # itchat unescapes what the server escaped
    assert msg.text == "微信支付收款0.01元"

    # A friend who calls himself 微信支付 is not the official account.
    emu.inject_message({"MsgType": 49, "AppMsgType": 5, "FileName": "forged",
                        "FromUserName": emu.friend_username("微信支付"), "Content": html.escape(xml)})
    assert emu.wait_for(lambda: len(received) == 2)
    assert not isinstance(received[1].sender, wxpy.MP)
    assert received[1].sender.raw["VerifyFlag"] == 0


# ----- logout and hot login ------------------------------------------------------------

def test_logout_from_phone_fires_logout_callback(emu, bots):
    run = bots()
    bot = login(emu, run)
    assert emu.logout()
    assert run.logged_out.wait(WAIT)
    assert emu.state == "logged_out"
    assert emu.wait_for(lambda: not bot.alive)
    # The dead session is refused everywhere.
    session = emu.session
    r = requests.post(emu.base_url + CGI + "/webwxsync", timeout=2,
                      json={"BaseRequest": {"Sid": session.sid, "Skey": session.skey}})
    assert r.json()["BaseResponse"]["Ret"] == 1101


def test_client_logout_reaches_server(emu, bots):
    run = bots()
    bot = login(emu, run)
    bot.logout()
    assert emu.wait_for(lambda: emu.state == "logged_out")
    assert emu.session.ended_by == "client"
    assert emu.request_counts[CGI + "/webwxlogout"] == 1
    assert run.logged_out.wait(WAIT)


def test_hot_login_reuses_the_session(emu, bots, tmp_path):
    cache = str(tmp_path / "wxpy.pkl")
    first = bots(cache_path=cache)
    login(emu, first)
    assert os.path.exists(cache)
    stop_without_logout(first)
    assert emu.state == "logged_in"

    second = bots(cache_path=cache)
    bot = second.join()
    assert second.logged_in.is_set()
    assert "0" not in second.statuses() and second.qr == []
    assert emu.request_counts["/jslogin"] == 1
    assert bot.self.name == "GeekAI测试号"

    received = []
    bot.register()(received.append)
    emu.send_text("after hot login")
    assert emu.wait_for(lambda: received)
    assert received[0].text == "after hot login"


def restart_after_phone_logout(emu, bots, tmp_path):
    """Log a bot in with a cache, log it out from the 'phone', start a second bot on that cache."""
    cache = str(tmp_path / "wxpy.pkl")
    first = bots(cache_path=cache)
    login(emu, first)
    emu.logout()
    assert first.logged_out.wait(WAIT)
    return bots(cache_path=cache)


def test_hot_login_after_phone_logout_falls_back_to_qr(emu, bots, tmp_path):
    second = restart_after_phone_logout(emu, bots, tmp_path)
    assert second.wait_status("0")
    assert emu.request_counts[CGI + "/webwxpushloginurl"] == 1  # refused: push_login=False
    assert emu.request_counts["/jslogin"] == 2
    bot = login(emu, second)
    assert emu.state == "logged_in" and bot.alive


def test_push_login_after_phone_logout(emulator_factory, bots, tmp_path):
    emu = emulator_factory(push_login=True)
    second = restart_after_phone_logout(emu, bots, tmp_path)
    assert emu.wait_for(lambda: emu.state == "pushed")
    assert second.wait_status("408")
    assert "0" not in second.statuses()  # no QR is drawn for a push login
    assert all(qrcode == b"" for _, _, qrcode in second.qr)
    assert not emu.scan()  # there is nothing to scan, only to confirm
    assert emu.confirm()
    second.join()
    assert emu.state == "logged_in"
    assert emu.request_counts["/jslogin"] == 1


def test_new_login_ends_the_older_session(emu, bots):
    first = bots()
    login(emu, first)
    old = emu.session
    second = bots()
    login(emu, second)
    assert first.logged_out.wait(WAIT)  # synccheck answered 1101 to the old session
    assert old.ended_by == "replaced" and emu.session.valid


# ----- faults ------------------------------------------------------------------------

def test_fault_hang_blocks_until_cleared(emu):
    emu.set_fault("hang", {"jslogin"})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(emu.base_url + "/jslogin", timeout=0.3)
    assert requests.get(emu.base_url + "/", timeout=2).status_code == 200  # other paths answer

    result = {}

    def fetch():
        result["r"] = requests.get(emu.base_url + "/jslogin", timeout=5)

    t = threading.Thread(target=fetch)
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    emu.set_fault(None)
    t.join(2)
    assert "window.QRLogin.code = 200" in result["r"].text


def test_fault_hang_is_released_by_stop(emu):
    emu.set_fault("hang")
    errors = []

    def fetch():
        try:
            requests.get(emu.base_url + CGI + "/synccheck", timeout=10)
        except requests.exceptions.ConnectionError as e:
            errors.append(e)

    t = threading.Thread(target=fetch)
    t.start()
    assert emu.wait_for(lambda: emu.request_counts[CGI + "/synccheck"] == 1)
    started = time.monotonic()
    emu.stop()
    t.join(2)
    assert not t.is_alive() and errors
    assert time.monotonic() - started < 1.5


def test_fault_5xx(emu):
    emu.set_fault("5xx", ["synccheck"])
    assert requests.get(emu.base_url + CGI + "/synccheck", timeout=2).status_code == 503
    assert requests.get(emu.base_url + "/jslogin", timeout=2).status_code == 200


def test_fault_garbage(emu):
    emu.set_fault("garbage")
    r = requests.get(emu.base_url + "/jslogin", timeout=2)
    assert r.status_code == 200
    assert not re.search(r'window.QRLogin.code = (\d+); window.QRLogin.uuid = "(\S+?)";', r.text)
    assert not re.search(r"window.code=(\d+)", r.text)
    assert not re.search(r'window.synccheck={retcode:"(\d+)",selector:"(\d+)"}', r.text)
    with pytest.raises(ValueError):
        r.json()


def test_fault_drop(emu):
    emu.set_fault("drop", {"jslogin"})
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(emu.base_url + "/jslogin", timeout=2)
    emu.set_fault(None)
    assert requests.get(emu.base_url + "/jslogin", timeout=2).status_code == 200


def test_synccheck_fault_logs_the_bot_out(emu, bots):
    run = bots()
    login(emu, run)
    emu.set_fault("5xx", {"synccheck"})
    assert run.logged_out.wait(WAIT)  # itchat reads any unparseable synccheck as a logout


def test_fault_for_a_number_of_requests_clears_itself(emu):
    emu.set_fault("5xx", {"jslogin"}, times=2)
    codes = [requests.get(emu.base_url + "/jslogin", timeout=2).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert emu.fault == (None, None)
    with pytest.raises(ValueError):
        emu.set_fault(None, times=1)


def test_server_gone_and_back_on_the_same_port_keeps_the_session(emu, bots):
    run = bots()
    bot = login(emu, run)
    received = []
    bot.register()(received.append)
    port, session = emu.port, emu.session
    emu.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get("http://127.0.0.1:%d/" % port, timeout=1)  # refused, as a server that is gone
    emu.send_text("while the server was away")
    emu.start(port=port)
    assert emu.port == port and emu.session is session and session.valid
    # itchat retries a failed sync every second, five times: back in time, the session goes on.
    assert emu.wait_for(lambda: received, timeout=WAIT)
    assert received[0].text == "while the server was away" and bot.alive


def test_a_lost_webwxsync_answer_is_sent_again(emu, bots):
    bot = login(emu, bots())
    received = []
    bot.register()(received.append)
    session = emu.session
    emu.send_text("first")
    assert emu.wait_for(lambda: len(received) == 1)
    key = bot.core.loginInfo["SyncKey"]
    emu.send_text("second")
    assert emu.wait_for(lambda: len(received) == 2)
    # A client that never got the last answer asks again with the key it had: it gets "second" again.
    again = requests.post(emu.base_url + CGI + "/webwxsync", timeout=2, json={
        "BaseRequest": {"Sid": session.sid, "Skey": session.skey}, "SyncKey": key}).json()
    assert [m["Content"] for m in again["AddMsgList"]] == ["second"]
    # The newest key acknowledges everything: nothing more comes.
    newest = requests.post(emu.base_url + CGI + "/webwxsync", timeout=2, json={
        "BaseRequest": {"Sid": session.sid, "Skey": session.skey}, "SyncKey": again["SyncKey"]}).json()
    assert newest["AddMsgList"] == [] and emu.unacknowledged_messages == 0 and emu.pending_messages == 0


def test_refused_account_gets_ret_1203_until_accepted_again(emu, bots):
    emu.refuse_login()
    run = bots()
    assert run.wait_status("0")
    assert emu.confirm()
    run.thread.join(WAIT)
    assert run.bot is None and run.error is not None  # itchat cannot read the refusal
    assert emu.session is None
    emu.refuse_login(None)
    login(emu, bots())
    assert emu.state == "logged_in"


def test_redirect_to_another_host(emu):
    emu.redirect_base_url = "http://geekai-nowhere.invalid:%d" % emu.port
    uuid = re.search(r'uuid = "(\S+?)"', requests.get(emu.base_url + "/jslogin", timeout=2).text).group(1)
    assert emu.confirm()
    answer = requests.get(emu.base_url + CGI + "/login", params={"uuid": uuid}, timeout=2).text  # 201
    answer = requests.get(emu.base_url + CGI + "/login", params={"uuid": uuid}, timeout=2).text
    assert 'window.redirect_uri="http://geekai-nowhere.invalid:%d%s/webwxnewloginpage?' % (emu.port, CGI) in answer


def test_unknown_path_is_404(emu):
    assert requests.get(emu.base_url + "/nope", timeout=2).status_code == 404
    assert requests.get(emu.base_url + CGI + "/webwxgetmsgimg", timeout=2).status_code == 404


def test_there_are_no_control_endpoints(emu):
    """Tests and the demo drive the emulator in-process; nothing on its port scans, confirms or injects."""
    for path in ("/_emulator/state", "/_emulator/scan", "/_emulator/inject"):
        assert requests.post(emu.base_url + path, json={"MsgType": 49}, timeout=2).status_code == 404
    assert emu.state == "idle" and emu.pending_messages == 0


def test_context_manager_and_stop_is_idempotent():
    with WeChatEmulator(login_poll_hold=HOLD, synccheck_hold=HOLD).start() as emu:
        base = emu.base_url
        assert requests.get(base + "/", timeout=2).status_code == 200
    emu.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(base + "/", timeout=1)


def test_a_new_login_starts_after_what_the_last_session_was_handed(emu, bots):
    bot = login(emu, bots())
    received = []
    bot.register()(received.append)
    emu.send_text("to the first session")
    assert emu.wait_for(lambda: received)
    emu.logout()
    emu.send_text("while nobody is logged in")
    again = login(emu, bots())
    # Only what no session was handed: the first message is not sent to the new session again.
    assert emu.wait_for(lambda: emu.pending_messages == 0 and len(again.messages) >= 1, timeout=WAIT)
    assert [m.text for m in again.messages] == ["while nobody is logged in"]
