"""Build the Table II and Table V analogues (markdown on stdout) from ``python -m r2c_core evaluate`` JSON files.

Table II: accuracy, sensitivity, specificity, precision, F1, F2 and AUC with 95% bootstrap intervals for every
model, pooled and within every data source, each table with the metadata-only baseline's row (source + image size,
never pixels) beside the models, then the issue-7 bar (pooled F1 >= 0.90, ieee AUC >= 0.80, margin over the
metadata-only baseline within ieee). Table V: parameters, GFLOPs per 256x256 image (``torch.utils.flop_counter``:
convolutions and matrix products, one multiply-add = 2 FLOPs) and milliseconds per image at batch 1 and 64 on
the CPU, and on the GPU when one is present (else ``-``: GPU columns are for a GPU run).

Usage:
    python scripts/report_results.py runs/recipes/*/test_metrics.json          # name = the folder name
    python scripts/report_results.py op-q3=runs/v0/op-q3/test_all_metrics.json resnet50=preds/resnet50.json
    python scripts/report_results.py --table 5 --arch op-q3 --arch resnet50 --batches 1 --repeats 3
Options: --table 2|5|all, --arch NAME (Table V rows; default the evaluated models' architectures, or every one
when no JSON is given), --no-timing, --batches 1,64, --repeats N, --threads N, --size 256, --note NAME=TEXT, --json OUT.
A model's notes come from the checkpoint next to its predictions (``generator/`` or ``classifier/config.json``:
version, trained from scratch, lambda_class = 0) plus any ``--note``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from r2c_core.baselines import BASELINE_NAMES, build_baseline, count_parameters
from r2c_core.models import build_generator, get_spec, list_models

METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "f2", "auc")
HEADERS = ("accuracy", "sensitivity", "specificity", "precision", "F1", "F2", "AUC")
GENERIC_STEMS = {"metrics", "test_metrics", "test_all_metrics", "eval", "evaluate"}
METADATA_LABEL = "metadata-only (source + image size)"
WITHIN_SOURCE = "ieee"
BAR_F1, BAR_AUC = 0.90, 0.80


# ------------------------------------------------------------------------------------------------ inputs
def split_named(item: str) -> tuple[str | None, str]:
    """``name=path`` -> (name, path); ``path`` -> (None, path)."""
    if "=" in item and not Path(item).exists():
        name, path = item.split("=", 1)
        return name.strip(), path.strip()
    return None, item


def default_name(path: Path) -> str:
    return path.parent.name if path.stem in GENERIC_STEMS else path.stem


def load_eval(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: {path}: not a readable evaluate JSON ({exc})") from None
    if not isinstance(data, dict) or "pooled" not in (data.get("model") or {}):
        raise SystemExit(f"error: {path}: not an evaluate JSON (no model.pooled); make it with python -m r2c_core evaluate --out")
    return data


def checkpoint_config(eval_path: Path, result: Mapping[str, Any]) -> dict[str, Any]:
    """The config.json of the generator/classifier beside the predictions or the JSON, if there is one."""
    folders = [eval_path.parent]
    if result.get("preds"):
        folders.insert(0, Path(str(result["preds"])).parent)
    for folder in folders:
        for sub in ("generator", "classifier", "."):
            cfg = folder / sub / "config.json"
            if cfg.is_file():
                try:
                    data = json.loads(cfg.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                if data.get("kind") in ("r2c-generator", "baseline-classifier"):
                    return data
    return {}


def auto_notes(name: str, cfg: Mapping[str, Any]) -> list[str]:
    notes = []
    if cfg.get("version"):
        notes.append(str(cfg["version"]))
    if cfg.get("kind") == "baseline-classifier" or arch_of(name)[0] == "baseline":
        if cfg.get("pretrained", False) is False:
            notes.append("timm, trained from scratch (no pretrained weights)")
    lam = ((cfg.get("training") or {}).get("loss") or {}).get("lambda_class")
    if lam == 0 or "noclass" in name:
        notes.append("ablation: lambda_class = 0 (classifier head untrained)")
    size = (cfg.get("training") or {}).get("size") or cfg.get("working_size")
    if size and int(size) != 256:
        notes.append(f"{size} px")
    return notes


# ---------------------------------------------------------------------------------------------- table II
def fmt(table: Mapping[str, Any] | None, metric: str) -> str:
    if not table:
        return "-"
    v = table.get(metric)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    ci = (table.get("ci95") or {}).get(metric)
    if ci and ci[0] is not None and ci[1] is not None:
        return f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{v:.3f}"


def scope_table(result: Mapping[str, Any] | None, scope: str) -> Mapping[str, Any] | None:
    if not result:
        return None
    return result.get("pooled") if scope == "pooled" else (result.get("per_source") or {}).get(scope)


def metadata_rows(evals: Sequence[dict[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Distinct metadata-only baselines (one when every model was evaluated on the same rows)."""
    seen: list[tuple[str, Mapping[str, Any]]] = []
    for ev in evals:
        base = ev["result"].get("metadata_baseline")
        if base and all(json.dumps(base, sort_keys=True) != json.dumps(b, sort_keys=True) for _, b in seen):
            seen.append((ev["name"], base))
    if len(seen) == 1:
        return [(METADATA_LABEL, seen[0][1])]
    return [(f"{METADATA_LABEL}, rows of {name}", b) for name, b in seen]


