"""The two measurements behind the CPU training recipe (issue 13; docs/TRAINING.md, "CPU fast path"):

1. ``precision``: bf16 autocast against float32 on the same steps (same seed, same batches, op-q3): loss curves side
   by side, and the step time of each.
3. ``warm``: a short identity warm start (``warm_start_steps`` of L1(G(x), x) on both generators) followed by GAN
   steps, against GAN steps only from the reference's initialisation, at equal compute (the warm-start steps are
   charged at their measured cost in GAN steps), then the same validation figures.
2. ``patch``: patch training (128-px crops of the 286-px load, batch 4) against whole-image training (256-px crops,
   batch 1) at equal compute (the same pixels, hence the same FLOPs, per step) and the same number of steps, then
   the validation figures of both (AUC, and the restoration metrics of r2c_core.training.restval at 256 px).

    python scripts/train_experiments.py precision --steps 300 --crop 64 --out runs/experiments
    python scripts/train_experiments.py patch --steps 250 --out runs/experiments
    python scripts/train_experiments.py warm --steps 250 --warm-steps 150 --out runs/experiments

Writes ``<out>/<experiment>.json`` (every step's loss terms and the summary), ``<out>/<experiment>.md`` (the table
for docs/TRAINING.md) and ``<out>/<experiment>.html`` (plotly loss curves). Real X-rays (R2C_DATA) are needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from r2c_core.training.config import config_from_dict  # noqa: E402
from r2c_core.training.loader import UnpairedBatches  # noqa: E402
from r2c_core.training.trainer import TrainData, Trainer  # noqa: E402

TERMS = ("G_loss", "D_loss", "A2B2A_cycle_loss", "B2A2B_cycle_loss", "A2A_id_loss", "A2B_g_loss", "A2B_c_loss")


def _train(cfg: dict, data: TrainData, steps: int, desc: str, warm: int = 0) -> tuple[Trainer, list[dict], float]:
    c = config_from_dict({**cfg, "warm_start_steps": warm})
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(c, tmp, data, progress=False)
        if warm:
            t0 = time.perf_counter()
            tr.warm_start()
            tr.warm_seconds = time.perf_counter() - t0
        rows, t0 = [], time.perf_counter()
        for _ in tqdm(range(steps), desc=desc, unit="step"):
            rows.append(tr.train_step(data.batches.batch(tr.step)))
            tr.step += 1
        return tr, rows, (time.perf_counter() - t0) / max(1, steps)


def _blocks(rows: list[dict], width: int) -> list[dict]:
    out = []
    for s in range(0, len(rows), width):
        blk = rows[s : s + width]
        out.append({"steps": f"{s}-{s + len(blk) - 1}", **{k: float(np.mean([r[k] for r in blk])) for k in TERMS}})
    return out


def _figure(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    terms = ("G_loss", "D_loss", "A2B2A_cycle_loss", "A2B_c_loss")
    fig = make_subplots(rows=2, cols=2, subplot_titles=terms)
    for i, term in enumerate(terms):
        for name, rows in curves.items():
            y = np.convolve([r[term] for r in rows], np.ones(10) / 10, mode="valid")
            fig.add_trace(go.Scatter(y=y, name=name, legendgroup=name, showlegend=i == 0), row=i // 2 + 1, col=i % 2 + 1)
    fig.update_layout(title=title + " (10-step moving mean)", height=700)
    fig.write_html(path, include_plotlyjs="cdn")


def base_cfg(args: argparse.Namespace) -> dict:
    return {"model": args.model, "size": 256, "batch_size": 4, "epochs": 60, "epoch_decay": 30, "lr": 2e-4, "device": "cpu",
            "threads": args.threads, "export_every": 0, "seed": 0, "cpu_amp": False, "fused_adam": True}


def precision(args: argparse.Namespace, data: TrainData) -> dict:
    data.batches = UnpairedBatches(data.batches.a, data.batches.b, size=args.crop, batch_size=4, seed=0)
    curves, secs = {}, {}
    for name, amp in (("float32", False), ("bf16", True)):
        tr, rows, s = _train({**base_cfg(args), "crop": args.crop, "cpu_amp": amp}, data, args.steps, name)
        if amp and not tr.amp:
            raise SystemExit("this CPU has no native bf16: nothing to compare")
        curves[name], secs[name] = rows, s
    width = max(1, args.steps // 6)
    table = {n: _blocks(r, width) for n, r in curves.items()}
    lines = [f"op-q3, {args.crop}-px crops of the 286-px load, batch 4, lr 2e-4, seed 0, {args.steps} steps from the same initialisation "
             f"on the same batches; means over {width}-step blocks (float32 / bf16). Seconds per step: float32 {secs['float32']:.2f}, "
             f"bf16 {secs['bf16']:.2f} ({secs['float32'] / secs['bf16']:.2f}x).", "",
             "| steps | " + " | ".join(TERMS) + " |", "|---|" + "---|" * len(TERMS)]
    for a, b in zip(table["float32"], table["bf16"]):
        lines.append(f"| {a['steps']} | " + " | ".join(f"{a[k]:.3f} / {b[k]:.3f}" for k in TERMS) + " |")
    _figure(curves, args.out / "precision.html", "bf16 autocast vs float32 (op-q3, CPU)")
    return {"curves": curves, "seconds_per_step": secs, "blocks": table, "markdown": "\n".join(lines)}


def _validate(tr: Trainer, cfg: dict, val_images: int) -> dict:
    tr.cfg = config_from_dict({**cfg, "val_restoration": val_images, "val_passes": 3})
    with tempfile.TemporaryDirectory() as tmp:
        tr.out = Path(tmp)
        return tr.validate()


def _val_row(name: str, r: dict) -> str:
    return (f"| {name} | {r['seconds_per_step']:.2f} | {r['val_auc']:.3f} | {r['val_auc_domain_A']:.3f} | {r['ssim_to_input']:.3f} | "
            f"{r['mean_abs_change']:.2f} | {r['psnr_degraded']:.2f} -> {r['psnr_restored']:.2f} ({r['psnr_gain']:+.2f}) |")


VAL_HEADER = ["| training | s/step | val AUC | val AUC (A) | SSIM to input | change (grey levels) | blur+noise PSNR in -> out (dB) |",
              "|---|---|---|---|---|---|---|"]


def warm(args: argparse.Namespace, data: TrainData) -> dict:
    data.batches = UnpairedBatches(data.batches.a, data.batches.b, size=128, batch_size=4, seed=0)
    cfg = {**base_cfg(args), "crop": 128, "cpu_amp": True, "warm_start_class": 0.0}
    # the cost of one warm-start step in GAN steps, measured on this machine first (a few of each)
    _, _, gan_s = _train(cfg, data, 3, "time GAN steps")
    tr, _, _ = _train(cfg, data, 0, "time warm steps", warm=3)
    warm_in_gan = args.warm_steps * (tr.warm_seconds / 3) / gan_s
    gan_after = max(1, round(args.steps - warm_in_gan))
    curves, summary = {}, {}
    for name, w, n in ((f"warm start {args.warm_steps} + GAN {gan_after}", args.warm_steps, gan_after), (f"reference init, GAN {args.steps}", 0, args.steps)):
        tr, rows, s = _train(cfg, data, n, name, warm=w)
        val = _validate(tr, cfg, args.val_images)
        curves[name] = rows
        summary[name] = {"seconds_per_step": s, "warm_steps": w, "gan_steps": n, "warm_seconds": getattr(tr, "warm_seconds", 0.0),
                         "val_auc": val["all"]["auc"], "val_auc_domain_A": val["domain_A"]["auc"], **val.get("restoration", {})}
    lines = [f"op-q3, 128-px crops, batch 4, bf16, lr 2e-4, seed 0. Equal compute: one warm-start step cost {warm_in_gan / args.warm_steps:.2f} "
             f"GAN steps here, so {args.warm_steps} warm-start steps + {gan_after} GAN steps against {args.steps} GAN steps. "
             f"Validation as in the patch experiment ({args.val_images} images for the restoration metrics).", "", *VAL_HEADER]
    lines += [_val_row(n, r) for n, r in summary.items()]
    _figure(curves, args.out / "warm.html", "identity warm start vs reference initialisation (op-q3, CPU, bf16)")
    return {"curves": curves, "summary": summary, "markdown": "\n".join(lines)}


def patch(args: argparse.Namespace, data: TrainData) -> dict:

    curves, summary = {}, {}
    a, b = data.batches.a, data.batches.b
    for name, crop, batch in (("patch 128 px x 4", 128, 4), ("whole 256 px x 1", 256, 1)):
        data.batches = UnpairedBatches(a, b, size=crop, batch_size=batch, seed=0)
        cfg = {**base_cfg(args), "crop": crop, "batch_size": batch, "cpu_amp": True, "lr": 2e-4}
        tr, rows, s = _train(cfg, data, args.steps, name)
        val = _validate(tr, cfg, args.val_images)
        curves[name] = rows
        summary[name] = {"seconds_per_step": s, "pixels_per_step": crop * crop * batch, "val_auc": val["all"]["auc"],
                         "val_auc_domain_A": val["domain_A"]["auc"], **val.get("restoration", {})}
    lines = [f"op-q3 from the same initialisation, {args.steps} steps each, bf16, lr 2e-4; the same pixels per step. Validation at 256 px: "
             f"AUC on {len(data.val.ids) if data.val else 0} validation images, restoration metrics (3 passes) on {args.val_images} "
             "high-quality validation images (restval: blur sigma 1.5 px + noise sigma 8 for the PSNR).", "", *VAL_HEADER]
    lines += [_val_row(n, r) for n, r in summary.items()]
    _figure(curves, args.out / "patch.html", "patch vs whole-image training at equal compute (op-q3, CPU, bf16)")
    return {"curves": curves, "summary": summary, "markdown": "\n".join(lines)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", choices=("precision", "patch", "warm"))
    ap.add_argument("--warm-steps", type=int, default=150, help="warm: identity warm-start steps")
    ap.add_argument("--model", default="op-q3")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--crop", type=int, default=64, help="precision: crop size")
    ap.add_argument("--val-images", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit-per-domain", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/experiments"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    data = TrainData.from_config(config_from_dict({"model": args.model, "size": 256, "crop": 128, "batch_size": 4,
                                                   "limit_per_domain": args.limit_per_domain}))
    res = {"precision": precision, "patch": patch, "warm": warm}[args.experiment](args, data)
    res.update({"date": time.strftime("%Y-%m-%d"), "command": "python scripts/train_experiments.py " + " ".join(argv or sys.argv[1:]),
                "torch": torch.__version__, "threads": args.threads})
    (args.out / f"{args.experiment}.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    (args.out / f"{args.experiment}.md").write_text(res["markdown"] + "\n")
    print(res["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
