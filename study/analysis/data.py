"""From the tidy one-row-per-query table to the arrays every statistic works on.

The tidy table (``study.export.tidy_votes`` or ``study.simulate.simulate_tidy``) has one row per shown query,
answered or not, of ONE study (``validate_tidy`` refuses a table mixing studies: a restoration and a segmentation
study pooled would be meaningless). The *primary* votes are the answered first showings: unanswered queries carry no
choice and repeat reads are kept apart for the self-agreement analysis, so no case ever counts twice for one reader.
A repeat read never becomes a primary vote, not even when its first showing was left unanswered (the reader had
already seen the case). ``first_reads`` and ``primary_votes`` are the one definition every part of
``study.analysis`` (the dashboard tables included) uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Columns the analysis reads; the tidy table may carry more.
REQUIRED_COLUMNS = (
    "study_id", "study_kind", "query_id", "reader", "case_id", "case_key", "label", "source",
    "is_repeat", "repeat_of", "n_slots", "slot_1", "chosen_method", "chosen_slot",
)


def validate_tidy(tidy: pd.DataFrame) -> None:
    """Raise ``ValueError`` with one clear line when ``tidy`` lacks a column the analysis needs or holds more than
    one study (analyse one study at a time: filter on ``study_id``)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in tidy.columns]
    if missing:
        raise ValueError(f"tidy table lacks column(s): {', '.join(missing)}")
    studies = sorted(str(s) for s in tidy["study_id"].dropna().unique())
    kinds = sorted(str(k) for k in tidy["study_kind"].dropna().unique())
    if len(studies) > 1 or len(kinds) > 1:
        raise ValueError(f"tidy table holds {len(studies)} studies (ids {', '.join(studies)}; kinds "
                         f"{', '.join(kinds)}): analyse one study at a time (filter on study_id)")
    too_many = int(tidy["n_slots"].max()) if len(tidy) else 0
    absent = [f"slot_{k}" for k in range(1, too_many + 1) if f"slot_{k}" not in tidy.columns]
    if absent:
        raise ValueError(f"tidy table has n_slots up to {too_many} but lacks {', '.join(absent)}")


def slot_columns(tidy: pd.DataFrame) -> list[str]:
    """The ``slot_k`` columns present, in slot order."""
    k_max = int(tidy["n_slots"].max()) if len(tidy) else 0
    return [f"slot_{k}" for k in range(1, k_max + 1)]


def answered_mask(tidy: pd.DataFrame) -> pd.Series:
    """Rows whose reader chose an image ("no preference" answers are answered but chose none)."""
    return tidy["chosen_method"].notna()


def no_preference_mask(tidy: pd.DataFrame) -> pd.Series:
    """Rows answered "no preference" (a study option; False everywhere when the column is absent)."""
    if "no_preference" not in tidy:
        return pd.Series(False, index=tidy.index)
    return tidy["no_preference"].fillna(False).astype(bool)


def first_reads(tidy: pd.DataFrame) -> pd.DataFrame:
    """Answered first showings, "no preference" answers included: each reader's one read of each case.

    Repeat reads never count here (not even when the first showing was left unanswered), and should a table hold
    two first showings of one case to one reader, only the first row counts."""
    keep = (answered_mask(tidy) | no_preference_mask(tidy)) & ~tidy["is_repeat"].astype(bool)
    reads = tidy.loc[keep]
    return reads.loc[~reads.duplicated(["reader", "case_key"], keep="first")]


def primary_votes(tidy: pd.DataFrame) -> pd.DataFrame:
    """First reads that chose an image (no repeat reads, no unanswered queries, no "no preference" answers): what
    every ratio counts."""
    reads = first_reads(tidy)
    return reads.loc[answered_mask(reads)].reset_index(drop=True)


def method_order(tidy: pd.DataFrame, original: str = "original") -> list[str]:
    """Every method shown anywhere in the study: ``original`` first (when shown), then alphabetical."""
    shown: set[str] = set()
    for col in slot_columns(tidy):
        shown.update(str(v) for v in tidy[col].dropna().unique())
    rest = sorted(shown - {original})
    return ([original] if original in shown else []) + rest


