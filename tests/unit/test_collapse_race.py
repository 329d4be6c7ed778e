"""Collapsing across workers when the other worker's fill ends between two looks: a miss
never fetches again what another worker stored meanwhile (seen under load in the cluster
test: two origin requests for one wheel behind a two-worker shield)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from pkgedge.cache.entry import Entry
from pkgedge.edge.fill import FetchSpec, RemoteFill
from pkgedge.edge.pipeline import Pipeline
from support.memory import MemoryOrigin, get, make_pipeline

PAGE = [("content-type", "text/html"), ("cache-control", "max-age=600")]
BODY = b"<html>" + b"x" * 2000 + b"</html>"
PATH = "/simple/a/"


@pytest.fixture(params=["disk", "memory"])
def edge(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Pipeline, MemoryOrigin]:
    pipeline, origin = make_pipeline(tmp_path, store=request.param)
    origin.add(PATH, headers=PAGE, body=BODY)
    return pipeline, origin


def test_a_claim_made_after_another_fill_stored_the_object_finds_it(edge: Any) -> None:
    pipeline, origin = edge
    assert asyncio.run(get(pipeline, PATH))[0] == 200  # stored, its claim released
    key = PATH.encode()
    spec = FetchSpec(key, key, PATH, ("http://o", PATH), [], {}, None, None)

    async def start() -> Any:
        return pipeline.fills.start(spec)

    got = asyncio.run(start())
    assert isinstance(got, Entry) and got.ttl(time.time()) > 0  # stored, not a new fill
    assert pipeline.store.busy(key) is None  # the claim was given back
    assert pipeline.fills.active == {}
    assert origin.count == 1


def test_a_waiter_whose_fill_is_gone_serves_what_it_stored(
    edge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, origin = edge
    assert asyncio.run(get(pipeline, PATH))[0] == 200
    store = pipeline.store
    real_lookup = store.lookup
    looks = [0]

    def late(*args: Any, **kw: Any) -> Any:  # the first look misses: the fill still ran
        looks[0] += 1
        key, entry = real_lookup(*args, **kw)
        return (key, None) if looks[0] == 1 else (key, entry)

    monkeypatch.setattr(store, "lookup", late)
    # the other worker's fill: finished, its head and claim already gone
    monkeypatch.setattr(
        pipeline.fills, "start", lambda spec: RemoteFill(store, spec.ckey, "finished0")
    )
    monkeypatch.setattr(pipeline, "try_hit", lambda req, client: False)
    status, headers, body = asyncio.run(get(pipeline, PATH))
    assert status == 200 and body == BODY
    assert "hit" in headers["cache-status"] and "collapsed" in headers["cache-status"]
    assert origin.count == 1  # not fetched again
