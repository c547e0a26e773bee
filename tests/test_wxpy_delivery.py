"""A logout is recorded before wxpy's listener is stopped, and stopping it waits on no poll."""
from __future__ import annotations

import threading
import types

from conftest import log_in_by_scan, wait_for, wait_for_state
from geekai.bot.wxpy_session import DeliveryQueue


def test_a_phone_logout_is_recorded_before_the_inbox_closes(bot_app, run_bot, auth, emulator, monkeypatch):
    client = bot_app.test_client()
    runtime = run_bot(bot_app)
    received = []
    runtime.supervisor.handlers.append(received.append)
    at_close = []
    original = DeliveryQueue.close

    def close(inbox):
        at_close.append((runtime.supervisor.state, runtime.store.pending))
        original(inbox)
    monkeypatch.setattr(DeliveryQueue, "close", close)
    log_in_by_scan(client, auth, emulator)
    emulator.send_text("before the logout")
    assert wait_for(lambda: received, timeout=5)
    emulator.logout()
    wait_for_state(client, auth, "waiting_for_scan", timeout=10)
    state, _ = at_close[0]
    assert state != "logged_in", "the logout was handed to the state store before the listener was stopped"
    assert [m.text for m in received] == ["before the logout"]


def listening(inbox: DeliveryQueue, bot, poll: float) -> threading.Thread:
    """wxpy's listener loop (geekai's GeekaiBot._listen) with a poll of `poll` seconds."""
    import queue

    def listen():
        bot.is_listening = True
        while bot.is_listening:
            try:
                inbox.deliver(inbox.get(timeout=poll))
            except queue.Empty:
                continue
    thread = threading.Thread(target=listen, daemon=True)
    bot.listening_thread = thread
    thread.start()
    return thread


def test_closing_wakes_a_listener_in_a_long_poll():
    delivered = []
    bot = types.SimpleNamespace(is_listening=False, listening_thread=None)
    inbox = DeliveryQueue(bot, delivered.append, lambda raw: raw)
    thread = listening(inbox, bot, poll=3600)   # a poll no test would wait out
    inbox.put("first")
    assert wait_for(lambda: delivered == ["first"], timeout=5)
    inbox.close()
    assert not thread.is_alive(), "the listener ended without waiting for its poll"
    inbox.put("after close")
    assert delivered == ["first", "after close"], "a message arriving after close is delivered at once"


def test_what_is_queued_at_close_is_delivered_by_close_in_order():
    delivered = []
    release = threading.Event()

    def deliver(item):
        delivered.append(item)
        if item == "slow":
            release.wait(30)

    bot = types.SimpleNamespace(is_listening=False, listening_thread=None)
    inbox = DeliveryQueue(bot, deliver, lambda raw: raw)
    thread = listening(inbox, bot, poll=3600)
    for item in ("slow", "second", "third"):
        inbox.put(item)
    assert wait_for(lambda: delivered == ["slow"], timeout=5)   # the listener is busy with it
    closer = threading.Thread(target=inbox.close, daemon=True)
    closer.start()
    release.set()
    closer.join(10)
    assert not closer.is_alive() and not thread.is_alive()
    assert delivered == ["slow", "second", "third"]
