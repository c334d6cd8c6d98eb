"""The edge between the app, :mod:`study` and :mod:`r2c_core`: choose the renderer (r2c-backed or synthetic) and
build a study with a progress callback. (Turning a folder of images into a manifest is :func:`study.manifest.folder_manifest`.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from study.builder import StudySpec, build_study
from study.errors import StudyError
from study.render import DEFAULT_METHODS, SyntheticRenderer

RENDERERS = ("r2c", "synthetic")


def method_choices(weights_root: Path) -> tuple[list[str], list[str]]:
    """``(every method the r2c renderer can make: the bundled generators and the classical methods, the paper's
    reader-study set among them)``; both fall back to the synthetic renderer's methods when no restoration weights
    are bundled."""
    from r2c_core.study_renderer import PAPER_METHODS, available_methods

    bundled = available_methods(weights_root)
    if len(bundled) < 2:
        return list(DEFAULT_METHODS), list(DEFAULT_METHODS)
    return available_methods(weights_root, classical_methods=True), [m for m in PAPER_METHODS if m in bundled] or bundled


def make_renderer(name: str, kind: str, weights_root: Path, device: str | None = None,
                  methods: list[str] | None = None) -> tuple[object, list[str]]:
    """``(renderer, the methods it renders)`` for ``r2c`` (bundled weights) or ``synthetic``; ``methods``
    picks some of them (default: all)."""
    if name == "synthetic":
        r = SyntheticRenderer(kind, working_size=256)
        return r, _pick(list(DEFAULT_METHODS), methods)
    if name != "r2c":
        raise StudyError(f"unknown renderer {name!r} (expected {' or '.join(RENDERERS)})")
    from r2c_core.errors import R2CError
    from r2c_core.study_renderer import R2CRenderer, available_methods

    bundled = available_methods(weights_root)
    if len(bundled) < 2:
        raise StudyError(f"no restoration weights in {weights_root} (weights/r2c-<model>/): use the synthetic renderer")
    chosen = _pick(available_methods(weights_root, classical_methods=True), methods)
    try:
        return R2CRenderer(kind, weights_root=weights_root, device=device, methods=chosen), chosen
    except R2CError as exc:
        raise StudyError(str(exc)) from exc


def _pick(possible: list[str], wanted: list[str] | None) -> list[str]:
    if not wanted:
        return possible
    missing = [m for m in wanted if m not in possible]
    if missing:
        raise StudyError(f"this renderer cannot make {', '.join(missing)} (it can make {', '.join(possible)})")
    return list(wanted)


def build(factory: sessionmaker[Session], spec: StudySpec, renderer: object, assets: Path,
          progress: Callable[[int, int], None] | None = None, open_for_voting: bool = True) -> int:
    """Build (or resume) a study; returns its id. Errors are :class:`StudyError` with one line."""
    return build_study(factory, spec, renderer, assets=assets, progress=progress, show_bar=False,
                       open_for_voting=open_for_voting)
