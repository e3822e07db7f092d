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
from playwright.sync_api import expect

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
    assert page.locator(".js-plotly-plot").count() == 2          # the signal layer and the prices, nothing else
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


# --------------------------------------------------------------------------- journeys (issue 12, 13)

def _open(page, url: str):
    page.goto(url)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    _wait_idle(page)


def _no_exception(page):
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "has encountered an error" not in page.locator('[data-testid="stMain"]').inner_text()


def _press(page, key: str):
    """A keyboard shortcut, sent with the focus on the page body (not in a widget)."""
    page.locator('[data-testid="stMain"] h1').first.click()
    page.keyboard.press(key)
    _wait_idle(page)


def test_lstm_trains_then_survives_slider_moves_a_reload_and_a_new_session(page, app_url):
    view = (f"{app_url}/?src=demo&sym=DEMO-USD&iv=1h&from=2024-01-01&to=2024-01-31&det=zscore,lstm_autoencoder"
            "&p.lstm_autoencoder.epochs=2&p.lstm_autoencoder.units=8")
    _open(page, view)
    page.wait_for_selector("text=LSTM autoencoder threshold", timeout=180_000)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="LSTM autoencoder threshold").get_by_role("slider")
    for _ in range(2):
        thumb.focus()
        thumb.press("ArrowRight")
        _wait_idle(page)
        _no_exception(page)
    page.reload()
    page.wait_for_selector("text=LSTM autoencoder threshold", timeout=180_000)
    _wait_idle(page)
    _no_exception(page)
    other = page.context.browser.new_page()          # another analyst, another session
    try:
        _open(other, view)
        other.wait_for_selector("text=LSTM autoencoder threshold", timeout=180_000)
        _no_exception(other)
    finally:
        other.close()


def test_a_deep_link_restores_the_view_and_keys_walk_the_events(page, app_url):
    _open(page, f"{app_url}/?src=demo&sym=DEMO&iv=1h&from=2024-01-01&to=2024-03-20&seed=2&det=zscore,pump_dump"
                "&t.zscore=4.5")
    assert "sym=DEMO&" in page.url and "seed=2" in page.url       # written back from the restored controls
    assert page.locator('[data-testid="stSlider"]').filter(has_text="Pump-and-dump rule threshold").count() == 1
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Rolling z-score threshold")
    assert float(slider.get_by_role("slider").get_attribute("aria-valuetext")) == 4.5
    _press(page, "j")
    page.wait_for_selector("text=Event 1 of", timeout=30_000)
    _press(page, "j")
    page.wait_for_selector("text=Event 2 of", timeout=30_000)
    _press(page, "k")
    page.wait_for_selector("text=Event 1 of", timeout=30_000)
    assert "ev=" in page.url                          # the open event is part of the link
    _press(page, "Escape")
    page.wait_for_selector("text=J opens the first", timeout=30_000)
    _no_exception(page)


def test_the_events_table_opens_on_demand_and_stays_open(page, app_url):
    view = f"{app_url}/?src=demo&sym=DEMO-USD&iv=1h&from=2024-01-01&to=2024-02-20&det=zscore"
    _open(page, view)
    assert page.locator('[data-testid="stDataFrame"]').count() == 0     # the grid loads only when asked for
    page.locator('[data-testid="stExpander"] summary').filter(has_text="Events table").click()
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=60_000)
    _wait_idle(page)
    page.wait_for_function("() => location.href.includes('tbl=1')", timeout=30_000)
    page.reload()                                                      # a reload (or the link) keeps it open
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=120_000)
    _wait_idle(page)
    _no_exception(page)


def test_a_row_picked_then_left_by_keys_is_not_stale(page, app_url):
    _open(page, f"{app_url}/?src=demo&sym=DEMO-USD&iv=1h&from=2024-01-01&to=2024-02-20&det=zscore&tbl=1")
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 14, box["y"] + 52)             # the first row's selection box
    page.wait_for_selector("text=Event 1 of", timeout=30_000)
    _wait_idle(page)
    _press(page, "j")
    page.wait_for_selector("text=Event 2 of", timeout=30_000)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 14, box["y"] + 52)             # the first row again: it opens, not closes
    page.wait_for_selector("text=Event 1 of", timeout=30_000)
    _no_exception(page)


