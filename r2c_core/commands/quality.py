"""Command group: ``restoration-bench`` (the restoration benchmark: degradation suite, classical comparators,
no-reference and preservation measures; :mod:`r2c_core.quality.bench`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import R2CError

#: ``--quick``: small enough for a CI test (a few images, one severity per degradation)
QUICK = {"limit": 2, "limit_real": 1, "severities": (2,)}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restoration-bench", help="restoration benchmark: gains on a degradation suite, no-reference and "
                       "preservation measures, classical comparators (JSON, markdown table, plotly figure)")
    p.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: the shared data folder, R2C_DATA)")
    p.add_argument("--split", default="test", help="test (default; never seen in training), val or train (A/B split file)")
    p.add_argument("--methods", default="", help="comma-separated: identity, clahe, histeq, gamma, unsharp, nlm, <model>-x<passes> "
                   "(default: identity, every classical method and every bundled generator at 1 and 3 passes)")
    p.add_argument("--passes", default="1,3", help="pass counts for the bundled generators when --methods is not given")
    p.add_argument("--limit", type=int, default=30, help="high-quality (domain B) images to degrade, spread over the sources")
    p.add_argument("--limit-real", type=int, default=20, help="real images per quality domain for the no-reference part (0: skip it)")
    p.add_argument("--degradations", default="", help="comma-separated subset of blur, gauss, poisson, under, over, jpeg, mix")
    p.add_argument("--severities", default="", help="comma-separated subset of 1, 2, 3")
    p.add_argument("--seed", type=int, default=0, help="degradation seed (the degraded set is identical for a seed)")
    p.add_argument("--classifier", default="op-q3", help="bundled generator whose class head gives the COVID probability ('' = none)")
    p.add_argument("--weights-root", type=Path, default=None, help="folder with r2c-<model>/ weights (default: weights/, R2C_WEIGHTS)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--quick", action="store_true", help="a small run (2 degraded images, severity 2, 1 real image per domain)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/restoration"), help="output folder")
    p.set_defaults(func=cmd_restoration_bench)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def cmd_restoration_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data import (
        SPLIT_FILE,
        check_images_exist,
        load_manifest,
        load_split,
        select_split,
    )
    from ..quality import bench, report

    try:
        severities = tuple(int(s) for s in _csv(args.severities))
        passes = tuple(int(p) for p in _csv(args.passes))
    except ValueError as exc:
        raise R2CError(f"--severities and --passes take comma-separated integers: {exc}") from exc
    rows = select_split(load_manifest(args.manifest), args.split)
    split = load_split(SPLIT_FILE)
    rows = rows.merge(split[["id", "domain"]], on="id", how="inner")
    if rows.empty:
        raise R2CError(f"no images of split {args.split!r} in the A/B split file {SPLIT_FILE.name}")
    check_images_exist(rows)
    methods = _csv(args.methods) or bench.default_methods(args.weights_root, passes or (1, 3))
    opts = {"limit": args.limit, "limit_real": args.limit_real, "severities": severities or (1, 2, 3)}
    if args.quick:
        opts.update(QUICK, severities=severities or QUICK["severities"])
    cfg = bench.BenchConfig(split=args.split, methods=tuple(methods), seed=args.seed, classifier=args.classifier or None,
                            degradations=tuple(_csv(args.degradations)) or bench.D.DEGRADATIONS,
                            weights_root=str(args.weights_root) if args.weights_root else None,
                            device=None if args.device == "auto" else args.device, extra={"quick": args.quick}, **opts)
    result = bench.run_bench(rows, cfg, progress=lambda desc: (lambda it: tqdm(list(it), desc=desc, unit="img", file=sys.stderr)))
    paths = report.write(result, args.out)
    print(report.markdown(result))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
