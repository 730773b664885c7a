"""The live view at ``/`` in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright. Pick the failing example, run it from the page, and see the node counters, the
edge counts and the failure highlight appear; a screenshot goes to tests/artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from exectest import TOKEN, RunningServer, running

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL = "install a browser: apt-get install -y chromium (and pip install playwright)"

pytest.importorskip("playwright.sync_api", reason=INSTALL)
if CHROMIUM is None:
    pytest.skip(f"no chromium on PATH; {INSTALL}", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with running() as s:
        yield s


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def test_static_files_are_served_without_a_token(srv: RunningServer) -> None:
    for path, kind in [("/", "text/html"), ("/app.js", "javascript"), ("/style.css", "text/css")]:
        r = httpx.get(srv.url + path)
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert "cdn" not in httpx.get(srv.url + "/").text.lower()


@pytest.mark.slow
def test_run_a_failing_graph_from_the_page(srv: RunningServer, page: Page) -> None:
    page.goto(srv.url + "/")
    page.fill("#token", TOKEN)
    page.select_option("#example", "a failing node")
    expect(page.locator('[data-node="div"]')).to_be_visible()  # drawn before it runs
    page.click("#run")
    expect(page.locator("#state")).to_have_text("failed", timeout=15000)
    failed = page.locator('[data-node="div"].failed')
    expect(failed).to_have_count(1)
    expect(failed.locator(".node-error")).to_contain_text("zero")
    expect(page.locator('[data-node="split"] .node-count')).to_have_text("ticks: 1")
    expect(page.locator('text.edge-count[data-edge="split.out>div.a"]')).to_have_text("3")
    expect(page.locator("#log li.ActorFailed").first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live_view_failed.png"), full_page=True)


@pytest.mark.slow
def test_counters_and_a_refused_graph(srv: RunningServer, page: Page) -> None:
    page.goto(srv.url + "/")
    page.fill("#token", TOKEN)
    page.click("#run")  # the first example: counts 50 numbers
    expect(page.locator("#state")).to_have_text("completed", timeout=15000)
    expect(page.locator('[data-node="count"] .node-count')).to_have_text("ticks: 50")
    expect(page.locator('[data-node="count"].failed')).to_have_count(0)
    page.fill("#graph", '{"processes": {"x": {"component": "tpl_nope"}}}')
    page.click("#run")
    expect(page.locator("#error")).to_contain_text("$.processes.x.component")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live_view_completed.png"), full_page=True)
