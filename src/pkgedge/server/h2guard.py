"""Pure defences for the HTTP/2 protocol: the header-block guard and the reset counter.

:class:`HeaderBlockGuard` walks the frame boundaries of the bytes a client sends, before the
``h2`` library sees them, and measures every header block (a HEADERS frame and the
CONTINUATION frames up to END_HEADERS). ``h2`` buffers up to 64 CONTINUATION frames of up to
16 KiB each before it decodes anything (1 MiB per connection); this guard refuses a block
larger than ``max_bytes`` or split into more than ``max_frames`` frames as soon as its frame
header arrives (the CONTINUATION flood of 2024), and tells when a block was left open.

:class:`ResetCounter` counts the streams a client reset in a sliding window (the rapid reset
attack, CVE-2023-44487: open a stream, cancel it at once, repeat).
"""

from __future__ import annotations

import collections

PREFACE_SIZE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS = 0x1
PUSH_PROMISE = 0x5
CONTINUATION = 0x9
END_HEADERS = 0x4


class HeaderBlockGuard:
    def __init__(self, max_bytes: int, max_frames: int) -> None:
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        self._skip = PREFACE_SIZE
        self._head = b""  # a frame header not yet complete
        self._remain = 0  # payload bytes of the current frame still to come
        self.block_bytes = 0
        self.block_frames = 0
        #: when the open header block started (None: no block open)
        self.open_since: float | None = None

    def feed(self, data: bytes, now: float) -> str | None:
        """Account for ``data``; a reason to close the connection, or None."""
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                continue
            if self._remain:
                k = min(self._remain, n - i)
                self._remain -= k
                i += k
                continue
            take = data[i : i + 9 - len(self._head)]
            self._head += take
            i += len(take)
            if len(self._head) < 9:
                break
            head, self._head = self._head, b""
            length = int.from_bytes(head[:3], "big")
            self._remain = length
            reason = self._frame(head[3], head[4], length, now)
            if reason is not None:
                return reason
        return None

    def _frame(self, ftype: int, flags: int, length: int, now: float) -> str | None:
        if ftype in (HEADERS, PUSH_PROMISE):
            self.block_bytes = 0
            self.block_frames = 0
            self.open_since = now
        elif ftype != CONTINUATION or self.open_since is None:
            return None  # any other frame; a stray CONTINUATION is h2's protocol error
        self.block_bytes += length
        self.block_frames += 1
        if self.block_bytes > self.max_bytes:
            return f"header block larger than {self.max_bytes} bytes"
        if self.block_frames > self.max_frames:
            return f"header block in more than {self.max_frames} frames"
        if flags & END_HEADERS:
            self.open_since = None
        return None


class ResetCounter:
    """Resets within the last ``window`` seconds; :meth:`add` says when over ``limit``."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def add(self, now: float) -> bool:
        """Count one reset at ``now``; True when more than ``limit`` fall in the window."""
        times = self._times
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        return len(times) > self.limit

    def __len__(self) -> int:
        return len(self._times)
