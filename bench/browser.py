"""What an analyst waits for on the Explorer in Chromium, beside a bare Streamlit + Plotly floor.

Run: .venv/bin/python bench/browser.py [--moves 5] [--port 8660]

Needs Debian's chromium (/usr/bin/chromium) and Playwright. Starts the app and a floor page
(the same number of candles as one Plotly figure, with a slider moving a threshold line and
no detector work) on loopback, then for about 2,000 and 10,000 hourly demo candles measures
the time to the first chart and, per threshold-slider move (ArrowRight on the first slider
labelled "threshold"), the time until the first chart is redrawn and the page is idle.
Prints medians and app / floor ratios (1.0: the page costs nothing beyond Streamlit + Plotly),
and the same beside a second floor: the first plus the Explorer's widget kinds (sidebar
controls, metrics, a selectable events table, buttons), still with no detector work.
Three app views: the default page (three detectors, 2,184 candles, as browser_latency.py
times it) and z-score-only deep links at both sizes.
Each page gets a warm-up visit first, so the timed visits are fresh sessions on a view already
open on this server (fitted scores, detection and price figure kept per process), as a reload
or a shared link is; a view nobody has opened yet also waits for its fit.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
IDLE = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]'); return !!a && "
        "a.getAttribute('data-test-script-state') === 'notRunning' && "
        "!document.querySelector('[data-testid=\"stStatusWidget\"]'); }")
CHART = ("() => { const p = document.querySelector('.js-plotly-plot'); return !!(p && "
         "p.querySelector('.main-svg') && p.querySelectorAll('g.trace').length > 0); }")
MARK = "() => { const p = document.querySelector('.js-plotly-plot'); window.__old = p ? p.layout : null; }"
CHANGED = ("() => { const p = document.querySelector('.js-plotly-plot'); return !!(p && p.layout && "
           "p.layout !== window.__old && p.querySelector('.main-svg')); }")
FLOOR = textwrap.dedent('''
    import numpy as np, pandas as pd, plotly.graph_objects as go, streamlit as st
    from plotly.subplots import make_subplots
    st.set_page_config(layout="wide")
    n = int(st.query_params.get("n", 2184))
    rng = np.random.default_rng(0)
    idx = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))); o = np.r_[c[0], c[:-1]]
    h = np.maximum(o, c) * 1.003; l = np.minimum(o, c) * 0.997; v = rng.lognormal(7, 0.5, n)
    z = np.abs(rng.standard_t(4, n))
    cut = st.sidebar.slider("Floor threshold", 0.0, 20.0, 5.5, 0.1)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.6, 0.2, 0.2])
    fig.add_trace(go.Candlestick(x=idx, open=o, high=h, low=l, close=c), row=1, col=1)
    fig.add_trace(go.Bar(x=idx, y=v), row=2, col=1)
    fig.add_trace(go.Scatter(x=idx, y=z, mode="lines"), row=3, col=1)
    flag = z > cut
    fig.add_trace(go.Scatter(x=idx[flag], y=c[flag], mode="markers"), row=1, col=1)
    fig.add_hline(y=cut, row=3, col=1)
    fig.update_layout(height=700, xaxis_rangeslider_visible=False, showlegend=False)
    st.metric("Flags", int(flag.sum()))
    st.plotly_chart(fig)
''')
#: The widget kinds the Explorer shows, still without detector work: the sidebar's controls
#: before the chart (as the Explorer creates them) and the events section after it. Each kind
#: is a JavaScript chunk the browser loads and compiles before the page is idle, so this
#: second floor shows what the controls cost beside what the page computes.
CONTROLS = (
    'import datetime as dt\n'
    'side = st.sidebar\n'
    'side.selectbox("Source", ["Demo", "Yahoo", "Bybit", "CSV"]); side.selectbox("Symbol", ["DEMO-USD"])\n'
    'side.number_input("Demo seed", 0, 10_000, 1); side.selectbox("Interval", ["1h", "1d"])\n'
    'side.date_input("From", dt.date(2024, 1, 1)); side.date_input("To", dt.date(2024, 3, 31))\n'
    'side.multiselect("Detectors", ["z-score", "pump", "crash"], ["z-score", "pump", "crash"])\n'
    'side.selectbox("Combine detectors", ["max", "mean", "vote"])\n'
    'side.toggle("News context", True); side.toggle("Explanations", True)\n'
    'for name in ("Pump", "Crash"): side.slider(f"{name} cut", 0.0, 1.0, 0.5)\n'
    'for col, label in zip(st.columns(4), ("Candles", "Events", "Highest", "Most common kind")): col.metric(label, 1)\n'
)
EVENTS = (
    'table = pd.DataFrame({"start": idx[:40], "kind": ["spike"] * 40, "severity": np.linspace(0, 1, 40)})\n'
    'cols = st.columns(4); [cols[i].button(b) for i, b in enumerate(("Previous", "Next", "Close"))]\n'
    'st.dataframe(table, on_select="rerun", selection_mode="single-row", key="events")\n'
    'st.download_button("Events (CSV)", table.to_csv(), "events.csv")\n'
)
CONTROLS_FLOOR = FLOOR.replace("cut = st.sidebar.slider", CONTROLS + "cut = st.sidebar.slider") + EVENTS
#: candles -> the Explorer's range for DEMO-USD 1h that holds about that many candles
#: (row label, candles, the app's link): the default view (three detectors) and z-score-only links.
VIEWS = [("default", 2184, ""),
         ("zscore", 2184, "?src=demo&sym=DEMO-USD&iv=1h&from=2024-01-01&to=2024-03-31&det=zscore"),
         ("zscore", 10_000, "?src=demo&sym=DEMO-USD&iv=1h&from=2023-02-10&to=2024-03-31&det=zscore")]


def serve(script: Path, port: int, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                             "--server.port", str(port), "--server.fileWatcherType", "none",
                             "--browser.gatherUsageStats", "false"],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait(page, js: str, timeout: float = 300) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if page.evaluate(js):
                return
        except Exception:  # the page is navigating; try again
            pass
        time.sleep(0.03)
    raise TimeoutError(js)


def measure(browser, url: str, moves: int) -> tuple[float, float]:
    """(seconds to the first chart and an idle page, median seconds per slider move)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    started = time.perf_counter()
    page.goto(url)
    wait(page, CHART)
    time.sleep(0.2)
    wait(page, IDLE)
    first = time.perf_counter() - started
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="hreshold").first.get_by_role("slider")
    times = []
    for _ in range(moves):
        thumb.focus()
        page.evaluate(MARK)
        started = time.perf_counter()
        thumb.press("ArrowRight")
        wait(page, CHANGED, 120)
        time.sleep(0.2)
        wait(page, IDLE)
        times.append(time.perf_counter() - started)
    page.close()
    return first, statistics.median(times)


