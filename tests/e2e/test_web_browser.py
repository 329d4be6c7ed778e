"""The origin's pages for people, in a real browser (Debian's Chromium driven by Playwright)
through the edge: the project list, a project page with its README rendered from Markdown,
and no script from a README ever runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.edge import EdgeProcess
from support.origin import OriginProcess, twine_upload
from support.packages import make_wheel

pytestmark = pytest.mark.e2e

README = """# Hello pkgedge

This is **bold** and this is `code`.

<script>window.pwned = true; alert("pwned")</script>

- one
- two
"""

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


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            "Chromium is missing: install Debian's 'chromium' package (scripts/test does)",
            pytrace=False,
        )
    return path


def test_project_pages_in_a_real_browser(
    stack: tuple[OriginProcess, EdgeProcess], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    origin, edge = stack
    token = origin.token()
    wheel = make_wheel(
        tmp_path, "browsy", "1.2", description=README, description_content_type="text/markdown"
    )
    up = twine_upload(edge.url + "/legacy/", token, [wheel])
    assert up.returncode == 0, up.stdout + up.stderr
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(edge.url + "/", wait_until="load")
            assert "Package index" in page.inner_text("h1")
            page.click("text=browsy")
            page.wait_for_url("**/project/browsy/")
            assert page.inner_text("h1").startswith("browsy 1.2")
            assert page.locator("h1", has_text="Hello pkgedge").count() == 1
            assert page.locator("strong", has_text="bold").count() == 1
            assert page.locator("li", has_text="two").count() == 1
            assert page.evaluate("window.pwned === undefined")
            link = page.locator("a", has_text="browsy-1.2-py3-none-any.whl")
            href = link.get_attribute("href")
            assert href is not None and href.startswith("/files/")
            page.screenshot(path=str(tmp_path / "project.png"), full_page=True)
            assert (tmp_path / "project.png").stat().st_size > 1000
        finally:
            browser.close()
    assert dialogs == []  # the README's script never ran
    # the page came through the edge, and a repeat is served from its cache
    again = edge.get("/project/browsy/")
    assert "hit" in again.headers["cache-status"]
