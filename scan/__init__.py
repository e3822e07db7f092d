"""Batch scans of a universe of symbols on Ray (``surveil scan``); no Streamlit.

``run_scan(ScanConfig(symbols, ...))`` is the one entry point for the command line, the
Scanner page (which starts it in a background process) and the benchmark.
"""
from scan.job import ScanConfig, ScanResult, TokenBucket, read_status, run_scan
from scan.universe import demo_universe, parse_universe

__all__ = ["ScanConfig", "ScanResult", "TokenBucket", "run_scan", "read_status", "parse_universe",
           "demo_universe"]
