"""The restoration benchmark's outputs: JSON summary, per-row CSVs, markdown tables and a plotly figure."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .bench import nan_to_none
from .degrade import DEGRADATIONS


def _f(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _signed(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{0.0 if abs(x) < 0.5 * 10 ** -digits else x:+.{digits}f}"  # no "-0.000"


def markdown(result: dict[str, Any]) -> str:
    """Two tables: gains on the degradation suite, and no-reference/preservation measures on real images."""
    s = result["summary"]
    lines: list[str] = []
    per = s.get("full_reference_per_degradation", {})
    overall = s.get("full_reference_overall", {})
    if per:
        degs = [d for d in DEGRADATIONS if any(d in v for v in per.values())]
        lines += ["PSNR gain over the degraded input (dB), mean over images and severities; last columns: all degradations.", "",
                  "| method | " + " | ".join(degs) + " | PSNR gain | SSIM gain | MS-SSIM gain | GMSD gain | PSNR | SSIM |",
                  "|---|" + "---:|" * (len(degs) + 6)]
        for m, by_deg in per.items():
            o = overall[m]
            lines.append(f"| {m} | " + " | ".join(_signed(by_deg.get(d, {}).get("psnr_gain")) for d in degs)
                         + f" | **{_signed(o['psnr_gain'])}** | {_signed(o['ssim_gain'], 3)} | {_signed(o['ms_ssim_gain'], 3)}"
                         f" | {_signed(o['gmsd_gain'], 3)} | {_f(o['psnr'])} | {_f(o['ssim'], 3)} |")
        lines.append("")
    nr = s.get("no_reference", {})
    if nr:
        lines += ["Real images of each quality domain (A low, B high): no-reference measures (PIQE, BRISQUE, blur, noise: lower "
                  "is better; CNR, EME inside the lungs: higher is more contrast), and what the method keeps (SSIM and lung-mask "
                  "Dice to the original, mean |change| of the COVID probability and share of decisions flipped at 0.5).", "",
                  "| method | domain | PIQE | BRISQUE | entropy | blur | noise | lung CNR | lung EME | SSIM kept | Dice kept | Δp | flips |",
                  "|---|---|" + "---:|" * 11]
        for m, by_dom in nr.items():
            for dom in sorted(by_dom):
                v = by_dom[dom]
                lines.append(f"| {m} | {dom} | {_f(v['piqe'], 1)} | {_f(v['brisque'], 1)} | {_f(v['entropy'])} | {_f(v['blur'], 3)} | "
                             f"{_f(v['noise'], 2)} | {_f(v['cnr'])} | {_f(v['eme'])} | {_f(v['keep_ssim'], 3)} | {_f(v['keep_dice'], 3)} | "
                             f"{_f(v['p_change'], 3)} | {_f(100 * v['flip'] if v['flip'] is not None and math.isfinite(v['flip']) else None, 0)} % |")
        lines.append("")
    c = result["config"]
    lines.append(f"{c['n_degraded_images']} degraded images (domain B, split {c['split']}) x {len(c['degradations'])} degradations x "
                 f"{len(c['severities'])} severities; {c['n_real_images']} real images; seed {c['seed']}; {c['seconds']} s.")
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any]):
    """Plotly: PSNR and SSIM gain per degradation and severity, one bar per method."""
    import plotly.express as px

    fr = result["full_reference"]
    if fr.empty:
        return None
    g = fr.groupby(["method", "degradation", "severity"], sort=False)[["psnr_gain", "ssim_gain"]].mean().reset_index()
    g["degradation, severity"] = g["degradation"] + " " + g["severity"].astype(str)
    long = g.melt(id_vars=["method", "degradation, severity"], value_vars=["psnr_gain", "ssim_gain"], var_name="measure", value_name="gain")
    long["measure"] = long["measure"].map({"psnr_gain": "PSNR gain (dB)", "ssim_gain": "SSIM gain"})
    fig = px.bar(long, x="degradation, severity", y="gain", color="method", barmode="group", facet_row="measure",
                 title="Restoration benchmark: gain over the degraded input (positive = better)", height=760)
    fig.update_yaxes(matches=None)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    return fig


def write(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """``bench.json`` (config + summary), ``full_reference.csv``, ``no_reference.csv``, ``table.md``, ``figure.html``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "table": out / "table.md", "full_reference": out / "full_reference.csv",
             "no_reference": out / "no_reference.csv", "figure": out / "figure.html"}
    paths["json"].write_text(json.dumps(nan_to_none({"config": result["config"], "summary": result["summary"]}), indent=2) + "\n")
    result["full_reference"].to_csv(paths["full_reference"], index=False, float_format="%.6g")
    if isinstance(result.get("no_reference"), pd.DataFrame) and not result["no_reference"].empty:
        result["no_reference"].to_csv(paths["no_reference"], index=False, float_format="%.6g")
    else:
        paths.pop("no_reference")
    paths["table"].write_text(markdown(result))
    fig = figure(result)
    if fig is not None:
        fig.write_html(paths["figure"], include_plotlyjs=True, full_html=True)
    else:
        paths.pop("figure")
    return paths
