"""The tidy vote table (interface contract with study.analysis) and the CSV / Parquet export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from study import audit
from study.export import export_study, tidy_votes
from study.models import AuditEvent
from study.render import DEFAULT_METHODS
from study.voting import next_query, query_id_for_token, query_slot_methods, submit_vote

CONTRACT = ["study_id", "study_kind", "query_id", "reader", "reader_id", "case_id", "case_key", "label", "source",
            "is_repeat", "repeat_of", "n_slots", "slot_1", "slot_2", "slot_3", "slot_4", "slot_5", "chosen_method",
            "chosen_slot", "no_preference", "confidence", "comment", "shown_at", "answered_at", "reading_time_s"]


def _answer_all(factory: Any, reader_id: int, skip_last: bool = False) -> dict[int, tuple[int, str]]:
    """Vote through a reader's queries (slot = 1 + position % 5); returns query id -> (slot, method)."""
    chosen = {}
    while True:
        with factory.begin() as s:
            view = next_query(s, reader_id)
            if view is None:
                return chosen
            qid = query_id_for_token(s, view.query_token)
            methods = query_slot_methods(s, qid)
            if skip_last and view.index == view.total and not view.is_practice:
                return chosen
        slot = 1 + len(chosen) % 5
        with factory.begin() as s:
            submit_vote(s, reader_id, view.query_token, slot, confidence=2, comment="ok" if slot == 2 else None)
        chosen[qid] = (slot, methods[slot - 1])


def test_tidy_table_follows_the_contract(factory: Any, make_study: Any) -> None:
    built = make_study(factory, readers=("a", "b"), n_cases=6, n_practice=2, repeat_fraction=0.34, repeat_min_gap=1)
    chosen = _answer_all(factory, built.readers["a"])
    chosen_b = _answer_all(factory, built.readers["b"], skip_last=True)  # b's last query: shown, not answered
    with factory.begin() as s:
        tidy = tidy_votes(s, built.study_id)
    assert list(tidy.columns) == CONTRACT
    assert len(tidy) == 8 + 8  # practice never appears; each reader: 6 cases + 2 repeats (b's last unanswered)
    assert str(tidy["shown_at"].dtype) == "datetime64[ns, UTC]" and str(tidy["answered_at"].dtype) == "datetime64[ns, UTC]"
    for col in ("repeat_of", "chosen_slot", "confidence"):
        assert str(tidy[col].dtype) == "Int64"
    assert tidy["is_repeat"].dtype == bool and tidy["reading_time_s"].dtype == float
    for row in tidy.itertuples():
        assert sorted(getattr(row, f"slot_{k}") for k in range(1, 6)) == sorted(DEFAULT_METHODS)
        if row.query_id in chosen or row.query_id in chosen_b:
            slot, method = (chosen | chosen_b)[row.query_id]
            assert (row.chosen_slot, row.chosen_method) == (slot, method)
            assert getattr(row, f"slot_{slot}") == method and row.reading_time_s >= 0
        else:
            assert row.reader == "b" and pd.isna(row.chosen_slot) and row.chosen_method is None
            assert pd.isna(row.answered_at) and pd.isna(row.reading_time_s)
    reps = tidy[tidy["is_repeat"]]
    assert len(reps) == 4
    for row in reps.itertuples():
        first = tidy[tidy["query_id"] == row.repeat_of].iloc[0]
        assert first["case_id"] == row.case_id and first["reader"] == row.reader and not first["is_repeat"]
    assert set(tidy["label"]) <= {"covid", "control"} and (tidy["study_kind"] == "restoration").all()


def test_export_writes_csv_and_parquet_and_audits(factory: Any, make_study: Any, tmp_path: Path) -> None:
    built = make_study(factory, readers=("a", "b"), n_cases=4, name="My study/1")
    _answer_all(factory, built.readers["a"])
    _answer_all(factory, built.readers["b"])
    with factory.begin() as s:
        files = export_study(s, built.study_id, tmp_path / "out")
    names = {f.name for f in files}
    for key in ("votes", "selection", "table", "uniformity", "pairwise", "by_label", "by_source", "reading_time"):
        assert f"My_study_1_{key}.csv" in names and f"My_study_1_{key}.parquet" in names
    assert "My_study_1_agreement.json" in names
    votes = pd.read_csv(tmp_path / "out" / "My_study_1_votes.csv")
    assert len(votes) == 8 and list(votes.columns) == CONTRACT
    assert pd.read_parquet(tmp_path / "out" / "My_study_1_votes.parquet")["chosen_method"].notna().all()
    table = pd.read_csv(tmp_path / "out" / "My_study_1_table.csv")
    assert list(table["reader"]) == ["a", "b", "overall"]
    with factory.begin() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == audit.EXPORT))
    assert event.detail["rows"] == 8 and "My_study_1_votes.csv" in event.detail["files"]


def test_csv_only(factory: Any, make_study: Any, tmp_path: Path) -> None:
    built = make_study(factory, readers=("a",), n_cases=2)
    with factory.begin() as s:
        files = export_study(s, built.study_id, tmp_path, formats=("csv",))
    assert files and all(f.suffix in (".csv", ".json") for f in files)
    assert not list(tmp_path.glob("*.parquet"))


def test_csv_exports_never_carry_spreadsheet_formulas(factory: Any, make_study: Any, tmp_path: Path) -> None:
    """A reader comment such as ``=1+1`` (or ``@SUM``, ``+cmd``, ``-2+3``) is text in every CSV a researcher opens."""
    from study.export import spreadsheet_safe, to_csv_bytes

    built = make_study(factory, readers=("a",), n_cases=4)
    evil = ["=1+1", "@SUM(A1:A9)", "+cmd|' /C calc'!A0", "-2+3"]
    with factory.begin() as s:
        for text in evil:
            view = next_query(s, built.readers["a"])
            submit_vote(s, built.readers["a"], view.query_token, 1, comment=text)
    with factory.begin() as s:
        files = export_study(s, built.study_id, tmp_path)
        tidy = tidy_votes(s, built.study_id)
    votes_csv = next(f for f in files if f.name.endswith("_votes.csv"))
    comments = pd.read_csv(votes_csv, keep_default_na=False)["comment"].tolist()
    assert sorted(c for c in comments if c) == sorted("'" + t for t in evil)
    assert not any(line.split(",")[0].startswith(("=", "@", "+")) for line in votes_csv.read_text().splitlines())
    assert sorted(c for c in pd.read_parquet(votes_csv.with_suffix(".parquet"))["comment"] if c) == sorted(evil)  # raw data kept
    dash = pd.read_csv(__import__("io").BytesIO(to_csv_bytes(tidy)), keep_default_na=False)  # the dashboard's download
    assert "'=1+1" in set(dash["comment"]) and "=1+1" not in set(dash["comment"])
    numbers = spreadsheet_safe(pd.DataFrame({"x": [-1.5, 2.0], "s": ["ok", "-x"]}))
    assert numbers["x"].tolist() == [-1.5, 2.0] and numbers["s"].tolist() == ["ok", "'-x"]
