"""The playground page in headless Chromium (Debian's /usr/bin/chromium; skipped without it).

Types a prompt, generates, sees the streamed text tinted by surprisal, and saves a screenshot
(into docs/serve-playground.png when CHARRNN_SCREENSHOT=1, else into the test's directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
sync_api = pytest.importorskip("playwright.sync_api")

from tests.serve_server import Server, start_server  # noqa: E402


def page_model(trained_run: Path) -> Path:
    """The screenshot looks better with a model that has learned something (CHARRNN_PAGE_MODEL)."""
    chosen = os.environ.get("CHARRNN_PAGE_MODEL")
    return Path(chosen) if chosen else trained_run


@pytest.fixture
def server(trained_run: Path, tmp_path: Path) -> Iterator[Server]:
    server = start_server(page_model(trained_run), tmp_path)
    yield server
    assert server.stop() == 0


def test_the_page_streams_tinted_text(server: Server, tmp_path: Path) -> None:
    shot = REPO / "docs" / "serve-playground.png" if os.environ.get("CHARRNN_SCREENSHOT") else tmp_path / "page.png"
    with sync_api.sync_playwright() as play:
        browser = play.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('model').options.length > 0")
            page.fill("#prompt", "the cat ")
            page.fill("#seed", "7")
            page.fill("#length", "300")
            page.click("#generate")
            page.wait_for_function("document.getElementById('status').textContent.includes('characters in')")
            output = page.inner_text("#output")
            assert output.startswith("the cat ") and len(output) == len("the cat ") + 300
            tinted = page.eval_on_selector_all("#output span[title]", "spans => spans.length")
            assert tinted == 300  # every generated character carries its surprisal
            assert page.inner_text("#status").startswith("300 characters")
            page.screenshot(path=str(shot))
            page.click("#score")  # the prompt's own surprisal, on demand
            page.wait_for_function("document.getElementById('status').textContent.includes('bits per character')")
            scored = page.eval_on_selector_all("#output span[title]", "spans => spans.length")
            assert page.inner_text("#output") == "the cat " and scored == len("the cat ") - 1  # the first has none
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
