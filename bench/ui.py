"""UI speed: first render of the Explorer and a threshold-slider rerun, measured with AppTest.

Run: .venv/bin/python bench/ui.py
Prints server-side seconds (AppTest runs the script in-process; browser time is not included).
"""
from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SURVEILLANCE_DATA_DIR", tempfile.mkdtemp(prefix="bench-ui-"))

from streamlit.testing.v1 import AppTest  # noqa: E402


def timed(at: AppTest) -> float:
    t0 = time.perf_counter()
    at.run(timeout=300)
    elapsed = time.perf_counter() - t0
    assert not at.exception, at.exception
    return elapsed


def main() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.secrets["_bench"] = "1"
    first = timed(at)
    print(f"first render in a new process (imports included), demo default "
          f"(DEMO-USD 1h, ~2,200 candles, 2 detectors): {first:.2f} s")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.secrets["_bench"] = "1"
    at.session_state["demo_seed"] = 2      # nothing cached for this market yet
    warm = timed(at)
    print(f"first render of a new demo market in a running server (caches cold): {warm:.2f} s")

    # 10,000 hourly candles and three detectors.
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.secrets["_bench"] = "1"
    at.session_state["start_date"] = dt.date(2023, 2, 10)
    at.session_state["end_date"] = dt.date(2024, 3, 31)
    at.session_state["detectors"] = ["zscore", "isolation_forest", "pump_dump"]
    cold = timed(at)
    n = at.metric[0].value
    print(f"first render with {n} candles and 3 detectors (fits and scores): {cold:.2f} s")
    slider = next(s for s in at.slider if "z-score" in s.label)
    times = []
    for step in range(8):
        slider.set_value(3.0 + 0.25 * (step + 1))
        times.append(timed(at))
        slider = next(s for s in at.slider if "z-score" in s.label)
    print(f"threshold slider rerun ({n} candles, 3 detectors): median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms over {len(times)} moves")


if __name__ == "__main__":
    main()
