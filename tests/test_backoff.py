"""The one backoff rule (geekai/backoff.py) the bot, the outbox and the messages share."""
from __future__ import annotations

import pytest

from geekai import backoff


def test_doubles_from_first_jittered_and_capped():
    assert backoff.delay(1, 5, 300, rng=lambda: 0.5) == 5
    assert backoff.delay(3, 5, 300, rng=lambda: 0.5) == 20
    assert backoff.delay(1, 5, 300, rng=lambda: 0.0) == pytest.approx(4)
    assert backoff.delay(1, 5, 300, rng=lambda: 1.0) == pytest.approx(6)
    assert backoff.delay(50, 5, 300, rng=lambda: 1.0) == 300  # never above the cap, jitter included
    assert backoff.delay(10 ** 6, 5, 300) <= 300  # no overflow however long it fails


def test_every_caller_uses_it():
    from geekai import outbox
    from geekai.bot import supervisor

    assert supervisor.backoff_delay is backoff.delay
    assert outbox.backoff_delay is backoff.delay
