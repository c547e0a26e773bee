"""A fake iLink bot server (Tencent's official bot API for personal WeChat), for tests and the demo.

Written from the public protocol: Tencent/openclaw-weixin docs/protocol.md, src/api/types.ts,
src/auth/login-qr.ts and /work/shared/ILINK_NOTES.md. It plays both the server and the person's
phone: tests (or the demo page) call scan(), confirm(), enter the code, send_text(),
expire_qr(), expire_session() and set_fault() while the real adapter logs in and long-polls
against it. It also plays the protocol's ambiguities, one variant each: get_bot_qrcode by GET
only or POST only, getupdates answers without longpolling_timeout_ms, message ids above 2**53
(JSON numbers no double can hold), and -14 sent as `ret`, as `errcode`, or both.

Every request is checked against what the protocol requires (headers, base_info, bot_token);
what is missing is answered with HTTP 400 and kept in `protocol_errors`, so a test sees it.
"""

import base64
import binascii
import copy
import json
import random
import secrets
import string
import time

from .fake_server import FakeServer

__all__ = ["IlinkEmulator", "PHONE_STATES"]

BOT = "/ilink/bot/"
JSON_TYPE = "application/json"
# The person's phone, as the demo's panel shows it.
PHONE_STATES = ("idle", "waiting_for_scan", "scanned", "need_code", "logged_in", "logged_out")
STALE_TOKEN = -14          # getupdates and the other bot calls: the bot token expired
SEND_REFUSED = -2          # sendmessage: no (or a stale) context_token, or a degraded session
REPLY_WINDOW_SECONDS = 24 * 3600
# Message ids are uint64 on the wire; these start above 2**63 so none fits a double exactly.
FIRST_MESSAGE_ID = 2 ** 63 + 12345


class LoginQr:
    """One QR from get_bot_qrcode and what the phone did with it."""

    def __init__(self):
        self.qrcode = secrets.token_hex(16)
        short = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(6))
        # What the real server sends: a URL the phone opens, to be drawn as a QR by the client.
        self.content = "https://liteapp.weixin.qq.com/q/%s?qrcode=%s&bot_type=3" % (short, self.qrcode)
        self.created = time.monotonic()
        self.status = "wait"        # wait, scaned, need_verifycode, confirmed, expired, verify_code_blocked
        self.code = None            # the number the phone shows when a code is asked
        self.wrong_codes = 0
        self.redirected = False
        self.told = None            # the status last answered to a poll
        self.answer = None          # the confirmed answer, with the bot token

    def dead(self):
        return self.status in ("expired", "verify_code_blocked", "confirmed")


