"""The batch scan on a local Ray (2 CPUs): a demo universe end to end, the case log written once
over two runs, per-symbol failures, the shared rate limiter, the command line and the
background launcher."""
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from data.demo import demo_spec
from scan import background
from scan.cli import main
from scan.job import ScanConfig, TokenBucket, read_status, run_scan, start_ray
from scan.universe import demo_universe, load_symbol, parse_universe
from store.cases import CaseLog

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")   # one local Ray per worker process, not several

RANGE = {"interval": "1h", "start": "2024-01-01", "end": "2024-01-15"}   # 4 symbols x 2 weeks


@pytest.fixture(scope="module")
def ray_local():
    started, engine = start_ray(2, None)
    yield engine
    if started:
        ray.shutdown()


# ---- no Ray needed ---------------------------------------------------------------------------

def test_demo_universe_is_deterministic_and_labelled(tmp_path):
    assert parse_universe("demo:3") == ["DEMO-0001", "DEMO-0002", "DEMO-0003"]
    assert demo_spec("DEMO-0001") == demo_spec("DEMO-0001") != demo_spec("DEMO-0003")
    a, labels = load_symbol("demo", "DEMO-0002", **RANGE)
    b, _ = load_symbol("demo", "DEMO-0002", **RANGE)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["symbol"] == "DEMO-0002" and len(labels) > 0
    assert not a.equals(load_symbol("demo", "DEMO-0003", **RANGE)[0])
    universe = tmp_path / "u.txt"
    universe.write_text("# desk\nAAPL\nmsft  # comment\nAAPL\n")
    assert parse_universe(str(universe)) == ["AAPL", "msft"]
    with pytest.raises(ValueError, match="demo:N"):
        parse_universe("demo:lots")


def test_token_bucket_hands_out_slots_at_the_rate():
    now = [0.0]
    bucket = TokenBucket(rate=4, burst=2, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.25, 0.5]
    now[0] = 10.0                      # idle: refills to the burst, no more
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.25]


# ---- on Ray ----------------------------------------------------------------------------------

def test_scan_writes_report_and_the_case_log_once_over_two_runs(ray_local, tmp_path):
    assert ray_local == "ray local, 2 CPUs"
    config = ScanConfig(demo_universe(4), **RANGE)
    first = run_scan(config, report_dir=tmp_path / "r1")
    assert first.engine == "ray local, 2 CPUs"
    summary = first.summary
    assert list(summary["rank"]) == [1, 2, 3, 4] and (summary["error"] == "").all()
    assert list(summary["max_severity"]) == sorted(summary["max_severity"], reverse=True)
    assert len(first.events) > 0 and first.events["event_id"].is_unique
    assert set(first.events["symbol"]) <= set(config.symbols)
    for name in ("events.parquet", "summary.parquet", "summary.csv", "status.json"):
        assert (tmp_path / "r1" / name).exists()
    status = read_status(tmp_path / "r1")
    assert status["state"] == "done" and status["done"] == status["total"] == 4
    assert pd.read_parquet(tmp_path / "r1" / "events.parquet")["event_id"].tolist() == first.events["event_id"].tolist()
    assert sum(n for _, n in first.recall.values()) == summary["labels"].sum() > 0

    log = CaseLog()
    cases = log.list_cases()
    assert first.new_cases == len(cases) == len(first.events)
    dismissed = cases.iloc[0]
    log.update(dismissed["event_id"], who="ana", expected_version=int(dismissed["version"]), status="dismissed")

    second = run_scan(config, report_dir=tmp_path / "r2")
    assert second.new_cases == 0
    assert len(log.list_cases()) == len(cases)
    assert log.get(dismissed["event_id"])["status"] == "dismissed"
    log.close()


def _flaky_loader(symbol, config):
    if symbol == "BAD":
        raise ValueError("no data for BAD")
    if symbol == "CRASH":
        os._exit(3)                    # the worker process dies under the task
    return load_symbol("demo", "DEMO-0001", config.interval, config.start, config.end)