@dataclass(frozen=True)
class ChoiceData:
    """Primary votes as arrays: one row per query, one column per method.

    ``shown[q, m]``: method m was on screen; ``chosen[q, m]``: it was picked; ``slot[q, m]``: its 1-based display
    slot (0 when not shown); ``reader``/``case``: integer codes into ``readers``/``cases``.
    """

    methods: list[str]
    readers: list[str]
    cases: list[str]
    query_id: np.ndarray
    reader: np.ndarray
    case: np.ndarray
    shown: np.ndarray
    chosen: np.ndarray
    slot: np.ndarray
    chosen_slot: np.ndarray
    n_slots: np.ndarray

    @property
    def n_queries(self) -> int:
        return int(self.query_id.size)

    def index(self, method: str) -> int | None:
        return self.methods.index(method) if method in self.methods else None


def choice_data(tidy: pd.DataFrame, original: str = "original", *, primary: bool = True) -> ChoiceData:
    """Arrays of the primary votes (``primary=False``: every answered query, repeats included)."""
    validate_tidy(tidy)
    methods = method_order(tidy, original)
    votes = primary_votes(tidy) if primary else tidy.loc[answered_mask(tidy)].reset_index(drop=True)
    col = {m: i for i, m in enumerate(methods)}
    n_q, n_m = len(votes), len(methods)
    shown = np.zeros((n_q, n_m), dtype=bool)
    slot = np.zeros((n_q, n_m), dtype=np.int64)
    for k, name in enumerate(slot_columns(votes) if n_q else [], start=1):
        values = votes[name].to_numpy(dtype=object)
        for q in np.flatnonzero(pd.notna(values)):
            m = col[str(values[q])]
            shown[q, m] = True
            slot[q, m] = k
    chosen = np.zeros((n_q, n_m), dtype=bool)
    if n_q:
        chosen[np.arange(n_q), [col[str(m)] for m in votes["chosen_method"]]] = True
    if np.any(chosen & ~shown):
        raise ValueError("tidy table has a chosen_method that was not shown in that query")
    readers, reader_codes = _codes(votes["reader"].astype(str)) if n_q else ([], np.zeros(0, dtype=np.int64))
    cases, case_codes = _codes(votes["case_key"].astype(str)) if n_q else ([], np.zeros(0, dtype=np.int64))
    return ChoiceData(
        methods=methods, readers=readers, cases=cases,
        query_id=votes["query_id"].to_numpy(dtype=np.int64) if n_q else np.zeros(0, dtype=np.int64),
        reader=reader_codes, case=case_codes, shown=shown, chosen=chosen, slot=slot,
        chosen_slot=(slot * chosen).sum(axis=1),
        n_slots=votes["n_slots"].to_numpy(dtype=np.int64) if n_q else np.zeros(0, dtype=np.int64),
    )


def _codes(values: pd.Series) -> tuple[list[str], np.ndarray]:
    codes, uniques = pd.factorize(values, sort=True)
    return [str(u) for u in uniques], codes.astype(np.int64)


def alternatives_long(data: ChoiceData) -> pd.DataFrame:
    """One row per shown alternative (the layout of a conditional-logit / Luce choice model)."""
    q_idx, m_idx = np.nonzero(data.shown)
    return pd.DataFrame({
        "query_id": data.query_id[q_idx],
        "method": np.asarray(data.methods, dtype=object)[m_idx],
        "slot": data.slot[q_idx, m_idx],
        "chosen": data.chosen[q_idx, m_idx].astype(float),
    })


def restored_outcome(data: ChoiceData, original: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask of queries showing the original with at least one restoration, 1.0 where a restoration was picked);
    None when the study never showed ``original``."""
    j = data.index(original)
    if j is None:
        return None
    mask = data.shown[:, j] & (data.shown.sum(axis=1) > 1)
    return mask, (~data.chosen[:, j]).astype(float)
