"""Manipulation typing of an event from its evidence (what kind of anomaly an analyst is looking at).

Defaults follow what surveillance analysts use: a volume spike is 5x the usual volume, a price
spike is a 3 sigma move.
"""
from __future__ import annotations

import math
from typing import Mapping

from detectors.pump_dump import VOLUME_SPIKE

#: A return at least this many trailing standard deviations is a price spike.
PRICE_SPIKE_Z = 3.0
#: A one-bar return this many sigma on both legs (out and straight back) is a bad tick.
BAD_TICK_Z = 15.0
#: A wick this many times the usual bar range is a bad print, not trading.
BAD_WICK_RATIO = 20.0
#: A rise (or drop) of at least this many sigma, half undone afterwards, is a pump (or crash).
SHAPE_SIGMA = 8.0
#: Share of the move that must be undone to call it a reversal (dump or recovery).
REVERSAL_SHARE = 0.5
#: Volume ratio a pump needs (promoters bring volume; a quiet rise is not a pump).
PUMP_VOLUME_RATIO = 3.0
KINDS = ("data_error", "pump_and_dump", "flash_crash", "manipulation_suspected",
         "volume_surge", "price_spike", "pattern_anomaly")


def classify_event(evidence: Mapping[str, float]) -> str:
    """The manipulation type an event's evidence points to (first rule that matches).

    Keys read (missing or NaN keys make their rule not match): ``z_return`` (peak signed
    return z), ``z_return_reversal`` (z of the neighbouring bar that moved against it),
    ``wick_ratio`` (largest wick / usual bar range), ``volume_ratio``, and the shape in
    sigma units: ``rise_sigma`` and ``reversal_sigma`` (rise into the event's peak, fall
    after it), ``drop_sigma`` and ``recovery_sigma`` (drop into its trough, recovery after).

    Rules, in order: ``data_error`` (out and straight back by >= 15 sigma, or a wick 20x the
    usual range), ``pump_and_dump`` (rise >= 8 sigma on >= 3x volume, half undone),
    ``flash_crash`` (drop >= 8 sigma, half recovered), ``manipulation_suspected`` (price
    |z| >= 3 and volume >= 5x), ``volume_surge`` (volume >= 5x), ``price_spike``
    (|z| >= 3), else ``pattern_anomaly``.
    """
    def get(key: str) -> float:
        value = evidence.get(key)
        return math.nan if value is None else float(value)

    z_return, z_reversal = get("z_return"), get("z_return_reversal")
    volume_ratio = get("volume_ratio")
    rise, reversal = get("rise_sigma"), get("reversal_sigma")
    drop, recovery = get("drop_sigma"), get("recovery_sigma")
    bad_tick = (abs(z_return) >= BAD_TICK_Z and abs(z_reversal) >= BAD_TICK_Z
                and z_return * z_reversal < 0)
    if bad_tick or get("wick_ratio") >= BAD_WICK_RATIO:
        return "data_error"
    if (rise >= SHAPE_SIGMA and reversal >= REVERSAL_SHARE * rise
            and volume_ratio >= PUMP_VOLUME_RATIO):
        return "pump_and_dump"
    if drop >= SHAPE_SIGMA and recovery >= REVERSAL_SHARE * drop:
        return "flash_crash"
    price_extreme = abs(z_return) >= PRICE_SPIKE_Z
    if price_extreme and volume_ratio >= VOLUME_SPIKE:
        return "manipulation_suspected"
    if volume_ratio >= VOLUME_SPIKE:
        return "volume_surge"
    if price_extreme:
        return "price_spike"
    return "pattern_anomaly"
