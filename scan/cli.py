"""``surveil``: the command line. ``surveil scan --universe demo:50`` scans a universe on Ray.

Exit status: 0 when the scan ran (some symbols may have failed: see the summary), 1 when every
symbol failed or the scan could not run, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="surveil", description="Market surveillance from the command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    scan = commands.add_parser("scan", help="scan a universe of symbols with the detection pipeline on Ray")
    scan.add_argument("--universe", required=True, help="demo:N (N synthetic symbols) or a file, one symbol a line")
    scan.add_argument("--source", default="demo", choices=["demo", "yahoo", "bybit", "csv-folder"])
    scan.add_argument("--folder", help="csv-folder: the folder of SYMBOL.csv files")
    scan.add_argument("--interval", default="1h")
    scan.add_argument("--start", help="first day, e.g. 2024-01-01 (UTC; default: the source's)")
    scan.add_argument("--end", help="day after the last, e.g. 2024-07-01 (exclusive)")
    scan.add_argument("--detectors", default="",
                      help="comma-separated detector names, or JSON [[name, {params}], ...] "
                           "(default: the Explorer's default detection)")
    scan.add_argument("--mode", default="max", choices=["max", "mean", "vote"])
    scan.add_argument("--seed", type=int, default=7, help="demo: base seed of the universe")
    scan.add_argument("--category", help="bybit: spot (default), linear or inverse")
    scan.add_argument("--workers", type=int, help="CPUs of a local Ray (default: all)")
    scan.add_argument("--address", help="a Ray cluster's address (default: $RAY_ADDRESS, else local)")
    scan.add_argument("--rate", type=float, help="requests per second to the source, across all workers")
    scan.add_argument("--batch", type=int, help="symbols per Ray task (default: by universe size)")
    scan.add_argument("--report", help="report folder (default: a new one under the data folder's scans/)")
    scan.add_argument("--cases-db", help="case database URL (default: $SURVEILLANCE_CASES_DB_URL, else local)")
    scan.add_argument("--no-cases", action="store_true", help="do not write events into the case log")
    scan.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _progress(quiet: bool, total: int):
    if quiet:
        return None, None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="sym", desc="scan")
            return (lambda done, _total, symbol: (bar.update(done - bar.n), bar.set_postfix_str(symbol))), bar
        except ImportError:
            pass
    step = max(1, total // 20)
    marks = set()

    def plain(done, total, symbol):
        mark = done // step
        if mark not in marks or done == total:
            marks.add(mark)
            print(f"  {done}/{total} symbols ({done / total:.0%}), last {symbol}", file=sys.stderr, flush=True)
    return plain, None


def _where(url: str | None) -> str:
    import os

    import sqlalchemy as sa
    url = url or os.environ.get("SURVEILLANCE_CASES_DB_URL")
    if not url:
        from store.db import default_url
        url = default_url()
    return sa.make_url(url).render_as_string(hide_password=True)


def _specs(text: str):
    import json
    text = (text or "").strip()
    if text.startswith("["):
        try:
            return [tuple(spec) if isinstance(spec, list) else spec for spec in json.loads(text)]
        except ValueError as exc:
            raise ValueError(f"--detectors is not valid JSON: {exc}") from None
    return [d.strip() for d in text.split(",") if d.strip()] or None


def scan_command(args) -> int:
    from scan.job import TARGET_KINDS, ScanConfig, run_scan
    from scan.universe import parse_universe
    try:
        symbols = parse_universe(args.universe)
        specs = _specs(args.detectors)
        options = (("category", args.category),) if args.category else ()
        config = ScanConfig(symbols, source=args.source, interval=args.interval, start=args.start, end=args.end,
                            specs=specs, mode=args.mode, seed=args.seed, folder=args.folder, options=options,
                            rate=args.rate, batch_size=args.batch)
    except ValueError as exc:
        print(f"surveil scan: {exc}", file=sys.stderr)
        return 2
    progress, bar = _progress(args.quiet, len(symbols))
    try:
        result = run_scan(config, workers=args.workers, address=args.address, report_dir=args.report,
                          cases_url=args.cases_db, write_cases=not args.no_cases, progress=progress)
    except Exception as exc:  # noqa: BLE001 - a clear line for the operator, not a traceback
        print(f"surveil scan: the scan could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    n, failed = len(result.summary), len(result.errors)
    span = f"{args.start or 'default start'} to {args.end or 'default end'}"
    print(f"Scanned {n} symbols ({config.source}, {config.interval}, {span}) with "
          f"{', '.join(name for name, _ in config.specs)} on {result.engine} in {result.seconds:.1f} s "
          f"({n / result.seconds:.1f} symbols/s).")
    cases = "not written (--no-cases)" if args.no_cases else f"{result.new_cases} new in {_where(args.cases_db)}"
    print(f"  events: {len(result.events)}; cases: {cases}; failed symbols: {failed}")
    if result.recall:
        found = sum(result.recall.get(k, (0, 0))[0] for k in TARGET_KINDS)
        labels = sum(result.recall.get(k, (0, 0))[1] for k in TARGET_KINDS)
        print(f"  recall of injected {', '.join(TARGET_KINDS)}: {result.target_recall():.2f} ({found}/{labels})")
    top = result.summary[result.summary["error"] == ""].head(5)
    if len(top):
        print("  highest severity: " + ", ".join(f"{r.symbol} {r.max_severity:.3f} ({r.top_kind or '-'})"
                                                for r in top.itertuples()))
    for row in result.errors.head(5).itertuples():
        print(f"  failed: {row.symbol}: {row.error}")
    if failed > 5:
        print(f"  ... and {failed - 5} more failed symbols (see the summary)")
    print(f"  report: {result.report_dir / 'summary.csv'} and events.parquet")
    return 1 if failed == n else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "scan":
        return scan_command(args)
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