class IlinkEmulator(FakeServer):
    """Fake iLink: QR login with verification codes and redirects, the bot API, and faults."""

    thread_name = "ilink-emulator"

    def __init__(self, qr_poll_hold=35.0, updates_hold=35.0, *, qrcode_method="both",
                 announce_poll_timeout=True, batch_size=100, redirect=False, qr_lifetime=None,
                 max_wrong_codes=3, bot_id="b0f3a8e2c71d@im.bot"):
        super().__init__()
        if qrcode_method not in ("both", "GET", "POST"):
            raise ValueError("qrcode_method must be 'both', 'GET' or 'POST'")
        # The real server holds both long-polls about 35 s; tests pass small holds.
        self.qr_poll_hold = float(qr_poll_hold)
        self.updates_hold = float(updates_hold)
        self.qrcode_method = qrcode_method
        self.announce_poll_timeout = announce_poll_timeout
        self.batch_size = int(batch_size)
        self.redirect = redirect
        self.qr_lifetime = qr_lifetime
        self.max_wrong_codes = int(max_wrong_codes)
        self.bot_id = bot_id
        self.owner_id = "o9cq80%s@im.wechat" % secrets.token_hex(6)
        self.default_user = "o9cq80zhangsan@im.wechat"
        self.expired_answer = {"ret": STALE_TOKEN, "errcode": STALE_TOKEN, "errmsg": "session timeout"}
        self.send_ret = None        # force every sendmessage to answer this ret (e.g. -2)
        self._qr = None
        self._token = None          # the one bot token that is valid now
        self._epoch = secrets.token_hex(4)
        self._messages = []         # every message for the bot, in order; cursors point into it
        self._acked = 0             # the client's cursor has moved past this many
        self._replay_from = None    # the next getupdates answers from here, whatever its cursor
        self._contexts = {}         # user id -> [(context_token, issued at)]
        self._redirect_url = None
        self.sent = []              # sendmessage bodies, accepted or not
        self.notices = []           # "notifystart" / "notifystop", in order
        self.requests = []          # (method, path, host) of every request
        self.protocol_errors = []
        self.tokens_issued = []

    def start(self, host="127.0.0.1", port=0):
        """Serve; with redirect=True also on a second port, the host a scaned_but_redirect names."""
        super().start(host, port)
        if self.redirect:
            self._redirect_url = self._listen(host, 0)
        return self

    @property
    def redirect_host(self):
        """host:port of the redirect server (no scheme: the protocol sends a bare host)."""
        return self._redirect_url.split("://", 1)[1] if self._redirect_url else None

    # ----- the phone's side --------------------------------------------------------------

    def scan(self, code=False):
        """The phone scans the live QR; with code=True (or the digits to show) it asks for a code."""
        with self._cond:
            qr = self._live_qr()
            if qr is None or qr.status != "wait":
                return False
            if code:
                shown = code if isinstance(code, str) else "%04d" % random.randint(0, 9999)
                qr.status, qr.code = "need_verifycode", shown
            else:
                qr.status = "scaned"
            self._cond.notify_all()
            return True

    @property
    def shown_code(self):
        """The number the phone shows while a verification code is asked, else None."""
        with self._cond:
            qr = self._live_qr()
            return qr.code if qr is not None and qr.status == "need_verifycode" else None

    def confirm(self):
        """The phone confirms (scanning first if needed); refused while a code is still asked."""
        with self._cond:
            qr = self._live_qr()
            if qr is None or qr.status not in ("wait", "scaned"):
                return False
            token = "%s@im.bot:%s" % (self.bot_id.split("@")[0], secrets.token_urlsafe(24))
            self.tokens_issued.append(token)
            self._token = token  # a new login ends the one before
            qr.status = "confirmed"
            qr.answer = {"status": "confirmed", "bot_token": token, "ilink_bot_id": self.bot_id,
                         "baseurl": self.base_url, "ilink_user_id": self.owner_id}
            self._cond.notify_all()
            return True

    def expire_qr(self):
        """The live QR expires: the poll answers `expired`."""
        with self._cond:
            qr = self._live_qr()
            if qr is None:
                return False
            qr.status = "expired"
            self._cond.notify_all()
            return True

    def expire_session(self):
        """The bot token goes stale: every bot call answers -14 from now on."""
        with self._cond:
            if self._token is None:
                return False
            self._token = None
            self._cond.notify_all()
            return True

    def send_text(self, text, from_user=None):
        """A person writes to the bot; return the message as the server will send it."""
        return self.inject({"item_list": [{"type": 1, "text_item": {"text": str(text)}}]},
                           from_user=from_user)

    def inject(self, message, from_user=None):
        """Queue a message for the bot (any dict, even a broken one); return a copy.

        Missing fields get what the server sends: ids, times and a fresh context_token.
        """
        with self._cond:
            entry = copy.deepcopy(message)
            if isinstance(entry, dict):
                user = from_user or entry.get("from_user_id") or self.default_user
                seq = len(self._messages) + 1
                defaults = {
                    "seq": seq, "message_id": FIRST_MESSAGE_ID + seq, "from_user_id": user,
                    "to_user_id": self.bot_id, "client_id": "", "create_time_ms": int(time.time() * 1000),
                    "session_id": "%s#%s" % (user, self.bot_id), "group_id": "", "message_type": 1,
                    "message_state": 2, "context_token": secrets.token_urlsafe(32),
                }
                entry = {**defaults, **entry}
                if entry.get("context_token") and isinstance(user, str):
                    self._contexts.setdefault(user, []).append((entry["context_token"], time.time()))
            self._messages.append(entry)
            self._cond.notify_all()
            return copy.deepcopy(entry)

    def replay_from(self, position):
        """The next getupdates answer starts at this message again: a redelivered batch."""
        with self._cond:
            self._replay_from = int(position)
            self._cond.notify_all()

    def age_contexts(self, seconds):
        """Make every context_token issued so far `seconds` older (the 24 h reply window)."""
        with self._cond:
            for tokens in self._contexts.values():
                tokens[:] = [(token, at - seconds) for token, at in tokens]

    # ----- observation -------------------------------------------------------------------

    @property
    def qrcode_content(self):
        """What the live QR must encode, or None."""
        with self._cond:
            qr = self._live_qr()
            return qr.content if qr else None

    @property
    def token(self):
        """The bot token valid now, or None."""
        with self._cond:
            return self._token

    @property
    def pending_messages(self):
        """Messages the client has not yet acknowledged (its cursor is not past them)."""
        with self._cond:
            return len(self._messages) - self._acked

    @property
    def state(self):
        """The phone's view: one of PHONE_STATES."""
        with self._cond:
            qr = self._live_qr()
            if qr is not None:
                return {"wait": "waiting_for_scan", "need_verifycode": "need_code"}.get(qr.status, "scanned")
            if self._token is not None:
                return "logged_in"
            return "logged_out" if self.tokens_issued else "idle"

    def snapshot(self):
        """What the demo's phone panel shows."""
        with self._cond:
            mode, paths = self._fault
            return {"state": self.state, "code": self.shown_code, "pending_messages": self.pending_messages,
                    "sent": len(self.sent), "fault": {"mode": mode, "paths": sorted(paths) if paths else None}}

    # ----- internals ---------------------------------------------------------------------

    def _live_qr(self):
        """The QR a phone can still act on (call under the lock)."""
        qr = self._qr
        if qr is None or qr.dead():
            return None
        if self.qr_lifetime is not None and time.monotonic() - qr.created >= self.qr_lifetime:
            qr.status = "expired"
            return None
        return qr

    def _cursor(self, position):
        raw = json.dumps({"e": self._epoch, "p": position}).encode()
        return base64.b64encode(raw).decode()

    def _position(self, cursor):
        """Where a cursor points; "" (or one from another server) means after the last acknowledged."""
        try:
            data = json.loads(base64.b64decode(cursor, validate=True))
            if data["e"] == self._epoch and 0 <= int(data["p"]) <= len(self._messages):
                return int(data["p"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            pass
        return self._acked

    def _problem(self, text):
        self.protocol_errors.append(text)
        return self._json({"ret": -1, "errmsg": text}, status=400)

    @staticmethod
    def _json(obj, status=200):
        return status, JSON_TYPE, json.dumps(obj, ensure_ascii=False), []

    # ----- routing -----------------------------------------------------------------------

    def _route(self, method, path, query, body, headers):
        q = {k: v[0] for k, v in query.items()}
        with self._cond:
            self.requests.append((method, path, headers.get("Host", "")))
        if not path.startswith(BOT):
            return 404, "text/html", "<html><body>404 Not Found</body></html>", []
        name = path[len(BOT):]
        problem = self._check_app_headers(headers)
        if problem:
            return self._problem("%s: %s" % (name, problem))
        if name == "get_bot_qrcode":
            return self._get_bot_qrcode(method, q, body)
        if name == "get_qrcode_status":
            return self._qrcode_status(method, q, headers.get("Host", ""))
        if method != "POST":
            return self._json({"ret": -1, "errmsg": "method not allowed"}, status=405)
        data, problem = self._bot_request(name, headers, body)
        if problem:
            return self._problem("%s: %s" % (name, problem))
        handlers = {
            "getupdates": lambda: self._getupdates(data),
            "sendmessage": lambda: self._sendmessage(data),
            "getconfig": lambda: self._json({"ret": 0, "typing_ticket": base64.b64encode(b"typing").decode()}),
            "sendtyping": lambda: self._json({"ret": 0}),
            "msg/notifystart": lambda: self._notice("notifystart"),
            "msg/notifystop": lambda: self._notice("notifystop"),
        }
        handler = handlers.get(name)
        if handler is None:
            return self._json({"ret": -1, "errmsg": "unknown call"}, status=404)
        with self._cond:
            if headers.get("Authorization", "") != "Bearer %s" % self._token or self._token is None:
                return self._json(self.expired_answer)
        return handler()

    @staticmethod
    def _check_app_headers(headers):
        if not headers.get("iLink-App-Id"):
            return "iLink-App-Id header missing"
        if not (headers.get("iLink-App-ClientVersion") or "").isdigit():
            return "iLink-App-ClientVersion must be the version as a decimal number"
        return ""

    def _bot_request(self, name, headers, body):
        """The JSON body of a bot call, or the protocol problem with it."""
        if not (headers.get("Content-Type") or "").startswith("application/json"):
            return None, "Content-Type must be application/json"
        if headers.get("AuthorizationType") != "ilink_bot_token":
            return None, "AuthorizationType must be ilink_bot_token"
        if not (headers.get("Authorization") or "").startswith("Bearer "):
            return None, "Authorization: Bearer <bot_token> missing"
        try:
            uin = base64.b64decode(headers.get("X-WECHAT-UIN") or "", validate=True).decode()
            if not uin.isdigit() or int(uin) >= 2 ** 32:
                raise ValueError(uin)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None, "X-WECHAT-UIN must be base64 of a decimal uint32"
        try:
            data = json.loads(body)
        except ValueError:
            return None, "the body must be JSON"
        base = data.get("base_info") if isinstance(data, dict) else None
        if not isinstance(base, dict) or not base.get("channel_version"):
            return None, "base_info.channel_version missing"
        return data, ""

    def _get_bot_qrcode(self, method, q, body):
        if self.qrcode_method != "both" and method != self.qrcode_method:
            return self._json({"ret": -1, "errmsg": "method not allowed"}, status=405)
        if q.get("bot_type") != "3":
            return self._problem("get_bot_qrcode: bot_type=3 missing")
        if method == "POST":
            try:
                tokens = json.loads(body).get("local_token_list")
            except (ValueError, AttributeError):
                tokens = None
            if not isinstance(tokens, list) or len(tokens) > 10:
                return self._problem("get_bot_qrcode: local_token_list must be a list of at most 10 tokens")
        with self._cond:
            self._qr = LoginQr()
            self._cond.notify_all()
            return self._json({"qrcode": self._qr.qrcode, "qrcode_img_content": self._qr.content})

    def _qrcode_status(self, method, q, host):
        if method != "GET":
            return self._json({"ret": -1, "errmsg": "method not allowed"}, status=405)
        on_redirect_host = self.redirect_host is not None and host == self.redirect_host
        deadline = time.monotonic() + self.qr_poll_hold
        with self._cond:
            qr = self._qr if self._qr is not None and self._qr.qrcode == q.get("qrcode") else None
            if qr is None:
                return self._json({"status": "expired"})
            if q.get("verify_code") and qr.status == "need_verifycode":
                return self._json({"status": self._check_code(qr, q["verify_code"])})
            while not self._stopping:
                self._live_qr()  # ages the QR out
                status = qr.status
                if self.redirect and status != "wait" and not on_redirect_host:
                    # Once scanned, this host only points to the other one.
                    qr.redirected = True
                    return self._json({"status": "scaned_but_redirect", "redirect_host": self.redirect_host})
                if status != qr.told or time.monotonic() >= deadline:
                    qr.told = status
                    return self._json(qr.answer if status == "confirmed" else {"status": status})
                self._cond.wait(max(0.001, deadline - time.monotonic()))
            return None

    def _check_code(self, qr, code):
        if code == qr.code:
            qr.status, qr.code = "scaned", None
        else:
            qr.wrong_codes += 1
            if qr.wrong_codes >= self.max_wrong_codes:
                qr.status = "verify_code_blocked"
        qr.told = qr.status
        self._cond.notify_all()
        return qr.status

    def _getupdates(self, data):
        cursor = data.get("get_updates_buf")
        if not isinstance(cursor, str):
            return self._problem("getupdates: get_updates_buf must be a string")
        deadline = time.monotonic() + self.updates_hold
        with self._cond:
            token = self._token
            position = self._position(cursor)
            self._acked = max(self._acked, position)
            if self._replay_from is not None:
                position, self._replay_from = self._replay_from, None
            while len(self._messages) <= position and time.monotonic() < deadline:
                if self._stopping:
                    return None
                if self._token != token:
                    return self._json(self.expired_answer)
                self._cond.wait(max(0.001, deadline - time.monotonic()))
            batch = copy.deepcopy(self._messages[position:position + self.batch_size])
            answer = {"ret": 0, "msgs": batch, "get_updates_buf": self._cursor(position + len(batch))}
        if self.announce_poll_timeout:
            answer["longpolling_timeout_ms"] = int(self.updates_hold * 1000)
        return self._json(answer)

    def _sendmessage(self, data):
        msg = data.get("msg")
        if not isinstance(msg, dict):
            return self._problem("sendmessage: msg missing")
        items = msg.get("item_list")
        if (msg.get("message_type") != 2 or msg.get("message_state") != 2 or not msg.get("client_id")
                or not msg.get("to_user_id") or not isinstance(items, list) or not items):
            return self._problem("sendmessage: to_user_id, client_id, message_type 2, message_state 2 "
                                 "and item_list are required")
        with self._cond:
            now = time.time()
            issued = self._contexts.get(msg["to_user_id"], [])
            valid = any(token == msg.get("context_token") and now - at < REPLY_WINDOW_SECONDS
                        for token, at in issued)
            ret = self.send_ret if self.send_ret is not None else (0 if valid else SEND_REFUSED)
            self.sent.append({"msg": copy.deepcopy(msg), "ret": ret})
            self._cond.notify_all()
        return self._json({"ret": ret, "errmsg": "" if ret == 0 else "prepare failed"})

    def _notice(self, name):
        with self._cond:
            self.notices.append(name)
            self._cond.notify_all()
        return self._json({"ret": 0, "errmsg": ""})
