"""The one backoff rule for everything that retries: the bot's logins, the outbox's deliveries and
the messages' sends. About first, 2*first, 4*first ... up to cap, each jittered by ±20% so that
many retries do not fire at the same moment."""
from __future__ import annotations

import random

JITTER = 0.2


def delay(failures: int, first: float, cap: float, rng=random.random) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1 = the first)."""
    base = min(cap, first * 2 ** min(max(0, failures - 1), 60))
    return min(cap, base * (1 - JITTER + 2 * JITTER * rng()))
