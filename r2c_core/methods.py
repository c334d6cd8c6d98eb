"""Method names and the restorers behind them, shared by the study renderer, the demo and the restoration
benchmark.

A method is ``original`` (the image through the resizing round trip only), ``<model>-x<passes>`` (an R2C-GAN
generator bundled under ``weights/r2c-<model>/`` applied ``passes`` times: ``cnn-x1``, ``op-q3-x3``), a compared
model (``hqg-x1``: HQG-Net from ``weights/hqg/``; ``hqg-blo-x1``: its bi-level variant from ``weights/hqg-blo/``;
:mod:`r2c_core.hqg_inference`) or a classical method by name (``clahe``, ``histeq``, ``gamma``, ``unsharp``, ``nlm``: :mod:`r2c_core.classical`, applied once).
Every method goes through the same resize-to-working-size-and-back pipeline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import classical
from .errors import R2CError
from .inference import Restorer
from .paths import weights_root as default_weights_root

ORIGINAL = "original"
#: The paper's qualitative-study set: original, R2C-GAN CNN once, CNN-compact / Q=3 / Q=5 three times.
PAPER_METHODS = [ORIGINAL, "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]
CLASSICAL_METHODS = list(classical.NAMES)
_METHOD = re.compile(r"^(?P<model>[a-z0-9-]+?)-x(?P<passes>\d+)$")


def parse_method(method: str) -> tuple[str, int]:
    """``"op-q3-x3"`` -> ``("op-q3", 3)``; ``"original"`` -> ``("original", 0)``; ``"clahe"`` -> ``("clahe", 1)``."""
    if method == ORIGINAL:
        return ORIGINAL, 0
    if classical.is_classical(method):
        return method, 1
    m = _METHOD.match(method)
    if not m or int(m.group("passes")) < 1:
        raise R2CError(f"bad method name {method!r}: expected 'original', '<model>-x<passes>' such as 'op-q3-x3', "
                       f"or a classical method ({', '.join(CLASSICAL_METHODS)})")
    return m.group("model"), int(m.group("passes"))


def bundled_models(root: Path | None = None) -> list[str]:
    """Models with a bundled generator (``weights/r2c-<model>/config.json`` and ``model.safetensors``), sorted."""
    root = root or default_weights_root()
    return [d.name[len("r2c-"):] for d in sorted(root.glob("r2c-*"))
            if (d / "config.json").is_file() and (d / "model.safetensors").is_file()]


#: compared methods that are not R2C-GAN generators, by weights folder (``weights/<name>/``): HQG-Net and its
#: bi-level variant with the downstream COVID classifier (HQG+BLO)
COMPARED_MODELS = ("hqg", "hqg-blo")


def compared_models(root: Path | None = None) -> list[str]:
    """Compared models (HQG-Net, HQG+BLO) with weights under ``weights/<name>/``."""
    root = root or default_weights_root()
    return [m for m in COMPARED_MODELS if (root / m / "config.json").is_file() and (root / m / "model.safetensors").is_file()]


def available_methods(root: Path | None = None, passes_for: dict[str, int] | None = None, *,
                      classical_methods: bool = False) -> list[str]:
    """``original`` plus one method per bundled generator (paper's pass counts: 1 for cnn, else 3), the compared
    models applied once (``hqg-x1``), then the classical methods when ``classical_methods``."""
    out = [ORIGINAL] + [f"{m}-x{(passes_for or {}).get(m, 1 if m == 'cnn' else 3)}" for m in bundled_models(root)]
    out += [f"{m}-x{(passes_for or {}).get(m, 1)}" for m in compared_models(root)]
    return out + (CLASSICAL_METHODS if classical_methods else [])


def restorer_from_dir(weights_dir: str | Path, device: str | None = None, *, need_classifier: bool = False) -> Any:
    """The restorer in a weights folder, by the kind its ``config.json`` names: an R2C-GAN generator
    (:class:`~r2c_core.inference.Restorer`) or an HQG-Net export (:class:`~r2c_core.hqg_inference.HQGRestorer`).
    ``need_classifier`` refuses an HQG-Net export without the bi-level variant's classifier (no COVID probability)."""
    from .checkpoints import read_config
    from .hqg_inference import KIND as HQG_KIND

    if read_config(weights_dir).get("kind") == HQG_KIND:
        from .hqg_inference import HQGRestorer

        rest = HQGRestorer.from_dir(weights_dir, device=device)
        if need_classifier and rest.task is None:
            raise R2CError(f"{weights_dir}: HQG-Net without a classifier of its own (only the bi-level variant, "
                           "hqg-blo, classifies)")
        return rest
    return Restorer.from_dir(weights_dir, device=device)


def load_restorer(model: str, root: Path | None = None, device: str | None = None, classifier: Any | None = None,
                  **options: Any) -> Restorer | classical.ClassicalRestorer:
    """The restorer of a model name (a bundled generator or a classical method; ``classifier`` gives a classical
    method its COVID probability). Raises :class:`R2CError` naming the missing weights folder."""
    if classical.is_classical(model):
        return classical.ClassicalRestorer(model, classifier=classifier)
    if model in COMPARED_MODELS:
        from .hqg_inference import HQGRestorer

        d = (root or default_weights_root()) / model
        if not (d / "config.json").is_file():
            raise R2CError(f"no weights for model {model!r}: expected {d}/config.json")
        return HQGRestorer.from_dir(d, device=device, classifier=classifier)
    d = (root or default_weights_root()) / f"r2c-{model}"
    if not (d / "config.json").is_file():
        raise R2CError(f"no weights for model {model!r}: expected {d}/config.json")
    return Restorer.from_dir(d, device=device, **options)