def test_a_failing_symbol_does_not_stop_the_scan(ray_local, tmp_path):
    config = ScanConfig(("DEMO-0001", "BAD", "CRASH", "DEMO-0002"), loader=_flaky_loader, batch_size=1, **RANGE)
    result = run_scan(config, report_dir=tmp_path, write_cases=False)
    errors = dict(zip(result.summary["symbol"], result.summary["error"]))
    assert errors["BAD"] == "no data for BAD"
    assert errors["CRASH"].startswith("worker failed")
    assert errors["DEMO-0001"] == errors["DEMO-0002"] == ""
    assert list(result.summary["symbol"][-2:]) == sorted(["BAD", "CRASH"])   # failures listed last,
    assert result.summary["rank"].tolist()[:2] == [1, 2] and result.summary["rank"][-2:].isna().all()  # unranked
    assert read_status(tmp_path)["errors"] == 2


def _timed_loader(symbol, config):
    with open(config.folder, "a", encoding="utf-8") as out:   # one line per fetch, all workers
        out.write(f"{time.time()} {os.getpid()}\n")
    return load_symbol("demo", "DEMO-0001", config.interval, config.start, config.end)


def test_the_limiter_keeps_a_source_under_its_rate_across_workers(ray_local, tmp_path):
    fetches = tmp_path / "fetches.txt"
    rate, n = 8.0, 16
    config = ScanConfig(tuple(f"F{i:02d}" for i in range(n)), source="fake", loader=_timed_loader, rate=rate,
                        folder=str(fetches), batch_size=1, **RANGE)
    run_scan(config, report_dir=tmp_path / "r", write_cases=False)
    rows = [line.split() for line in fetches.read_text().splitlines()]
    times = sorted(float(t) for t, _ in rows)
    assert len(times) == n and len({pid for _, pid in rows}) >= 2        # several workers fetched
    # burst 1: the k-th fetch after any fetch comes at least k/rate later (60 ms scheduling slack).
    for i in range(n):
        for j in range(i + 1, n):
            assert times[j] - times[i] >= (j - i) / rate - 0.06
    assert times[-1] - times[0] >= (n - 1) / rate - 0.06


def test_command_line_prints_what_it_did(ray_local, tmp_path, capsys):
    code = main(["scan", "--universe", "demo:2", "--start", "2024-01-01", "--end", "2024-01-15",
                 "--report", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Scanned 2 symbols" in out and "on ray local, 2 CPUs" in out and "new in sqlite" in out
    assert (tmp_path / "summary.csv").exists()
    assert main(["scan", "--universe", "demo:0"]) == 2


def test_background_scan_outlives_its_caller(tmp_path):
    # The page's path: a separate process with its own Ray; progress and results from the folder.
    report = background.launch("demo:2", ["--start", "2024-01-01", "--end", "2024-01-08",
                                "--workers", "1", "--quiet"], base=tmp_path / "scans")
    deadline = time.time() + 120
    while time.time() < deadline and (read_status(report) or {}).get("state") not in ("done", "failed"):
        time.sleep(0.5)
    status = read_status(report)
    assert status["state"] == "done", (report / "scan.log").read_text()
    assert status["engine"] == "ray local, 1 CPU"
    assert len(background.load_summary(report)) == 2
    listed = background.list_scans(tmp_path / "scans")
    assert listed[0]["report_dir"] == str(report) and listed[0]["state"] == "done"
    assert Path(CaseLog().engine.url.database).exists()


def test_the_scan_alerts_on_events_new_to_the_case_log(ray_local, tmp_path):
    from alerts import AlertBook
    from tests.test_alerts import Hook
    web = Hook()
    try:
        log = CaseLog()
        AlertBook(log.engine).add_rule("all", channel="webhook", target=web.url)
        config = ScanConfig(demo_universe(2), **RANGE)
        first = run_scan(config, report_dir=tmp_path / "a")
        assert len(web.bodies) == len(first.events) > 0
        assert {b["event_id"] for b in web.bodies} == set(first.events["event_id"])
        assert read_status(tmp_path / "a")["alerts_sent"] == len(first.events)
        run_scan(config, report_dir=tmp_path / "b")          # the same events again: no alert
        assert len(web.bodies) == len(first.events)
        log.close()
    finally:
        web.close()
