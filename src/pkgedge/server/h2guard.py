"""Pure defences for the HTTP/2 protocol: the header-block guard and the reset counter.

:class:`HeaderBlockGuard` walks the frame boundaries of the bytes a client sends, before the
``h2`` library sees them, and measures every header block (a HEADERS frame and the
CONTINUATION frames up to END_HEADERS). ``h2`` buffers up to 64 CONTINUATION frames of up to
16 KiB each before it decodes anything (1 MiB per connection); this guard refuses a block
larger than ``max_bytes`` or split into more than ``max_frames`` frames as soon as its frame
header arrives (the CONTINUATION flood of 2024), and tells when a block was left open. It
also checks the sizes RFC 9113 fixes for RST_STREAM, SETTINGS, PING, GOAWAY and
WINDOW_UPDATE (h2 reports some of them as PROTOCOL_ERROR rather than FRAME_SIZE_ERROR).

:class:`ResetCounter` counts the streams a client reset in a sliding window (the rapid reset
attack, CVE-2023-44487: open a stream, cancel it at once, repeat).
"""

from __future__ import annotations

import collections

PREFACE_SIZE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS = 0x1
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9
END_HEADERS = 0x4
ACK = 0x1
FRAME_SIZE_ERROR = 0x6
ENHANCE_YOUR_CALM = 0xB

MAX_CONTINUATIONS = 16  # frames of one header block, HEADERS included
RESET_LIMIT = 200  # client resets per connection within RESET_WINDOW seconds
RESET_WINDOW = 10.0

#: A problem that ends the connection: (GOAWAY error code, reason).
Problem = tuple[int, str]


def frame_size_problem(ftype: int, flags: int, length: int) -> str | None:
    """Why a frame of a fixed-size type has the wrong length (RFC 9113 section 6), or None."""
    if ftype in (RST_STREAM, WINDOW_UPDATE) and length != 4:
        return f"frame of type {ftype} with {length} bytes instead of 4"
    if ftype == PING and length != 8:
        return f"PING of {length} bytes"
    if ftype == SETTINGS and (length % 6 or (flags & ACK and length)):
        return f"SETTINGS of {length} bytes"
    if ftype == GOAWAY and length < 8:
        return f"GOAWAY of {length} bytes"
    return None


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

    def feed(self, data: bytes, now: float) -> Problem | None:
        """Account for ``data``; why to close the connection, or None."""
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
            size = frame_size_problem(head[3], head[4], length)
            if size is not None:
                return FRAME_SIZE_ERROR, size
            reason = self._frame(head[3], head[4], length, now)
            if reason is not None:
                return ENHANCE_YOUR_CALM, reason
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
