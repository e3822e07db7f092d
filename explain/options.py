"""Assessment of an options-flow result in words, from its flags and metrics only."""
from __future__ import annotations

from typing import Any

from explain.builtin import recommended_action

_ACTION_WORDS = {"escalate": "Escalate for immediate review", "review": "Review with elevated monitoring",
                 "monitor": "Keep under standard monitoring", "no_action": "No action needed"}


def assess_options_flow(result: Any, symbol: str) -> str:
    """A built-in assessment: the risk band, then each rule that fired with its own numbers.

    ``result`` is a ``detectors.options_flow.OptionsFlowResult``. Every number in the text is
    one of the result's metrics or flags, so the assessment is grounded by construction.
    """
    action = recommended_action(float(result.risk_score))
    m = result.metrics
    lines = [f"{symbol}: options-flow risk {result.risk_score:.2f} ({result.alert_level}). "
             f"{_ACTION_WORDS[action]}."]
    if result.flags:
        lines += [f"- {flag}" for flag in result.flags]
    else:
        lines.append(f"- Nothing unusual: calls are {m['call_share']:.0%} of volume, {m['short_dated_share']:.0%} "
                     "of volume is in expiries within 7 days, and no contract traded above 5x its open interest.")
    lines.append("Unusual activity before an announcement can indicate trading on inside information; "
                 "check the calendar for earnings or corporate events and the accounts behind the trades.")
    return "\n".join(lines)
