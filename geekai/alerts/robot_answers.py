"""What the alert channels' chat robots answer: HTTP 200 even when they refuse a message.

The verdict is in the JSON body; alerts registers this check with the outbox's HTTP sender for
each robot's topic, so that a refusal is a failed delivery (retried, then shown as failed).
"""
from __future__ import annotations

import json

from ..outbox import DeliveryError, register_answer_check


# Chat robots answer HTTP 200 even when they refuse a message; the verdict is in the body, in the
# first of these fields that it has (Feishu answers {"code": 0, ...} or, older, {"StatusCode": 0}).
VERDICT_FIELDS = {"alert.wecom": ("errcode",), "alert.dingtalk": ("errcode",), "alert.feishu": ("code", "StatusCode")}


def check_verdict(topic: str, text: str) -> None:
    """Raise DeliveryError unless the robot's answer says it took the message."""
    fields = VERDICT_FIELDS.get(topic)
    if fields is None:
        return
    try:
        answer = json.loads(text)
    except ValueError:
        raise DeliveryError(f"unreadable answer from the {topic} robot: {text[:200]!r}") from None
    if not isinstance(answer, dict):
        raise DeliveryError(f"unreadable answer from the {topic} robot: {text[:200]!r}")
    field = next((f for f in fields if f in answer), None)
    if field is None:  # a proxy's or a wrong endpoint's 200 is no robot's acceptance
        raise DeliveryError(f"the {topic} robot refused the message (no {fields[0]} in its answer):"
                            f" {text[:200]!r}"[:300])
    code = answer[field]
    if str(code) != "0":
        why = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
        raise DeliveryError(f"the {topic} robot refused the message ({field} {code}): {why}"[:300])


def register() -> None:
    for topic in VERDICT_FIELDS:
        register_answer_check(topic, check_verdict)
