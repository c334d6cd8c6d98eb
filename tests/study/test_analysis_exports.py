"""Exports: tidy CSV / Parquet round trips and the iMRMC input file for 'method chosen' (0/1)."""

from __future__ import annotations

import pandas as pd
import pytest

from study.analysis import (
    full_report, imrmc_frame, read_imrmc, read_tidy_csv, read_tidy_parquet, write_imrmc, write_tidy_csv, write_tidy_parquet,
)
from study.simulate import SimReader, simulate_tidy

METHODS = ["original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]


@pytest.fixture(scope="module")
def tidy():
    readers = [SimReader("Dr. Smith, MD", {"op-q3-x3": 3.0}), SimReader("reader 2", {}), SimReader("r3", {"original": 2.0})]
    return simulate_tidy(readers, 25, METHODS, seed=21, repeat_fraction=0.2, unanswered_fraction=0.1)


def test_csv_round_trip_keeps_values_and_types(tidy, tmp_path):
    path = write_tidy_csv(tidy, tmp_path / "sub" / "votes.csv")
    back = read_tidy_csv(path)
    pd.testing.assert_frame_equal(back, tidy, check_dtype=True, check_column_type=False)


def test_parquet_round_trip_keeps_values_and_types(tidy, tmp_path):
    path = write_tidy_parquet(tidy, tmp_path / "votes.parquet")
    pd.testing.assert_frame_equal(read_tidy_parquet(path), tidy, check_dtype=True, check_column_type=False)
    raw = pd.read_parquet(path)  # any Parquet reader gets the same numbers and times
    for col in ("repeat_of", "chosen_slot", "confidence", "shown_at", "answered_at", "is_repeat", "query_id"):
        assert raw[col].dtype == tidy[col].dtype, col


def test_imrmc_file_layout(tidy, tmp_path):
    path = write_imrmc(tidy, tmp_path / "study.imrmc")
    lines = path.read_text().splitlines()
    begin = lines.index("BEGIN DATA:")
    header = dict(line.split(": ", 1) for line in lines[:begin] if line[:3] in ("NR:", "N0:", "N1:", "NM:"))
    first = tidy[~tidy["is_repeat"] & tidy["chosen_method"].notna()]
    assert header == {"NR": "3", "N0": "5", "N1": str(first["case_id"].nunique()), "NM": "5"}
    rows = lines[begin + 1:]
    assert all(len(r.split(",")) == 4 and " " not in r for r in rows)
    assert "Dr._Smith_MD" in {r.split(",")[0] for r in rows}  # commas and spaces cannot appear in an ID
    frame = read_imrmc(path)
    truth = frame[frame["readerID"] == "truth"]
    assert truth["caseID"].is_unique and set(truth["modalityID"]) == {"truth"}
    assert set(truth["score"]) == {0.0, 1.0}


def test_imrmc_scores_are_the_primary_choices(tidy):
    frame = imrmc_frame(tidy)
    scores = frame[frame["readerID"] != "truth"]
    fake = set(frame.loc[(frame["readerID"] == "truth") & (frame["score"] == 0), "caseID"])
    real = scores[~scores["caseID"].isin(fake)]
    assert not real.duplicated(["readerID", "caseID", "modalityID"]).any()  # one score per reader, case, modality
    per_read = real.groupby(["readerID", "caseID"])["score"].agg(["sum", "count"])
    assert (per_read["sum"] == 1).all() and (per_read["count"] == 5).all()  # exactly one method chosen of five
    first = tidy[~tidy["is_repeat"] & tidy["chosen_method"].notna()]
    assert len(per_read) == len(first)  # repeats and unanswered queries are left out
    placeholder = scores[scores["caseID"].isin(fake)]
    assert set(placeholder["score"]) == {0.5} and len(placeholder) == 3 * 5 * 5
    # each modality's mean score over real cases is its selection ratio in the report
    report = full_report(tidy, seed=0, n_boot=20, mixed=False)
    ratios = {r["method"]: r["ratio"] for r in report["selection"]["methods"]}
    for method, mean in real.groupby("modalityID")["score"].mean().items():
        assert mean == pytest.approx(ratios[method])
