"""Cases: the review queue, bulk status changes, the audit trail and the compliance summary.

Text that users or data sources wrote (names, event ids, notes, error messages quoting them) is
shown with st.text or in tables, never as Markdown.
"""
import datetime as dt

import streamlit as st

from components import services, state
from components.tables import readable_kind
from data.export import to_safe_csv
from events.kinds import KINDS
from store.cases import HIGH_RISK_SEVERITY, STATUSES, ConflictError

_NOTICE, _TABLE_VERSION = "_cases_notice", "_cases_table_version"


def done(message: str) -> None:
    """After a change: say what was done on the next run and start the table unselected."""
    st.session_state[_NOTICE] = message
    st.session_state[_TABLE_VERSION] = st.session_state.get(_TABLE_VERSION, 0) + 1
    st.rerun()


st.title("Cases")
log = services.case_log()
who = services.analyst_name()
check = log.verify_audit()  # the hash chain over every audit row: tampering shows here
if check.ok:
    st.success(f"Audit trail intact ({check.rows} row{'' if check.rows == 1 else 's'})",
               icon=":material/verified:")
else:
    st.error(f"Audit trail broken at row {check.broken_id}: {check.problem}", icon=":material/gpp_bad:")

linked = str(st.query_params.get("event", ""))[:32]   # an alert's link opens its case
if linked:
    try:
        case = log.get(linked)
    except ValueError:   # not an event id at all
        case = None
    with st.container(border=True):
        if case is None:
            st.warning("The linked event is not in the case log (yet).")
            st.text(f"Event id: {linked}")
        else:
            st.subheader("Linked case")
            st.text(f"{case['symbol']} · {readable_kind(case['kind'])} · status {case['status']} · "
                    f"severity {case['severity']:.3f}")
            st.text(f"Event id: {linked} · note: {case['note'] or '(none)'}")

with st.sidebar:
    st.subheader("Filter")
    # Kept across pages (an analyst comes back to the same queue).
    statuses = st.multiselect("Status", STATUSES, **state.kept("cases_status", ["new", "reviewing", "escalated"]))
    min_severity = st.slider("Minimum severity", 0.0, 1.0, step=0.05, **state.kept("cases_min_severity", 0.0))
    kind = st.selectbox("Kind", KINDS, format_func=readable_kind, placeholder="Any kind",
                        **state.kept("cases_kind", None))
    symbol = st.text_input("Symbol", **state.kept("cases_symbol", "")).strip().upper() or None
    since = st.date_input("Events since", **state.kept("cases_since", None))

try:
    since_utc = dt.datetime.combine(since, dt.time(), dt.timezone.utc) if since else None
    cases = log.list_cases(status=statuses or None, min_severity=min_severity or None, kind=kind,
                           symbol=symbol, start=since_utc)
except ValueError as exc:
    st.error("Check the filters:", icon=":material/filter_alt:")
    st.text(str(exc))
    st.stop()
st.text(f"{len(cases)} case{'' if len(cases) == 1 else 's'}. Acting as {who}: every change is recorded "
        "in the audit trail.")
notice = st.session_state.pop(_NOTICE, None)
if notice:
    st.success(notice, icon=":material/check_circle:")
if cases.empty and len(log.list_cases()):   # cases exist, so the filters hide them
    st.info("No case matches the filters in the sidebar; widen them (the Status filter leaves out dismissed "
            "and confirmed cases by default).")
elif cases.empty:
    st.info("No cases match. Open a case from the Explorer: select an event and save it to the case log.")
