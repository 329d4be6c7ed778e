"""Lingering close, as nginx's ``lingering_close``: after refusing a request the connection
stops reading requests, shuts down its write side once the answer is out, and reads and
discards what the client still sends, for at most :data:`LINGER_TIME` seconds and
:data:`LINGER_BYTES` bytes, then closes. Closing a socket that still holds unread input
makes the kernel send a reset, and the client often loses the answer with it."""

from __future__ import annotations

LINGER_TIME = 2.0
LINGER_BYTES = 64 * 1024


class Linger:
    """The budget of one lingering close (times from the loop's monotonic clock)."""

    __slots__ = ("deadline", "left")

    def __init__(self, now: float, seconds: float = LINGER_TIME, size: int = LINGER_BYTES):
        self.deadline = now + seconds
        self.left = size

    def discard(self, n: int) -> bool:
        """Count ``n`` discarded bytes; False once the size budget is spent (close now)."""
        self.left -= n
        return self.left > 0

    def expired(self, now: float) -> bool:
        return now >= self.deadline
