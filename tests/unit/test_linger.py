"""The budget of a lingering close (server/linger.py) with a fake clock."""

from __future__ import annotations

from pkgedge.server.linger import LINGER_BYTES, LINGER_TIME, Linger


def test_linger_ends_at_its_deadline() -> None:
    linger = Linger(100.0)
    assert not linger.expired(100.0 + LINGER_TIME - 0.01)
    assert linger.expired(100.0 + LINGER_TIME)


def test_linger_discards_a_bounded_number_of_bytes() -> None:
    linger = Linger(0.0)
    assert linger.discard(LINGER_BYTES - 1)
    assert not linger.discard(1)
    small = Linger(0.0, seconds=1.0, size=10)
    assert small.discard(9) and not small.discard(5)
