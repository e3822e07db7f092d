"""Scans in a background process, so they outlive the request (or browser tab) that started them.

``launch`` starts ``python -m scan.cli scan ... --report DIR`` in its own session (a closed tab,
a Streamlit rerun or a server restart does not stop it) and returns the report folder at once;
progress and results are read back from that folder (``status.json``, ``summary.parquet``,
``events.parquet``), so any page, in any session, can show them.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from scan.job import ROOT, new_report_dir, read_status

__all__ = ["launch", "list_scans", "load_summary", "load_events", "is_alive"]

#: Scans started by this process, polled so a finished one is reaped (no zombie looks alive).
_children: dict[int, subprocess.Popen] = {}


def launch(universe: str | list[str], args: list[str], *, base: Path | None = None,
           env: dict | None = None) -> Path:
    """Start ``surveil scan --universe ...`` with ``args`` (without ``--report``) in the
    background; ``universe`` is ``demo:N``, a file, or a list of symbols (kept in the report)."""
    report = new_report_dir(base)
    if not isinstance(universe, str):
        (report / "universe.txt").write_text("\n".join(universe) + "\n", encoding="utf-8")
        universe = str(report / "universe.txt")
    command = [sys.executable, "-m", "scan.cli", "scan", "--universe", universe, *args,
               "--report", str(report)]
    with open(report / "scan.log", "ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, **(env or {})})
    _children[process.pid] = process
    (report / "launcher.pid").write_text(str(process.pid), encoding="utf-8")
    return report


def is_alive(report: Path) -> bool:
    """Whether the scan process of ``report`` still runs (on this machine)."""
    status = read_status(report) or {}
    pid = status.get("pid")
    if pid is None:
        try:
            pid = int((Path(report) / "launcher.pid").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
    child = _children.get(int(pid))
    if child is not None:
        return child.poll() is None
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def list_scans(base: Path | None = None, limit: int = 20) -> list[dict]:
    """Newest scans first: each status plus ``report_dir`` (a scan whose process died while
    running is marked ``state`` "stopped")."""
    if base is None:
        from store import data_dir
        base = data_dir() / "scans"
    out = []
    for folder in sorted(Path(base).glob("*"), reverse=True)[:limit]:
        if not ((folder / "status.json").exists() or (folder / "launcher.pid").exists()):
            continue
        status = read_status(folder) or {"state": "starting", "done": 0, "total": 0, "message": ""}
        if status.get("state") in ("starting", "running") and not is_alive(folder):
            status = {**status, "state": "stopped",
                      "message": status.get("message") or _last_line(folder / "scan.log")}
        out.append({**status, "report_dir": str(folder)})
    return out


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def load_summary(report: str | Path) -> pd.DataFrame | None:
    path = Path(report) / "summary.parquet"
    return pd.read_parquet(path) if path.exists() else None


def load_events(report: str | Path) -> pd.DataFrame | None:
    path = Path(report) / "events.parquet"
    return pd.read_parquet(path) if path.exists() else None
