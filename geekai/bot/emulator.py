"""A fake web-WeChat server speaking the protocol of itchat 1.2.32, for tests and demo mode."""

# It serves on 127.0.0.1 in a daemon thread and plays both WeChat's servers and the phone:
# tests (or the demo page) call scan(), confirm(), send_text(), logout() and set_fault() while
# the real wxpy/itchat code logs in, receives and replies against it.
# Protocol reference: docs/protocol-notes.md#web-wechat-as-itchat-speaks-it

import collections
import copy
import html
import json
import random
import string
import time

from .fake_server import FAULT_MODES, FakeServer

__all__ = ["WeChatEmulator", "FAULT_MODES", "STATES"]

CGI = "/cgi-bin/mmwebwx-bin"
STATES = ("idle", "waiting_for_scan", "scanned", "pushed", "logged_in", "logged_out")
JS = "text/javascript; charset=utf-8"
# The real server labels its JSON text/plain; itchat does not care, so mimic it.
JSON_TYPE = "text/plain; charset=utf-8"
RET_LOGGED_OUT = 1101
RET_NOT_A_CONTACT = 1204
# Val of SyncKey item 1 at sync position 0; the position is the seq of the last message handed over.
SYNC_KEY_BASE = 680000000

_ALNUM = string.ascii_letters + string.digits


def _token(n, alphabet=_ALNUM):
    """Random string of n characters from alphabet."""
    return "".join(random.choice(alphabet) for _ in range(n))


def _hex(n):
    """Random lower-case hex string of n characters."""
    return _token(n, "0123456789abcdef")


def _contact(user_name, nick_name, sex=0, verify_flag=0, **extra):
    """A contact record with every key itchat/wxpy read (as webwxgetcontact sends them)."""
    record = {
        "Uin": 0, "UserName": user_name, "NickName": nick_name,
        "HeadImgUrl": "%s/webwxgeticon?seq=0&username=%s&skey=" % (CGI, user_name),
        "ContactFlag": 3, "MemberCount": 0, "MemberList": [], "RemarkName": "",
        "HideInputBarFlag": 0, "Sex": sex, "Signature": "", "VerifyFlag": verify_flag,
        "OwnerUin": 0, "PYInitial": "", "PYQuanPin": "", "RemarkPYInitial": "",
        "RemarkPYQuanPin": "", "StarFriend": 0, "AppAccountFlag": 0, "Statues": 0,
        "AttrStatus": 0, "Province": "", "City": "", "Alias": "", "SnsFlag": 0,
        "UniFriend": 0, "DisplayName": "", "ChatRoomId": 0, "KeyWord": "",
        "EncryChatRoomId": "", "IsOwner": 0,
    }
    record.update(extra)
    return record


def _message_template():
    """An AddMsgList entry with every key itchat's produce_msg may read."""
    return {
        "MsgId": "", "FromUserName": "", "ToUserName": "", "MsgType": 1, "Content": "",
        "Status": 3, "ImgStatus": 1, "CreateTime": 0, "VoiceLength": 0, "PlayLength": 0,
        "FileName": "", "FileSize": "", "MediaId": "", "Url": "", "AppMsgType": 0,
        "StatusNotifyCode": 0, "StatusNotifyUserName": "",
        "RecommendInfo": {
            "UserName": "", "NickName": "", "QQNum": 0, "Province": "", "City": "",
            "Content": "", "Signature": "", "Alias": "", "Scene": 0, "VerifyFlag": 0,
            "AttrStatus": 0, "Sex": 0, "Ticket": "", "OpCode": 0,
        },
        "ForwardFlag": 0, "AppInfo": {"AppID": "", "Type": 0}, "HasProductId": 0,
        "Ticket": "", "ImgHeight": 0, "ImgWidth": 0, "SubMsgType": 0, "NewMsgId": 0,
        "OriContent": "", "EncryFileName": "",
    }


