"""Merge restoration-benchmark runs into one table, so that a method retrained later is re-measured alone rather
than the whole benchmark being run again (docs/RESULTS.md, restoration benchmark).

    python scripts/merge_bench.py --base runs/bench/restoration-test \
        --take runs/bench/restoration-test-opq3-v13 --real runs/bench/restoration-test-real-v13 \
        --out runs/bench/restoration-test-final-v13

* ``--base``: a full run (every method); its degradation-suite rows are kept except for the methods a ``--take`` run
  measured (identity excepted, which every run measures: its rows must agree with the base's, or the runs did not
  use the same images, and the merge is refused).
* ``--take`` (repeatable): runs whose degradation-suite rows replace the base's for their methods.
* ``--real``: a run whose real-image part (no-reference measures, probabilities) replaces the base's whole part, so
  every method there is measured on the same images with the same classifier. Required with ``--take`` when the
  base has a real-image part: that part measured the old weights (and its probabilities may come from one of them).

Writes ``full_reference.csv``, ``no_reference.csv``, ``bench.json`` (the merged summary, and where each part came
from) and ``table.md`` (the tables of docs/RESULTS.md) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r2c_core.quality import report  # noqa: E402
from r2c_core.quality.bench import nan_to_none, summarise  # noqa: E402

IDENTITY = "identity"
KEYS = ["id", "degradation", "severity", "method"]


def _run(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    meta = json.loads((folder / "bench.json").read_text())
    fr = pd.read_csv(folder / "full_reference.csv")
    nr_path = folder / "no_reference.csv"
    return meta, fr, pd.read_csv(nr_path) if nr_path.is_file() else pd.DataFrame()


def merge(base: Path, takes: list[Path], real: Path | None) -> dict:
    meta, fr, nr = _run(base)
    config = dict(meta["config"])
    sources = {"base": str(base), "full_reference": {}, "no_reference": str(base)}
    versions = dict(config.get("versions", {}))
    if takes and not nr.empty and real is None:
        raise SystemExit(f"error: {base} has a real-image part measured with the old weights: give --real (a run of "
                         "every method on the real images, e.g. --limit 1 --degradations blur --severities 1)")
    for t in takes:
        t_meta, t_fr, _ = _run(t)
        ident_base = fr[fr["method"] == IDENTITY].set_index(KEYS).sort_index()
        ident_take = t_fr[t_fr["method"] == IDENTITY].set_index(KEYS).sort_index()
        cols = [c for c in ident_base.columns if c in ident_take.columns]
        if ident_take.empty or not cols:
            raise SystemExit(f"error: {t} has no identity rows to check that it degraded the same images as {base}")
        if not ident_take.index.equals(ident_base.index) or not np.allclose(
                ident_take[cols].to_numpy(float), ident_base[cols].to_numpy(float), equal_nan=True):
            raise SystemExit(f"error: identity rows of {t} differ from {base}: not the same degraded images")
        methods = [m for m in dict.fromkeys(t_fr["method"]) if m != IDENTITY]
        order = list(dict.fromkeys(fr["method"]))
        fr = pd.concat([fr[~fr["method"].isin(methods)], t_fr[t_fr["method"].isin(methods)]])
        order += [m for m in methods if m not in order]
        fr = fr.sort_values("method", key=lambda s: s.map(order.index), kind="stable").reset_index(drop=True)
        for m in methods:
            sources["full_reference"][m] = str(t)
        versions.update(t_meta["config"].get("versions", {}))
    if real is not None:
        r_meta, _, nr = _run(real)
        if nr.empty:
            raise SystemExit(f"error: {real} has no real-image part")
        sources["no_reference"] = str(real)
        config["classifier"] = r_meta["config"].get("classifier")
        config["n_real_images"] = r_meta["config"].get("n_real_images")
        versions.update(r_meta["config"].get("versions", {}))
    config.update(versions=versions, methods=list(dict.fromkeys([*fr["method"], *nr.get("method", pd.Series(dtype=str))])),
                  merged_from=sources)
    return {"config": config, "summary": summarise(fr, nr), "full_reference": fr, "no_reference": nr}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--take", type=Path, action="append", default=[])
    p.add_argument("--real", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    result = merge(a.base, a.take, a.real)
    a.out.mkdir(parents=True, exist_ok=True)
    result["full_reference"].to_csv(a.out / "full_reference.csv", index=False, float_format="%.6g")
    if not result["no_reference"].empty:
        result["no_reference"].to_csv(a.out / "no_reference.csv", index=False, float_format="%.6g")
    (a.out / "bench.json").write_text(json.dumps(nan_to_none({"config": result["config"], "summary": result["summary"]}), indent=2) + "\n")
    (a.out / "table.md").write_text(report.markdown(result))
    print(a.out / "table.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
