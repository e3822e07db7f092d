"""Assessment of an options-flow result in words: the configured model, else built-in rules.

The model gets the result's metrics and flags as evidence and answers in the same schema as
event explanations; its risk score is blended with the statistical one (0.6 statistical +
0.4 model, SEED_FACTS D), unless its text states numbers not in the evidence: then its risk
is ignored and ``risk_note`` says why. Any failure falls back to the built-in text, with the
reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explain import NO_MODEL
from explain.builtin import recommended_action
from explain.config import ExplainerConfig
from explain.grounding import check_grounding, ignored_risk_note, instruction_like
from explain.llm import LlmOutcome, make_client, request_explanation

BUILTIN = "built-in"
_ACTION_WORDS = {"escalate": "Escalate for immediate review", "review": "Review with elevated monitoring",
                 "monitor": "Keep under standard monitoring", "no_action": "No action needed"}


@dataclass(frozen=True)
class OptionsAssessment:
    text: str
    source: str              # the model name, or "built-in"
    risk: float              # statistical risk, blended with the model's when it answered grounded
    grounded: bool = True    # every number the model wrote is in the evidence
    fallback_reason: str = ""
    risk_note: str = ""      # why the model's risk was not blended in, when it was not


def options_evidence(result: Any, symbol: str) -> dict[str, Any]:
    """The numbers the assessment may use: rounded metrics (shares as percentages) and flags."""
    m = result.metrics
    pct = {f"{k}_pct": round(100 * m[k], 1) for k in ("call_share", "short_dated_share", "unusual_volume_share")
           if m.get(k) is not None}
    plain = {k: round(float(m[k]), 3) for k in ("strike_concentration", "put_call_ratio", "volume_vs_history")
             if m.get(k) is not None}
    return {"symbol": symbol, "kind": "unusual_options_activity", "statistical_risk": round(result.risk_score, 2),
            "unusual_contracts": int(m.get("unusual_contracts") or 0), "total_volume": m.get("total_volume"),
            **pct, **plain, "flags": list(result.flags)}


def _builtin_text(result: Any, symbol: str) -> str:
    """The risk band, then each rule that fired with its own numbers (grounded by construction)."""
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


def assess_options_flow(result: Any, symbol: str, config: ExplainerConfig | None = None) -> OptionsAssessment:
    """Assess ``result`` (a ``options_flow.analysis.OptionsFlowResult``); never raises for
    model or network failures."""
    from options_flow.analysis import blend_risk
    builtin = _builtin_text(result, symbol)
    if config is None or not config.enabled:
        return OptionsAssessment(builtin, BUILTIN, result.risk_score, fallback_reason=NO_MODEL)
    evidence = options_evidence(result, symbol)
    try:
        with make_client(config) as client:
            outcome = request_explanation(client, config, evidence)
    except Exception as exc:  # e.g. a malformed base URL: fall back rather than break the page
        outcome = LlmOutcome(None, f"cannot create the client ({type(exc).__name__})")
    if outcome.answer is None:
        return OptionsAssessment(builtin, BUILTIN, result.risk_score, fallback_reason=outcome.fallback_reason)
    text = outcome.answer["explanation"]
    grounded, unverified = check_grounding(text, evidence)
    orders = instruction_like(text)
    model_risk = float(outcome.answer["risk_score"])
    if not grounded or orders:  # such a model answer cannot move the risk
        note = ignored_risk_note(model_risk, orders, unverified, "assessment", "metrics")
        return OptionsAssessment(text, config.model, blend_risk(list(result.scores.values())),
                                 False, risk_note=note)
    return OptionsAssessment(text, config.model, blend_risk(list(result.scores.values()), model_risk))