def test_a_saved_case_shows_at_once_in_the_panel_and_the_csv(page, app_url):
    _open(page, f"{app_url}/?src=demo&sym=DEMO-USD&iv=1h&from=2024-01-01&to=2024-02-20&det=zscore")
    _press(page, "j")
    page.wait_for_selector("text=Event 1 of", timeout=30_000)
    form = page.locator('[data-testid="stForm"]')
    form.locator('[data-testid="stSelectbox"]').click()
    page.keyboard.type("escalated")
    page.keyboard.press("Enter")
    form.get_by_label("Note").fill("spoofing pattern, see order book")
    form.get_by_role("button", name="Save to case log").click()
    status = page.locator('[data-testid="stMetric"]').filter(has_text="Status")
    expect(status).to_contain_text("escalated", timeout=60_000)   # the save's own rerun, no other action
    _wait_idle(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download events CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    saved = [r for r in rows if r["status"] == "escalated"]
    assert len(saved) == 1 and saved[0]["note"] == "spoofing pattern, see order book"
    # A second analyst's session on the same view gets its events from the server's memo, but
    # the case status from the case log: the save shows there too.
    other = page.context.browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        _open(other, f"{app_url}/?src=demo&sym=DEMO-USD&iv=1h&from=2024-01-01&to=2024-02-20&det=zscore")
        _press(other, "j")
        expect(other.locator('[data-testid="stMetric"]').filter(has_text="Status")).to_contain_text(
            "escalated", timeout=60_000)
    finally:
        other.close()


def test_switching_to_yahoo_offline_names_aapl_and_the_network(page, app_url):
    _open(page, app_url)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Source").locator("input").click()
    page.keyboard.type("Stocks")
    page.keyboard.press("Enter")
    page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=90_000)
    _wait_idle(page)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "AAPL" in main and "network" in main.lower()
    assert "730" not in main and "DEMO-USD" not in main      # the demo's symbol and dates are gone
    assert "Fetching" not in main                             # the status box says it failed
    _no_exception(page)


def test_a_headline_zoom_lasts_for_that_visit_only(page, app_url):
    page.goto(f"{app_url}/news")
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=120_000)
    _wait_idle(page)
    grid = page.locator('[data-testid="stDataFrame"]').first
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 14, box["y"] + 52)             # the first row's selection box
    _wait_idle(page)
    page.get_by_role("button", name="Open the Explorer at").click()
    page.wait_for_selector("text=opened from a headline", timeout=120_000)
    _wait_idle(page)
    page.get_by_role("button", name="Show the whole range").click()
    expect(page.locator("text=opened from a headline")).to_have_count(0, timeout=60_000)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="News").click()
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=120_000)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Explorer").click()
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    _wait_idle(page)
    expect(page.locator("text=opened from a headline")).to_have_count(0)
    _no_exception(page)


def test_hostile_header_and_headline_are_plain_text_and_fetch_nothing(page, app_url, tmp_path):
    beacon = "http://127.0.0.1:9/beacon.png"
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    _open(page, app_url)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Source").locator("input").click()
    page.keyboard.type("CSV")
    page.keyboard.press("Enter")
    hostile = tmp_path / "**pwn** ![x](beacon.png) [click](evil.example).csv"   # the name becomes the symbol
    hostile.write_text(f"[Reset your password](https://evil.example/reset),![x]({beacon}),https://evil.example/raw\n"
                       "1,2,3\n", encoding="utf-8")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(hostile))
    page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=60_000)
    _wait_idle(page)
    heading = page.locator('[data-testid="stAlertContentError"]').first.inner_text()
    assert "**pwn** ![x](beacon.png)" in heading     # the file name shown as typed, not rendered
    headlines = tmp_path / "headlines.csv"
    headlines.write_text("timestamp,headline\n2024-01-05T10:00:00Z,"
                         f"\"BUY NOW [click](https://evil.example/pump) ![t]({beacon}) https://evil.example/raw\"\n",
                         encoding="utf-8")
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="News").click()
    page.wait_for_selector('[data-testid="stFileUploaderDropzoneInput"]', timeout=60_000, state="attached")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(headlines))
    _wait_idle(page)
    page.wait_for_timeout(1500)
    assert page.locator('a[href*="evil.example"]').count() == 0
    assert page.locator('img[src*="beacon"]').count() == 0
    assert not [url for url in requests if "beacon" in url or "evil.example" in url]
    _no_exception(page)


def test_lstm_training_can_be_cancelled(page, app_url):
    page.goto(f"{app_url}/?src=demo&sym=DEMO-USD&iv=1h&from=2024-01-01&to=2024-03-31&det=zscore,lstm_autoencoder"
              "&p.lstm_autoencoder.epochs=100&p.lstm_autoencoder.units=64")
    cancel = page.get_by_role("button", name="Cancel training")
    cancel.wait_for(timeout=120_000)
    page.wait_for_selector(r"text=/Epoch \d+\/100, loss .* s left/", timeout=120_000)   # progress in plain view
    cancel.click()
    page.wait_for_selector("text=cancelled", timeout=120_000)
    _wait_idle(page)
    page.wait_for_function("() => !location.href.includes('lstm_autoencoder')", timeout=60_000)
    assert "det=zscore" in page.url
    assert page.locator("text=LSTM autoencoder threshold").count() == 0
    _no_exception(page)


def test_an_empty_upload_says_so(page, app_url, tmp_path):
    _open(page, app_url)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Source").locator("input").click()
    page.keyboard.type("CSV")
    page.keyboard.press("Enter")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(empty))
    page.wait_for_selector("text=The uploaded file is empty (0 bytes)", timeout=60_000)
    _no_exception(page)


def test_the_evaluation_page_speaks_plainly(page, app_url):
    page.goto(f"{app_url}/evaluation")
    page.wait_for_selector("text=Backtest: step aside during events", timeout=120_000)
    _wait_idle(page)
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "pr_auc" not in text and "+00:00" not in text and "Error)" not in text
    grid = page.locator('[data-testid="stDataFrame"]').first
    assert "PR-AUC" in grid.inner_text() or page.locator("text=PR-AUC").count() > 0
    _no_exception(page)