def row(label: str, table: Mapping[str, Any] | None, notes: str) -> str:
    n = f"{table['n']} ({table['n_covid']})" if table else "-"
    return f"| {label} | {n} | " + " | ".join(fmt(table, m) for m in METRICS) + f" | {notes} |"


def table2(evals: Sequence[dict[str, Any]]) -> str:
    scopes = ["pooled"] + sorted({s for ev in evals for s in (ev["result"]["model"].get("per_source") or {})})
    base = metadata_rows(evals)
    out = ["## Table II analogue: COVID-19 detection on the test split (95% bootstrap intervals)", ""]
    for scope in scopes:
        out += [f"### {'Pooled (all sources)' if scope == 'pooled' else f'Within source {scope}'}", "",
                "| model | n (covid) | " + " | ".join(HEADERS) + " | notes |", "|" + "---|" * (len(METRICS) + 3)]
        out += [row(ev["name"], scope_table(ev["result"]["model"], scope), "; ".join(ev["notes"])) for ev in evals]
        out += [row(label, scope_table(b, scope), "never sees pixels") for label, b in base]
        out.append("")
    out += bar_section(evals, base)
    return "\n".join(out)


def _get(table: Mapping[str, Any] | None, metric: str) -> float | None:
    v = (table or {}).get(metric)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _diff(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a - b:+.3f}"


