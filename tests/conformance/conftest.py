"""Fixtures for the RFC conformance tests: a scripted origin and an edge in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support.edge import EdgeFactory, EdgeProcess
from support.scripted import ScriptedOrigin


@pytest.fixture
def origin() -> Iterator[ScriptedOrigin]:
    """A :class:`ScriptedOrigin` on 127.0.0.1 (nothing scripted yet)."""
    o = ScriptedOrigin().start()
    yield o
    o.stop()


@pytest.fixture
def cedge(origin: ScriptedOrigin, edge_factory: EdgeFactory) -> EdgeProcess:
    """One edge (1 worker, protection off) in front of ``origin``."""
    return edge_factory(upstream=origin.index_url, extra_args=["--protection", "off"])


@pytest.fixture
def client(cedge: EdgeProcess) -> Iterator[httpx.Client]:
    """An HTTP client for ``cedge`` (identity encoding, so bodies compare byte for byte)."""
    with httpx.Client(
        base_url=cedge.url, timeout=30.0, headers={"Accept-Encoding": "identity"}
    ) as c:
        yield c
