"""Observing the pipeline through hooks: the access log subscribes; the pipeline does not
know who listens."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pkgedge.http.request import Request

#: A log subscriber: (request, status, bytes sent, cache status, duration in seconds).
LogHook = Callable[["Request", int, int, str, float], None]
#: A subscriber to the rules' ``log`` lines: (request, the lines).
RulesLogHook = Callable[["Request", list[str]], None]


class Hooks:
    """Subscribers to pipeline events: a request was answered; the rules logged lines."""

    def __init__(self) -> None:
        self._log: list[LogHook] = []
        self._rules_log: list[RulesLogHook] = []

    @property
    def active(self) -> bool:
        return bool(self._log)

    def on_log(self, hook: LogHook) -> None:
        self._log.append(hook)

    def log(self, req: Request, status: int, sent: int, cache_status: str, duration: float) -> None:
        for hook in self._log:
            hook(req, status, sent, cache_status, duration)

    def on_rules_log(self, hook: RulesLogHook) -> None:
        self._rules_log.append(hook)

    def rules_log(self, req: Request, lines: list[str]) -> None:
        for hook in self._rules_log:
            hook(req, lines)


class RequestLog:
    """JSON-lines access log, buffered and flushed about once a second."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = (
            1 if path == "-" else os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        )
        self._buf: list[str] = []
        self._last = time.monotonic()

    def __call__(
        self, req: Request, status: int, sent: int, cache_status: str, duration: float
    ) -> None:
        record: dict[str, Any] = {
            "time": round(time.time(), 3),
            "client": req.client,
            "method": req.method,
            "http": req.http,
            "path": req.target,
            "status": status,
            "bytes": sent,
            "cache": cache_status,
            "duration_ms": round(duration * 1000, 3),
            "user_agent": req.map.get("user-agent", ""),
        }
        if req.note:
            record["protection"] = req.note
        self._buf.append(json.dumps(record, separators=(",", ":")))
        if len(self._buf) >= 256 or time.monotonic() - self._last > 1.0:
            self.flush()

    def rules_lines(self, req: Request, lines: list[str]) -> None:
        """The rules' ``log`` lines, one record each (``"rules"`` holds the text)."""
        now = round(time.time(), 3)
        for line in lines:
            record = {"time": now, "client": req.client, "method": req.method}
            record.update(path=req.target, rules=line)
            self._buf.append(json.dumps(record, separators=(",", ":")))

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self._buf:
            return
        data = ("\n".join(self._buf) + "\n").encode()
        self._buf.clear()
        try:
            os.write(self._fd, data)
        except OSError:
            pass
