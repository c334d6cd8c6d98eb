"""A simulated study in a real database: ``python -m study simulate``.

Generates small gray case images and a manifest in a temporary folder, builds a study from them through the
normal builder path with :class:`~study.render.SyntheticRenderer`, adds simulated readers, and casts every vote
through the real voting service: each simulated reader (``study.simulate.SimReader``) chooses a slot from the
query's stored display order. Votes carry simulated reading times. The result is an ordinary study database
that ``python -m study stats`` reads like a real one.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .accounts import add_reader, start_sitting
from .builder import StudySpec, build_study
from .errors import StudyError
from .models import Query, Reader, Study, Vote, utcnow
from .render import DEFAULT_METHODS, SyntheticRenderer
from .voting import next_query, query_id_for_token, query_slot_methods, submit_vote

log = logging.getLogger(__name__)

#: key in ``Study.settings`` that marks a study whose votes were cast by simulated readers (never real doctors):
#: the dashboard shows a banner, exports carry a ``simulated`` column and a notice file (``Study.simulated``).
SIMULATED = "simulated"

#: Simulated panel: preference weights per method (restored versions mildly preferred, as in the paper).
PANEL: tuple[dict[str, float], ...] = (
    {"original": 0.6, "cnn-x1": 1.2, "cnn-compact-x3": 2.6, "op-q3-x3": 1.8, "op-q5-x3": 2.2},
    {"original": 0.9, "cnn-x1": 1.0, "cnn-compact-x3": 1.9, "op-q3-x3": 1.5, "op-q5-x3": 2.8},
    {"original": 0.5, "cnn-x1": 1.5, "cnn-compact-x3": 2.1, "op-q3-x3": 2.5, "op-q5-x3": 1.7},
    {"original": 0.8, "cnn-x1": 0.9, "cnn-compact-x3": 3.0, "op-q3-x3": 1.4, "op-q5-x3": 2.0},
)
SLOT_BIAS = [1.15, 1.0, 1.0, 0.95, 0.9]


@dataclass(frozen=True)
class SimulationResult:
    study_id: int
    study_name: str
    readers: tuple[str, ...]
    votes: int


def _case_image(rng: np.random.Generator, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A small synthetic 'chest': bright background, two darker lung ellipses, noise."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = 170 + 40 * (yy / h) + rng.normal(0, 6, size)
    for cx in (w * 0.3, w * 0.7):
        rx, ry = w * (0.16 + 0.04 * rng.random()), h * (0.3 + 0.05 * rng.random())
        inside = ((xx - cx) / rx) ** 2 + ((yy - h * 0.48) / ry) ** 2 <= 1
        img[inside] -= 70 + 20 * rng.random()
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_manifest(folder: Path, n_cases: int, seed: int,
                             sources: tuple[str, ...] = ("ieee", "nih")) -> Path:
    """Write ``n_cases`` generated images (half covid, half control) and a MANIFEST.csv; returns its path."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_cases):
        label = "covid" if i % 2 == 0 else "control"
        key = f"sim_{i:04d}"
        rel = f"images/{label}/{key}.png"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_case_image(rng)).save(path)
        rows.append({"id": key, "file": rel, "label": label, "split": "test", "source": sources[(i // 2) % len(sources)]})
    manifest = folder / "MANIFEST.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _ensure_readers(factory: sessionmaker[Session], names: list[str]) -> None:
    with factory.begin() as session:
        for name in names:
            if session.scalar(select(Reader.id).where(Reader.name == name)) is None:
                add_reader(session, name, "reader")  # the code is not needed: votes go through the service


def _previous_choice(session: Session, query_id: int) -> str | None:
    q = session.get(Query, query_id)
    if q is None or not q.is_repeat or q.repeat_of_id is None:
        return None
    vote = session.scalar(select(Vote).where(Vote.query_id == q.repeat_of_id))
    if vote is None:
        return None
    return query_slot_methods(session, q.repeat_of_id)[vote.chosen_slot - 1]


def _vote_all(factory: sessionmaker[Session], reader_name: str, sim: Any, rng: np.random.Generator,
              study_id: int, start: Any) -> int:
    with factory.begin() as session:
        reader_id = session.scalar(select(Reader.id).where(Reader.name == reader_name))
        sitting_id = start_sitting(session, reader_id, client_key="simulation", now=start).id
    t, votes = start, 0
    while True:
        with factory.begin() as session:
            view = next_query(session, reader_id, study=study_id, sitting_id=sitting_id, now=t)
            if view is None:
                return votes
            qid = query_id_for_token(session, view.query_token)
            methods = query_slot_methods(session, qid)
            previous = _previous_choice(session, qid)
        slot0 = int(sim.choose(rng, methods, previous))
        t = t + timedelta(seconds=float(rng.gamma(4.0, 2.5)))
        with factory.begin() as session:
            submit_vote(session, reader_id, view.query_token, slot0 + 1, confidence=int(rng.integers(2, 6)),
                        sitting_id=sitting_id, now=t)
        votes += 1
        t = t + timedelta(seconds=float(rng.uniform(0.5, 2.0)))


def simulate_study(factory: sessionmaker[Session], *, seed: int = 0, assets: str | Path | None = None,
                   n_readers: int = 4, n_cases: int = 40, repeat_fraction: float = 0.1, repeat_min_gap: int = 3,
                   n_practice: int = 2, name: str | None = None, show_bar: bool = False) -> SimulationResult:
    """Build a simulated study and vote it through; returns what was made (see the module doc)."""
    try:
        from .simulate import SimReader
    except ImportError as exc:
        raise StudyError(f"study.simulate is not available ({exc})") from exc
    name = name or f"simulated-{seed}"
    readers = [f"sim-reader-{i + 1}" for i in range(n_readers)]
    methods = list(DEFAULT_METHODS)
    _ensure_readers(factory, readers)
    with tempfile.TemporaryDirectory(prefix="r2c-sim-") as tmp:
        manifest = write_synthetic_manifest(Path(tmp), n_cases + n_practice, seed)
        spec = StudySpec(name=name, manifest=manifest, kind="restoration", methods=tuple(methods), split="test",
                         n_cases=n_cases, seed=seed, allocation="overlap", readers=tuple(readers),
                         repeat_fraction=repeat_fraction, repeat_min_gap=repeat_min_gap, n_practice=n_practice,
                         method_settings={SIMULATED: True})
        study_id = build_study(factory, spec, SyntheticRenderer("restoration", working_size=32), assets=assets,
                               show_bar=show_bar)
    with factory.begin() as session:
        study = session.get(Study, study_id)
        study.settings = {**(study.settings or {}), SIMULATED: True}
    rng = np.random.default_rng(seed)
    start = utcnow().replace(microsecond=0)
    total = 0
    for i, reader in enumerate(readers):
        pref = PANEL[i % len(PANEL)]
        weights = {m: float(pref.get(m, 1.0)) * float(rng.lognormal(0.0, 0.1)) for m in methods}
        sim = SimReader(reader, weights, slot_bias=list(SLOT_BIAS[: len(methods)]), repeat_consistency=0.8)
        total += _vote_all(factory, reader, sim, rng, study_id, start + timedelta(minutes=30 * i))
    log.info("simulated %d votes by %d readers in study %s", total, len(readers), name)
    return SimulationResult(study_id=study_id, study_name=name, readers=tuple(readers), votes=total)