class QRCode:
    """One login QR (or push-login prompt on the phone) and the poll answers queued for it."""

    def __init__(self, uuid, pushed=False):
        self.uuid = uuid
        self.pushed = pushed
        self.created = time.monotonic()
        self.status = "new"  # new -> scanned -> confirmed; a dead QR is simply dropped
        self.answers = collections.deque()  # codes ("201", "200") not yet told to a poll
        self.ticket = None

    def expired(self, lifetime):
        """True when an unconfirmed QR has outlived lifetime seconds."""
        return (lifetime is not None and self.status != "confirmed"
                and time.monotonic() - self.created >= lifetime)

    def seconds_left(self, lifetime):
        """Seconds before this QR expires by age, or None if it never does."""
        if lifetime is None or self.status == "confirmed":
            return None
        return max(0.0, self.created + lifetime - time.monotonic())


class Session:
    """A web login: the credentials itchat keeps (and pickles for hot login)."""

    def __init__(self, uin):
        self.uin = str(uin)
        self.sid = _token(16)
        self.skey = "@crypt_%s_%s" % (_hex(8), _hex(32))
        self.pass_ticket = _token(64)
        self.valid = True
        self.ended_by = None  # "phone", "client", "replaced" or "kicked" once invalid
        self.retcode = RET_LOGGED_OUT  # what synccheck answers once the session is invalid

    def matches(self, sid=None, skey=None):
        """True when this session is valid and the given sid/skey (those given) are its own."""
        if not self.valid or (sid is None and skey is None):
            return False
        return (sid is None or sid == self.sid) and (skey is None or skey == self.skey)


