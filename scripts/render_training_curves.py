"""Loss and validation curves of training runs as one plotly figure (HTML, and a PNG rendered in headless Chromium).

    python scripts/render_training_curves.py runs/campaign/op-q3 --png docs/figures/training-op-q3.png

Panels: the warm start's identity loss (if any); G and D losses (50-step moving means, on a log axis when they span
more than two decades) with the learning rate;
cycle and identity L1 terms; validation AUC (all and domain A); validation restoration metrics (SSIM to the input,
mean change, PSNR gain on the blurred + noisy copy) against the epoch. The figure shows numbers only, no X-ray,
so it may be committed. The PNG needs /usr/bin/chromium (scripts/setup_system.sh) and Playwright (requirements).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _smooth(y: np.ndarray, k: int = 50) -> np.ndarray:
    if len(y) < k:
        return y
    c = np.cumsum(np.insert(y.astype(float), 0, 0.0))
    return np.concatenate([c[1:k] / np.arange(1, k), (c[k:] - c[:-k]) / k])


def figure(run: Path):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    log = pd.read_csv(run / "train_log.csv")
    spe = max(1, int(json.loads((run / "state" / "config.json").read_text()).get("steps_per_epoch", 1))) if (run / "state" / "config.json").is_file() else 1
    ep = log["step"] / spe
    vals = [json.loads(line) for line in (run / "val_log.jsonl").read_text().splitlines() if line.strip()] if (run / "val_log.jsonl").is_file() else []
    fig = make_subplots(rows=3, cols=2, subplot_titles=("G and D losses (50-step mean)", "cycle and identity L1 (50-step mean)",
                                                        "validation AUC", "validation: SSIM to input (3 passes)",
                                                        "validation: mean change (grey levels)", "validation: PSNR gain on blur + noise (dB)"),
                        specs=[[{"secondary_y": True}, {}], [{}, {}], [{}, {}]])
    losses = [_smooth(log[term].to_numpy()) for term in ("G_loss", "D_loss")]
    for term, y in zip(("G_loss", "D_loss"), losses):
        fig.add_trace(go.Scatter(x=ep, y=y, name=term), row=1, col=1)
    both = np.concatenate(losses) if losses else np.empty(0)
    both = both[np.isfinite(both)]
    if both.size and both.min() > 0 and both.max() / both.min() > 100:
        # a loss spanning decades (op-q5's D loss: millions at the start, ~100 late) flattens everything else
        fig.update_yaxes(type="log", title_text="loss (log scale)", row=1, col=1, secondary_y=False)
    fig.add_trace(go.Scatter(x=ep, y=log["lr"], name="lr", line={"dash": "dot"}), row=1, col=1, secondary_y=True)
    for term in ("A2B2A_cycle_loss", "B2A2B_cycle_loss", "A2A_id_loss", "B2B_id_loss"):
        fig.add_trace(go.Scatter(x=ep, y=_smooth(log[term].to_numpy()), name=term), row=1, col=2)
    if vals:
        vx = [v.get("epoch", v["step"] / spe) for v in vals]
        for key, name in (("all", "AUC all"), ("domain_A", "AUC domain A")):
            fig.add_trace(go.Scatter(x=vx, y=[(v.get(key) or {}).get("auc") for v in vals], name=name, mode="lines+markers"), row=2, col=1)
        rest = [v.get("restoration") or {} for v in vals]
        for (r, c), key in (((2, 2), "ssim_to_input"), ((3, 1), "mean_abs_change"), ((3, 2), "psnr_gain")):
            fig.add_trace(go.Scatter(x=vx, y=[x.get(key) for x in rest], name=key, mode="lines+markers"), row=r, col=c)
    model = json.loads((run / "state" / "config.json").read_text()).get("model", run.name) if (run / "state" / "config.json").is_file() else run.name
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=f"{model}: training curves ({run})", height=950, width=1300, template="plotly_white")
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a training run folder (train_log.csv, val_log.jsonl, state/)")
    ap.add_argument("--html", type=Path, help="HTML output (default runs/figures/training-<run name>.html)")
    ap.add_argument("--png", type=Path, help="also render a PNG here (headless Chromium)")
    args = ap.parse_args(argv)
    if not (args.run / "train_log.csv").is_file():
        print(f"error: {args.run}: no train_log.csv", file=sys.stderr)
        return 2
    fig = figure(args.run)
    html = args.html or Path("runs/figures") / f"training-{args.run.name}.html"
    html.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(html, include_plotlyjs=True)
    print(f"wrote {html}")
    if args.png:
        from playwright.sync_api import sync_playwright

        from tests.e2e.harness import has_chromium, launch

        if not has_chromium():
            print("error: the PNG needs /usr/bin/chromium (scripts/setup_system.sh)", file=sys.stderr)
            return 2
        args.png.parent.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1320, "height": 980})
            page.goto(html.resolve().as_uri())
            page.wait_for_selector(".plotly .main-svg", timeout=30_000)
            page.locator(".plotly-graph-div").first.screenshot(path=str(args.png))
            browser.close()
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
