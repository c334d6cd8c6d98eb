"""The researcher dashboard (researchers and admins): Table III / IV style selection ratios per reader and
overall with Wilson 95% intervals, plotly charts, tests, breakdowns, the full analysis
(:func:`study.analysis.report.full_report`), filters by study, label and source, and a CSV download."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from study import overview as study_overview
from study.analysis import tables as stats
from study.export import tidy_votes, to_csv_bytes

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


def default_study_index(overview: pd.DataFrame) -> int:
    """The study shown first: the first one with answered queries (so a dashboard opens on data), else the first."""
    answered = [i for i, n in enumerate(overview["answered"]) if int(n) > 0]
    return answered[0] if answered else 0


def _filters(tidy: pd.DataFrame, study_id: int) -> pd.DataFrame:
    """Label and source filters, kept per study (another study has other labels and sources: its filters start
    with all of them selected, not with what was picked for the previous study)."""
    a, b = st.columns(2)
    labels = sorted(tidy["label"].dropna().unique())
    sources = sorted(tidy["source"].dropna().unique())
    pick_l = a.multiselect("Label", labels, default=labels, key=f"dash_labels_{study_id}",
                           format_func=lambda v: LABEL_TEXT.get(v, v))
    pick_s = b.multiselect("Source", sources, default=sources, key=f"dash_sources_{study_id}")
    return tidy[tidy["label"].isin(pick_l) & tidy["source"].isin(pick_s)]


@st.cache_data(show_spinner="Running the full analysis…", max_entries=8)
def _full_report_text(tidy: pd.DataFrame, original: str) -> str:
    from study.analysis.report import format_report, full_report

    return format_report(full_report(tidy, original=original, n_boot=1000))


#: appended to every section title and chart title of a simulated study
SIM_TAG = " (SIMULATED DATA)"


def _tagged(fig, tag: str):
    if tag:
        fig.update_layout(title_text=(fig.layout.title.text or "") + tag)
    return fig


def _selection_tab(tidy: pd.DataFrame, summary: dict, methods: list[str], tag: str = "") -> None:
    sel = summary["selection"]
    st.subheader("Selection ratio, % [95% CI]" + tag)
    st.dataframe(ratio_table(sel), key="dash_ratio_table", width="stretch")
    st.caption("  \n".join(stats.interval_legend(sel)))
    st.subheader("Selections (counts)" + tag)
    st.table(count_table(sel))
    c1, c2 = st.columns(2)
    c1.plotly_chart(_tagged(charts.selections_per_reader(sel), tag), key="dash_chart_stack", width="stretch")
    c2.plotly_chart(_tagged(charts.ratio_with_intervals(sel), tag), key="dash_chart_ratio", width="stretch")
    st.plotly_chart(_tagged(charts.reading_time_distribution(tidy), tag), key="dash_chart_time", width="stretch")
    ties = summary["no_preference"]
    if int(ties["no_preference"].sum()):
        st.subheader('"No preference" answers' + tag)
        st.caption('Left out of the ratios above (their n counts reads that chose an image). Below: how often each '
                   'reader said "no preference", and the ratios again with each such answer split equally among the '
                   'images it showed (sensitivity analysis).')
        st.dataframe(ties, hide_index=True, width="stretch")
        st.dataframe(ratio_table(summary["selection_ties_split"]), key="dash_ratio_split", width="stretch")


def _tests_tab(summary: dict, tag: str = "") -> None:
    st.subheader("Chi-square test against uniform choice" + tag)
    st.dataframe(summary["uniformity"], hide_index=True, width="stretch")
    st.caption("Per reader: Pearson chi-square, Holm-adjusted over readers (p_holm); overall: Wald test with a "
               "reader x case clustered covariance (readers' votes are not independent).")
    st.subheader("Each restored method against the original" + tag)
    st.dataframe(summary["pairwise"], hide_index=True, width="stretch")
    st.caption("Per reader: Wilson interval, exact binomial test against 50%; overall: two-way bootstrap interval, "
               "logistic test with reader x case clustered SE. p_holm: Holm-adjusted over the restored methods.")
    agr = summary["agreement"]
    kappa = agr.get("kappa")
    st.metric("Fleiss' kappa", "-" if kappa is None or (isinstance(kappa, float) and math.isnan(kappa)) else f"{kappa:.3f}",
              help=stats.format_fleiss(agr))
    st.subheader("Repeat reads: same choice again" + tag)
    st.dataframe(summary["repeats"], hide_index=True, width="stretch")
    st.subheader("Reading time (s)" + tag)
    st.dataframe(summary["reading_time"], hide_index=True, width="stretch")


def _breakdown_tab(summary: dict, tag: str = "") -> None:
    for key, title in (("by_label", "By label"), ("by_source", "By data source")):
        st.subheader(title + tag)
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
    simulated = dict(zip(overview["id"], overview["simulated"]))
    study_id = st.selectbox("Study", list(names), index=default_study_index(overview), key="dash_study",
                            format_func=lambda i: f"{names[i]} [SIMULATED]" if simulated[i] and "simulated" not in names[i].lower() else names[i])
    with factory.begin() as session:
        tidy = tidy_votes(session, int(study_id))
        methods = study_overview.study_methods(session, int(study_id))
    row = overview[overview["id"] == study_id].iloc[0]
    if bool(row["simulated"]):
        st.warning("**Simulated data.** Every vote in this study was cast by a simulated reader, not by a doctor: it "
                   "shows what the analysis looks like, not a result. Exports say so too.", icon="⚠️")
    st.caption(f"{row['kind']} study, {row['allocation']} allocation, status **{row['status']}**; "
               f"{row['cases']} cases, {row['readers']} readers")
    if tidy.empty:
        st.info("No counted query has been shown yet in this study.")
        return
    view = _filters(tidy, int(study_id))
    answered = int(stats.answered(view).sum())
    m = st.columns(4)
    m[0].metric("Queries shown", len(view))
    m[1].metric("Answered", answered)
    m[2].metric("Readers", int(view["reader"].nunique()))
    m[3].metric("Cases", int(view["case_id"].nunique()))
    sim = bool(row["simulated"])
    csv_view = view.assign(simulated=True) if sim else view
    st.download_button("Download the votes (CSV)", to_csv_bytes(csv_view),
                       file_name=f"study-{int(study_id)}{'-SIMULATED' if sim else ''}-votes.csv", mime="text/csv", key="dash_csv")
    if answered == 0:
        st.info("No answered queries match the filters yet.")
        return
    summary = stats.summary(view, methods=methods)
    tag = SIM_TAG if sim else ""
    tabs = st.tabs(["Selection", "Tests", "Breakdown", "Full analysis"])
    with tabs[0]:
        _selection_tab(view, summary, methods, tag)
    with tabs[1]:
        _tests_tab(summary, tag)
    with tabs[2]:
        _breakdown_tab(summary, tag)
    with tabs[3]:
        if tag:
            st.subheader("Full analysis" + tag)
        st.caption("Bootstrap intervals, GEE / mixed models, position bias, ranking and agreement "
                   "(study.analysis; 1000 bootstrap draws).")
        if st.button("Run the full analysis", key="dash_full"):
            st.session_state["dash_full_for"] = int(study_id)
        if st.session_state.get("dash_full_for") == int(study_id):
            original = "original" if "original" in methods else methods[0]
            text = _full_report_text(view, original)
            st.code(("SIMULATED DATA: votes of simulated readers, not a result.\n\n" if sim else "") + text, language=None)
