"""The researcher dashboard (researchers and admins): Table III / IV style selection ratios per reader and
overall with Wilson 95% intervals, plotly charts, tests, breakdowns, the full analysis
(:func:`study.analysis.report.full_report`), filters by study, label and source, and a CSV download."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from study import overview as study_overview
from study import stats
from study.export import tidy_votes

from .. import charts, components, services
from ..auth import require_role

LABEL_TEXT = {"covid": "COVID-19", "control": "Control"}


#: Readers (then ``overall``) x methods: "ratio % [low, high]" and ``n`` (the same table ``python -m study stats`` prints)
ratio_table = stats.selection_wide


def count_table(selection: pd.DataFrame) -> pd.DataFrame:
    """Readers (then ``overall``) x methods: number of times chosen."""
    order = list(dict.fromkeys(selection["reader"]))
    methods = list(dict.fromkeys(selection["method"]))
    wide = selection.pivot(index="reader", columns="method", values="chosen").reindex(index=order, columns=methods)
    wide.columns.name = None
    return wide.astype("int64")


def _filters(tidy: pd.DataFrame) -> pd.DataFrame:
    a, b = st.columns(2)
    labels = sorted(tidy["label"].dropna().unique())
    sources = sorted(tidy["source"].dropna().unique())
    pick_l = a.multiselect("Label", labels, default=labels, key="dash_labels",
                           format_func=lambda v: LABEL_TEXT.get(v, v))
    pick_s = b.multiselect("Source", sources, default=sources, key="dash_sources")
    return tidy[tidy["label"].isin(pick_l) & tidy["source"].isin(pick_s)]


@st.cache_data(show_spinner="Running the full analysis…", max_entries=8)
def _full_report_text(tidy: pd.DataFrame, original: str) -> str:
    from study.analysis.report import format_report, full_report

    return format_report(full_report(tidy, original=original, n_boot=1000))


def _selection_tab(tidy: pd.DataFrame, summary: dict, methods: list[str]) -> None:
    sel = summary["selection"]
    st.subheader("Selection ratio, % [Wilson 95% CI]")
    st.dataframe(ratio_table(sel), key="dash_ratio_table", width="stretch")
    st.subheader("Selections (counts)")
    st.table(count_table(sel))
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.selections_per_reader(sel), key="dash_chart_stack", width="stretch")
    c2.plotly_chart(charts.ratio_with_intervals(sel), key="dash_chart_ratio", width="stretch")
    st.plotly_chart(charts.reading_time_distribution(tidy), key="dash_chart_time", width="stretch")


def _tests_tab(summary: dict) -> None:
    st.subheader("Chi-square test against uniform choice")
    st.dataframe(summary["uniformity"], hide_index=True, width="stretch")
    st.subheader("Each restored method against the original (exact binomial test)")
    st.dataframe(summary["pairwise"], hide_index=True, width="stretch")
    agr = summary["agreement"]
    kappa = agr.get("kappa")
    st.metric("Fleiss' kappa", "-" if kappa is None or (isinstance(kappa, float) and math.isnan(kappa)) else f"{kappa:.3f}",
              help=agr.get("note") or f"{agr.get('n_cases')} cases read by {agr.get('n_raters')} readers")
    st.subheader("Repeat reads: same choice again")
    st.dataframe(summary["repeats"], hide_index=True, width="stretch")
    st.subheader("Reading time (s)")
    st.dataframe(summary["reading_time"], hide_index=True, width="stretch")


def _breakdown_tab(summary: dict) -> None:
    for key, title in (("by_label", "By label"), ("by_source", "By data source")):
        st.subheader(title)
        st.dataframe(summary[key], hide_index=True, width="stretch")


def render() -> None:
    require_role("researcher", "admin")
    st.title("Researcher dashboard")
    components.research_notice()
    factory = services.factory()
    with factory.begin() as session:
        overview = study_overview.studies(session)
    if overview.empty:
        st.info("No studies yet. An administrator can build one on the Studies page.")
        return
    names = dict(zip(overview["id"], overview["name"]))
    study_id = st.selectbox("Study", list(names), format_func=names.get, key="dash_study")
    with factory.begin() as session:
        tidy = tidy_votes(session, int(study_id))
        methods = study_overview.study_methods(session, int(study_id))
    row = overview[overview["id"] == study_id].iloc[0]
    st.caption(f"{row['kind']} study, {row['allocation']} allocation, status **{row['status']}**; "
               f"{row['cases']} cases, {row['readers']} readers")
    if tidy.empty:
        st.info("No counted query has been shown yet in this study.")
        return
    view = _filters(tidy)
    answered = int(view["chosen_method"].notna().sum())
    m = st.columns(4)
    m[0].metric("Queries shown", len(view))
    m[1].metric("Answered", answered)
    m[2].metric("Readers", int(view["reader"].nunique()))
    m[3].metric("Cases", int(view["case_id"].nunique()))
    st.download_button("Download the votes (CSV)", view.to_csv(index=False).encode("utf-8"),
                       file_name=f"study-{int(study_id)}-votes.csv", mime="text/csv", key="dash_csv")
    if answered == 0:
        st.info("No answered queries match the filters yet.")
        return
    summary = stats.summary(view, methods=methods)
    tabs = st.tabs(["Selection", "Tests", "Breakdown", "Full analysis"])
    with tabs[0]:
        _selection_tab(view, summary, methods)
    with tabs[1]:
        _tests_tab(summary)
    with tabs[2]:
        _breakdown_tab(summary)
    with tabs[3]:
        st.caption("Bootstrap intervals, GEE / mixed models, position bias, ranking and agreement "
                   "(study.analysis; 1000 bootstrap draws).")
        if st.button("Run the full analysis", key="dash_full"):
            st.session_state["dash_full_for"] = int(study_id)
        if st.session_state.get("dash_full_for") == int(study_id):
            original = "original" if "original" in methods else methods[0]
            st.code(_full_report_text(view, original), language=None)
