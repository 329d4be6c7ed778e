"""HTTP/2 streams' requests to the handler: waiting, running under caps, then forgotten.

:class:`StreamRunner` is a mixin of :class:`~pkgedge.server.h2.H2Protocol` (the connection):
a stream whose request is complete waits in ``_waiting``; :meth:`~StreamRunner._start` hands
requests to the handler (``try_hit`` answers a hit at once, else ``handle`` runs as a task)
while fewer than :data:`MAX_RUNNING` run and less than :data:`OUTPUT_BACKLOG` bytes of
responses wait for flow-control windows; :meth:`~StreamRunner._done` forgets a finished
stream, resets one whose request body no one will read, and closes a stopping connection
after its last stream.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from pkgedge.http.request import Request
from pkgedge.http.response import error_response
from pkgedge.server.h2stream import H2Stream, StreamHandler
from pkgedge.stats.counters import Counters

log = logging.getLogger("pkgedge.server")

OUTPUT_BACKLOG = 4 * 1024 * 1024  # unsent response bytes past which new requests wait
MAX_RUNNING = 32  # handlers running per connection (HTTP/1.1 pipelines up to 32 requests)


class StreamRunner:
    """The handing-on of requests; the connection's ``__init__`` sets the state declared here."""

    handler: StreamHandler
    counters: Counters
    streams: dict[int, H2Stream]
    running: int  # handler tasks, including those of streams reset meanwhile
    _waiting: collections.deque[H2Stream]
    _starting: bool
    closed: bool
    stopping: bool
    idle_since: float
    _loop: asyncio.AbstractEventLoop

    if TYPE_CHECKING:

        def _send_reset(self, stream_id: int, code: int) -> None: ...
        def _close_now(self) -> None: ...

    def _start(self) -> None:
        """Hand complete requests to the handler while fewer than :data:`MAX_RUNNING` run
        and the unsent output stays below :data:`OUTPUT_BACKLOG` (a client that grants no
        window cannot make the edge buffer a hundred responses); the rest wait."""
        if self._starting:
            return
        self._starting = True
        try:
            while self._waiting and not self.closed and self.running < MAX_RUNNING:
                if sum(len(s.pending) for s in self.streams.values()) >= OUTPUT_BACKLOG:
                    break
                stream = self._waiting.popleft()
                if not stream.closed:
                    self._dispatch(stream)
        finally:
            self._starting = False

    def _dispatch(self, stream: H2Stream) -> None:
        req = stream.req
        assert req is not None
        stream.dispatched = True
        stream.body_started = None
        if stream.body:
            req.body = b"".join(stream.body)
            stream.body.clear()
        self.counters.add("requests")
        try:
            hit = self.handler.try_hit(req, stream)
        except Exception as exc:  # a bug: this stream fails, the others go on
            log.exception("unhandled error: %s", exc)
            stream.abort()
            hit = True
        if hit:
            stream.finish()
            self._done(stream)
            return
        self.running += 1
        stream.task = self._loop.create_task(self._run(stream, req))

    async def _run(self, stream: H2Stream, req: Request) -> None:
        try:
            await self.handler.handle(req, stream)
        except Exception as exc:  # a bug: answer 500 if nothing was sent, never a traceback
            log.exception("unhandled error: %s", exc)
            if not stream.started:
                stream.write(error_response(500, "internal error"))
        finally:
            stream.task = None
            self.running -= 1
        stream.finish()
        self.idle_since = self._loop.time()
        self._done(stream)
        if self._waiting:
            self._start()

    def _done(self, stream: H2Stream) -> None:
        """Forget a finished stream; stop reading a request body no one will read."""
        if not stream.finished or self.streams.get(stream.id) is not stream:
            return
        del self.streams[stream.id]
        if stream.ended and not stream.remote_ended and not self.closed:
            self._send_reset(stream.id, ErrorCodes.NO_ERROR)
        if self.stopping and not self.streams and not self.closed:
            self._close_now()
