"""The playground page in a real browser (Debian's Chromium driven by Playwright): write a
rule with an error and see it marked, fix it, run, see MISS then HIT and the phase events,
export the test file (``pkgedge playground test`` passes on it), share the link and open it
in a fresh browser context, activate the draft and see the live edge answer by it."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgedge.cli import main
from support.edge import EdgeProcess

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROKEN = (
    "sub recv {\n"
    '    if (req.path == "/hello") { synthetic 200 "hello from the draft"; }\n'
    "}\n"
    "sub deliver {\n"
    '    if (req.path ~ "^/cache=") {\n'
    "        set resp.http.x-note = req.nope;\n"
    "    }\n"
    "}\n"
)
FIXED = BROKEN.replace("req.nope", '"from the draft"')


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            "Chromium is missing: install Debian's 'chromium' package (scripts/test does)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    base = tmp_path_factory.mktemp("playground-browser")
    proc = EdgeProcess("http://127.0.0.1:9/simple/", base / "cache", log_path=base / "edge.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_the_playground_in_a_real_browser(edge: EdgeProcess, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            page.goto(edge.admin_url + "/playground", wait_until="load")
            page.fill("#token", edge.token)
            page.click("#use-token")
            expect(page.locator("#compile-ok")).to_have_text("compiles")
            # the live configuration (version 1: the built-in default) as a starting point
            page.click("#load-live")
            expect(page.locator("#live-version")).to_have_text("live: version 1")
            expect(page.locator("#config")).to_have_value(re.compile("pkgedge's built-in rules"))

            # a rule with an error: marked in the editor, listed with its position
            page.fill("#config", BROKEN)
            expect(page.locator("#diagnostics li")).to_have_count(1)
            expect(page.locator("#diagnostics li")).to_contain_text(
                "line 6, column 32: unknown variable 'req.nope'"
            )
            expect(page.locator("#marks mark.err")).to_have_text("req.nope")
            page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
            page.click("#run")
            expect(page.locator("#results-list .compile-error")).to_be_visible()

            # fixed: the marks go, and a run shows MISS then HIT with the phase events
            page.fill("#config", FIXED)
            expect(page.locator("#compile-ok")).to_have_text("compiles")
            expect(page.locator("#marks mark.err")).to_have_count(0)
            page.click("#run")
            results = page.locator("#results-list .result")
            expect(results).to_have_count(2)
            expect(results.locator(".state")).to_have_text(["MISS", "HIT"])
            expect(page.locator("#status")).to_have_text("all assertions held")
            second = results.nth(1)
            hit_row = second.locator("table.events tr", has_text="fresh")
            expect(hit_row.locator(".phase")).to_have_text("hit")
            expect(second.locator("table.events td.decision", has_text="rule@5")).to_have_count(1)
            expect(results.nth(0).locator(".fetches li")).to_contain_text("/cache=60 → 200")
            expect(second.locator(".asserts li.pass")).to_have_count(3)
            expect(second.locator(".cache-status")).to_contain_text("pkgedge; hit; ttl=")
            assert "x-note: from the draft" in (second.locator("pre.response").text_content() or "")
            page.screenshot(path=str(tmp_path / "results.png"), full_page=True)

            # export: the file `pkgedge playground test` runs in CI
            with page.expect_download() as dl:
                page.click("#export")
            exported = tmp_path / "playground.json"
            dl.value.save_as(exported)

            # share, then open the link in a fresh context (no token, no storage)
            page.click("#share")
            expect(page.locator("#share-url")).to_have_value(
                re.compile(r"/playground\?id=[A-Za-z0-9_-]{16}$")
            )
            url = page.input_value("#share-url")

            # activate: the draft becomes a new live version, and the live edge answers by it
            assert edge.get("/hello").status_code != 200
            page.once("dialog", lambda d: d.accept())
            page.click("#activate")
            expect(page.locator("#status")).to_have_text("version 2 is live (was 1)")
            deadline = time.monotonic() + 15  # every worker within a second (a bound, no timing)
            while (live := edge.get("/hello")).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert live.status_code == 200 and live.text == "hello from the draft"

            fresh = browser.new_context().new_page()
            fresh.goto(url, wait_until="load")
            expect(fresh.locator("#status")).to_have_text("enter the admin token")
            fresh.fill("#token", edge.token)
            fresh.click("#use-token")
            expect(fresh.locator("#config")).to_have_value(FIXED)
            expect(fresh.locator("#requests .req")).to_have_count(2)
            fresh.click("#run")
            expect(fresh.locator("#results-list .result .state")).to_have_text(["MISS", "HIT"])
        finally:
            browser.close()
    # (after the browser: sync Playwright keeps an event loop running in this thread)
    assert main(["playground", "test", str(exported)]) == 0
