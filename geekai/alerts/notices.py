"""One-off notices that are not incidents: a channel test, a forged payment notice."""
from __future__ import annotations

from ..db import db
from . import channels
from .models import AlertDelivery


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
            record_delivery(found, None, kind, message.channel)
            queued.append(found)
    return queued


def record_delivery(message, incident_id: int | None, notice: str, channel: str) -> None:
    """Note what an outbox message of an alert is (None: its key was queued before, nothing new)."""
    if message is None:
        return
    if message.id is None:
        db.session.flush()
    db.session.add(AlertDelivery(outbox_id=message.id, incident_id=incident_id, notice=notice, channel=channel))
