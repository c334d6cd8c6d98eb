"""The tidy vote table and the CSV / Parquet export.

:func:`tidy_votes` gives one row per shown, non-practice query of a study, answered or not (the interface
contract with ``study.analysis``):

``study_id, study_kind, query_id, reader, reader_id, case_id, case_key, label, source, is_repeat, repeat_of,
n_slots, slot_1..slot_N (N = max(5, most slots); the method shown in display slot k), chosen_method,
chosen_slot, no_preference, confidence, comment, shown_at, answered_at, reading_time_s``.

``no_preference`` is True for a "no preference" answer (a study option): such a row is answered but has no
``chosen_method`` / ``chosen_slot``; :func:`study.analysis.tables.answered` counts both kinds.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .analysis import tables as st
from .lookup import get_study
from .models import Case, Query, QuerySlot, Reader, Rendition, Study, Vote

log = logging.getLogger(__name__)

BASE_COLUMNS = ["study_id", "study_kind", "query_id", "reader", "reader_id", "case_id", "case_key", "label",
                "source", "is_repeat", "repeat_of", "n_slots"]
TAIL_COLUMNS = ["chosen_method", "chosen_slot", "no_preference", "confidence", "comment", "shown_at", "answered_at", "reading_time_s"]
MIN_SLOT_COLUMNS = 5


def _utc(values: list[Any]) -> pd.Series:
    return pd.Series(pd.to_datetime(pd.Series(values, dtype=object), utc=True)).astype("datetime64[ns, UTC]")


def tidy_votes(session: Session, study_ref: Study | int | str) -> pd.DataFrame:
    """The tidy table of a study (see the module doc), ordered by reader and position."""
    study = get_study(session, study_ref)
    rows = session.execute(
        select(Query.id, Reader.name, Reader.id, Case.id, Case.key, Case.label, Case.source, Query.is_repeat,
               Query.repeat_of_id, Query.shown_at, Vote.chosen_slot, Vote.no_preference, Vote.confidence, Vote.comment,
               Vote.shown_at, Vote.answered_at)
        .join(Reader, Reader.id == Query.reader_id)
        .join(Case, Case.id == Query.case_id)
        .outerjoin(Vote, Vote.query_id == Query.id)
        .where(Query.study_id == study.id, Query.is_practice.is_(False), Query.shown_at.is_not(None))
        .order_by(Query.reader_id, Query.position)
    ).all()
    slots: dict[int, dict[int, str]] = {}
    for qid, slot, method in session.execute(
        select(QuerySlot.query_id, QuerySlot.slot, Rendition.method)
        .join(Rendition, Rendition.id == QuerySlot.rendition_id)
        .join(Query, Query.id == QuerySlot.query_id)
        .where(Query.study_id == study.id, Query.is_practice.is_(False), Query.shown_at.is_not(None))
    ):
        slots.setdefault(qid, {})[slot] = method
    n_max = max([MIN_SLOT_COLUMNS] + [len(v) for v in slots.values()])
    slot_cols = [f"slot_{k}" for k in range(1, n_max + 1)]
    records = []
    for qid, rname, rid, cid, ckey, label, source, is_rep, rep_of, q_shown, slot, no_pref, conf, comment, v_shown, ans in rows:
        order = slots.get(qid, {})
        shown = v_shown if v_shown is not None else q_shown
        records.append({
            "study_id": study.id, "study_kind": study.kind, "query_id": qid, "reader": rname, "reader_id": rid,
            "case_id": cid, "case_key": ckey, "label": label, "source": source, "is_repeat": bool(is_rep),
            "repeat_of": rep_of, "n_slots": len(order),
            **{f"slot_{k}": order.get(k) for k in range(1, n_max + 1)},
            "chosen_method": order.get(slot) if slot is not None else None, "chosen_slot": slot,
            "no_preference": bool(no_pref),
            "confidence": conf, "comment": comment, "shown_at": shown, "answered_at": ans,
            "reading_time_s": (ans - shown).total_seconds() if ans is not None and shown is not None else math.nan,
        })
    columns = BASE_COLUMNS + slot_cols + TAIL_COLUMNS
    df = pd.DataFrame.from_records(records, columns=columns)
    for col in ("study_id", "query_id", "reader_id", "case_id", "n_slots"):
        df[col] = df[col].astype("int64")
    df["is_repeat"] = df["is_repeat"].astype(bool)
    df["no_preference"] = df["no_preference"].astype(bool)
    for col in ("repeat_of", "chosen_slot", "confidence"):
        df[col] = pd.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                            for v in df[col]], dtype="Int64")
    for col in ("shown_at", "answered_at"):
        df[col] = _utc(list(df[col]))
    df["reading_time_s"] = df["reading_time_s"].astype(float)
    for col in ["study_kind", "reader", "case_key", "label", "source", *slot_cols, "chosen_method", "comment"]:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


SIMULATED_NOTICE = ("SIMULATED DATA: every vote in these files was cast by a simulated reader (study.simstudy), not by a "
                    "doctor. They show what the analysis looks like; they are not results.")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "study"


def has_parquet() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


#: a cell starting with one of these is a formula to a spreadsheet (CSV injection); a tab or carriage return too
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy in which every text cell that a spreadsheet would run as a formula (``=1+1``, ``@SUM(..)``,
    ``+cmd|...``, ``-2+3``) starts with an apostrophe instead, so reader comments and names stay text when a CSV
    export is opened (OWASP CSV injection). Numbers are left alone; Parquet files keep the raw text."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v)
    return out


def to_csv_bytes(df: pd.DataFrame, index: bool = False) -> bytes:
    """CSV bytes of :func:`spreadsheet_safe` ``df`` (the app's downloads)."""
    return spreadsheet_safe(df).to_csv(index=index).encode("utf-8")


def _write(df: pd.DataFrame, base: Path, formats: tuple[str, ...], index: bool = False) -> list[Path]:
    out = []
    if "csv" in formats:
        spreadsheet_safe(df).to_csv(base.with_suffix(".csv"), index=index)
        out.append(base.with_suffix(".csv"))
    if "parquet" in formats and has_parquet():
        df.to_parquet(base.with_suffix(".parquet"), index=index)
        out.append(base.with_suffix(".parquet"))
    return out


def export_study(session: Session, study_ref: Study | int | str, out_dir: str | Path, *,
                 formats: tuple[str, ...] = ("csv", "parquet"), actor: int | None = None) -> list[Path]:
    """Write the tidy votes and every statistics table of a study to ``out_dir`` (CSV, and Parquet when pyarrow
    is installed); audited. Returns the files written."""
    study = get_study(session, study_ref)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = _slug(study.name)
    tidy = tidy_votes(session, study)
    s = st.summary(tidy, methods=list(study.methods))
    files = []
    if study.simulated:  # never mistaken for a real study once the files leave the app
        prefix = "SIMULATED_" + prefix
        tidy = tidy.assign(simulated=True)
        notice = out / f"{prefix}_NOTICE.txt"
        notice.write_text(SIMULATED_NOTICE + "\n")
        files.append(notice)
    files += _write(tidy, out / f"{prefix}_votes", formats)
    for key in ("selection", "uniformity", "pairwise", "by_label", "by_source", "reading_time", "repeats"):
        files += _write(s[key], out / f"{prefix}_{key}", formats)
    files += _write(s["table"].reset_index(), out / f"{prefix}_table", formats)
    agreement = out / f"{prefix}_agreement.json"
    agreement.write_text(json.dumps({**{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                        for k, v in s["agreement"].items()}, "simulated": study.simulated}, indent=2) + "\n")
    files.append(agreement)
    audit.record(session, audit.EXPORT, reader_id=actor, study_id=study.id,
                 detail={"dir": str(out), "files": [f.name for f in files], "rows": len(tidy)})
    log.info("exported %d files for %s to %s", len(files), study.name, out)
    return files
