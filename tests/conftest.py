"""Shared fixtures: a real upstream index (``upstream``) and real edge processes
(``edge_factory``, ``edge``). Helpers live in ``tests/support`` (imported as ``support.*``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from support.edge import EdgeFactory, EdgeProcess  # noqa: E402
from support.postgres import postgres_server  # noqa: E402, F401  (session fixture, shared)
from support.s3 import s3_server  # noqa: E402, F401  (session fixture, shared)
from support.upstream import UpstreamIndex, populate_default  # noqa: E402

UpstreamFactory = Callable[..., UpstreamIndex]


@pytest.fixture
def upstream_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamFactory]:
    """``upstream_factory(populate=True, **kwargs)`` → a started :class:`UpstreamIndex` over a
    new directory (kwargs as for UpstreamIndex, e.g. ``file_host=True``); stopped at teardown."""
    started: list[UpstreamIndex] = []

    def make(populate: bool = True, **kwargs: Any) -> UpstreamIndex:
        index = UpstreamIndex(tmp_path_factory.mktemp("upstream"), **kwargs)
        if populate:
            populate_default(index)
        started.append(index)
        return index.start()

    yield make
    for index in started:
        index.stop()


@pytest.fixture
def upstream(upstream_factory: UpstreamFactory) -> UpstreamIndex:
    """A running upstream index with the default projects (see :func:`populate_default`)."""
    return upstream_factory()


@pytest.fixture
def edge_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[EdgeFactory]:
    """``edge_factory(upstream=None, **kwargs)`` → a started :class:`EdgeProcess` (defaults:
    the ``upstream`` fixture's index URL, 1 worker, ``--access-log off``, a fresh cache dir).
    Every edge is stopped at teardown; if the test failed, their output is printed."""

    def default_upstream() -> str:
        index: UpstreamIndex = request.getfixturevalue("upstream")
        return index.index_url

    factory = EdgeFactory(tmp_path_factory.mktemp("edges"), default_upstream)
    yield factory
    report = getattr(request.node, "rep_call", None)
    failed = report is not None and report.failed
    for edge in factory.edges:
        if failed:
            print(f"\n=== {edge!r}\n{edge.diagnostics()}")
    factory.close()


@pytest.fixture
def edge(edge_factory: EdgeFactory) -> EdgeProcess:
    """One running edge in front of the ``upstream`` fixture."""
    return edge_factory()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def origin_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """``origin_factory(**kwargs)`` → a started :class:`support.origin.OriginProcess` in a new
    data directory (mirroring off unless ``upstream=`` is given); stopped at teardown."""
    from support.origin import OriginProcess

    started: list[OriginProcess] = []

    def make(**kwargs: Any) -> OriginProcess:
        proc = OriginProcess(tmp_path_factory.mktemp("origin"), **kwargs)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def stack(origin_factory: Callable[..., Any], edge_factory: EdgeFactory) -> tuple[Any, EdgeProcess]:
    """An origin with a 2-worker edge in front of it; the origin purges that edge after every
    change. The origin finds the edge through ``DATA_DIR/edge.json``, as under ``pkgedge up``."""
    import json

    origin = origin_factory()
    edge = edge_factory(upstream=origin.index_url, workers=2)
    (origin.data_dir / "edge.json").write_text(
        json.dumps({"admin": edge.admin_url, "token": edge.token})
    )
    return origin, edge
