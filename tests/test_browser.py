"""Real-browser test: Chromium driven by Playwright against `streamlit run app.py`."""
from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "artifacts"


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        _missing("Debian chromium is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, SURVEILLANCE_DATA_DIR=str(tmp_path_factory.mktemp("data")))
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(key, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def _event_count(page) -> int:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Events")
    return int(metric.locator('[data-testid="stMetricValue"]').inner_text().strip())


def _wait_idle(page):
    """Wait until Streamlit has finished the rerun the last interaction started."""
    page.wait_for_timeout(500)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=90_000)
    page.wait_for_timeout(300)


def test_explorer_detectors_slider_download(page, app_url):
    page.goto(app_url)
    page.wait_for_selector(".js-plotly-plot", timeout=90_000)
    _wait_idle(page)
    # Select a second and third detector in the multiselect.
    multiselect = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Detectors")
    multiselect.locator("input").click()
    page.keyboard.type("Isolation")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    _wait_idle(page)
    page.wait_for_selector("text=Isolation Forest threshold", timeout=60_000)
    before = _event_count(page)
    # Move the z-score threshold slider up with the keyboard.
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Rolling z-score threshold")
    thumb = slider.get_by_role("slider")
    thumb.focus()
    thumb.press("End")          # the highest threshold: z-score flags (almost) nothing
    _wait_idle(page)
    after = _event_count(page)
    assert after < before, (before, after)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download events CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert len(rows) == after
    assert {"event_id", "start", "kind", "severity", "explanation"} <= set(rows[0])
    assert rows[0]["start"].endswith("Z")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator('[data-testid="stMain"]').evaluate("el => el.scrollTo(0, 0)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=False)


def test_bad_csv_shows_error_not_traceback(page, app_url, tmp_path):
    page.goto(app_url)
    page.wait_for_selector(".js-plotly-plot", timeout=90_000)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Source").locator("input").click()
    page.keyboard.type("CSV")
    page.keyboard.press("Enter")
    bad = tmp_path / "bad.csv"
    bad.write_text("when,price\nyesterday,abc\n", encoding="utf-8")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bad))
    page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=60_000)
    text = page.locator('[data-testid="stAlertContentError"]').first.inner_text()
    assert "Cannot load" in text
    detail = page.locator('[data-testid="stText"]').filter(has_text="Open").first.inner_text()
    assert "column" in detail.lower()        # what to fix, as plain text under the heading
    assert page.locator('[data-testid="stException"]').count() == 0