else:
    shown = cases[["event_id", "symbol", "kind", "severity", "start", "status", "assignee", "tags", "note",
                   "version", "updated_at"]]
    shown = shown.assign(kind=shown["kind"].map(readable_kind))
    # A new key after every change: a saved case can leave the filtered list, and a selection
    # kept by row position would then point at another case.
    version = st.session_state.get(_TABLE_VERSION, 0)
    table_key = f"cases_table_{version}" if version else "cases_table"
    picked = st.dataframe(shown, key=table_key, on_select="rerun", selection_mode="multi-row",
                          hide_index=True, width="stretch", column_config={
                              "event_id": st.column_config.TextColumn("Event id"),
                              "symbol": st.column_config.TextColumn("Symbol"),
                              "kind": st.column_config.TextColumn("Kind"),
                              "severity": st.column_config.ProgressColumn(
                                  "Severity", min_value=0.0, max_value=1.0, format="%.2f",
                                  help="The detection's severity, before news context."),
                              "start": st.column_config.DatetimeColumn("Start (UTC)", format="YYYY-MM-DD HH:mm"),
                              "status": st.column_config.TextColumn("Status"),
                              "assignee": st.column_config.TextColumn("Assignee"),
                              "tags": st.column_config.TextColumn("Tags"),
                              "note": st.column_config.TextColumn("Note"),
                              "version": st.column_config.NumberColumn("Version"),
                              "updated_at": st.column_config.DatetimeColumn("Updated (UTC)",
                                                                            format="YYYY-MM-DD HH:mm:ss")})
    # The grid's own CSV download is off (client.disableDataExport): it does not neutralise formulas.
    st.download_button("Download the listed cases (CSV)", to_safe_csv(cases), file_name="cases.csv",
                       mime="text/csv", on_click="ignore", icon=":material/download:")
    rows = [r for r in picked.selection.rows if 0 <= r < len(cases)]
    chosen = cases.iloc[rows]
    if len(chosen) > 1:   # one case has its own form below
        with st.form("bulk"):
            cols = st.columns([2, 1])
            # No default: a status preset to "new" would reopen every selected case on one click.
            new_status = cols[0].selectbox(f"Set status of {len(chosen)} selected cases", STATUSES, index=None,
                                           placeholder="Choose a status")
            applied = cols[1].form_submit_button("Apply", width="stretch")
            if applied and new_status is None:
                st.warning("Choose a status to set first.")
            elif applied:
                counts = log.bulk_update(list(chosen["event_id"]), who=who, status=new_status)
                done(f"Set {len(chosen)} case(s) to {new_status}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if len(chosen) == 1:
        case = chosen.iloc[0]
        st.subheader("Selected case")
        st.text(case["event_id"])
        with st.form(f"edit_case_{case['event_id']}"):   # keyed by the case: no values carried over
            cols = st.columns(3)
            status = cols[0].selectbox("Status", STATUSES, index=STATUSES.index(case["status"]))
            assignee = cols[1].text_input("Assignee", value=case["assignee"] or "")
            tags = cols[2].text_input("Tags (comma separated)", value=case["tags"] or "")
            note = st.text_area("Note", value=case["note"] or "")
            if st.form_submit_button("Save"):
                try:
                    log.update(case["event_id"], who=who, expected_version=int(case["version"]), status=status,
                               assignee=assignee, tags=tags, note=note)
                    done(f"Case {case['event_id'][:8]} saved as {status}.")
                except (ConflictError, ValueError) as exc:
                    st.error("Not saved:", icon=":material/error:")
                    st.text(str(exc))
        st.caption("Audit trail (append-only, hash-chained)")
        trail = log.audit_trail(case["event_id"])
        trail[["old_value", "new_value"]] = trail[["old_value", "new_value"]].fillna("")   # none before creation
        st.dataframe(trail.drop(columns=["prev_hash", "hash"]), hide_index=True, width="stretch",
                     column_config={"id": st.column_config.NumberColumn("Row"),
                                    "event_id": st.column_config.TextColumn("Event id"),
                                    "at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss"),
                                    "who": st.column_config.TextColumn("Who"),
                                    "field": st.column_config.TextColumn("Field"),
                                    "old_value": st.column_config.TextColumn("Before"),
                                    "new_value": st.column_config.TextColumn("After")})

st.subheader("Compliance summary")
period = st.radio("Period", {"D": "Day", "W": "Week", "M": "Month"}, horizontal=True, index=1,
                  format_func={"D": "Day", "W": "Week", "M": "Month"}.get)
summary = log.compliance_summary(period=period)
st.dataframe(summary.assign(kind=summary["kind"].map(readable_kind)), hide_index=True, width="stretch",
             column_config={"period": st.column_config.DateColumn("Period from"),
                            "kind": st.column_config.TextColumn("Kind"),
                            "detections": st.column_config.NumberColumn("Detections"),
                            "high_risk": st.column_config.NumberColumn(
                                "High risk", help=f"Severity above {HIGH_RISK_SEVERITY}."),
                            **{s: st.column_config.NumberColumn(s.capitalize()) for s in STATUSES}})
st.download_button("Download compliance summary CSV", to_safe_csv(summary), file_name="compliance-summary.csv",
                   mime="text/csv", on_click="ignore", disabled=summary.empty)
