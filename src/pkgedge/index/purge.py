"""Purging the edge after every commit (the origin declares; the edge enforces).

:meth:`Purger.purge` tries once, right away, so an upload is visible through the edge by the
time the client gets its answer; if the edge is unreachable the keys go to a queue on disk
that a background thread retries with backoff until the edge accepts them. A purge failure
never fails (or loses) the change that caused it. The call waits up to 10 s: an edge with
``--redis`` answers once every live node applied the purge, or after its ``--purge-timeout``
(5 s by default) naming the nodes that did not; giving up before that would queue, and later
publish again, a purge the cluster already has.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("pkgedge.origin.purge")


class Purger:
    def __init__(
        self,
        admin_url: str | None,
        token: str | None,
        queue_file: Path,
        *,
        soft: bool = True,
        timeout: float = 10.0,
        locate: Callable[[], tuple[str, str] | None] | None = None,
    ) -> None:
        self.admin_url = admin_url.rstrip("/") if admin_url else None
        self.token = token
        #: consulted while no admin URL is configured (``pkgedge up`` records where the
        #: edge listens once it has started)
        self.locate = locate
        self.queue_file = queue_file
        self.soft = soft
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: set[str] = set(self._load())

    def __repr__(self) -> str:
        return (
            f"<Purger {self.admin_url or 'disabled'} pending={len(self._pending)} "
            f"sent={self.sent} failed={self.failed}>"
        )

    @property
    def enabled(self) -> bool:
        if self.admin_url is None and self.locate is not None:
            found = self.locate()
            if found is not None:
                self.admin_url, self.token = found[0].rstrip("/"), found[1]
        return self.admin_url is not None

    @property
    def pending(self) -> set[str]:
        with self._lock:
            return set(self._pending)

    def _load(self) -> list[str]:
        try:
            data = json.loads(self.queue_file.read_text())
        except (OSError, ValueError):
            return []
        return [k for k in data if isinstance(k, str)] if isinstance(data, list) else []

    def _save(self) -> None:
        tmp = self.queue_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(sorted(self._pending)))
            tmp.replace(self.queue_file)
        except OSError as exc:
            log.warning("cannot save the purge queue: %s", exc)

    def _send(self, keys: list[str]) -> bool:
        assert self.admin_url is not None
        ok = True
        for i in range(0, len(keys), 256):  # the edge takes at most 256 keys per call
            body = json.dumps({"keys": keys[i : i + 256], "soft": self.soft}).encode()
            req = urllib.request.Request(
                self.admin_url + "/purge",
                data=body,
                method="POST",
                headers={
                    "Authorization": f"Bearer {self.token or ''}",
                    "Content-Type": "application/json",
                },
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("purge of %d key(s) failed: %s", len(keys), exc)
                ok = False
        return ok

    def purge(self, keys: Iterable[str]) -> bool:
        """Purge ``keys`` now; on failure queue them for retries. True if purged now."""
        keys = sorted(set(keys))
        if not self.enabled or not keys:
            return False
        if self._send(keys):
            self.sent += len(keys)
            return True
        self.failed += 1
        with self._lock:
            self._pending.update(keys)
            self._save()
        self._wake.set()
        return False

    def start(self) -> None:
        if (self.admin_url is None and self.locate is None) or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._retry_loop, name="purger", daemon=True)
        self._thread.start()
        if self._pending:
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def _retry_loop(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            self._wake.wait(timeout=delay if self._pending else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                keys = sorted(self._pending)
            if not keys or not self.enabled:
                continue
            if self._send(keys):
                with self._lock:
                    self._pending.difference_update(keys)
                    self._save()
                self.sent += len(keys)
                delay = 0.5
            else:
                delay = min(delay * 2, 10.0)
                time.sleep(0)
