"""iLink's messages (WeixinMessage, src/api/types.ts) as the handlers' IncomingMessage.

Whatever a message holds, reading it never raises: an unexpected shape is passed on with the
type UNREADABLE, and the poll loop goes on.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Callable

from .backend import UNREADABLE, IncomingMessage

# item_list types, named as wxpy names its message types so handlers need no second vocabulary.
ITEM_TYPES = {1: "Text", 2: "Picture", 3: "Recording", 4: "Attachment", 5: "Video"}
USER_MESSAGE, BOT_MESSAGE = 1, 2


def message_id(raw) -> str:
    """The message's uint64 id as decimal text (never through a float), or a stable stand-in."""
    if isinstance(raw, dict):
        value = raw.get("message_id")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if isinstance(value, str) and value.isdigit():
            return value
        seq = raw.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return f"seq-{seq}"
    text = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return "sha-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def sent_at(raw: dict) -> float:
    """When the person sent it (epoch seconds): the server's create_time_ms, unless it is in the future."""
    now = time.time()
    value = raw.get("create_time_ms")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value / 1000 <= now:
        return value / 1000
    return now


def is_from_bot(raw) -> bool:
    return isinstance(raw, dict) and raw.get("message_type") == BOT_MESSAGE


def to_incoming(raw, reply_for: Callable[[str, str], Callable[[str], None]]) -> IncomingMessage:
    """The message for the handlers; `reply_for(contact, context_token)` makes its reply."""
    identifier = message_id(raw)
    if not isinstance(raw, dict):
        return IncomingMessage(id=identifier, type=UNREADABLE, text=str(raw)[:2000], sender="", sender_name="",
                               raw={"content": repr(raw)})
    contact = raw.get("from_user_id") if isinstance(raw.get("from_user_id"), str) else ""
    token = raw.get("context_token") if isinstance(raw.get("context_token"), str) else ""
    items = [item for item in raw.get("item_list") or [] if isinstance(item, dict)] \
        if isinstance(raw.get("item_list"), list) else []
    kinds = [item.get("type") for item in items]
    kind = ITEM_TYPES.get(kinds[0], "Unknown") if kinds else UNREADABLE
    return IncomingMessage(
        id=identifier, type=kind, text="\n".join(_texts(items)), sender=contact, sender_name="",
        contact_id=contact, raw=dict(raw, message_id=identifier) if "message_id" in raw else dict(raw),
        reply=reply_for(contact, token) if contact else None,
    )


def _texts(items: list[dict]):
    for item in items:
        # A voice message may carry its transcript; text is the text.
        part = item.get("text_item") if item.get("type") == 1 else item.get("voice_item") if item.get("type") == 3 else None
        text = part.get("text") if isinstance(part, dict) else None
        if isinstance(text, str) and text:
            yield text
