"""CLI: a smoke ``train --max-steps 5`` on real X-rays whose checkpoint ``classify`` loads, ``evaluate``, and
bad-input cases (one ``error:`` line, exit 2)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from r2c_core.cli import main


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.data
def test_smoke_train_classify_evaluate(cxr_dir, cxr_manifest, tmp_path, capsys):
    out = tmp_path / "run"
    sets = ["model=op-q1", "size=32", "batch_size=2", "limit_per_domain=4", "epochs=3", "epoch_decay=1", "device=cpu", "amp=false", "version=smoke"]
    argv = ["train", "--out", str(out), "--max-steps", "5", "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 5 and summary["total_steps"] == 6
    log = pd.read_csv(out / "train_log.csv")
    assert list(log["step"]) == [0, 1, 2, 3, 4] and {"G_loss", "D_loss", "A2B_c_loss", "lr"} <= set(log.columns)
    assert log[["G_loss", "D_loss"]].notna().all().all()
    cfg = json.loads((out / "generator" / "config.json").read_text())
    assert cfg["version"] == "smoke" and cfg["working_size"] == 32 and cfg["training"]["step"] == 5
    assert len(cfg["data_split"]["sha256"]) == 64 and cfg["data_split"]["used"]["train_A"] == 4
    state = json.loads((out / "state" / "config.json").read_text())
    assert state["step"] == 5 and state["training"]["model"] == "op-q1"

    # classify a handful of real test images through a manifest in another folder (absolute image paths)
    rows = cxr_manifest[cxr_manifest["split"] == "test"].groupby("source").head(2).copy()
    rows["file"] = [str(cxr_dir / f) for f in rows["file"]]
    man = tmp_path / "small.csv"
    rows.to_csv(man, index=False)
    preds = tmp_path / "preds.csv"
    assert main(["classify", "--weights", str(out / "generator"), "--manifest", str(man), "--split", "test", "--out", str(preds), "--batch-size", "4"]) == 0
    p = pd.read_csv(preds)
    assert list(p.columns) == ["id", "label", "prob_covid", "pred"]
    assert list(p["id"]) == list(rows["id"]) and p["prob_covid"].between(0, 1).all()
    assert (p["pred"] == p["prob_covid"].ge(0.5).map({True: "covid", False: "control"})).all()
    capsys.readouterr()
    assert main(["evaluate", "--preds", str(preds), "--manifest", str(cxr_dir / "MANIFEST.csv"), "--bootstrap", "50"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == len(rows) and set(res["model"]["per_source"]) == set(rows["source"])
    assert res["metadata_baseline"]["fitted_on"] > 500 and "ci95" in res["metadata_baseline"]["pooled"]

    # resume continues to the end of the schedule
    assert main(["train", "--resume", str(out), "--max-steps", "6", "--no-progress"]) == 0
    assert json.loads((out / "state" / "config.json").read_text())["step"] == 6
    assert len(pd.read_csv(out / "train_log.csv")) == 6


def test_bad_inputs_give_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    w = tmp_path / "w"  # no weights needed: the manifest is checked first
    assert main(["classify", "--weights", str(w), "--manifest", str(empty), "--out", str(tmp_path / "p.csv")]) == 2
    assert "empty" in _one_error_line(capsys)

    bad = tmp_path / "bad.csv"
    bad.write_text("name,path\nx,y.png\n")
    assert main(["classify", "--weights", str(w), "--manifest", str(bad), "--out", str(tmp_path / "p.csv")]) == 2
    assert "missing column" in _one_error_line(capsys)

    missing = tmp_path / "missing.csv"
    missing.write_text("id,file,label,split,source\na,nope.png,covid,test,s\n")
    assert main(["classify", "--weights", str(w), "--manifest", str(missing), "--out", str(tmp_path / "p.csv")]) == 2
    assert "do not exist" in _one_error_line(capsys)
    assert main(["classify", "--weights", str(w), "--manifest", str(missing), "--split", "holdout", "--out", str(tmp_path / "p.csv")]) == 2
    assert "unknown split" in _one_error_line(capsys)

    preds = tmp_path / "preds.csv"
    preds.write_text("id,label\na,covid\n")
    assert main(["evaluate", "--preds", str(preds), "--manifest", str(missing)]) == 2
    assert "prob_covid" in _one_error_line(capsys)
    preds.write_text("id,label,prob_covid\nzzz,covid,0.4\n")
    assert main(["evaluate", "--preds", str(preds), "--manifest", str(missing)]) == 2
    assert "not in the manifest" in _one_error_line(capsys)

    assert main(["train", "--set", "epochz=3", "--out", str(tmp_path / "r")]) == 2
    assert "unknown key" in _one_error_line(capsys)
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no training state" in _one_error_line(capsys)
