"""Faults around the login and the service itself, on both backends where they apply: WeChat
refusing connections, a name that does not resolve, the server gone and back, an expiring QR, a
logout from the phone, a SIGTERM in the middle of a login and restarts with a good or a bad cache.
"""
from __future__ import annotations

import json

import pytest

from geekai import states

from harness import case  # noqa: F401 - the fixture

BOTH = pytest.mark.parametrize("case", ["wxpy", "ilink"], indirect=True)
UNREACHABLE = {"wxpy": "cannot reach WeChat", "ilink": "cannot reach iLink"}


@BOTH
def test_refused_connection_then_the_server_comes_back(case):
    case.emulator.stop()  # nothing listens on the port: every connection is refused
    case.start()
    failed = case.wait_event(0, lambda e: e["to"] == states.RETRYING)
    assert UNREACHABLE[case.phone.name] in failed["reason"] and "refused" in failed["reason"], failed
    # It keeps retrying, each time with the reason, and /healthz never notices.
    case.wait_event(failed["id"], lambda e: e["to"] == states.RETRYING)
    case.emulator.start(port=case.emulator.port)
    case.log_in_by_scan()
    case.check_delivery()
    case.check_history()
    case.finish()


@BOTH
def test_a_name_that_does_not_resolve(case):
    case.start()
    case.wait_state(states.WAITING_FOR_SCAN)
    mark = case.mark()
    # After the scan, WeChat sends the client on to a host whose name does not resolve.
    nowhere = f"geekai-nowhere.invalid:{case.emulator.port}"
    if case.phone.name == "wxpy":
        case.emulator.redirect_base_url = f"http://{nowhere}"
        case.phone.confirm()
    else:
        case.emulator.redirect_to = nowhere
        case.phone.scan()
    failed = case.wait_event(mark, lambda e: e["to"] == states.RETRYING)
    assert "geekai-nowhere.invalid" in failed["reason"] or "resolve" in failed["reason"] \
        or "Name or service not known" in failed["reason"], failed
    if case.phone.name == "wxpy":
        case.emulator.redirect_base_url = None
    else:
        case.emulator.redirect_to = None
    case.log_in_by_scan()
    case.check_delivery()
    case.check_history()
    case.finish()


@BOTH
def test_server_gone_while_logged_in_and_back(case):
    case.start()
    case.log_in_by_scan()
    case.check_delivery()
    mark = case.mark()
    port = case.emulator.port
    case.emulator.stop()
    left = case.wait_event(mark, lambda e: e["from"] == states.LOGGED_IN, timeout=60)
    assert left["reason"], left
    case.wait_event(mark, lambda e: e["to"] == states.RETRYING, timeout=60)
    case.send_text(3)  # queued at WeChat while the bot cannot reach it
    case.emulator.start(port=port)
    # Back without a scan: the session is still valid at WeChat (the cache / the saved token).
    case.wait_state(states.LOGGED_IN, timeout=60)
    case.check_delivery()
    case.check_history()
    case.finish()


@BOTH
def test_qr_expiry_until_needs_login_then_an_admin_logs_in(case):
    case.start(BOT_QR_MAX_REFRESH=3)
    for _ in range(3):
        shown = case.wait_state(states.WAITING_FOR_SCAN)
        mark = case.mark()
        assert case.phone.expire_qr()
        case.wait_event(mark, lambda e: e["from"] == states.WAITING_FOR_SCAN)
    state = case.wait_state(states.NEEDS_LOGIN)
    assert state["reason"] == "the login QR expired 3 times with nobody scanning it", state
    assert shown["reason"]
    assert case.post("/api/bot/login").status_code == 202
    case.log_in_by_scan()
    case.check_delivery()
    case.check_history()
    case.finish()


@BOTH
def test_logout_from_the_phone_shows_a_fresh_qr(case):
    case.start()
    case.log_in_by_scan()
    case.check_delivery()
    mark = case.mark()
    assert case.phone.log_out_on_the_phone()
    left = case.wait_event(mark, lambda e: e["from"] == states.LOGGED_IN)
    expected = {"wxpy": "retcode 1101", "ilink": "session expired"}[case.phone.name]
    assert expected in left["reason"], left
    case.log_in_by_scan()
    case.check_delivery()
    case.check_history()
    case.finish()


@BOTH
def test_sigterm_during_a_login(case):
    case.start()
    case.wait_state(states.WAITING_FOR_SCAN)
    case.phone.scan()
    case.wait_state(states.WAITING_FOR_CONFIRM)
    # The confirmed login hangs on its next request when the signal comes.
    case.emulator.set_fault("hang", {"webwxnewloginpage" if case.phone.name == "wxpy" else "get_qrcode_status"})
    case.phone.confirm()
    case.terminate(within=10)
    case.emulator.set_fault(None)
    case.check_history_in_database()
    # The next start begins from a clean slate and logs in.
    case.start()
    case.log_in_by_scan()
    case.check_delivery()
    case.check_history()
    case.finish()


def _logins(case) -> int:
    """How many QR logins the server has seen."""
    if case.phone.name == "wxpy":
        return case.emulator.request_counts["/jslogin"]
    return len(case.emulator.tokens_issued)


def _spoil(path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "corrupt":
        path.write_bytes(bytes(b ^ 0x5A for b in data[:64]) + data[64:])
    else:
        path.write_bytes(data[: len(data) // 2])


@BOTH
def test_restarts_with_a_valid_then_a_corrupt_truncated_and_stale_cache(case):
    """A valid cache: back online without a scan, with what came meanwhile. A corrupt, a
    truncated and a stale one (WeChat ended its session): a QR, and nothing else goes wrong."""
    case.start()
    case.log_in_by_scan()
    case.check_delivery()
    case.terminate()
    case.send_text(3)  # while the service is down
    if case.phone.receipts:
        case.send_receipt()
    logins = _logins(case)
    case.start()
    state = case.wait_state(states.LOGGED_IN)
    assert state["account"]
    assert _logins(case) == logins, "a QR was needed for a restart with a valid cache"
    case.wait_delivered()
    cache = case.instance / case.phone.cache_file
    for kind in ("corrupt", "truncated", "stale"):
        case.terminate()
        assert cache.exists()
        if kind == "stale":
            assert case.phone.log_out_on_the_phone()  # the cache is intact; its session is not
        else:
            _spoil(cache, kind)
        case.start()
        case.wait_state(states.WAITING_FOR_SCAN)
        case.log_in_by_scan()
        case.check_delivery()
        if case.phone.name == "ilink":
            json.loads(cache.read_text())  # a good token file again, from the new login
    case.check_history()
    case.finish()
