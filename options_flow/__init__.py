"""Unusual options activity: the flow metrics and flags of an option chain (``analysis``)."""
from options_flow.analysis import OptionsFlowResult, analyze_options_flow, blend_risk

__all__ = ["OptionsFlowResult", "analyze_options_flow", "blend_risk"]
