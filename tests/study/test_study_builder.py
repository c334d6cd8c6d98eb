"""Study builder: case selection, rendition contract, resumable rendering, allocation, repeats, practice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from study.assets import asset_path, decode_png, read_gray
from study.builder import StudySpec, assign_readers, build_study, create_study, render_study
from study.errors import ManifestError, RenditionError, StudyError
from study.manifest import read_manifest, select_cases
from study.models import Case, Query, QuerySlot, Rendition
from study.render import DEFAULT_METHODS, SyntheticRenderer, check_renditions


def _queries(session: Any, study_id: int, reader_id: int) -> list[Query]:
    return list(session.scalars(select(Query).where(Query.study_id == study_id, Query.reader_id == reader_id)
                                .order_by(Query.position)))


# -- manifest and case selection -----------------------------------------------------------------------------


def test_selection_is_seeded_and_label_balanced(tiny_manifest: Path) -> None:
    m = read_manifest(tiny_manifest)
    a = select_cases(m, split="test", n=11, seed=3)
    b = select_cases(m, split="test", n=11, seed=3)
    c = select_cases(m, split="test", n=11, seed=4)
    assert list(a["id"]) == list(b["id"]) and list(a["id"]) != list(c["id"])
    counts = a["label"].value_counts()
    assert sorted(counts.tolist()) == [5, 6]
    assert a["id"].is_unique


def test_selection_fills_from_the_other_label_when_one_is_short(tiny_manifest: Path) -> None:
    m = read_manifest(tiny_manifest)
    m = pd.concat([m[m["label"] == "covid"].head(3), m[m["label"] == "control"]])
    sel = select_cases(m, split="test", n=10, seed=0)
    assert len(sel) == 10 and (sel["label"] == "covid").sum() == 3


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "not a readable CSV|no rows"),
        ("id,file,label,split\nx,a.png,covid,test\n", "lacks column"),
        ("id,file,label,split,source\n", "no rows"),
        ("id,file,label,split,source\nx,a.png,flu,test,ieee\n", "unknown label"),
        ("id,file,label,split,source\nx,a.png,covid,test,ieee\nx,b.png,covid,test,ieee\n", "more than once"),
    ],
)
def test_malformed_manifest(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "MANIFEST.csv"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_too_few_cases_in_split(tiny_manifest: Path) -> None:
    with pytest.raises(ManifestError, match="only 60"):
        select_cases(read_manifest(tiny_manifest), split="test", n=61, seed=0)
    with pytest.raises(ManifestError, match="no cases in split 'train'"):
        select_cases(read_manifest(tiny_manifest), split="train", n=1, seed=0)


@pytest.mark.data
def test_real_manifest_selection(cxr_manifest: pd.DataFrame, cxr_dir: Path) -> None:
    sel = select_cases(read_manifest(cxr_dir / "MANIFEST.csv"), split="test", n=20, seed=0)
    assert (sel["label"].value_counts() == 10).all()
    assert set(sel["id"]) <= set(cxr_manifest.loc[cxr_manifest["split"] == "test", "id"])
    for rel in sel["file"]:
        assert read_gray(cxr_dir / rel).dtype == np.uint8


# -- rendition contract --------------------------------------------------------------------------------------


def test_check_renditions_contract() -> None:
    ok = {m: np.zeros((4, 5), np.uint8) for m in DEFAULT_METHODS}
    assert list(check_renditions(ok, DEFAULT_METHODS)) == list(DEFAULT_METHODS)
    with pytest.raises(RenditionError, match="expected"):
        check_renditions({k: v for k, v in ok.items() if k != "cnn-x1"}, DEFAULT_METHODS)
    with pytest.raises(RenditionError, match="8-bit gray"):
        check_renditions({**ok, "cnn-x1": np.zeros((4, 5), np.float32)}, DEFAULT_METHODS)
    with pytest.raises(RenditionError, match="8-bit gray"):
        check_renditions({**ok, "cnn-x1": np.zeros((4, 5, 3), np.uint8)}, DEFAULT_METHODS)
    with pytest.raises(RenditionError, match="differs"):
        check_renditions({**ok, "cnn-x1": np.zeros((4, 6), np.uint8)}, DEFAULT_METHODS)
    with pytest.raises(RenditionError, match="dict"):
        check_renditions([1, 2], DEFAULT_METHODS)


class _BadSizeRenderer(SyntheticRenderer):
    def render(self, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        out = super().render(image, methods)
        out["op-q5-x3"] = out["op-q5-x3"][:-1]
        return out


def test_build_refuses_renderer_breaking_the_contract(factory: Any, make_study: Any) -> None:
    with pytest.raises(RenditionError, match="differs from the other renditions"):
        make_study(factory, renderer=_BadSizeRenderer())


def test_renditions_same_size_gray_png_by_hash(factory: Any, make_study: Any, assets: Path,
                                               tiny_manifest: Path) -> None:
    built = make_study(factory, n_cases=4)
    with factory.begin() as session:
        cases = session.scalars(select(Case).where(Case.study_id == built.study_id)).all()
        for case in cases:
            rends = {r.method: r for r in case.renditions}
            assert set(rends) == set(DEFAULT_METHODS)
            raw = read_gray(tiny_manifest.parent / case.file)
            expected = SyntheticRenderer(working_size=32).render(raw, list(DEFAULT_METHODS))
            for method, r in rends.items():
                path = asset_path(assets, r.sha256)
                assert path.name == f"{r.sha256}.png" and method not in str(path)
                arr = decode_png(path.read_bytes())
                assert arr.shape == raw.shape == (r.height, r.width)
                assert np.array_equal(arr, expected[method])  # the original went through the pipeline too
            assert not np.array_equal(decode_png(asset_path(assets, rends["original"].sha256).read_bytes()), raw)


def test_segmentation_renditions_draw_a_contour(factory: Any, make_study: Any, assets: Path) -> None:
    built = make_study(factory, n_cases=2, kind="segmentation")
    with factory.begin() as session:
        case = session.scalars(select(Case).where(Case.study_id == built.study_id)).first()
        for r in case.renditions:
            arr = decode_png(asset_path(assets, r.sha256).read_bytes())
            assert (arr == 255).sum() > 0


class _FlakyRenderer(SyntheticRenderer):
    def __init__(self, fail_after: int | None) -> None:
        super().__init__(working_size=32)
        self.calls = 0
        self.fail_after = fail_after

    def render(self, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        return super().render(image, methods)


def test_render_is_resumable(factory: Any, tiny_manifest: Path, assets: Path) -> None:
    spec = StudySpec(name="resume", manifest=tiny_manifest, n_cases=8, n_practice=2)
    flaky = _FlakyRenderer(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        build_study(factory, spec, flaky, assets=assets, show_bar=False)
    with factory.begin() as session:
        assert session.scalar(select(func.count()).select_from(Rendition)) == 3 * len(DEFAULT_METHODS)
    again = _FlakyRenderer(fail_after=None)
    seen: list[tuple[int, int]] = []
    build_study(factory, spec, again, assets=assets, show_bar=False, progress=lambda d, t: seen.append((d, t)))
    assert again.calls == 10 - 3
    assert seen[-1] == (10, 10) and len(seen) == 10
    third = _FlakyRenderer(fail_after=None)
    assert render_study(factory, "resume", third, assets=assets, show_bar=False) == 0 and third.calls == 0


def test_rerendering_a_missing_file_must_reproduce_it(factory: Any, make_study: Any, assets: Path) -> None:
    built = make_study(factory, n_cases=2)
    with factory.begin() as session:
        r = session.scalars(select(Rendition)).first()
        asset_path(assets, r.sha256).unlink()
    assert render_study(factory, built.study_id, SyntheticRenderer(working_size=32), assets=assets, show_bar=False) == 1

    class Other(SyntheticRenderer):
        def render(self, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
            return {m: 255 - v for m, v in super().render(image, methods).items()}

    asset_path(assets, r.sha256).unlink()
    with pytest.raises(RenditionError, match="different image"):
        render_study(factory, built.study_id, Other(working_size=32), assets=assets, show_bar=False)


def test_same_name_with_other_settings_is_refused(factory: Any, tiny_manifest: Path) -> None:
    with factory.begin() as session:
        create_study(session, StudySpec(name="x", manifest=tiny_manifest, n_cases=4))
    with pytest.raises(StudyError, match="different settings.*n_cases"):
        with factory.begin() as session:
            create_study(session, StudySpec(name="x", manifest=tiny_manifest, n_cases=5))


def test_renderer_kind_must_match(factory: Any, tiny_manifest: Path, assets: Path) -> None:
    spec = StudySpec(name="k", manifest=tiny_manifest, n_cases=2, kind="segmentation")
    with pytest.raises(RenditionError, match="restoration renditions"):
        build_study(factory, spec, SyntheticRenderer("restoration"), assets=assets, show_bar=False)


@pytest.mark.parametrize("bad", [dict(methods=("cnn-x1", "op-q3-x3")), dict(kind="x"), dict(allocation="x"),
                                 dict(repeat_fraction=1.5), dict(practice_from="x"), dict(methods=("original",))])
def test_spec_validation(tiny_manifest: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(StudyError):
        StudySpec(name="v", manifest=tiny_manifest, **bad).validate()


# -- allocation, order, repeats, practice --------------------------------------------------------------------


def test_overlap_gives_every_reader_every_case(factory: Any, make_study: Any) -> None:
    built = make_study(factory, readers=("a", "b", "c"), n_cases=6)
    with factory.begin() as session:
        study_cases = set(session.scalars(select(Case.id).where(Case.study_id == built.study_id)))
        orders = []
        for rid in built.readers.values():
            qs = _queries(session, built.study_id, rid)
            assert {q.case_id for q in qs} == study_cases and len(qs) == 6
            assert [q.position for q in qs] == list(range(6))
            orders.append([q.case_id for q in qs])
    assert len({tuple(o) for o in orders}) > 1  # seeded per reader


def test_split_deals_balanced_disjoint_shares(factory: Any, make_study: Any) -> None:
    built = make_study(factory, readers=("a", "b", "c"), n_cases=12, allocation="split")
    with factory.begin() as session:
        labels = dict(session.execute(select(Case.id, Case.label).where(Case.study_id == built.study_id)).all())
        shares = [[q.case_id for q in _queries(session, built.study_id, rid)] for rid in built.readers.values()]
    flat = [c for s in shares for c in s]
    assert sorted(flat) == sorted(labels) and len(set(flat)) == 12
    for share in shares:
        assert len(share) == 4 and Counter(labels[c] for c in share) == {"covid": 2, "control": 2}
    with factory.begin() as session:
        from study.accounts import add_reader

        add_reader(session, "late")
    with pytest.raises(StudyError, match="new readers need a new study"):
        with factory.begin() as session:
            assign_readers(session, built.study_id, ["late"])


def test_repeats_are_spaced_and_freshly_ordered(factory: Any, make_study: Any) -> None:
    built = make_study(factory, readers=("a", "b"), n_cases=20, repeat_fraction=0.2, repeat_min_gap=4)
    with factory.begin() as session:
        for rid in built.readers.values():
            qs = _queries(session, built.study_id, rid)
            reps = [q for q in qs if q.is_repeat]
            assert len(qs) == 24 and len(reps) == 4
            by_id = {q.id: q for q in qs}
            for rep in reps:
                first = by_id[rep.repeat_of_id]
                assert first.case_id == rep.case_id and not first.is_repeat
                assert rep.position - first.position - 1 >= 4
                assert [s.rendition_id for s in rep.slots] != [s.rendition_id for s in first.slots]
                assert sorted(s.rendition_id for s in rep.slots) == sorted(s.rendition_id for s in first.slots)


def test_practice_from_extra_cases_comes_first(factory: Any, make_study: Any) -> None:
    built = make_study(factory, readers=("a",), n_cases=6, n_practice=3)
    with factory.begin() as session:
        roles = dict(session.execute(select(Case.id, Case.role).where(Case.study_id == built.study_id)).all())
        qs = _queries(session, built.study_id, built.readers["a"])
    assert [q.is_practice for q in qs] == [True] * 3 + [False] * 6
    assert all(roles[q.case_id] == "practice" for q in qs[:3])
    assert all(roles[q.case_id] == "study" for q in qs[3:])


def test_practice_from_repeats_of_study_cases(factory: Any, make_study: Any) -> None:
    built = make_study(factory, readers=("a",), n_cases=6, n_practice=2, practice_from="repeat")
    with factory.begin() as session:
        qs = _queries(session, built.study_id, built.readers["a"])
        n_practice_cases = session.scalar(select(func.count()).select_from(Case).where(Case.role == "practice"))
    assert n_practice_cases == 0
    assert [q.is_practice for q in qs] == [True] * 2 + [False] * 6
    assert {q.case_id for q in qs[:2]} <= {q.case_id for q in qs[2:]}


def test_slot_order_is_a_permutation_of_the_case_renditions(factory: Any, make_study: Any) -> None:
    make_study(factory, n_cases=5)
    with factory.begin() as session:
        rows = session.execute(select(QuerySlot.query_id, QuerySlot.slot, Rendition.case_id, Query.case_id)
                               .join(Rendition).join(Query)).all()
    per_query: dict[int, list[int]] = {}
    for qid, slot, rcase, qcase in rows:
        assert rcase == qcase
        per_query.setdefault(qid, []).append(slot)
    assert all(sorted(v) == [1, 2, 3, 4, 5] for v in per_query.values())


class _BrokenRenderer(SyntheticRenderer):
    def render(self, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        raise ValueError("weights missing")


def test_renderer_failure_becomes_one_line(factory: Any, make_study: Any) -> None:
    with pytest.raises(RenditionError, match="the renderer failed: weights missing"):
        make_study(factory, renderer=_BrokenRenderer())
