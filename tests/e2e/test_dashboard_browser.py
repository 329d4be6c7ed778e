"""The admin dashboard (issue 9) in Debian's Chromium driven by Playwright: connect with the
token, load traffic and watch the numbers move on the live stream, see savings, top projects,
top clients and a purge, open a project's download chart. Screenshots go to the test's tmp
directory and their paths are printed."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.edge import EdgeProcess
from support.upstream import UpstreamIndex, populate_default

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Chromium is missing: install Debian's 'chromium' package", pytrace=False)
    return path


PIP = (
    'pip/24.0 {"ci":null,"installer":{"name":"pip","version":"24.0"},"python":"3.11.4",'
    '"system":{"name":"Linux","release":"6.1"}}'
)


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[EdgeProcess, UpstreamIndex]]:
    up = UpstreamIndex(tmp_path / "upstream")
    populate_default(up)
    up.start()
    e = EdgeProcess(up.index_url, tmp_path / "cache", workers=2, log_path=tmp_path / "err.log")
    e.start()
    yield e, up
    e.stop()
    up.stop()


def traffic(edge: EdgeProcess, paths: list[str], stop: threading.Event) -> None:
    with httpx.Client(timeout=10, headers={"user-agent": PIP}) as c:
        while not stop.is_set():
            for p in paths:
                c.get(edge.url + p)
            stop.wait(0.05)


def test_dashboard_shows_live_numbers_and_a_project_chart(
    edge: tuple[EdgeProcess, UpstreamIndex], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    e, up = edge
    wheel = next(f for f in up.files("alpha") if f.filename.endswith(".whl"))
    shots: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(e.admin_url + "/dashboard", wait_until="load")
            page.fill("#token", e.token)
            page.click("#connect")
            expect(page.locator("#status")).to_have_text("live", timeout=15000)
            assert page.locator("#c-requests canvas").count() == 1
            first = int(page.locator("#n-requests").get_attribute("data-value") or "0", 10)

            stop = threading.Event()
            loader = threading.Thread(
                target=traffic, args=(e, ["/simple/alpha/", wheel.url_path], stop)
            )
            loader.start()
            try:
                # the numbers move: requests since start grows on the stream
                page.wait_for_function(
                    "n => Number(document.querySelector('#n-requests').dataset.value) > n + 20",
                    arg=first,
                    timeout=20000,
                )
                page.wait_for_function(
                    "() => document.querySelector('#n-rps').textContent.trim() !== '0'",
                    timeout=20000,
                )
            finally:
                stop.set()
                loader.join()
            assert e.purge(urls=["/simple/beta/"])["purged"] >= 0
            # panels refresh every 5 s: savings, top projects, top clients, the purge
            expect(page.locator("#top-projects")).to_contain_text("alpha", timeout=15000)
            expect(page.locator("#events")).to_contain_text("purge", timeout=15000)
            expect(page.locator("#events")).to_contain_text("edge started")
            expect(page.locator("#events")).to_contain_text("→ 1 (create")  # version 1
            expect(page.locator("#top-clients")).to_contain_text("127.0.0.1", timeout=15000)
            expect(page.locator("#savings")).to_contain_text("since start")
            shots.append(tmp_path / "dashboard-live.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

            page.fill("#project", "Alpha")
            page.click("#show-project")
            expect(page.locator("#project-total")).to_contain_text("alpha: ", timeout=10000)
            total = int(page.inner_text("#project-total").split(": ")[1].split(" ")[0])
            api = e.admin_request("GET", "/stats/downloads/alpha?days=30").json()
            assert total == api["total"] > 0
            assert page.locator("#c-project canvas").count() == 1
            expect(page.locator("#project-by")).to_contain_text("pip")
            shots.append(tmp_path / "dashboard-project.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    for shot in shots:
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
