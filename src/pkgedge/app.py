"""The composition root: what one edge worker is made of, wired in one place.

``pkgedge edge`` and ``pkgedge up`` call :func:`run_edge`; the process manager
(:mod:`pkgedge.server.workers`) forks workers that each run :func:`worker_main`: open the
disk tier, build the pipeline and the admin API, and serve until told to stop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pkgedge.analytics import hooks as stats_hooks
from pkgedge.analytics.recorder import Recorder
from pkgedge.cache.store import DiskStore
from pkgedge.config import EdgeSettings
from pkgedge.edge.context import Client
from pkgedge.edge.hooks import Hooks, RequestLog
from pkgedge.edge.peers import Peers
from pkgedge.edge.pipeline import Pipeline
from pkgedge.edge.rulewatch import RulesWatcher
from pkgedge.edge.versions import VersionStore
from pkgedge.errors import ConfigError
from pkgedge.http.request import Request
from pkgedge.server import listener, workers
from pkgedge.server.limits import Limits
from pkgedge.server.tls import tls_context
from pkgedge.stats import sampler
from pkgedge.stats.clients import ClientTally
from pkgedge.stats.counters import Counters
from pkgedge.stats.events import EventLog
from pkgedge.stats.rollup import Rollups, flush, rollup_path
from pkgedge.stats.savings import prometheus as savings_metrics
from pkgedge.web.admin import AdminHandler
from pkgedge.web.configapi import ConfigApi
from pkgedge.web.dashboard import Dashboard
from pkgedge.web.downloadstats import DownloadStats
from pkgedge.web.livestats import LiveStats, model_of
from pkgedge.web.playground.api import register_playground


async def worker_main(
    settings: EdgeSettings,
    row: int,
    client_sock: socket.socket,
    admin_sock: socket.socket,
    counters: Counters,
    ready: Callable[[], None],
) -> None:
    store = DiskStore(settings.cache_dir, settings.disk_size)
    store.open()
    hooks = Hooks()
    log: RequestLog | None = None
    if settings.access_log not in ("off", ""):
        log = RequestLog(settings.access_log)
        hooks.on_log(log)
        hooks.on_rules_log(log.rules_lines)
    pipeline = Pipeline(settings, store, counters, hooks)
    admin = AdminHandler(settings.admin_token, store, counters, pipeline.memory)
    watcher = RulesWatcher(versions_of(settings), pipeline)
    watcher.load()  # the active version, from the first request on
    ConfigApi(admin, watcher.store, watcher).register()
    watch = asyncio.get_running_loop().create_task(watcher.run())
    register_playground(admin, settings)
    model = model_of(settings)
    admin.metric_sources.append(lambda totals: savings_metrics(totals, model))
    sampling: asyncio.Task[None] | None = None
    recorder: Recorder | None = None
    publish: Callable[[], None] = _nothing
    tally: ClientTally | None = None
    if settings.stats:
        LiveStats(settings, counters, admin).register()
        recorder = Recorder(settings, counters)
        DownloadStats(recorder, admin).register()
        tally = ClientTally(_stats_dir(settings), row)
        pipeline.stats_hit, pipeline.stats_log, publish = stats_hooks.make(recorder, tally)
        events = _events(settings)
        admin.on_purge.append(lambda purge: events.add("purge", **purge))
        Dashboard(admin, _stats_dir(settings), events, watcher.store.activations).register()
        rollups = Rollups(rollup_path(settings.cache_dir)) if row == 0 else None
        sampling = asyncio.get_running_loop().create_task(sampler.run(counters, rollups, publish))
    if pipeline.backend.peers is not None:
        _register_peers(admin, pipeline.backend.peers)
    node = None
    if settings.redis:  # many nodes (issue 10): purges and limits through Redis
        from pkgedge.cluster.limits import Limiter
        from pkgedge.cluster.node import Node

        guard = pipeline.guard
        boxes = {"blocked": guard.penalties, "throttled": guard.throttled} if guard else None
        limiters: list[Limiter] = [pipeline.limiter]  # the rules' counters
        if guard is not None:
            limiters.append(guard.limiter)
        signals = guard.share_signals() if guard else None  # behaviour signals too
        node = Node(
            settings,
            row,
            admin.check_purge,
            admin.purge,
            limiters=limiters,
            boxes=boxes,
            versions=watcher.store,
            signals=signals,
            peers=pipeline.backend.peers,
            url=advertised(settings, client_sock),
        )
        admin.purge_via = node.purges.publish
        pipeline.backend.shared_hosts = node.hosts
        await node.start()

    def tick() -> None:
        store.flush_accesses()
        if log is not None:
            log.flush()
        if recorder is not None:
            recorder.flush()
        if tally is not None:
            tally.flush(time.time())
        counters.set("memory_objects", len(pipeline.memory))
        counters.set("memory_bytes", pipeline.memory.bytes_used)

    try:
        await listener.serve(
            pipeline,
            admin,
            client_sock,
            admin_sock,
            counters,
            Limits.from_settings(settings),
            tls_context(settings.tls_cert, settings.tls_key, http2=settings.http2),
            ready,
            tick,
            http2=settings.http2,
        )
        await pipeline.close()
    finally:
        watch.cancel()
        if sampling is not None:
            sampling.cancel()
        publish()  # the fast path's last counts, before the parent's last rollup
        if recorder is not None:
            try:
                recorder.close()
            except Exception as exc:  # the database is gone: say so, stop as usual
                print(f"pkgedge: download counts not stored: {exc}", file=sys.stderr)
        if node is not None:
            await node.close()
        store.flush_accesses()
        if log is not None:
            log.flush()
        store.close()


def _register_peers(admin: AdminHandler, peers: Peers) -> None:
    """``GET /peers``: this tier's nodes as this worker sees them (edge/peers.py)."""

    async def show(req: Request, client: Client) -> None:
        now = time.monotonic()
        body = {
            "me": peers.me,
            "nodes": {p.name: p.origin + p.prefix for p in peers.nodes.values()},
            "down": {n: round(until - now, 3) for n, until in peers.down.items() if until > now},
        }
        admin.reply(client, req, 200, json.dumps(body).encode())

    admin.route("/peers", show)