class WeChatEmulator(FakeServer):
    """Fake web-WeChat: login QR, session, contacts, messages in and out, logout and faults."""

    # The real server gives every contact a new UserName at each login; tests that need it set this.
    new_user_names_per_login = False

    thread_name = "wechat-emulator"

    def __init__(self, login_poll_hold=25.0, synccheck_hold=25.0, qr_lifetime=None,
                 push_login=False, nickname="GeekAI测试号"):
        # The real server holds both long-polls about 25 s; tests pass small holds.
        self.login_poll_hold = float(login_poll_hold)
        self.synccheck_hold = float(synccheck_hold)
        self.qr_lifetime = qr_lifetime
        self.push_login = bool(push_login)
        self.nickname = nickname
        super().__init__()
        self._qr = None
        self._tickets = {}  # redirect ticket -> uuid of the confirmed QR
        self._sessions = {}  # sid -> Session
        self._current = None  # the newest Session (a new login ends the older ones)
        # (seq, AddMsgList entry) not yet acknowledged. As on the real server, a message stays
        # until a webwxsync presents a SyncKey past it: an answer lost on the way is sent again.
        self._inbox = collections.deque()
        self._acked = 0  # the highest seq some webwxsync acknowledged
        self._handed = 0  # the highest seq some webwxsync answer carried
        self._msg_seq = 0
        self._refusal = None  # (ret, message) with which webwxnewloginpage refuses the account
        self.redirect_base_url = None  # host of the redirect after a confirm (None: this server)
        self.sent = []
        self.refused = []  # webwxsendmsg requests answered with a Ret other than 0
        self._send_refusals = collections.deque()
        self.uin = str(random.randint(1000000000, 3999999999))
        self.self_username = "@" + _hex(64)
        self._contacts = self._make_contacts()
        self.default_friend = self.friend_username("张三")

    # ----- the phone's side --------------------------------------------------------------

    def scan(self):
        """The phone scans the current QR: the next (or pending) login poll answers 201."""
        with self._cond:
            qr = self._live_qr()
            if qr is None or qr.status != "new" or qr.pushed:
                return False
            qr.status = "scanned"
            qr.answers.append("201")
            self._cond.notify_all()
            return True

    def confirm(self):
        """The phone confirms (scanning first if needed): the login poll answers 200."""
        with self._cond:
            qr = self._live_qr()
            if qr is None or qr.status == "confirmed":
                return False
            if qr.status == "new" and not qr.pushed:
                qr.answers.append("201")  # a real phone always scans before it confirms
            qr.status = "confirmed"
            qr.ticket = _token(32)
            self._tickets[qr.ticket] = qr.uuid
            qr.answers.append("200")
            self._cond.notify_all()
            return True

    def cancel(self):
        """The phone cancels: the QR dies, the poll answers 400 and itchat fetches a new one."""
        with self._cond:
            if self._live_qr() is None:
                return False
            self._qr = None
            self._cond.notify_all()
            return True

    def expire_qr(self):
        """The current QR expires: the poll answers 400."""
        return self.cancel()

    def logout(self):
        """Log out from the phone: synccheck answers 1101 and the session is dead."""
        with self._cond:
            session = self._current
            if session is None or not session.valid:
                return False
            self._end_session(session, "phone")
            return True

    def kick(self, retcode=1102):
        """WeChat ends the web session on its own, as it does since 2025 right after a login:
        synccheck answers `retcode` (1102: session invalid) and the session is dead."""
        with self._cond:
            session = self._current
            if session is None or not session.valid:
                return False
            session.retcode = int(retcode)
            self._end_session(session, "kicked")
            return True

    def send_text(self, text, from_user=None):
        """Queue a one-to-one text from a friend (user name or nick name); return the entry."""
        sender = self._resolve_user(from_user) if from_user else self.default_friend
        # The server HTML-escapes text and turns newlines into <br/>; itchat undoes both.
        content = html.escape(str(text), quote=False).replace("\n", "<br/>")
        return self.inject_message({"MsgType": 1, "FromUserName": sender, "Content": content})

    def refuse_sends(self, ret, times=1):
        """The next `times` webwxsendmsg requests are answered with BaseResponse.Ret `ret`
        (1205: sending too often; 1101: logged out; any other code)."""
        with self._cond:
            self._send_refusals.extend([int(ret)] * times)

    def add_contact(self, nick_name, remark_name="", group=False):
        """Add a friend (or a group) to the account's contacts; return its UserName. A bot that is
        logged in already sees it after its next login."""
        user_name = ("@@" + _hex(64)) if group else ("@" + _hex(32))
        with self._cond:
            self._contacts.append(_contact(user_name, nick_name, sex=0 if group else 1,
                                           RemarkName=remark_name, MemberCount=3 if group else 0))
        return user_name

    def contact_username(self, name):
        """UserName of the only contact whose remark name, or else nick name, is `name`."""
        with self._cond:
            found = [c["UserName"] for c in self._contacts if (c["RemarkName"] or c["NickName"]) == name]
        if len(found) != 1:
            raise KeyError("%d contacts are called %r" % (len(found), name))
        return found[0]

    def send_payment_notice(self, amount, note=None, forged=False):
        """Queue a WeChat Pay 收款到账 notice for `amount` (e.g. "12.00") with the payer's note; from the
        verified official account 微信支付, or (forged) from a friend who renamed themselves so."""
        from .emulator_payments import receipt_message

        sender = self.friend_username("微信支付") if forged else self.mp_username("微信支付")
        return self.inject_message(receipt_message(sender, amount, note=note))

    def inject_message(self, msg):
        """Queue a raw AddMsgList entry (Content as the server sends it); return the entry."""
        entry = _message_template()
        entry.update(copy.deepcopy(msg))
        with self._cond:
            self._msg_seq += 1
            if not entry.get("MsgId"):
                entry["MsgId"] = str(random.randint(10 ** 18, 9 * 10 ** 18) + self._msg_seq)
            if not entry.get("NewMsgId"):
                entry["NewMsgId"] = int(entry["MsgId"]) if str(entry["MsgId"]).isdigit() \
                    else random.randint(10 ** 18, 9 * 10 ** 18)
            entry["CreateTime"] = entry.get("CreateTime") or int(time.time())
            entry["ToUserName"] = entry.get("ToUserName") or self.self_username
            entry["FromUserName"] = entry.get("FromUserName") or self.default_friend
            self._inbox.append((self._msg_seq, entry))
            self._cond.notify_all()
            return copy.deepcopy(entry)

    def refuse_login(self, ret=1203, message="当前登录环境异常。为了你的帐号安全，暂时不能登录web微信。"
                     "你可以通过手机客户端或者windows微信登录。"):
        """WeChat keeps this account off the web: a confirmed login's webwxnewloginpage answers
        <ret>ret</ret> with message instead of a session (ret None: accept logins again)."""
        with self._cond:
            self._refusal = None if ret is None else (int(ret), str(message))

    # ----- observation -------------------------------------------------------------------

    @property
    def state(self):
        """idle | waiting_for_scan | scanned | pushed | logged_in | logged_out."""
        with self._cond:
            qr = self._live_qr()
            if qr is not None:
                if qr.status != "new":
                    return "scanned"
                return "pushed" if qr.pushed else "waiting_for_scan"
            if self._current is not None:
                return "logged_in" if self._current.valid else "logged_out"
            return "idle"

    @property
    def qr_uuid(self):
        """The uuid of the live QR, or None."""
        with self._cond:
            qr = self._live_qr()
            return qr.uuid if qr else None

    @property
    def session(self):
        """The newest session (valid or not), or None; read-only use."""
        with self._cond:
            return self._current

    @property
    def pending_messages(self):
        """How many queued messages no webwxsync answer has carried yet."""
        with self._cond:
            return sum(1 for seq, _ in self._inbox if seq > self._handed)

    @property
    def unacknowledged_messages(self):
        """How many messages the client has not yet confirmed (by a later SyncKey)."""
        with self._cond:
            return len(self._inbox)

    def friend_username(self, nick_name):
        """UserName of the friend (VerifyFlag 0, not a group) with this nick name."""
        return self._find_username(nick_name, lambda c: c["VerifyFlag"] == 0
                                   and not c["UserName"].startswith("@@"))

    def mp_username(self, nick_name):
        """UserName of the verified official account with this nick name."""
        return self._find_username(nick_name, lambda c: c["VerifyFlag"] & 8)

    def group_username(self, nick_name):
        """UserName of the group with this name."""
        return self._find_username(nick_name, lambda c: c["UserName"].startswith("@@"))

    def snapshot(self):
        """The JSON-able state served at GET /_emulator/state."""
        with self._cond:
            mode, paths = self.fault
            return {
                "state": self.state, "qr_uuid": self.qr_uuid, "sent": len(self.sent),
                "nickname": self.nickname, "pending_messages": self.pending_messages,
                "fault": {"mode": mode, "paths": sorted(paths) if paths else None},
                "base_url": self.base_url if self._servers else None,
            }

    # ----- internals: state --------------------------------------------------------------

    def _make_contacts(self):
        """The account's contacts, with stable user names for this emulator instance."""
        friend = _contact("@" + _hex(32), "张三", sex=1, Uin=0)
        return [
            friend,
            _contact("@" + _hex(32), "李四", sex=2),
            # A friend who renamed himself like the payment account: forged notices come from here.
            _contact("@" + _hex(32), "微信支付", sex=1),
            _contact("@@" + _hex(64), "GeekAI 用户群", MemberCount=3),
            _contact("@" + _hex(32), "微信支付", verify_flag=24, KeyWord="gh_",
                     Signature="微信支付官方账号", ContactFlag=1),
            _contact("@" + _hex(32), "微信收款助手", verify_flag=24, KeyWord="gh_",
                     Signature="微信收款到账通知", ContactFlag=1),
        ]

    def _may_receive(self, user_name):
        """Whether a text to this UserName is delivered: a contact of this login, or the file helper."""
        if user_name == "filehelper":
            return True
        return user_name != self.self_username and any(c["UserName"] == user_name for c in self._contacts)

    def _new_user_names(self):
        """Web WeChat's UserNames hold for one login only: a new login gets new ones (call under
        the lock; only with new_user_names_per_login)."""
        for c in self._contacts:
            c["UserName"] = ("@@" + _hex(64)) if c["UserName"].startswith("@@") else ("@" + _hex(32))
        self.self_username = "@" + _hex(64)
        self.default_friend = self.friend_username("张三")

    def _find_username(self, nick_name, accept):
        """First UserName whose NickName matches and whose record passes accept()."""
        for c in self._contacts:
            if c["NickName"] == nick_name and accept(c):
                return c["UserName"]
        raise KeyError(nick_name)

    def _resolve_user(self, who):
        """Accept a UserName ("@...") or a friend's (then an official account's) nick name."""
        if who.startswith("@") or who in ("filehelper", "fmessage"):
            return who
        try:
            return self.friend_username(who)
        except KeyError:
            return self.mp_username(who)

    def _group_members(self, group):
        """Members of the group for webwxbatchgetcontact (self, a friend, a stranger)."""
        members = [(self.self_username, self.nickname), (self.default_friend, "张三"),
                   ("@" + _hex(32), "王五")]
        return [{"Uin": 0, "UserName": u, "NickName": n, "AttrStatus": 0, "PYInitial": "",
                 "PYQuanPin": "", "RemarkPYInitial": "", "RemarkPYQuanPin": "",
                 "MemberStatus": 0, "DisplayName": "", "KeyWord": ""} for u, n in members]

    def _live_qr(self):
        """The current QR after dropping it if it outlived qr_lifetime (call under the lock)."""
        qr = self._qr
        if qr is not None and qr.expired(self.qr_lifetime):
            self._qr = None
            self._cond.notify_all()
            return None
        return qr

    def _new_qr(self, pushed=False):
        """Replace the current QR with a new one (call under the lock)."""
        # Real uuids look like "gZ2Fn0zQvA==": 10 base64 characters and padding.
        self._qr = QRCode(_token(10, _ALNUM + "-_") + "==", pushed=pushed)
        self._cond.notify_all()
        return self._qr

    def _end_session(self, session, why):
        """Invalidate a session and wake its long-polls (call under the lock)."""
        session.valid = False
        session.ended_by = why
        self._cond.notify_all()

    def _valid_session(self, sid=None, skey=None, uin=None):
        """The valid session matching these credentials, or None (call under the lock)."""
        for session in self._sessions.values():
            if session.matches(sid=sid, skey=skey) and (uin is None or uin == session.uin):
                return session
        return None

    # ----- internals: routing ------------------------------------------------------------

    def _route(self, method, path, query, body, headers=None):
        """Answer one request as (status, content_type, body, headers), or None to hang up."""
        q = {k: v[0] for k, v in query.items()}
        if path == "/":
            return 200, "text/html; charset=utf-8", "<html><body>WeChat emulator</body></html>", []
        if path == "/jslogin":
            return self._jslogin()
        if not path.startswith(CGI + "/"):
            return self._not_found()
        name = path[len(CGI) + 1:]
        data = self._json(body) if method == "POST" else None
        handlers = {
            "login": lambda: self._login_poll(q.get("uuid")),
            "webwxnewloginpage": lambda: self._redirect(q.get("ticket"), q.get("uuid")),
            "webwxinit": lambda: self._webwxinit(data),
            "webwxstatusnotify": lambda: self._statusnotify(data),
            "webwxgetcontact": lambda: self._getcontact(q),
            "webwxbatchgetcontact": lambda: self._batchgetcontact(data),
            "synccheck": lambda: self._synccheck(q),
            "webwxsync": lambda: self._webwxsync(q, data),
            "webwxsendmsg": lambda: self._sendmsg(data),
            "webwxlogout": lambda: self._webwxlogout(q),
            "webwxpushloginurl": lambda: self._pushlogin(q.get("uin")),
        }
        handler = handlers.get(name)
        return handler() if handler else self._not_found()

    @staticmethod
    def _json(body):
        """Parse a JSON request body, or None."""
        try:
            return json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            return None

    @staticmethod
    def _json_reply(obj, status=200, headers=()):
        """A JSON answer."""
        return status, JSON_TYPE, json.dumps(obj, ensure_ascii=False), list(headers)

    @staticmethod
    def _not_found():
        """404 for anything the emulator does not speak."""
        return 404, "text/html", "<html><body>404 Not Found</body></html>", []

    @staticmethod
    def _base_response(ret=0):
        """The BaseResponse block of every webwx JSON answer."""
        return {"Ret": ret, "ErrMsg": ""}

    def _session_from(self, data, q=None):
        """The valid session named by a JSON BaseRequest (or the query), or None."""
        base = (data or {}).get("BaseRequest") or {}
        q = q or {}
        sid = base.get("Sid") or q.get("sid")
        skey = base.get("Skey") or q.get("skey")
        return self._valid_session(sid=sid, skey=skey)

    @staticmethod
    def _sync_key(position):
        """The SyncKey/SyncCheckKey block for a sync position (the seq of the last message handed over)."""
        now = int(time.time())
        return {"Count": 4, "List": [
            {"Key": 1, "Val": SYNC_KEY_BASE + position},
            {"Key": 2, "Val": SYNC_KEY_BASE + 100 + position},
            {"Key": 3, "Val": SYNC_KEY_BASE + 50},
            {"Key": 1000, "Val": now}]}

    def _position(self, sync_key):
        """The sync position a client's key names: a SyncKey block (webwxsync) or its
        "1_680000005|2_..." text (synccheck); an unreadable key counts as the acknowledged one."""
        try:
            if isinstance(sync_key, dict):
                vals = {int(item["Key"]): int(item["Val"]) for item in sync_key["List"]}
            else:
                vals = {int(k): int(v) for k, v in (part.split("_") for part in str(sync_key).split("|"))}
            return max(0, vals[1] - SYNC_KEY_BASE)
        except (KeyError, TypeError, ValueError, AttributeError):
            return self._acked

    def _user(self):
        """The logged-in account as webwxinit describes it."""
        return _contact(self.self_username, self.nickname, Uin=int(self.uin),
                        HeadImgFlag=1, WebWxPluginSwitch=0, SnsFlag=17)

    # ----- protocol endpoints ------------------------------------------------------------

    def _jslogin(self):
        """Issue a new QR uuid."""
        with self._cond:
            qr = self._new_qr()
        return 200, JS, 'window.QRLogin.code = 200; window.QRLogin.uuid = "%s";' % qr.uuid, []

    def _login_poll(self, uuid):
        """Long-poll for the phone: 408 nothing yet, 201 scanned, 200 confirmed, 400 dead QR."""
        deadline = time.monotonic() + self.login_poll_hold
        with self._cond:
            while True:
                if self._stopping:
                    return None
                qr = self._live_qr()
                if qr is None or qr.uuid != uuid:
                    return 200, JS, "window.code=400;", []
                if qr.answers:
                    code = qr.answers.popleft()
                    if code == "200":
                        redirect = "%s%s/webwxnewloginpage?ticket=%s&uuid=%s&lang=zh_CN&scan=%d" % (
                            self.redirect_base_url or self.base_url, CGI, qr.ticket, qr.uuid,
                            int(time.time()))
                        return 200, JS, 'window.code=200;\nwindow.redirect_uri="%s";' % redirect, []
                    return 200, JS, "window.code=%s;" % code, []
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return 200, JS, "window.code=408;", []
                left = qr.seconds_left(self.qr_lifetime)
                # Wake when the QR would expire by age, so the 400 is not held back.
                self._cond.wait(remaining if left is None else min(remaining, left + 0.001))

    def _redirect(self, ticket, uuid):
        """Redeem a confirmed QR's ticket: create the session and set WeChat's cookies."""
        with self._cond:
            if not ticket or self._tickets.pop(ticket, None) != uuid:
                xml = "<error><ret>1203</ret><message>Invalid ticket</message></error>"
                return 200, "text/plain; charset=utf-8", xml, []
            if self._refusal is not None:
                xml = "<error><ret>%d</ret><message>%s</message></error>" % self._refusal
                return 200, "text/plain; charset=utf-8", xml, []
            if self._qr is not None and self._qr.uuid == uuid:
                self._qr = None
            # Logging in on the web again ends the previous web session, as on the real service.
            for old in self._sessions.values():
                if old.valid:
                    self._end_session(old, "replaced")
            if self.new_user_names_per_login and self._sessions:
                self._new_user_names()
            session = Session(self.uin)
            self._sessions[session.sid] = session
            self._current = session
            self._cond.notify_all()
        xml = ("<error><ret>0</ret><message></message><skey>%s</skey><wxsid>%s</wxsid>"
               "<wxuin>%s</wxuin><pass_ticket>%s</pass_ticket><isgrayscale>1</isgrayscale>"
               "</error>" % (session.skey, session.sid, session.uin, session.pass_ticket))
        # itchat pickles these cookies and needs wxuin (and the others) to ask for a push login.
        cookies = {
            "wxuin": session.uin, "wxsid": session.sid, "wxloadtime": str(int(time.time())),
            "mm_lang": "zh_CN", "webwx_data_ticket": _token(40), "webwxuvid": _hex(64),
            "webwx_auth_ticket": _token(60),
        }
        headers = [("Set-Cookie", "%s=%s; Path=/" % kv) for kv in cookies.items()]
        return 200, "text/plain; charset=utf-8", xml, headers

    def _webwxinit(self, data):
        """The account, the sync key and a few recent chats."""
        with self._cond:
            session = self._session_from(data)
            if session is None:
                return self._json_reply({"BaseResponse": self._base_response(RET_LOGGED_OUT)})
            recent = [copy.deepcopy(c) for c in self._contacts
                      if c["UserName"] in (self.group_username("GeekAI 用户群"),
                                           self.mp_username("微信支付"))]
            # A new login starts after what some session was handed: nothing is sent twice, and
            # what came while nobody was logged in follows.
            return self._json_reply({
                "BaseResponse": self._base_response(), "Count": len(recent),
                "ContactList": recent, "SyncKey": self._sync_key(self._handed), "User": self._user(),
                "ChatSet": ",".join(c["UserName"] for c in recent), "SKey": session.skey,
                "ClientVersion": 637863733, "SystemTime": int(time.time()), "GrayScale": 1,
                "InviteStartCount": 40, "MPSubscribeMsgCount": 0, "MPSubscribeMsgList": [],
                "ClickReportInterval": 600000,
            })

    def _statusnotify(self, data):
        """Acknowledge the 'logged in on the web' notice."""
        with self._cond:
            ret = 0 if self._session_from(data) else RET_LOGGED_OUT
        return self._json_reply({"BaseResponse": self._base_response(ret),
                                 "MsgID": str(random.randint(10 ** 18, 9 * 10 ** 18))})

    def _getcontact(self, q):
        """The whole contact list in one page (Seq 0 ends itchat's paging)."""
        with self._cond:
            if self._valid_session(skey=q.get("skey")) is None:
                return self._json_reply({"BaseResponse": self._base_response(RET_LOGGED_OUT),
                                         "MemberCount": 0, "MemberList": [], "Seq": 0})
            members = copy.deepcopy(self._contacts)
        return self._json_reply({"BaseResponse": self._base_response(),
                                 "MemberCount": len(members), "MemberList": members, "Seq": 0})

    def _batchgetcontact(self, data):
        """Details of the asked contacts; groups come with their members."""
        with self._cond:
            if self._session_from(data) is None:
                return self._json_reply({"BaseResponse": self._base_response(RET_LOGGED_OUT),
                                         "Count": 0, "ContactList": []})
            wanted = [item.get("UserName") for item in (data or {}).get("List") or []]
            found = []
            for c in self._contacts:
                if c["UserName"] in wanted:
                    c = copy.deepcopy(c)
                    if c["UserName"].startswith("@@"):
                        c["MemberList"] = self._group_members(c)
                        c["EncryChatRoomId"] = "@" + _hex(32)
                    found.append(c)
        return self._json_reply({"BaseResponse": self._base_response(),
                                 "Count": len(found), "ContactList": found})

    def _synccheck(self, q):
        """Long-poll for news: selector 2 when messages past the client's key wait, retcode 1101 once logged out."""
        deadline = time.monotonic() + self.synccheck_hold
        with self._cond:
            session = self._valid_session(sid=q.get("sid"), skey=q.get("skey"), uin=q.get("uin"))
            ended = session or self._sessions.get(q.get("sid"))
            position = self._position(q.get("synckey"))
            while True:
                if self._stopping:
                    return None
                if session is None or not session.valid:
                    retcode = ended.retcode if ended is not None else RET_LOGGED_OUT
                    return 200, JS, 'window.synccheck={retcode:"%d",selector:"0"}' % retcode, []
                if self._inbox and self._inbox[-1][0] > position:
                    return 200, JS, 'window.synccheck={retcode:"0",selector:"2"}', []
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return 200, JS, 'window.synccheck={retcode:"0",selector:"0"}', []
                self._cond.wait(remaining)

    def _webwxsync(self, q, data):
        """Drop what the client's SyncKey acknowledges, hand over every later message with the
        key past them; 1101 for a dead session."""
        with self._cond:
            session = self._session_from(data, q)
            if session is None:
                return self._json_reply({
                    "BaseResponse": self._base_response(RET_LOGGED_OUT), "AddMsgCount": 0,
                    "AddMsgList": [], "ModContactCount": 0, "ModContactList": [],
                    "SyncKey": {"Count": 0, "List": []}, "SyncCheckKey": {"Count": 0, "List": []}})
            position = self._position((data or {}).get("SyncKey"))
            while self._inbox and self._inbox[0][0] <= position:
                self._inbox.popleft()
            self._acked = max(self._acked, position)
            messages = [entry for _, entry in self._inbox]
            if self._inbox:
                position = self._inbox[-1][0]
                self._handed = max(self._handed, position)
            key = self._sync_key(position)
            return self._json_reply({
                "BaseResponse": self._base_response(),
                "AddMsgCount": len(messages), "AddMsgList": messages,
                "ModContactCount": 0, "ModContactList": [],
                "DelContactCount": 0, "DelContactList": [],
                "ModChatRoomMemberCount": 0, "ModChatRoomMemberList": [],
                "Profile": {"BitFlag": 0, "UserName": {"Buff": ""}, "NickName": {"Buff": ""}},
                "ContinueFlag": 0, "SyncKey": key, "SyncCheckKey": key, "SKey": session.skey})

    def _sendmsg(self, data):
        """Record an outgoing message; answer like the server: Ret 1101 if logged out, 1204 for a
        recipient that is not a contact (or the account itself), or what refuse_sends() queued."""
        with self._cond:
            if data is None or self._session_from(data) is None:
                return self._json_reply({"BaseResponse": self._base_response(RET_LOGGED_OUT),
                                         "MsgID": "", "LocalID": ""})
            msg = data.get("Msg") or {}
            ret = self._send_refusals.popleft() if self._send_refusals else 0
            if not ret and not self._may_receive(msg.get("ToUserName")):
                ret = RET_NOT_A_CONTACT
            if ret:
                self.refused.append(data)
                return self._json_reply({"BaseResponse": self._base_response(ret), "MsgID": "", "LocalID": ""})
            self.sent.append(data)
            msg_id = str(random.randint(10 ** 18, 9 * 10 ** 18))
        return self._json_reply({"BaseResponse": self._base_response(), "MsgID": msg_id,
                                 "LocalID": str(msg.get("LocalID", ""))})

    def _webwxlogout(self, q):
        """The client logs itself out."""
        with self._cond:
            session = self._valid_session(skey=q.get("skey"))
            if session is not None:
                self._end_session(session, "client")
        return 200, "text/html", "", []

    def _pushlogin(self, uin):
        """Ask the phone to confirm a login without a QR (only with push_login=True)."""
        with self._cond:
            if not self.push_login or not uin or uin != self.uin or self._current is None:
                return self._json_reply({"ret": "1", "msg": "push login refused"})
            qr = self._new_qr(pushed=True)
        return self._json_reply({"ret": "0", "msg": "all ok", "uuid": qr.uuid})
