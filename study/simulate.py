"""Simulated readers and studies with a known truth, for testing the analysis and for coverage studies.

``SimReader`` is a reader model: in each query it picks display slot ``k`` with probability proportional to
``method_pref[method in slot k] * slot_bias[k]``; on a repeat read it returns to its earlier choice with probability
``repeat_consistency`` (otherwise it chooses afresh from the same model). ``simulate_tidy`` runs whole studies with
such readers and returns them in the tidy one-row-per-query table that ``study.export.tidy_votes`` produces, so the
analysis code cannot tell a simulated study from a real one. Nothing here touches a database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The name of the unprocessed image in every study.
ORIGINAL = "original"
#: Most display slots a query can have (tidy columns slot_1..slot_5).
MAX_SLOTS = 5
#: Allocation schemes: every reader reads every case / each case goes to one reader / each case to about half.
ALLOCATIONS = ("overlap", "split", "partial")

_T0 = pd.Timestamp("2026-01-05 09:00:00", tz="UTC")


@dataclass
class SimReader:
    """A simulated reader with method preferences, an optional position bias and a repeat consistency.

    ``method_pref`` maps method name to a positive weight (methods not listed weigh 1.0); ``slot_bias`` gives one
    weight per display slot (None: no position bias); ``repeat_consistency`` is the probability of repeating the
    earlier choice on a repeat read.
    """

    name: str
    method_pref: dict[str, float]
    slot_bias: list[float] | None = None
    repeat_consistency: float = 1.0

    def __post_init__(self) -> None:
        if any(not (w >= 0.0 and math.isfinite(w)) for w in self.method_pref.values()):
            raise ValueError(f"reader {self.name!r}: method preferences must be finite and >= 0")
        if self.slot_bias is not None and any(not (w >= 0.0 and math.isfinite(w)) for w in self.slot_bias):
            raise ValueError(f"reader {self.name!r}: slot biases must be finite and >= 0")
        if not 0.0 <= self.repeat_consistency <= 1.0:
            raise ValueError(f"reader {self.name!r}: repeat_consistency must lie in [0, 1]")

    def choice_probabilities(self, slot_methods: Sequence[str], case_weights: Mapping[str, float] | None = None) -> np.ndarray:
        """Probability of choosing each display slot (0-based) for the methods shown in that order.

        ``case_weights`` (optional) multiplies each method's weight for this particular case (case difficulty).
        """
        n = len(slot_methods)
        if n == 0:
            raise ValueError("a query needs at least one displayed slot")
        bias = np.ones(n) if self.slot_bias is None else np.asarray(self.slot_bias, dtype=float)
        if bias.size < n:
            raise ValueError(f"reader {self.name!r}: slot_bias has {bias.size} weights for {n} slots")
        weights = np.array([self.method_pref.get(m, 1.0) for m in slot_methods], dtype=float) * bias[:n]
        if case_weights is not None:
            weights = weights * np.array([case_weights.get(m, 1.0) for m in slot_methods], dtype=float)
        total = weights.sum()
        if total <= 0.0:
            raise ValueError(f"reader {self.name!r}: every shown slot has weight 0")
        return weights / total

    def choose(self, rng: np.random.Generator, slot_methods: list[str], previous_choice: str | None = None, *,
               case_weights: Mapping[str, float] | None = None) -> int:
        """The 0-based slot this reader picks; on a repeat, returns to ``previous_choice`` with the set consistency."""
        if previous_choice is not None and previous_choice in slot_methods:
            if rng.random() < self.repeat_consistency:
                return slot_methods.index(previous_choice)
        return int(rng.choice(len(slot_methods), p=self.choice_probabilities(slot_methods, case_weights)))


def _allocate(rng: np.random.Generator, n_readers: int, case_ids: np.ndarray, allocation: str) -> list[np.ndarray]:
    """Case ids given to each reader (in no particular order)."""
    if allocation == "overlap":
        return [case_ids.copy() for _ in range(n_readers)]
    if allocation == "split":
        perm = rng.permutation(case_ids)
        return [np.sort(perm[r::n_readers]) for r in range(n_readers)]
    if allocation == "partial":
        per_case = min(n_readers, max(2, math.ceil(n_readers / 2)))
        given: list[list[int]] = [[] for _ in range(n_readers)]
        for c in case_ids:
            for r in rng.choice(n_readers, size=per_case, replace=False):
                given[int(r)].append(int(c))
        return [np.array(sorted(g), dtype=int) for g in given]
    raise ValueError(f"unknown allocation {allocation!r}; use one of {', '.join(ALLOCATIONS)}")


def _reader_queue(rng: np.random.Generator, cases: np.ndarray, repeat_fraction: float, min_gap: int) -> list[tuple[int, bool]]:
    """(case_id, is_repeat) in showing order: shuffled cases, then repeats at least ``min_gap`` queries later."""
    order = [int(c) for c in rng.permutation(cases)]
    eligible = order[: max(0, len(order) - min_gap)]
    n_rep = min(len(eligible), int(round(repeat_fraction * len(order))))
    repeats = [int(c) for c in rng.choice(eligible, size=n_rep, replace=False)] if n_rep else []
    return [(c, False) for c in order] + [(c, True) for c in repeats]


def _validate(readers: Sequence[SimReader], n_cases: int, methods: Sequence[str], repeat_fraction: float,
              unanswered_fraction: float) -> None:
    if not readers:
        raise ValueError("need at least one reader")
    if len({r.name for r in readers}) != len(readers):
        raise ValueError("reader names must be unique")
    if n_cases < 1:
        raise ValueError("need at least one case")
    if not 1 <= len(methods) <= MAX_SLOTS or len(set(methods)) != len(methods):
        raise ValueError(f"need 1..{MAX_SLOTS} distinct methods, got {list(methods)}")
    if not 0.0 <= repeat_fraction <= 1.0 or not 0.0 <= unanswered_fraction < 1.0:
        raise ValueError("repeat_fraction must lie in [0, 1] and unanswered_fraction in [0, 1)")


def simulate_tidy(
    readers: list[SimReader],
    n_cases: int,
    methods: list[str],
    *,
    seed: int,
    allocation: str = "overlap",
    repeat_fraction: float = 0.0,
    labels: Sequence[str] = ("covid", "control"),
    sources: Sequence[str] = ("ieee", "nih"),
    repeat_min_gap: int = 5,
    unanswered_fraction: float = 0.0,
    case_sd: float = 0.0,
    study_id: int = 1,
    study_kind: str = "restoration",
) -> pd.DataFrame:
    """A whole simulated study as the tidy table (one row per shown query; see ``study.export.tidy_votes``).

    Every query shows all ``methods`` in a fresh random slot order. ``allocation``: ``overlap`` (every reader reads
    every case), ``split`` (each case to one reader) or ``partial`` (each case to a random half of the readers, at
    least two). A seeded ``repeat_fraction`` of each reader's cases is shown again after at least
    ``repeat_min_gap`` other queries; ``unanswered_fraction`` of queries are left unanswered. ``case_sd`` > 0 gives
    every case its own taste: each method's weight on that case is multiplied by ``exp(N(0, case_sd))``.
    """
    _validate(readers, n_cases, methods, repeat_fraction, unanswered_fraction)
    rng = np.random.default_rng(seed)
    case_ids = np.arange(1, n_cases + 1)
    case_label = {int(c): labels[(int(c) - 1) % len(labels)] for c in case_ids}
    case_source = {int(c): str(rng.choice(list(sources))) for c in case_ids}
    case_weights = {int(c): dict(zip(methods, np.exp(rng.normal(0.0, case_sd, len(methods))))) for c in case_ids} \
        if case_sd > 0 else {}
    rows: list[dict] = []
    query_id = 0
    for reader_id, (reader, cases) in enumerate(zip(readers, _allocate(rng, len(readers), case_ids, allocation)), 1):
        clock = _T0 + pd.Timedelta(minutes=17 * reader_id)
        first: dict[int, tuple[int, str | None]] = {}
        for case_id, is_repeat in _reader_queue(rng, cases, repeat_fraction, repeat_min_gap):
            query_id += 1
            slots = [str(m) for m in rng.permutation(list(methods))]
            prev_qid, prev_choice = first.get(case_id, (None, None)) if is_repeat else (None, None)
            answered = rng.random() >= unanswered_fraction
            slot = reader.choose(rng, slots, prev_choice, case_weights=case_weights.get(case_id)) if answered else None
            seconds = round(float(rng.gamma(4.0, 3.0)) if answered else float(rng.uniform(30.0, 120.0)), 3)
            shown_at = clock
            clock = clock + pd.Timedelta(milliseconds=round(1000 * seconds) + 1000)
            if not is_repeat:
                first[case_id] = (query_id, slots[slot] if slot is not None else None)
            rows.append({
                "study_id": study_id, "study_kind": study_kind, "query_id": query_id,
                "reader": reader.name, "reader_id": reader_id,
                "case_id": case_id, "case_key": f"sim-{case_id:04d}",
                "label": case_label[case_id], "source": case_source[case_id],
                "is_repeat": is_repeat, "repeat_of": prev_qid,
                "n_slots": len(slots),
                **{f"slot_{k}": (slots[k - 1] if k <= len(slots) else None) for k in range(1, MAX_SLOTS + 1)},
                "chosen_method": slots[slot] if slot is not None else None,
                "chosen_slot": slot + 1 if slot is not None else None,
                "no_preference": False,  # simulated readers always choose
                "confidence": int(rng.integers(1, 6)) if answered else None,
                "comment": None,
                "shown_at": shown_at,
                "answered_at": shown_at + pd.Timedelta(milliseconds=round(1000 * seconds)) if answered else pd.NaT,
                "reading_time_s": seconds if answered else float("nan"),
            })
    return _typed(pd.DataFrame(rows))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Give the simulated table the column dtypes of the tidy contract."""
    for col in ("study_id", "query_id", "reader_id", "case_id", "n_slots"):
        df[col] = df[col].astype("int64")
    for col in ("repeat_of", "chosen_slot", "confidence"):
        df[col] = df[col].astype("Int64")
    df["is_repeat"] = df["is_repeat"].astype(bool)
    df["no_preference"] = df["no_preference"].astype(bool)
    df["reading_time_s"] = df["reading_time_s"].astype(float)
    for col in ("shown_at", "answered_at"):
        df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[ns, UTC]")
    for col in ["chosen_method", "comment"] + [f"slot_{k}" for k in range(1, MAX_SLOTS + 1)]:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df
