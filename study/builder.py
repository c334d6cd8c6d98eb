"""The study builder: pick cases from a manifest, render every rendition, assign cases to readers, open.

Steps (each resumable; :func:`build_study` runs them all and is safe to run again after an interruption):

1. :func:`create_study` records the study and its settings and picks the cases (seeded, stratified by label),
   plus extra practice cases when practice queries come from extra cases.
2. :func:`render_study` asks the renderer for every method of each case, enforces the rendition contract and
   stores the PNGs by content hash. One transaction per case, so an interrupted build keeps what it finished;
   cases whose renditions are all stored are skipped.
3. :func:`assign_readers` gives each reader their sequence of queries: practice queries first, then their
   cases (all of them with ``overlap``, a label-balanced share with ``split``) in a seeded order, with a seeded
   fraction of cases shown again as repeat reads after at least ``repeat_min_gap`` other queries. Every query
   gets its own random display order (a repeat gets a fresh one) and an opaque random token.
4. :func:`set_status` opens the study for voting.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from . import audit
from .assets import asset_path, assets_dir, encode_png, read_gray, store_png
from .errors import RenditionError, StudyError
from .lookup import get_reader, get_study
from .manifest import read_manifest, select_cases
from .models import ALLOCATIONS, STUDY_KINDS, STUDY_STATUSES, Case, Query, QuerySlot, Reader, Rendition, Study, utcnow
from .render import DEFAULT_METHODS, ORIGINAL, Renderer, check_renditions, renderer_kind
from .security import new_key, new_token

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
PRACTICE_SOURCES = ("extra", "repeat")
#: Settings that define which cases and queries a study has; a rebuild must not change them.
_FIXED_SETTINGS = (
    "split", "n_cases", "seed", "n_practice", "practice_from", "repeat_fraction", "repeat_min_gap", "method_settings",
    "no_preference",
)


@dataclass(frozen=True)
class StudySpec:
    """Everything needed to build a study. ``readers`` empty means every active reader with role ``reader``."""

    name: str
    manifest: Path
    kind: str = "restoration"
    methods: tuple[str, ...] = DEFAULT_METHODS
    method_settings: dict[str, Any] = field(default_factory=dict)
    split: str | None = "test"
    n_cases: int = 50
    seed: int = 0
    allocation: str = "overlap"
    readers: tuple[str, ...] = ()
    repeat_fraction: float = 0.0
    repeat_min_gap: int = 5
    n_practice: int = 0
    practice_from: str = "extra"
    #: offer a "no preference" answer (off by default: the paper forces a choice; see docs/STUDY.md)
    no_preference: bool = False

    def validate(self) -> None:
        """Raise :class:`StudyError` (one line) for settings that cannot make a study."""
        if not self.name.strip():
            raise StudyError("the study needs a name")
        if self.kind not in STUDY_KINDS:
            raise StudyError(f"unknown study kind {self.kind!r} (expected {' or '.join(STUDY_KINDS)})")
        if self.allocation not in ALLOCATIONS:
            raise StudyError(f"unknown allocation {self.allocation!r} (expected {' or '.join(ALLOCATIONS)})")
        if len(self.methods) < 2 or len(set(self.methods)) != len(self.methods):
            raise StudyError("a study needs at least two distinct methods")
        if ORIGINAL not in self.methods:
            raise StudyError(f"the methods must include {ORIGINAL!r}")
        if any(not m or len(m) > 50 for m in self.methods):
            raise StudyError("method names must be 1 to 50 characters")
        if self.n_cases < 1:
            raise StudyError("the number of cases must be at least 1")
        if not 0.0 <= self.repeat_fraction <= 1.0:
            raise StudyError("repeat_fraction must be between 0 and 1")
        if self.repeat_min_gap < 0 or self.n_practice < 0:
            raise StudyError("repeat_min_gap and the number of practice queries must not be negative")
        if self.practice_from not in PRACTICE_SOURCES:
            raise StudyError(f"practice queries come from {' or '.join(PRACTICE_SOURCES)}, not {self.practice_from!r}")

    def settings(self) -> dict[str, Any]:
        """The JSON settings stored with the study."""
        return {
            "manifest": str(Path(self.manifest).resolve()),
            "split": self.split,
            "n_cases": int(self.n_cases),
            "seed": int(self.seed),
            "n_practice": int(self.n_practice),
            "practice_from": self.practice_from,
            "repeat_fraction": float(self.repeat_fraction),
            "repeat_min_gap": int(self.repeat_min_gap),
            "method_settings": dict(self.method_settings),
            # stored only when on, so studies built before the option existed resume unchanged
            **({"no_preference": True} if self.no_preference else {}),
        }


# -- 1. create -----------------------------------------------------------------------------------------------


def _check_same(study: Study, spec: StudySpec) -> None:
    new = spec.settings()
    diffs = [k for k in _FIXED_SETTINGS if study.settings.get(k) != new.get(k)]
    if study.kind != spec.kind:
        diffs.append("kind")
    if study.allocation != spec.allocation:
        diffs.append("allocation")
    if list(study.methods) != list(spec.methods):
        diffs.append("methods")
    if diffs:
        raise StudyError(
            f"study {study.name!r} already exists with different settings ({', '.join(diffs)}); "
            "use the same settings to resume it, or another name"
        )


def _add_cases(session: Session, study: Study, rows: Any, role: str) -> None:
    for row in rows.itertuples(index=False):
        session.add(
            Case(study_id=study.id, key=row.id, label=row.label, source=row.source, split=row.split,
                 file=row.file, role=role)
        )


#: why a real study is refused in the demo database (issue 16: its demo codes are public)
DEMO_REFUSAL = ("this is the demo database, whose demo access codes are public: a real study cannot be built or opened "
                "here. Start a study deployment with a database of its own (bash scripts/run_study.sh, docs/APP.md).")


def _is_demo_content(settings: dict[str, Any]) -> bool:
    return bool(settings.get("demo") or settings.get("simulated"))


ImageReader = Callable[[Path], np.ndarray]


def image_reader(renderer: object) -> ImageReader:
    """How case images are read: the renderer's own ``read_image`` (the r2c renderer reads with
    ``r2c_core.imageio.read_xray``: 16-bit windowing, DICOM, size limits) or :func:`study.assets.read_gray`."""
    return getattr(renderer, "read_image", None) or read_gray


def _read_case(reader: ImageReader, base: Path, key: str, file: str) -> np.ndarray:
    """A case image through ``reader``, any failure as one line naming the case."""
    try:
        image = reader(base / file)
    except Exception as exc:  # the reader's own one-line errors (unreadable, too large, ...)
        raise StudyError(f"case {key}: cannot read its image ({exc})") from exc
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 2:
        raise StudyError(f"case {key}: the image reader gave {arr.dtype} {arr.shape}, expected 2-D uint8")
    return arr


def _check_case_files(rows: Any, base: Path, reader: ImageReader | None) -> None:
    """Refuse a selection whose images are missing, unreadable or shared by two case ids, before anything is
    stored (a study whose chosen case cannot be read could never finish building)."""
    seen: dict[str, str] = {}
    for row in rows.itertuples(index=False):
        path = (base / row.file).resolve()
        other = seen.setdefault(str(path), row.id)
        if other != row.id:
            raise StudyError(f"cases {other} and {row.id} are the same image file ({row.file}): fix the manifest")
        if not path.is_file():
            raise StudyError(f"case {row.id}: image file not found: {row.file} (under {base})")
        if reader is not None:
            _read_case(reader, base, row.id, row.file)


def create_study(session: Session, spec: StudySpec, *, reader: ImageReader | None = None,
                 data_root: str | Path | None = None) -> Study:
    """Record the study and pick its cases; returns the existing study when resuming with the same spec.

    Before anything is stored, every chosen case's file must exist and be a different file from the others', and,
    with ``reader``, decode (``data_root`` as for :func:`render_study`)."""
    spec.validate()
    existing = session.scalar(select(Study).where(Study.name == spec.name))
    if existing is not None:
        _check_same(existing, spec)
        return existing
    if audit.is_demo_database(session) and not _is_demo_content(spec.method_settings):
        raise StudyError(DEMO_REFUSAL)
    manifest = read_manifest(spec.manifest)
    cases = select_cases(manifest, split=spec.split, n=spec.n_cases, seed=spec.seed)
    extra = None
    if spec.n_practice and spec.practice_from == "extra":
        extra = select_cases(manifest, split=spec.split, n=spec.n_practice, seed=spec.seed + 1, exclude=cases["id"])
    base = Path(data_root) if data_root else Path(spec.manifest).resolve().parent
    _check_case_files(cases if extra is None else pd.concat([cases, extra]), base, reader)
    study = Study(
        name=spec.name, kind=spec.kind, allocation=spec.allocation, methods=list(spec.methods),
        settings=spec.settings(), status="building", token_key=new_key(),
    )
    session.add(study)
    session.flush()
    _add_cases(session, study, cases, "study")
    n_extra = 0
    if extra is not None:
        _add_cases(session, study, extra, "practice")
        n_extra = len(extra)
    session.flush()
    audit.record(session, audit.STUDY_CREATED, study_id=study.id,
                 detail={"name": study.name, "kind": study.kind, "n_cases": len(cases), "n_practice_cases": n_extra})
    log.info("study %s: %d cases (+%d practice)", study.name, len(cases), n_extra)
    return study


# -- 2. render -----------------------------------------------------------------------------------------------


def _case_complete(case: Case, methods: Sequence[str], root: Path) -> bool:
    have = {r.method: r for r in case.renditions}
    return all(m in have and asset_path(root, have[m].sha256).is_file() for m in methods)


def _render_images(case_key: str, image: np.ndarray, methods: list[str], renderer: Renderer,
                   root: Path) -> dict[str, tuple[str, int, int]]:
    """Render one case and store its PNGs (content-addressed, atomic): ``{method: (sha256, width, height)}``."""
    try:
        raw = renderer.render(image, list(methods))
    except StudyError:
        raise
    except Exception as exc:  # the renderer's own errors (missing weights, ...) become one line
        raise RenditionError(f"{case_key}: the renderer failed: {exc}") from exc
    out = check_renditions(raw, methods, case_key)
    return {m: (store_png(root, encode_png(arr)), int(arr.shape[1]), int(arr.shape[0])) for m, arr in out.items()}


def _record_renditions(session: Session, case: Case, stored: dict[str, tuple[str, int, int]]) -> None:
    have = {r.method: r for r in case.renditions}
    for method, (sha, width, height) in stored.items():
        old = have.get(method)
        if old is None:
            session.add(Rendition(case_id=case.id, method=method, sha256=sha, width=width, height=height))
        elif old.sha256 != sha:
            raise RenditionError(
                f"{case.key}/{method}: the renderer now gives a different image than the stored one "
                "(non-deterministic renderer or changed weights); build a new study instead"
            )


def render_study(
    factory: sessionmaker[Session],
    study_ref: int | str,
    renderer: Renderer,
    *,
    assets: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: Progress | None = None,
    show_bar: bool = True,
) -> int:
    """Render every case that lacks a stored rendition; returns how many.

    The rendering itself (model inference, seconds per case) runs outside any database transaction, so the app
    keeps recording votes and sign-ins meanwhile; each case's rendition rows are then stored in one short
    transaction, so an interrupted build keeps what it finished."""
    from tqdm import tqdm

    root = assets_dir(assets)
    read = image_reader(renderer)
    with factory.begin() as session:
        study = get_study(session, study_ref)
        study_id, methods, kind = study.id, list(study.methods), study.kind
        case_ids = list(session.scalars(select(Case.id).where(Case.study_id == study.id).order_by(Case.id)))
        manifest = Path(study.settings["manifest"])
    if renderer_kind(renderer) not in (None, kind):
        raise RenditionError(f"renderer makes {renderer_kind(renderer)} renditions but the study is {kind}")
    base = Path(data_root) if data_root else manifest.parent
    done = rendered = 0
    with tqdm(total=len(case_ids), desc="rendering", unit="case", disable=not show_bar, leave=False) as bar:
        for case_id in case_ids:
            with factory.begin() as session:
                case = session.get(Case, case_id, options=[selectinload(Case.renditions)])
                assert case is not None
                todo = None if _case_complete(case, methods, root) else (case.key, case.file)
            if todo is not None:
                key, file = todo
                stored = _render_images(key, _read_case(read, base, key, file), methods, renderer, root)
                with factory.begin() as session:
                    case = session.get(Case, case_id, options=[selectinload(Case.renditions)])
                    assert case is not None
                    _record_renditions(session, case, stored)
                rendered += 1
            done += 1
            bar.update(1)
            if progress is not None:
                progress(done, len(case_ids))
    with factory.begin() as session:
        audit.record(session, audit.RENDITIONS_BUILT, study_id=study_id,
                     detail={"rendered": rendered, "cases": len(case_ids), "renderer": type(renderer).__name__})
    return rendered


def renditions_complete(session: Session, study: Study) -> bool:
    """Whether every case of the study has a rendition row for every method."""
    n_cases = session.scalar(select(func.count()).select_from(Case).where(Case.study_id == study.id)) or 0
    n_rend = session.scalar(
        select(func.count()).select_from(Rendition).join(Case).where(
            Case.study_id == study.id, Rendition.method.in_(list(study.methods))
        )
    ) or 0
    return n_rend == n_cases * len(study.methods)


# -- 3. assign -----------------------------------------------------------------------------------------------


def _reader_rng(seed: int, reader_name: str, secret: str) -> np.random.Generator:
    """A reader's order generator: the study seed and the reader, plus the study's secret key (random, stored in the
    database, never shown to anyone), so that nobody can recompute a reader's slot orders from the code, their
    name and the (often default) seed; the orders stay fixed for that study in the database."""
    return np.random.default_rng([int(seed), zlib.crc32(reader_name.encode("utf-8")), int(secret[:16], 16), int(secret[16:32], 16)])


def _deal(cases: list[Case], n_readers: int, rng: np.random.Generator) -> list[list[Case]]:
    """Split cases across readers, label by label, so each gets a balanced share."""
    shares: list[list[Case]] = [[] for _ in range(n_readers)]
    turn = int(rng.integers(n_readers))
    for label in sorted({c.label for c in cases}):
        group = [c for c in cases if c.label == label]
        for i in rng.permutation(len(group)):
            shares[turn % n_readers].append(group[int(i)])
            turn += 1
    return shares


def _with_repeats(order: list[Case], fraction: float, gap: int, rng: np.random.Generator) -> list[tuple[Case, int | None]]:
    """The sequence with repeat reads inserted: items are ``(case, index of the first showing or None)``.

    A repeat is placed at least ``gap`` other queries after its first showing; only cases shown early enough
    for that are eligible, so fewer repeats than asked may result for short sequences."""
    seq: list[tuple[Case, int | None]] = [(c, None) for c in order]
    n_rep = int(round(fraction * len(order)))
    eligible = [i for i in range(len(order)) if i <= len(order) - 1 - gap]
    if n_rep > len(eligible):
        log.warning("only %d of %d repeat reads fit with a gap of %d", len(eligible), n_rep, gap)
        n_rep = len(eligible)
    originals = [order[int(i)] for i in rng.choice(eligible, size=n_rep, replace=False)] if n_rep else []
    for case in originals:
        pos = next(i for i, (c, rep) in enumerate(seq) if c is case and rep is None)
        at = int(rng.integers(pos + gap + 1, len(seq) + 1))
        seq.insert(at, (case, -1))
    # resolve each repeat to the index of its first showing
    first: dict[int, int] = {}
    out: list[tuple[Case, int | None]] = []
    for i, (case, rep) in enumerate(seq):
        if rep is None:
            first[case.id] = i
            out.append((case, None))
        else:
            out.append((case, first[case.id]))
    return out


def _slot_order(renditions: list[Rendition], rng: np.random.Generator, avoid: list[int] | None) -> list[int]:
    ids = [r.id for r in renditions]
    order = ids
    for _ in range(50):
        order = [ids[int(i)] for i in rng.permutation(len(ids))]
        if avoid is None or order != avoid or len(ids) < 2:
            break
    return order


@dataclass
class _Planned:
    """One query to insert: its case, flags, display order, and (repeats) the index of the first showing."""

    case_id: int
    slots: list[int]
    is_practice: bool = False
    repeat_index: int | None = None


def _plan_one(study: Study, reader: Reader, cases: list[Case], practice: list[Case],
              rends: dict[int, list[Rendition]]) -> list[_Planned]:
    """A reader's sequence: practice first, then their cases in a seeded order with repeats inserted."""
    settings = study.settings
    rng = _reader_rng(settings["seed"], reader.name, study.token_key)
    order = [cases[int(i)] for i in rng.permutation(len(cases))]
    n_practice = int(settings.get("n_practice", 0))
    if settings.get("practice_from") == "repeat":
        practice_cases = [order[int(i)] for i in rng.permutation(len(order))[:n_practice]]
    else:
        practice_cases = [practice[int(i)] for i in rng.permutation(len(practice))[:n_practice]]
    plan = [_Planned(c.id, _slot_order(rends[c.id], rng, None), is_practice=True) for c in practice_cases]
    offset = len(plan)
    seq = _with_repeats(order, float(settings.get("repeat_fraction", 0.0)), int(settings.get("repeat_min_gap", 0)), rng)
    for case, first in seq:
        if first is None:
            plan.append(_Planned(case.id, _slot_order(rends[case.id], rng, None)))
        else:
            original = plan[offset + first]
            plan.append(_Planned(case.id, _slot_order(rends[case.id], rng, original.slots),
                                 repeat_index=offset + first))
    return plan


