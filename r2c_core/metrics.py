"""Classification metrics with COVID-19 as the positive class, bootstrap intervals, per-source tables, and a
metadata-only baseline.

Definitions (spec 1.14, from the confusion matrix with covid = positive): accuracy = (TP+TN)/N, sensitivity =
TP/(TP+FN), specificity = TN/(TN+FP), precision = TP/(TP+FP), F1 = 2PR/(P+R), F2 = 5PR/(4P+R). An undefined
ratio (0/0) is ``NaN`` (JSON ``null``). ROC AUC is the Mann-Whitney statistic computed from average ranks (ties
count one half); undefined when only one class is present. Intervals are percentile bootstrap 95% intervals
(resampling images with replacement, seeded; replicates where a metric is undefined are skipped).

The metadata-only baseline is a logistic regression (statsmodels, a small ridge penalty because source alone
separates the labels in this data) on one-hot ``source`` plus ``log(orig_width * orig_height)``: it never sees
pixels, so its score is what the source/size confounding alone explains.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

log = logging.getLogger(__name__)

METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "f2", "auc")
THRESHOLD = 0.5


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def confusion(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, int]:
    """``{"tn", "fp", "fn", "tp"}`` for binary labels (1 = covid)."""
    t = np.asarray(y_true).astype(int)
    p = np.asarray(y_pred).astype(int)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    return {
        "tn": int(np.sum((t == 0) & (p == 0))),
        "fp": int(np.sum((t == 0) & (p == 1))),
        "fn": int(np.sum((t == 1) & (p == 0))),
        "tp": int(np.sum((t == 1) & (p == 1))),
    }


def from_confusion(cm: Mapping[str, int]) -> dict[str, float]:
    """The threshold metrics of one confusion matrix."""
    tn, fp, fn, tp = cm["tn"], cm["fp"], cm["fn"], cm["tp"]
    prec = _ratio(tp, tp + fp)
    sens = _ratio(tp, tp + fn)
    f = lambda beta: _ratio((1 + beta**2) * prec * sens, beta**2 * prec + sens) if not (math.isnan(prec) or math.isnan(sens)) else float("nan")  # noqa: E731
    return {
        "accuracy": _ratio(tp + tn, tn + fp + fn + tp),
        "sensitivity": sens,
        "specificity": _ratio(tn, tn + fp),
        "precision": prec,
        "f1": f(1.0),
        "f2": f(2.0),
    }


def roc_auc(y_true: Sequence[int], score: Sequence[float]) -> float:
    """Area under the ROC curve via Mann-Whitney ranks; ``NaN`` when one class is absent."""
    t = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    n1 = int(t.sum())
    n0 = t.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[t == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def point_metrics(y_true: Sequence[int], prob: Sequence[float], threshold: float = THRESHOLD) -> dict[str, float]:
    t = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    out = from_confusion(confusion(t, (p >= threshold).astype(int)))
    out["auc"] = roc_auc(t, p)
    return out


def bootstrap_ci(
    y_true: Sequence[int], prob: Sequence[float], *, threshold: float = THRESHOLD, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, list[float]]:
    """Percentile bootstrap interval ``[lo, hi]`` of every metric (``[nan, nan]`` when never defined)."""
    t = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    rng = np.random.default_rng(seed)
    reps: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(n_boot):
        idx = rng.integers(0, t.size, t.size)
        for k, v in point_metrics(t[idx], p[idx], threshold).items():
            if not math.isnan(v):
                reps[k].append(v)
    a = (1 - level) / 2
    return {m: ([float(np.quantile(v, a)), float(np.quantile(v, 1 - a))] if v else [float("nan")] * 2) for m, v in reps.items()}


def metric_table(y_true: Sequence[int], prob: Sequence[float], *, threshold: float = THRESHOLD, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``{"n", "n_covid", "confusion", <metric>: value, "ci95": {<metric>: [lo, hi]}}``."""
    t = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    out: dict[str, Any] = {"n": int(t.size), "n_covid": int(t.sum()), "confusion": confusion(t, (p >= threshold).astype(int))}
    out.update(point_metrics(t, p, threshold))
    if n_boot > 0 and t.size:
        out["ci95"] = bootstrap_ci(t, p, threshold=threshold, n_boot=n_boot, seed=seed)
    return out


