"""The origin's store of rendered pages: single flight, kept on disk, old serials dropped."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pkgedge.index.model import ProjectRow
from pkgedge.index.pages import PageStore
from pkgedge.index.simple import JSON_V1, TEXT_HTML


def project(serial: int) -> ProjectRow:
    return ProjectRow("demo", "Demo", serial, datetime(2026, 1, 1, tzinfo=UTC))


class Renderer:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, p: ProjectRow, media: str) -> bytes:
        self.calls.append((p.last_serial, media))
        time.sleep(0.05)  # long enough for concurrent callers to pile up
        return f"{p.project}@{p.last_serial} as {media}".encode()


def test_concurrent_misses_render_once(tmp_path: Path) -> None:
    render = Renderer()
    store = PageStore(tmp_path, render)
    results: list[tuple[bytes, str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.get(project(7), JSON_V1)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert render.calls == [(7, JSON_V1)]
    assert len(set(results)) == 1
    body, etag = results[0]
    assert body == f"demo@7 as {JSON_V1}".encode() and etag.startswith('"')


def test_pages_survive_a_restart_and_old_serials_are_dropped(tmp_path: Path) -> None:
    render = Renderer()
    first = PageStore(tmp_path, render)
    page = first.get(project(3), TEXT_HTML)
    again = PageStore(tmp_path, render).get(project(3), TEXT_HTML)  # a new process
    assert again == page and render.calls == [(3, TEXT_HTML)]
    first.get(project(4), TEXT_HTML)
    first.get(project(4), JSON_V1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and all(".4." in n for n in names), names
    assert not any(n.endswith(".tmp") for n in names)


def test_a_damaged_stored_page_is_rendered_again(tmp_path: Path) -> None:
    render = Renderer()
    PageStore(tmp_path, render).get(project(5), JSON_V1)
    (stored,) = tmp_path.iterdir()
    stored.write_bytes(b"no etag line")
    page = PageStore(tmp_path, render).get(project(5), JSON_V1)
    assert page[0] == f"demo@5 as {JSON_V1}".encode()
    assert len(render.calls) == 2
