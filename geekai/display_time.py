"""The one rule for every time a person reads (pages, CLI): China time, UTC+8, labelled as such.

geekai's users and WeChat Pay's days are in mainland China, which has one zone and no daylight
saving; so a time on the status page, the payments pages and in the CLI is the same wall-clock
time whatever the browser's or the server's zone. The API keeps UTC (ISO 8601 with Z) for scripts.
static/status.js applies the same rule in the browser (UTC_OFFSET_MS there).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

ZONE = timezone(timedelta(hours=8), "UTC+8")
LABEL = "UTC+8"


def shown(moment: datetime | str | None) -> str:
    """`YYYY-MM-DD HH:MM:SS` in China time, from an aware or naive-UTC datetime or an ISO 8601 text."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return moment  # not a time: shown as it came
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S")