def _insert_plan(session: Session, study: Study, reader: Reader, plan: list[_Planned]) -> None:
    """Bulk-insert a reader's queries and their display slots."""
    queries, slots = Query.__table__, QuerySlot.__table__
    now = utcnow()
    rows = [
        {"study_id": study.id, "reader_id": reader.id, "case_id": p.case_id, "position": pos,
         "is_practice": p.is_practice, "is_repeat": p.repeat_index is not None, "repeat_of_id": None,
         "token": new_token(), "assigned_at": now}
        for pos, p in enumerate(plan)
    ]
    ids = list(session.execute(queries.insert().returning(queries.c.id, sort_by_parameter_order=True), rows).scalars())
    repeats = [{"qid": ids[i], "first": ids[p.repeat_index]} for i, p in enumerate(plan) if p.repeat_index is not None]
    if repeats:
        session.execute(
            queries.update().where(queries.c.id == bindparam("qid")).values(repeat_of_id=bindparam("first")), repeats
        )
    session.execute(slots.insert(), [{"query_id": ids[i], "slot": k, "rendition_id": rid}
                                     for i, p in enumerate(plan) for k, rid in enumerate(p.slots, start=1)])


def assign_readers(session: Session, study_ref: Study | int | str, readers: Sequence[str] = ()) -> int:
    """Create the queries of readers not yet in the study (all active ``reader`` role readers when none are
    named). ``split`` studies are assigned once, to all their readers together. Returns the queries made."""
    study = get_study(session, study_ref)
    if not renditions_complete(session, study):
        raise StudyError(f"study {study.name!r} is not fully rendered yet; run the build again to finish it")
    if readers:
        chosen = [get_reader(session, name) for name in readers]
    else:
        chosen = list(session.scalars(select(Reader).where(Reader.role == "reader", Reader.active).order_by(Reader.id)))
    if not chosen:
        raise StudyError("no readers to assign: add readers first (python -m study add-reader NAME)")
    assigned = set(session.scalars(select(Query.reader_id).where(Query.study_id == study.id).distinct()))
    new = [r for r in chosen if r.id not in assigned]
    if not new:
        return 0
    if study.allocation == "split" and assigned:
        raise StudyError(f"study {study.name!r} splits its cases among readers already assigned; "
                         "new readers need a new study (or use overlap)")
    all_cases = list(session.scalars(select(Case).where(Case.study_id == study.id).order_by(Case.id)))
    cases = [c for c in all_cases if c.role == "study"]
    practice = [c for c in all_cases if c.role == "practice"]
    order = {m: i for i, m in enumerate(study.methods)}
    rends: dict[int, list[Rendition]] = {}
    for r in session.scalars(select(Rendition).join(Case).where(Case.study_id == study.id)):
        if r.method in order:
            rends.setdefault(r.case_id, []).append(r)
    for lst in rends.values():
        lst.sort(key=lambda r: order[r.method])
    if study.allocation == "split":
        shares = _deal(cases, len(new), np.random.default_rng([int(study.settings["seed"]), 7]))
    else:
        shares = [cases] * len(new)
    session.flush()
    total = 0
    for reader, share in zip(new, shares):
        plan = _plan_one(study, reader, share, practice, rends)
        _insert_plan(session, study, reader, plan)
        total += len(plan)
    audit.record(session, audit.READERS_ASSIGNED, study_id=study.id,
                 detail={"readers": [r.name for r in new], "queries": total})
    return total