def advertised(settings: EdgeSettings, sock: socket.socket) -> str:
    """The URL other nodes reach this one at: ``--advertise``, else the client listener's
    address when it is not a wildcard ("" then: this node is nobody's peer)."""
    if settings.advertise:
        return settings.advertise
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::", ""):
        return ""
    scheme = "https" if settings.tls_cert else "http"
    return f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"


def run_edge(settings: EdgeSettings, out: Callable[[str], None] = print) -> int:
    """Run the edge: N pre-fork workers on one port, until SIGTERM or SIGINT."""
    tls_context(settings.tls_cert, settings.tls_key)  # a bad certificate: one clear error
    adopt_rules_file(settings, out)
    if settings.stats:  # a bad stats database URL: one clear error
        from pkgedge.analytics.recorder import db_url

        db_url(settings)
        _events(settings).add(
            "activation",
            detail=f"edge started: {settings.workers} worker(s), upstream {settings.upstream}, "
            f"protection {settings.protection}",
        )
    return workers.run(
        settings, partial(worker_main, settings), out, partial(_last_rollup, settings)
    )


def _nothing() -> None:
    pass


def _stats_dir(settings: EdgeSettings) -> Path:
    return Path(settings.cache_dir) / "stats"


def _events(settings: EdgeSettings) -> EventLog:
    return EventLog(_stats_dir(settings) / "events.jsonl")


def _last_rollup(settings: EdgeSettings, counters: Counters) -> None:
    """The parent, once every worker has stopped: store the counts since the last rollup."""
    if not settings.stats:
        return
    try:
        flush(counters, Rollups(rollup_path(settings.cache_dir)), time.time())
    except Exception as exc:  # a full disk: say so, exit as usual
        print(f"pkgedge: stats rollup not written: {exc}", file=sys.stderr)


def versions_of(settings: EdgeSettings) -> VersionStore:
    """The configuration versions in the data directory, checked against this edge's
    backends (``origin`` and ``--backends``)."""
    return VersionStore(settings.cache_dir, ["origin", *settings.backends])


def adopt_rules_file(settings: EdgeSettings, out: Callable[[str], None] = print) -> None:
    """Create version 1 on first use; with ``--rules FILE``, validate FILE (RulesError: the
    edge does not start) and activate it as a new version if its text is not the active one's."""
    versions = versions_of(settings)
    versions.ensure()
    if settings.rules:
        try:
            text = Path(settings.rules).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--rules {settings.rules}: cannot read it: {exc}") from None
        number = versions.adopt(text, settings.rules)
        if number is not None:
            out(f"pkgedge edge: rules from {settings.rules} activated as version {number}")
    out(f"pkgedge edge: configuration version {versions.active()}")