def grouped_tables(
    y_true: Sequence[int], prob: Sequence[float], groups: Sequence[str], *, threshold: float = THRESHOLD, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """``{"pooled": table, "per_source": {group: table}}``."""
    t = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    g = np.asarray(groups).astype(str)
    per = {str(k): metric_table(t[g == k], p[g == k], threshold=threshold, n_boot=n_boot, seed=seed) for k in sorted(set(g))}
    return {"pooled": metric_table(t, p, threshold=threshold, n_boot=n_boot, seed=seed), "per_source": per}


# ------------------------------------------------------------------------------ metadata-only baseline
def _design(df: pd.DataFrame, sources: Sequence[str], size_mean: float, size_std: float) -> np.ndarray:
    area = np.log(pd.to_numeric(df["orig_width"], errors="coerce").to_numpy(float) * pd.to_numeric(df["orig_height"], errors="coerce").to_numpy(float))
    cols = [np.ones(len(df))] + [(df["source"].astype(str).to_numpy() == s).astype(float) for s in sources[1:]]
    cols.append((area - size_mean) / (size_std or 1.0))
    return np.column_stack(cols)


def fit_metadata_baseline(train: pd.DataFrame, alpha: float = 1e-3) -> dict[str, Any]:
    """Fit the baseline on manifest rows (``source``, ``orig_width``, ``orig_height``, ``label``)."""
    import statsmodels.api as sm

    from .data import label_index

    sources = sorted(train["source"].astype(str).unique())
    area = np.log(pd.to_numeric(train["orig_width"]).to_numpy(float) * pd.to_numeric(train["orig_height"]).to_numpy(float))
    mean, std = float(area.mean()), float(area.std())
    x = _design(train, sources, mean, std)
    y = label_index(train["label"])
    res = sm.GLM(y, x, family=sm.families.Binomial()).fit_regularized(alpha=alpha, L1_wt=0.0)
    return {"sources": sources, "size_mean": mean, "size_std": std, "coef": np.asarray(res.params, dtype=float).tolist(), "alpha": alpha}


def predict_metadata_baseline(model: Mapping[str, Any], df: pd.DataFrame) -> np.ndarray:
    """P(covid) of the baseline for manifest rows (an unseen source gets the reference source's intercept)."""
    x = _design(df, model["sources"], model["size_mean"], model["size_std"])
    z = x @ np.asarray(model["coef"], dtype=float)
    return 1.0 / (1.0 + np.exp(-z))


def nan_to_none(obj: Any) -> Any:
    """JSON-safe copy: NaN -> None, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(float(obj)) else round(float(obj), 6)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ------------------------------------------------------------------------------------- evaluate a preds file
def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions CSV (``id,label,prob_covid[,pred]``); one-line :class:`ManifestError` when malformed."""
    from .errors import ManifestError

    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"predictions file not found: {p}")
    try:
        df = pd.read_csv(p, dtype={"id": str, "label": str})
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{p}: predictions file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{p}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("id", "label", "prob_covid") if c not in df.columns]
    if missing:
        raise ManifestError(f"{p}: missing column(s) {', '.join(missing)} (need id,label,prob_covid)")
    if df.empty:
        raise ManifestError(f"{p}: no predictions")
    prob = pd.to_numeric(df["prob_covid"], errors="coerce")
    if prob.isna().any() or ((prob < 0) | (prob > 1)).any():
        raise ManifestError(f"{p}: prob_covid must be numbers in [0, 1] (row {int(np.flatnonzero(prob.isna() | (prob < 0) | (prob > 1))[0]) + 2})")
    df["prob_covid"] = prob
    return df


def evaluate_predictions(
    preds: str | Path, manifest: str | Path | None = None, *, threshold: float = THRESHOLD, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of a predictions file, pooled and per source, beside the metadata-only baseline.

    The baseline is fitted on the manifest's ``train`` rows that are not among the predictions and applied to
    the predicted rows.
    """
    from .data import label_index, load_manifest
    from .errors import ManifestError

    pr = read_predictions(preds)
    man = load_manifest(manifest)
    rows = pr.merge(man.drop(columns=["label"]).assign(manifest_label=man["label"]), on="id", how="left")
    unknown = rows["manifest_label"].isna()
    if unknown.any():
        raise ManifestError(f"{int(unknown.sum())} prediction id(s) are not in the manifest (first: {rows.loc[unknown, 'id'].iloc[0]})")
    bad = rows["label"] != rows["manifest_label"]
    if bad.any():
        raise ManifestError(f"id {rows.loc[bad, 'id'].iloc[0]}: label {rows.loc[bad, 'label'].iloc[0]!r} differs from the manifest's {rows.loc[bad, 'manifest_label'].iloc[0]!r}")
    y = label_index(rows["label"])
    out: dict[str, Any] = {"preds": str(preds), "n": int(len(rows)), "threshold": threshold, "bootstrap": n_boot, "seed": seed, "positive_class": "covid"}
    out["model"] = grouped_tables(y, rows["prob_covid"], rows["source"], threshold=threshold, n_boot=n_boot, seed=seed)
    fit_rows = man[(man["split"] == "train") & ~man["id"].isin(set(rows["id"]))]
    if len(fit_rows) and fit_rows["label"].nunique() == 2:
        base = fit_metadata_baseline(fit_rows)
        pb = predict_metadata_baseline(base, rows)
        out["metadata_baseline"] = {
            "features": "one-hot source + log(orig_width*orig_height); ridge-penalised logistic regression (statsmodels)",
            "fitted_on": int(len(fit_rows)),
            **grouped_tables(y, pb, rows["source"], threshold=threshold, n_boot=n_boot, seed=seed),
        }
    else:
        out["metadata_baseline"] = None
        log.warning("metadata baseline not fitted: no training rows with both labels outside the predictions")
    return nan_to_none(out)


def _fmt(table: Mapping[str, Any], key: str, ci: bool) -> str:
    v = table.get(key)
    if v is None:
        return "-"
    lo_hi = (table.get("ci95") or {}).get(key) if ci else None
    if lo_hi and lo_hi[0] is not None:
        return f"{v:.3f} [{lo_hi[0]:.2f}, {lo_hi[1]:.2f}]"
    return f"{v:.3f}"


def markdown_report(result: Mapping[str, Any], ci: bool = True) -> str:
    """The model's table (pooled, then per source) with the metadata-only baseline's accuracy, F1 and AUC beside."""
    cols = ["accuracy", "sensitivity", "specificity", "precision", "f1", "f2", "auc"]
    head = "| rows | n (covid) | " + " | ".join(cols) + " | baseline accuracy | baseline F1 | baseline AUC |"
    lines = [head, "|" + "---|" * (len(cols) + 5)]
    base = result.get("metadata_baseline") or {}
    model = result["model"]
    groups = [("pooled", model["pooled"], base.get("pooled", {}))]
    groups += [(src, t, (base.get("per_source") or {}).get(src, {})) for src, t in model["per_source"].items()]
    for name, t, b in groups:
        cells = [_fmt(t, c, ci) for c in cols] + [_fmt(b, c, ci) for c in ("accuracy", "f1", "auc")]
        lines.append(f"| {name} | {t['n']} ({t['n_covid']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
