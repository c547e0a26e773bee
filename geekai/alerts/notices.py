"""One-off notices that are not incidents: a channel test, a forged payment notice."""
from __future__ import annotations

from ..db import utcnow
from . import channels
from .models import Incident


def send_one_off(kind: str, reason: str, key: str, config) -> list:
    """Queue one notice per configured channel (the caller commits); a repeated key is a no-op."""
    from .. import outbox

    sample = Incident(id=0, kind=kind, state=kind, reason=reason, began_at=utcnow(), opened_at=utcnow(), reminders=0)
    queued = []
    for message in channels.build(sample, channels.OPENED, config):
        found = outbox.enqueue(message.topic, message.transport, message.target, message.payload,
                               key=f"{key}-{message.channel}", headers=message.headers)
        if found is not None:
            queued.append(found)
    return queued