# -- 4. status and the whole build ---------------------------------------------------------------------------


def set_status(session: Session, study_ref: Study | int | str, status: str) -> Study:
    """Open or close a study for voting (audited). Opening needs every rendition."""
    study = get_study(session, study_ref)
    if status not in STUDY_STATUSES:
        raise StudyError(f"unknown status {status!r} (expected {', '.join(STUDY_STATUSES)})")
    if status == "open" and audit.is_demo_database(session) and not (
            _is_demo_content(study.settings or {}) or _is_demo_content((study.settings or {}).get("method_settings") or {})):
        raise StudyError(DEMO_REFUSAL)
    if status == "open" and not renditions_complete(session, study):
        raise StudyError(f"study {study.name!r} cannot open before every rendition is built")
    if study.status != status:
        audit.record(session, audit.STUDY_STATUS, study_id=study.id, detail={"from": study.status, "to": status})
        study.status = status
    return study


def build_study(
    factory: sessionmaker[Session],
    spec: StudySpec,
    renderer: Renderer,
    *,
    assets: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: Progress | None = None,
    show_bar: bool = True,
    open_for_voting: bool = True,
) -> int:
    """Create (or resume), render, assign and open a study; returns its id. Safe to run again."""
    with factory.begin() as session:
        study_id = create_study(session, spec, reader=image_reader(renderer), data_root=data_root).id
    render_study(factory, study_id, renderer, assets=assets, data_root=data_root, progress=progress, show_bar=show_bar)
    with factory.begin() as session:
        if spec.readers or session.scalar(select(func.count()).select_from(Reader).where(Reader.role == "reader")):
            assign_readers(session, study_id, spec.readers)
        else:
            log.warning("no readers yet: study %s built without queries (assign readers later)", spec.name)
        if open_for_voting and get_study(session, study_id).status == "building":
            set_status(session, study_id, "open")
    return study_id
