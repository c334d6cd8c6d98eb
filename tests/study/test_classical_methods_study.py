"""Classical comparators in a study: built by the r2c renderer beside the original, blinded the same way,
voted on, and counted by the statistics like any restorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from r2c_core import classical
from r2c_core.inference import roundtrip
from r2c_core.study_renderer import R2CRenderer
from study.analysis.tables import selection_ratios
from study.assets import asset_path, decode_png, read_gray
from study.export import tidy_votes
from study.models import Case
from study.voting import next_query, query_id_for_token, query_slot_methods, submit_vote

METHODS = ["original", "clahe", "nlm", "gamma"]


def test_classical_methods_built_blinded_and_voted(factory: Any, make_study: Any, assets: Path, tiny_manifest: Path,
                                                   tmp_path: Path) -> None:
    renderer = R2CRenderer("restoration", weights_root=tmp_path / "no-weights", device="cpu", methods=METHODS)
    built = make_study(factory, n_cases=3, renderer=renderer, methods=tuple(METHODS), readers=("r1",))
    with factory.begin() as s:
        for case in s.scalars(select(Case).where(Case.study_id == built.study_id)).all():
            rends = {r.method: r for r in case.renditions}
            assert set(rends) == set(METHODS)
            raw = read_gray(tiny_manifest.parent / case.file)
            for method, r in rends.items():
                arr = decode_png(asset_path(assets, r.sha256).read_bytes())
                assert arr.shape == raw.shape and method not in asset_path(assets, r.sha256).name
                want = roundtrip(raw) if method == "original" else classical.ClassicalRestorer(method).restore(raw).image
                assert np.array_equal(arr, want)
    rid = built.readers["r1"]
    for _ in range(3):  # always pick CLAHE, wherever it was placed
        with factory.begin() as s:
            view = next_query(s, rid)
            slot = query_slot_methods(s, query_id_for_token(s, view.query_token)).index("clahe") + 1
            assert "clahe" not in repr(view.as_dict())  # nothing in what the page gets names the method
        with factory.begin() as s:
            submit_vote(s, rid, view.query_token, slot)
    with factory.begin() as s:
        tidy = tidy_votes(s, built.study_id)
    ratios = selection_ratios(tidy).set_index(["reader", "method"])
    assert ratios.loc[("overall", "clahe"), "ratio"] == 1.0 and ratios.loc[("overall", "clahe"), "n"] == 3
    assert ratios.loc[("overall", "original"), "ratio"] == 0.0