def main() -> None:
    from playwright.sync_api import sync_playwright
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=5)
    parser.add_argument("--port", type=int, default=8660)
    parser.add_argument("--repeats", type=int, default=3, help="visits of each page, interleaved")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="browser-bench-"))
    (tmp / "floor.py").write_text(FLOOR)
    (tmp / "controls.py").write_text(CONTROLS_FLOOR)
    env = dict(os.environ, SURVEILLANCE_DATA_DIR=str(tmp / "data"))
    procs = [serve(ROOT / "app.py", args.port, ROOT, env), serve(tmp / "floor.py", args.port + 1, tmp, env),
             serve(tmp / "controls.py", args.port + 2, tmp, env)]
    try:
        for port in (args.port, args.port + 1, args.port + 2):
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            rows = []
            for view, n, link in VIEWS:
                app = f"http://127.0.0.1:{args.port}/{link}"
                pages = {"floor": f"http://127.0.0.1:{args.port + 1}/?n={n}",
                         "controls": f"http://127.0.0.1:{args.port + 2}/?n={n}", "app": app}
                for url in pages.values():
                    measure(browser, url, 1)                                  # warm the servers
                runs = {name: [] for name in pages}
                for _ in range(args.repeats):                                 # interleaved: same load
                    for name, url in pages.items():
                        runs[name].append(measure(browser, url, 1 if name == "controls" else args.moves))
                rows.append((view, n, {name: [statistics.median(r[i] for r in runs[name]) for i in (0, 1)]
                                 for name in pages}))
            browser.close()
    finally:
        for proc in procs:
            proc.terminate()
    print("Medians of", args.repeats, "visits each. floor: the bare Streamlit + Plotly page; controls: the floor "
          "plus the Explorer's widget kinds (no detector work); app: the Explorer.")
    print(f"{'view':>8} {'candles':>8} | {'first chart: floor':>18} {'controls':>8} {'app':>6} {'app/floor':>9} "
          f"{'app/controls':>12} | {'slider move: floor':>18} {'app':>6} {'app/floor':>9}")
    for view, n, m in rows:
        (f_first, f_move), (c_first, _), (a_first, a_move) = m["floor"], m["controls"], m["app"]
        print(f"{view:>8} {n:>8,} | {f_first:>16.2f} s {c_first:>6.2f} s {a_first:>4.2f} s {a_first / f_first:>8.2f}x "
              f"{a_first / c_first:>11.2f}x | {f_move:>16.2f} s {a_move:>4.2f} s {a_move / f_move:>8.2f}x")


if __name__ == "__main__":
    main()
