"""Exports of a study for other tools: the tidy table as CSV or Parquet, and an iMRMC input file.

The tidy table (one row per shown query) is written as is; ``read_tidy_csv`` restores its column types.

The iMRMC file encodes "which method was chosen" as a 0/1 score per reader, case and modality (modality = method,
the original included), from the primary votes (answered first showings; repeat reads never count twice). iMRMC
analyses ROC data, so binary data go in the layout its authors describe for percent-correct analyses (DIDSR iMRMC
wiki, "MRMC analysis of binary data"): every real case is a truth = 1 ("signal-present") case scored 0 or 1, plus
a few placeholder truth = 0 cases that every reader scores 0.5 in every modality. Each modality's AUC then equals
its selection ratio, and iMRMC's reader x case variance analysis applies to it. The file has free-text front
matter (with the ``NR:``/``N0:``/``N1:``/``NM:`` size lines older iMRMC readers look for), the line
``BEGIN DATA:``, then ``readerID,caseID,modalityID,score`` rows; truth rows use ``truth`` as reader and modality.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .data import choice_data, primary_votes, validate_tidy

#: Placeholder signal-absent cases added to an iMRMC file (scored 0.5 by everyone).
FAKE_NEGATIVES = 5
_INT_COLUMNS = ("study_id", "query_id", "reader_id", "case_id", "n_slots")
_NULLABLE_INT_COLUMNS = ("repeat_of", "chosen_slot", "confidence")
_TIME_COLUMNS = ("shown_at", "answered_at")


def write_tidy_csv(tidy: pd.DataFrame, path: str | Path) -> Path:
    """Write the tidy table as UTF-8 CSV (ISO-8601 times with their UTC offset, empty cells for missing values)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tidy.to_csv(path, index=False)
    return path


def read_tidy_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by ``write_tidy_csv`` back with the tidy column types."""
    return _restore_types(pd.read_csv(path, keep_default_na=False, na_values=[""]))


def read_tidy_parquet(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file written by ``write_tidy_parquet`` back with the tidy column types."""
    return _restore_types(pd.read_parquet(path, engine="pyarrow"))


def _restore_types(df: pd.DataFrame) -> pd.DataFrame:
    """The tidy contract's column types (text columns that may be empty hold None, not NaN)."""
    for col in _INT_COLUMNS:
        if col in df:
            df[col] = df[col].astype("int64")
    for col in _NULLABLE_INT_COLUMNS:
        if col in df:
            df[col] = df[col].astype("Int64")
    for col in _TIME_COLUMNS:
        if col in df:
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    for col in ("is_repeat", "no_preference"):
        if col in df:
            df[col] = df[col].map({True: True, False: False, "True": True, "False": False}).astype(bool)
    for col in [c for c in df.columns if c.startswith("slot_")] + ["chosen_method", "comment"]:
        if col in df:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def write_tidy_parquet(tidy: pd.DataFrame, path: str | Path) -> Path:
    """Write the tidy table as Parquet (pyarrow); column types survive the round trip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tidy.to_parquet(path, index=False, engine="pyarrow")
    return path


def _safe_id(text: str) -> str:
    """An iMRMC field: no commas, no whitespace."""
    return re.sub(r"[\s,]+", "_", str(text).strip()) or "_"


def _reader_ids(votes: pd.DataFrame) -> dict[str, str]:
    names = sorted(votes["reader"].astype(str).unique())
    ids = {n: _safe_id(n) for n in names}
    clash = len(set(ids.values())) != len(ids) or any(v in ("truth", "-1") for v in ids.values())
    if clash and "reader_id" in votes:
        first_id = votes.groupby(votes["reader"].astype(str))["reader_id"].first()
        ids = {n: f"reader{int(first_id[n])}" for n in names}
    elif clash:
        ids = {n: f"reader{i}" for i, n in enumerate(names, 1)}
    return ids


def imrmc_frame(tidy: pd.DataFrame, *, original: str = "original", n_fake_negatives: int = FAKE_NEGATIVES) -> pd.DataFrame:
    """The iMRMC rows (readerID, caseID, modalityID, score): truth rows first, then reader scores.

    A reader's score for (case, method) is 1.0 when it picked that method, 0.0 when it was shown but not picked;
    methods a query did not show get no row. caseID is the study's integer case id; placeholder negatives take
    the ids after the largest one.
    """
    validate_tidy(tidy)
    votes = primary_votes(tidy)
    data = choice_data(tidy, original)
    readers = _reader_ids(votes)
    case_ids = votes["case_id"].astype("int64").to_numpy()
    reader_ids = votes["reader"].astype(str).map(readers).to_numpy()
    real_cases = sorted(set(int(c) for c in case_ids))
    fake = list(range(max(real_cases, default=0) + 1, max(real_cases, default=0) + 1 + n_fake_negatives))
    rows = [("truth", c, "truth", 1.0) for c in real_cases] + [("truth", c, "truth", 0.0) for c in fake]
    for q in range(data.n_queries):
        for j, method in enumerate(data.methods):
            if data.shown[q, j]:
                rows.append((reader_ids[q], int(case_ids[q]), method, 1.0 if data.chosen[q, j] else 0.0))
    for reader in sorted(set(readers.values())):
        for c in fake:
            rows.extend((reader, c, method, 0.5) for method in data.methods)
    return pd.DataFrame(rows, columns=["readerID", "caseID", "modalityID", "score"])


def write_imrmc(tidy: pd.DataFrame, path: str | Path, *, original: str = "original",
                n_fake_negatives: int = FAKE_NEGATIVES) -> Path:
    """Write the iMRMC input file (see the module docstring) and return its path."""
    frame = imrmc_frame(tidy, original=original, n_fake_negatives=n_fake_negatives)
    truth = frame[frame["readerID"] == "truth"]
    scores = frame[frame["readerID"] != "truth"]
    study = ", ".join(str(s) for s in sorted(tidy["study_id"].unique())) if len(tidy) else "?"
    header = [
        f"r2c reader study {study}: method chosen (1) or not (0) per reader, case and modality (= method).",
        "Primary votes only (answered first showings). Real cases are truth=1; caseIDs "
        f"{', '.join(str(c) for c in truth.loc[truth['score'] == 0, 'caseID'])} are placeholder truth=0 cases "
        "scored 0.5 by every reader in every modality, so each modality's AUC equals its selection ratio.",
        "",
        f"NR: {scores['readerID'].nunique()}",
        f"N0: {int((truth['score'] == 0).sum())}",
        f"N1: {int((truth['score'] == 1).sum())}",
        f"NM: {scores['modalityID'].nunique()}",
        "",
        "BEGIN DATA:",
    ]
    body = [f"{r},{c},{m},{_score(s)}" for r, c, m, s in frame.itertuples(index=False)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header + body) + "\n", encoding="utf-8")
    return path


def _score(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def read_imrmc(path: str | Path) -> pd.DataFrame:
    """Parse the data rows of an iMRMC input file (after ``BEGIN DATA:``) into a frame (for checks and tests)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    start = [i for i, line in enumerate(lines) if line.strip() == "BEGIN DATA:"]
    if len(start) != 1:
        raise ValueError(f"{path}: expected exactly one 'BEGIN DATA:' line")
    rows = [line.strip().split(",") for line in lines[start[0] + 1:] if line.strip()]
    if any(len(r) != 4 for r in rows):
        raise ValueError(f"{path}: every data row needs 4 comma-separated fields")
    frame = pd.DataFrame(rows, columns=["readerID", "caseID", "modalityID", "score"])
    frame["score"] = frame["score"].astype(float)
    return frame
