"""Events: flagged bars grouped into rows with evidence (``build``), typed by manipulation kind
(``kinds``) and put in their news context (``news_context``). Plain Python, no Streamlit."""
from events.build import EVENT_COLUMNS, event_id, flag_runs, to_events
from events.kinds import KINDS, classify_event

__all__ = ["EVENT_COLUMNS", "KINDS", "classify_event", "event_id", "flag_runs", "to_events"]
