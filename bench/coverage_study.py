"""Coverage study: do the 95% intervals of the reader-study analysis hold the truth about 95% of the time?

Hundreds of simulated studies per scenario, each with freshly drawn readers (each reader's taste for each method
varies around the population's) and cases (each case shifts each method's appeal), analysed exactly as a real study
(``study.analysis``). The truth is the population quantity: the chance that a random reader, on a random case,
picks method m (and picks any restored version over the original), computed by Monte Carlo with millions of draws.
For each interval type we report the share of studies whose interval contains the truth and the mean width.

    python bench/coverage_study.py                 # the reduced run reported in docs/STUDY.md (~5 min, 2 cores)
    python bench/coverage_study.py --quick         # a few studies, seconds (used by the test suite)
    python bench/coverage_study.py --studies 1000 --n-boot 2000 --json out/coverage.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.analysis.data import choice_data  # noqa: E402
from study.analysis.models import gee_restored, restored_frame  # noqa: E402
from study.analysis.selection import restored_preferred, selection_ratios  # noqa: E402
from study.simulate import SimReader, simulate_tidy  # noqa: E402

METHODS = ["original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]
BASE = {"original": 1.0, "cnn-x1": 1.0, "cnn-compact-x3": 1.0, "op-q3-x3": 3.0, "op-q5-x3": 1.5}


@dataclass(frozen=True)
class Scenario:
    name: str
    readers: int
    cases: int
    allocation: str
    reader_sd: float
    case_sd: float


SCENARIOS = (
    Scenario("independent votes (no reader or case effects), overlap 6x60", 6, 60, "overlap", 0.0, 0.0),
    Scenario("reader + case effects, overlap 6x60", 6, 60, "overlap", 0.5, 0.7),
    Scenario("reader + case effects, split 6 readers x 240 cases", 6, 240, "split", 0.5, 0.7),
)


def truth(sc: Scenario, rng: np.random.Generator, draws: int = 2_000_000) -> dict[str, float]:
    """Population chance of each method being picked (all shown, no position bias) and of 'restored'."""
    log_base = np.log([BASE[m] for m in METHODS])
    util = log_base + rng.normal(0.0, sc.reader_sd, (draws, len(METHODS))) + rng.normal(0.0, sc.case_sd, (draws, len(METHODS)))
    util -= util.max(axis=1, keepdims=True)
    p = np.exp(util)
    p /= p.sum(axis=1, keepdims=True)
    share = p.mean(axis=0)
    out = {m: float(s) for m, s in zip(METHODS, share)}
    out["restored"] = 1.0 - out["original"]
    return out


def one_study(sc: Scenario, seed: int, n_boot: int) -> dict[str, dict[str, tuple[float, float]]]:
    """Intervals of one simulated study: {quantity: {interval type: (low, high)}}."""
    rng = np.random.default_rng(seed)
    readers = [SimReader(f"r{i}", {m: BASE[m] * float(np.exp(rng.normal(0.0, sc.reader_sd))) for m in METHODS})
               for i in range(sc.readers)]
    tidy = simulate_tidy(readers, sc.cases, METHODS, seed=seed, allocation=sc.allocation, case_sd=sc.case_sd)
    data = choice_data(tidy)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for row in selection_ratios(data, rng=rng, n_boot=n_boot):
        out[row["method"]] = {"Wilson": (row["wilson_low"], row["wilson_high"]),
                              "two-way bootstrap": (row["boot_low"], row["boot_high"]),
                              "two-way clustered GLM": (row["cluster_low"], row["cluster_high"])}
    rv = restored_preferred(data, "original", rng=rng, n_boot=n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gee = gee_restored(restored_frame(data, "original"))
    out["restored"] = {"Wilson": (rv["wilson_low"], rv["wilson_high"]),
                       "two-way bootstrap": (rv["boot_low"], rv["boot_high"]),
                       "two-way clustered GLM": (rv["cluster_low"], rv["cluster_high"]),
                       "GEE (reader clusters)": (gee.get("low", np.nan), gee.get("high", np.nan))}
    return out


def run(studies: int, n_boot: int, seed: int, scenarios: tuple[Scenario, ...] = SCENARIOS,
        truth_draws: int = 2_000_000) -> list[dict]:
    results = []
    for s_idx, sc in enumerate(scenarios):
        t0 = time.time()
        true = truth(sc, np.random.default_rng([seed, s_idx, 999]), truth_draws)
        hits: dict[tuple[str, str], list[bool]] = {}
        widths: dict[tuple[str, str], list[float]] = {}
        for i in range(studies):
            for quantity, intervals in one_study(sc, seed * 1_000_003 + s_idx * 10_007 + i, n_boot).items():
                for kind, (lo, hi) in intervals.items():
                    ok = bool(np.isfinite(lo) and np.isfinite(hi) and lo <= true[quantity] <= hi)
                    hits.setdefault((quantity, kind), []).append(ok)
                    widths.setdefault((quantity, kind), []).append(hi - lo if np.isfinite(hi - lo) else np.nan)
        rows = [{"quantity": q, "interval": k, "truth": true[q], "coverage": float(np.mean(h)),
                 "mc_se": float(np.sqrt(np.mean(h) * (1 - np.mean(h)) / len(h))),
                 "mean_width": float(np.nanmean(widths[(q, k)])), "studies": len(h)} for (q, k), h in hits.items()]
        results.append({"scenario": sc.name, "readers": sc.readers, "cases": sc.cases, "allocation": sc.allocation,
                        "reader_sd": sc.reader_sd, "case_sd": sc.case_sd, "seconds": round(time.time() - t0, 1),
                        "rows": rows})
    return results


def pooled(rows: list[dict]) -> dict[str, float]:
    """Coverage of each interval type pooled over the five per-method selection ratios."""
    kinds: dict[str, list[float]] = {}
    for r in rows:
        if r["quantity"] != "restored":
            kinds.setdefault(r["interval"], []).append(r["coverage"])
    return {k: float(np.mean(v)) for k, v in kinds.items()}


def markdown(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines.append(f"**{res['scenario']}** (reader SD {res['reader_sd']}, case SD {res['case_sd']} on the log-odds "
                     f"scale; {res['rows'][0]['studies']} studies, {res['seconds']} s)\n")
        lines.append("| quantity | truth | interval | coverage (MC SE) | mean width |")
        lines.append("|---|---|---|---|---|")
        for r in res["rows"]:
            lines.append(f"| {r['quantity']} | {r['truth']:.3f} | {r['interval']} | {r['coverage']:.3f} "
                         f"({r['mc_se']:.3f}) | {r['mean_width']:.3f} |")
        pool = ", ".join(f"{k} {v:.3f}" for k, v in pooled(res["rows"]).items())
        lines.append(f"\nPooled over the five methods: {pool}\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=400, help="simulated studies per scenario (default 400)")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates per study (default 1000)")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--quick", action="store_true", help="3 studies per scenario, 100 replicates (smoke test)")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    studies, n_boot = (3, 100) if args.quick else (args.studies, args.n_boot)
    t0 = time.time()
    results = run(studies, n_boot, args.seed, truth_draws=100_000 if args.quick else 2_000_000)
    print(f"# coverage study: {studies} studies per scenario, {n_boot} bootstrap replicates, seed {args.seed}, "
          f"{time.time() - t0:.0f} s\n")
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"studies": studies, "n_boot": n_boot, "seed": args.seed, "results": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
