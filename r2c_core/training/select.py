"""Choose a run's checkpoint on validation only, and ship it into ``weights/`` (docs/TRAINING.md, "Choosing").

A run trained with ``keep_exports`` and ``val_restoration`` has one exported generator per validation in
``<run>/exports/step-NNNNNNN/`` and one line per validation in ``<run>/val_log.jsonl``. The rule, in order:

1. **restoration guards** (validation, 3 passes, high-quality validation images): SSIM to the input at least
   ``min_ssim`` (keeps the anatomy), mean change at least ``min_change`` grey levels (really restores), and PSNR
   gain on the blurred + noisy copy at least ``min_psnr_gain`` dB (does not damage a degraded image);
2. among the exports that pass, the highest validation AUC (all validation images); ties: the later step;
3. if none passes, the export with the fewest guard failures, then the highest PSNR gain (the record says so).

The test split is never read here. :func:`ship` copies the chosen export into a weights folder with ``version``
and a ``selection`` record (rule, candidates, the chosen validation figures) in its ``config.json``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..checkpoints import read_config
from ..errors import R2CError


@dataclass(frozen=True)
class Rule:
    min_ssim: float = 0.75
    min_change: float = 2.0
    min_psnr_gain: float = 0.0


def _failures(v: dict[str, Any], rule: Rule) -> int:
    r = v.get("restoration") or {}
    if not r:
        return 3
    return int(r["ssim_to_input"] < rule.min_ssim) + int(r["mean_abs_change"] < rule.min_change) + int(r["psnr_gain"] < rule.min_psnr_gain)


def candidates(run: str | Path) -> list[dict[str, Any]]:
    """Validation records that have a kept export, in step order."""
    run = Path(run)
    log = run / "val_log.jsonl"
    if not log.is_file():
        raise R2CError(f"{run}: no val_log.jsonl (train with export_every > 0)")
    out = {}
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        v = json.loads(line)
        d = run / "exports" / f"step-{int(v['step']):07d}"
        if (d / "config.json").is_file():
            out[int(v["step"])] = {**v, "export": str(d)}
    if not out:
        raise R2CError(f"{run}: no kept exports (train with keep_exports = true; HQG-Net keeps one per export_every epochs)")
    return [out[k] for k in sorted(out)]


def choose(run: str | Path, rule: Rule = Rule()) -> dict[str, Any]:
    """The chosen validation record (with ``export``, ``guard_failures`` and ``passed_guards``)."""
    cands = candidates(run)
    for c in cands:
        c["guard_failures"] = _failures(c, rule)
    passed = [c for c in cands if c["guard_failures"] == 0]
    if passed:
        best = max(passed, key=lambda c: ((c.get("all") or {}).get("auc") or 0.0, c["step"]))
    else:
        best = min(cands, key=lambda c: (c["guard_failures"], -((c.get("restoration") or {}).get("psnr_gain", -1e9)), -c["step"]))
    return {**best, "passed_guards": bool(passed), "n_candidates": len(cands), "n_passed": len(passed)}


def ship(run: str | Path, dest: str | Path, version: str, rule: Rule = Rule(), step: int | None = None) -> dict[str, Any]:
    """Copy the chosen export (or the one of ``step``) to ``dest`` with ``version`` and the selection record."""
    chosen = choose(run, rule) if step is None else next((c for c in candidates(run) if c["step"] == step), None)
    if chosen is None:
        raise R2CError(f"{run}: no kept export at step {step}")
    src, dest = Path(chosen["export"]), Path(dest)
    cfg = read_config(src)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / "model.safetensors.tmp"
    shutil.copyfile(src / "model.safetensors", tmp)
    tmp.replace(dest / "model.safetensors")
    cfg["version"] = version
    cfg["validation"] = {k: v for k, v in chosen.items() if k not in ("export",)}
    cfg["selection"] = {"rule": asdict(rule) if step is None else f"step {step} chosen by hand", "run": str(run),
                        "step": chosen["step"], "epoch": chosen.get("epoch"), "split": "validation only (never test)",
                        "doc": "r2c_core/training/select.py"}
    (dest / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str) + "\n")
    return cfg["selection"] | {"validation": cfg["validation"]}
