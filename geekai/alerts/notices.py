"""One-off notices that are not incidents: a channel test, a forged payment notice."""
from __future__ import annotations

from . import channels


def send_one_off(kind: str, reason: str, key: str, config) -> list:
    """Queue one notice of `kind` (channels.NOTICE_TITLES) per configured channel (the caller
    commits); the generic webhook gets "event": "notice.<kind>" and no incident. A repeated
    key is a no-op."""
    from .. import outbox

    queued = []
    for message in channels.build_notice(kind, reason, config):
        found = outbox.enqueue(message.topic, message.transport, message.target, message.payload,
                               key=f"{key}-{message.channel}", headers=message.headers)
        if found is not None:
            queued.append(found)
    return queued
