"""Plotly figures for the researcher dashboard, built from :mod:`study.analysis.tables` (no Streamlit here)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from study.analysis.tables import OVERALL, counted_reads


def selections_per_reader(selection: pd.DataFrame) -> go.Figure:
    """Stacked bars: how many times each reader chose each method."""
    per = selection[selection["reader"] != OVERALL]
    fig = px.bar(per, x="reader", y="chosen", color="method", barmode="stack",
                 category_orders={"method": list(dict.fromkeys(selection["method"]))},
                 labels={"chosen": "selections", "reader": "reader"}, title="Selections per reader")
    fig.update_layout(legend_title_text="method", margin=dict(t=50, b=10))
    return fig


def ratio_with_intervals(selection: pd.DataFrame) -> go.Figure:
    """Overall selection ratio per method with its 95% interval as error bars (readers pooled: the two-way reader x
    case bootstrap of :func:`study.analysis.tables.selection_ratios`, whose ``ci_method`` names it)."""
    overall = selection[selection["reader"] == OVERALL].copy()
    overall["plus"] = (overall["ci_high"] - overall["ratio"]).clip(lower=0)
    overall["minus"] = (overall["ratio"] - overall["ci_low"]).clip(lower=0)
    n = int(overall["n"].iloc[0]) if len(overall) else 0
    fig = px.bar(overall, x="method", y="ratio", error_y="plus", error_y_minus="minus",
                 labels={"ratio": "selection ratio", "method": "method"},
                 title=f"Selection ratio per method, all readers (n = {n}, 95% CI: 2-way bootstrap, readers x cases)")
    if len(overall):
        fig.add_hline(y=1 / len(overall), line_dash="dot", annotation_text="chance")
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(margin=dict(t=50, b=10))
    return fig


def reading_time_distribution(tidy: pd.DataFrame) -> go.Figure:
    """Box plot of reading times (seconds) of counted reads, per reader."""
    reads = counted_reads(tidy)
    fig = px.box(reads, x="reader", y="reading_time_s", points="all",
                 labels={"reading_time_s": "reading time (s)", "reader": "reader"}, title="Reading time per query")
    fig.update_layout(margin=dict(t=50, b=10))
    return fig
