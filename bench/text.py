"""Text benchmark: speed and quality of the text_embedding detector per available embedder.

Run: .venv/bin/python bench/text.py
Prints, per embedder: seconds to fit on and score 1,000 demo headlines (embedding cache off,
model load timed apart), then PR-AUC, recall and precision at the default threshold on the
demo's labelled headlines (promotional = positive), per demo symbol, both fitting on the
whole stream (leave-one-out scores) and fitting on the first half and scoring the second.
The built-in "tfidf" embedder is expected to take under 2 s for 1,000 headlines.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SURVEILLANCE_DATA_DIR", tempfile.mkdtemp(prefix="bench-text-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from data.demo import demo_market  # noqa: E402
from detectors.embedders import available_embedders, create_embedder  # noqa: E402
from detectors.text import TextEmbeddingDetector  # noqa: E402

SEED = 7
SYMBOLS = ("DEMO", "ACME", "DEMO-USD", "PUMPCOIN")
N_TIMED = 1_000


def fresh_embedder(name: str):
    """An embedder that never reads the disk cache, so every run embeds for real."""
    return create_embedder(name) if name == "tfidf" else create_embedder(name, use_cache=False)


def timing_headlines() -> pd.DataFrame:
    headlines = demo_market(seed=SEED, symbol="DEMO", start="2022-06-01",
                            end="2024-04-01").headlines
    return headlines.iloc[:N_TIMED].reset_index(drop=True)


def time_embedder(name: str, headlines: pd.DataFrame) -> tuple[float, float]:
    """(seconds to load the model, best-of-3 seconds to fit and score ``headlines``)."""
    load = 0.0
    if name != "tfidf":
        t0 = time.perf_counter()
        fresh_embedder(name).embed(["warm up the model"])
        load = time.perf_counter() - t0
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        detector = TextEmbeddingDetector(embedder=fresh_embedder(name)).fit(headlines)
        detector.score(headlines)
        runs.append(time.perf_counter() - t0)
    return load, min(runs)


def quality(name: str, fit_on: pd.DataFrame, score_on: pd.DataFrame) -> tuple[float, float, float, int]:
    """(PR-AUC, recall, precision, positives) on ``score_on``; promotional = positive.

    Uses the embedding cache (in a temporary folder), so each headline is embedded once.
    """
    detector = TextEmbeddingDetector(embedder=name).fit(fit_on)
    scores = detector.score(score_on)
    positive = (score_on["label"] == "promotional").to_numpy()
    valid = scores.notna().to_numpy()
    flags = (scores > detector.threshold).to_numpy()
    hits = int((flags & positive).sum())
    if not positive[valid].any():
        return float("nan"), float("nan"), float("nan"), 0
    pr_auc = average_precision_score(positive[valid], scores.to_numpy()[valid])
    precision = hits / int(flags.sum()) if flags.any() else float("nan")
    return pr_auc, hits / int(positive.sum()), precision, int(positive.sum())


def main() -> None:
    names = available_embedders()
    print(f"Embedders available: {', '.join(names)}")
    timed = timing_headlines()
    print(f"\nSpeed: fit + score {len(timed):,} demo headlines (best of 3, cache off)")
    print(f"{'embedder':22s} {'model load s':>12s} {'fit+score s':>12s} {'per 1k s':>9s}")
    for name in names:
        load, seconds = time_embedder(name, timed)
        print(f"{name:22s} {load:12.2f} {seconds:12.2f} {seconds * 1000 / len(timed):9.2f}")

    print(f"\nQuality on demo headlines, seed {SEED} (promotional = positive, default threshold)")
    print(f"{'embedder':22s} {'symbol':9s} {'split':10s} {'n':>5s} {'pos':>4s} "
          f"{'PR-AUC':>7s} {'recall':>7s} {'precision':>9s}")
    for name in names:
        totals = []
        for symbol in SYMBOLS:
            headlines = demo_market(seed=SEED, symbol=symbol).headlines
            half = headlines["timestamp"].iloc[len(headlines) // 2]
            first, second = headlines[headlines["timestamp"] < half], headlines[headlines["timestamp"] >= half]
            for split, fit_on, score_on in (("all (LOO)", headlines, headlines),
                                            ("held-out", first, second)):
                pr_auc, recall, precision, positives = quality(name, fit_on, score_on)
                totals.append((pr_auc, recall, precision))
                print(f"{name:22s} {symbol:9s} {split:10s} {len(score_on):5d} {positives:4d} "
                      f"{pr_auc:7.3f} {recall:7.2f} {precision:9.2f}")
        mean = np.nanmean(np.array(totals), axis=0)  # splits without positives left out
        print(f"{name:22s} {'mean':9s} {'':10s} {'':5s} {'':4s} "
              f"{mean[0]:7.3f} {mean[1]:7.2f} {mean[2]:9.2f}")


if __name__ == "__main__":
    main()