def bar_section(evals: Sequence[dict[str, Any]], base: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    b = base[0][1] if base else None
    b_ieee = scope_table(b, WITHIN_SOURCE)
    out = [f"### Issue-7 bar: pooled F1 >= {BAR_F1:.2f}; AUC within {WITHIN_SOURCE} >= {BAR_AUC:.2f}; margin over the metadata-only baseline within {WITHIN_SOURCE}", "",
           f"| model | pooled F1 | {WITHIN_SOURCE} AUC | {WITHIN_SOURCE} AUC - metadata-only | {WITHIN_SOURCE} F1 - metadata-only | bar |", "|---|---|---|---|---|---|"]
    for ev in evals:
        pooled = scope_table(ev["result"]["model"], "pooled")
        ieee = scope_table(ev["result"]["model"], WITHIN_SOURCE)
        f1, auc = _get(pooled, "f1"), _get(ieee, "auc")
        margin = None if auc is None or _get(b_ieee, "auc") is None else auc - _get(b_ieee, "auc")
        ok = f1 is not None and auc is not None and f1 >= BAR_F1 and auc >= BAR_AUC and (margin is None or margin > 0)
        out.append(f"| {ev['name']} | {fmt(pooled, 'f1')} | {fmt(ieee, 'auc')} | {_diff(auc, _get(b_ieee, 'auc'))} | "
                   f"{_diff(_get(ieee, 'f1'), _get(b_ieee, 'f1'))} | {'met' if ok else 'not met'} |")
    out.append("")
    return out


# ----------------------------------------------------------------------------------------------- table V
def arch_of(name: str) -> tuple[str | None, str | None]:
    """``("r2c", "op-q3")``, ``("baseline", "resnet50")`` or ``(None, None)`` for a model name such as ``op-q3-noclass``."""
    n = name.removeprefix("r2c-").removeprefix("baseline-")
    for b in BASELINE_NAMES:
        if n == b or n.startswith(b + "-"):
            return "baseline", b
    parts = n.split("-")
    for k in range(len(parts), 0, -1):
        cand = "-".join(parts[:k])
        try:
            return "r2c", get_spec(cand).name
        except KeyError:
            continue
    return None, None


def build(kind: str, arch: str) -> nn.Module:
    return build_generator(arch) if kind == "r2c" else build_baseline(arch)


def gflops(model: nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def ms_per_image(model: nn.Module, size: int, batch: int, repeats: int, device: torch.device) -> float:
    """Median forward time per image (one warm-up; CUDA: bf16 autocast + channels_last, synchronised)."""
    x = torch.randn(batch, 3, size, size, device=device)
    cuda = device.type == "cuda"
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for i in range(repeats + 1):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
    times.sort()
    return 1000.0 * times[len(times) // 2] / batch


def measure(kind: str, arch: str, *, size: int, batches: Sequence[int], repeats: int, timing: bool) -> dict[str, Any]:
    model = build(kind, arch).eval()
    out: dict[str, Any] = {"arch": arch, "kind": kind, "parameters": count_parameters(model), "gflops": round(gflops(model, size), 3), "ms": {}}
    if not timing:
        return out
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        m = model.to(dev)
        if dev.type == "cuda":
            m = m.to(memory_format=torch.channels_last)
        for b in batches:
            try:
                out["ms"][f"{dev.type}_b{b}"] = round(ms_per_image(m, size, b, repeats, dev), 2)
            except (RuntimeError, MemoryError) as exc:  # out of memory on a small machine
                out["ms"][f"{dev.type}_b{b}"] = f"failed ({str(exc).splitlines()[0][:40]})"
    model.to("cpu")
    return out


def table5(rows: Sequence[Mapping[str, Any]], size: int, batches: Sequence[int]) -> str:
    cols = [f"{d} ms/img b{b}" for d in ("CPU", "GPU") for b in batches]
    keys = [f"{d}_b{b}" for d in ("cpu", "cuda") for b in batches]
    out = [f"## Table V analogue: size and speed ({size}x{size} input, per image)", "",
           "| model | kind | parameters (M) | GFLOPs | " + " | ".join(cols) + " | notes |", "|" + "---|" * (len(cols) + 5)]
    for r in rows:
        what = "G_A2B (restore + classify, one pass)" if r["kind"] == "r2c" else "timm classifier, from scratch"
        cells = [str(r["ms"].get(k, "-")) for k in keys]
        out.append(f"| {r['arch']} | {r['kind']} | {r['parameters'] / 1e6:.3f} | {r['gflops']:.2f} | " + " | ".join(cells) + f" | {what} |")
    return "\n".join(out + [""])


def machine_line(threads: int) -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores ({threads} torch threads), {gpu}; torch {torch.__version__}; "
            f"date {_dt.datetime.now(_dt.timezone.utc).date().isoformat()}")


# ---------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evals", nargs="*", help="evaluate JSON files, optionally NAME=PATH")
    ap.add_argument("--table", choices=["2", "5", "all"], default="all")
    ap.add_argument("--arch", action="append", default=[], help="Table V rows (repeatable); default: the evaluated models' architectures")
    ap.add_argument("--no-timing", action="store_true", help="Table V without the ms columns")
    ap.add_argument("--batches", default="1,64", help="batch sizes for the timing columns")
    ap.add_argument("--repeats", type=int, default=3, help="timed forward passes per cell (median; after one warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for timing")
    ap.add_argument("--size", type=int, default=256, help="input size for GFLOPs and timing")
    ap.add_argument("--note", action="append", default=[], metavar="NAME=TEXT", help="extra note for a model's rows")
    ap.add_argument("--json", type=Path, default=None, help="also write every number as JSON here")
    return ap.parse_args(argv)


def collect_evals(items: Sequence[str], notes: Sequence[str]) -> list[dict[str, Any]]:
    extra: dict[str, list[str]] = {}
    for n in notes:
        k, _, v = n.partition("=")
        extra.setdefault(k.strip(), []).append(v.strip())
    evals = []
    for item in items:
        name, p = split_named(item)
        path = Path(p)
        if not path.is_file():
            raise SystemExit(f"error: {path}: no such file")
        result = load_eval(path)
        name = name or default_name(path)
        cfg = checkpoint_config(path, result)
        evals.append({"name": name, "path": str(path), "result": result, "notes": auto_notes(name, cfg) + extra.get(name, [])})
    return evals


def table5_archs(evals: Sequence[dict[str, Any]], explicit: Sequence[str]) -> list[tuple[str, str]]:
    names = list(explicit) or [ev["name"] for ev in evals] or list_models() + list(BASELINE_NAMES)
    archs: list[tuple[str, str]] = []
    for n in names:
        kind, arch = arch_of(n)
        if kind is None:
            print(f"warning: {n}: no known architecture, left out of Table V", file=sys.stderr)
        elif (kind, arch) not in archs:
            archs.append((kind, arch))
    return archs


def main(argv: Sequence[str] | None = None, emit: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    evals = collect_evals(args.evals, args.note)
    if args.table in ("2", "all") and not evals:
        raise SystemExit("error: Table II needs evaluate JSON files (or use --table 5)")
    numbers: dict[str, Any] = {"machine": machine_line(args.threads)}
    parts = [numbers["machine"], ""]
    if args.table in ("2", "all"):
        parts.append(table2(evals))
        numbers["table2"] = {ev["name"]: {"path": ev["path"], "notes": ev["notes"], **ev["result"]} for ev in evals}
    if args.table in ("5", "all"):
        rows = [measure(k, a, size=args.size, batches=batches, repeats=max(1, args.repeats), timing=not args.no_timing) for k, a in table5_archs(evals, args.arch)]
        parts.append(table5(rows, args.size, batches))
        numbers["table5"] = rows
    emit("\n".join(parts))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
