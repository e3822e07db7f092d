"""Evaluation against labelled events (``metrics``) and the avoid-anomalies backtest (``backtest``)."""
