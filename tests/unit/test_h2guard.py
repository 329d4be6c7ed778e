"""The HTTP/2 defences that need no connection: the header-block guard (CONTINUATION flood,
fixed frame sizes) fed real frames from hyperframe, and the rapid-reset counter."""

from __future__ import annotations

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from pkgedge.server.h2guard import (
    ENHANCE_YOUR_CALM,
    FRAME_SIZE_ERROR,
    HeaderBlockGuard,
    ResetCounter,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BLOCK = hpack.Encoder().encode([(":method", "GET"), (":path", "/"), (":scheme", "https")])


def feed_bytewise(guard: HeaderBlockGuard, data: bytes) -> tuple[int, str] | None:
    for i in range(len(data)):
        problem = guard.feed(data[i : i + 1], 0.0)
        if problem is not None:
            return problem
    return None


def test_ordinary_traffic_passes_in_any_split() -> None:
    traffic = (
        PREFACE
        + SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize()
        + HeadersFrame(1, BLOCK[:4]).serialize()
        + ContinuationFrame(1, BLOCK[4:], flags=["END_HEADERS"]).serialize()
        + DataFrame(1, b"x" * 40000, flags=["END_STREAM"]).serialize()
        + PingFrame(0, opaque_data=b"12345678").serialize()
        + WindowUpdateFrame(0, window_increment=1000).serialize()
    )
    whole = HeaderBlockGuard(1024, 4)
    assert whole.feed(traffic, 0.0) is None
    assert whole.open_since is None
    assert feed_bytewise(HeaderBlockGuard(1024, 4), traffic) is None


def test_many_small_continuations_are_refused() -> None:
    guard = HeaderBlockGuard(65536, 16)
    data = PREFACE + HeadersFrame(1, BLOCK).serialize()
    data += b"".join(ContinuationFrame(1, b"").serialize() for _ in range(15))  # 16 frames
    assert guard.feed(data, 5.0) is None
    assert guard.open_since == 5.0  # the block is still open: the deadline sweep sees it
    problem = guard.feed(ContinuationFrame(1, b"").serialize(), 6.0)
    assert problem is not None and problem[0] == ENHANCE_YOUR_CALM
    assert "more than 16 frames" in problem[1]


def test_a_large_block_is_refused_at_its_frame_header() -> None:
    guard = HeaderBlockGuard(20000, 16)
    first = HeadersFrame(1, b"\x00" * 16000).serialize()
    second = ContinuationFrame(1, b"\x00" * 16000).serialize()
    assert guard.feed(PREFACE + first, 0.0) is None
    # only the 9-byte header of the second frame is needed to refuse it
    problem = guard.feed(second[:9], 0.0)
    assert problem is not None and problem[0] == ENHANCE_YOUR_CALM


def test_a_new_block_starts_counting_afresh() -> None:
    guard = HeaderBlockGuard(100, 2)
    ended = HeadersFrame(1, BLOCK, flags=["END_HEADERS"]).serialize()
    assert guard.feed(PREFACE + ended * 50, 0.0) is None


def test_fixed_size_frames_of_the_wrong_length() -> None:
    def frame(ftype: int, flags: int, payload: bytes) -> bytes:
        return len(payload).to_bytes(3, "big") + bytes([ftype, flags, 0, 0, 0, 0]) + payload

    for data in (
        frame(0x6, 0, b"\x00" * 6),  # PING
        frame(0x4, 0, b"\x00" * 5),  # SETTINGS
        frame(0x4, 1, b"\x00" * 6),  # SETTINGS ACK with a payload
        frame(0x3, 0, b"\x00" * 3),  # RST_STREAM
        frame(0x8, 0, b"\x00" * 5),  # WINDOW_UPDATE
        frame(0x7, 0, b"\x00" * 4),  # GOAWAY
    ):
        problem = HeaderBlockGuard(1024, 4).feed(PREFACE + data, 0.0)
        assert problem is not None and problem[0] == FRAME_SIZE_ERROR, data


def test_reset_counter_slides() -> None:
    counter = ResetCounter(limit=3, window=10.0)
    assert not any(counter.add(t) for t in (0.0, 1.0, 2.0))
    assert counter.add(3.0)  # four within ten seconds
    counter = ResetCounter(limit=3, window=10.0)
    assert not any(counter.add(t) for t in (0.0, 6.0, 12.0, 18.0, 24.0))
    assert len(counter) == 2
