"""Supervised baseline classifiers (the paper's comparison models) and the compact training pack.

Baselines: EfficientNet-B4, EfficientNet-B5, ResNet-50 and Inception-v3, the timm definitions built with
``timm.create_model(name, pretrained=False, num_classes=2)``. No pretrained weights can be downloaded here, so every
baseline is **trained from scratch** (recorded as ``"pretrained": false`` in its checkpoint). They are trained on
the same data as R2C-GAN: the ``train`` rows of the A/B split file (both quality domains), the split file's ``val``
rows for choosing the epoch, and the manifest's ``test`` rows only for the final report.

Input and augmentation are R2C-GAN's (``r2c_core.training.loader``): images decoded once to uint8 at the load size
``round(size * 286 / 256)``, a random horizontal flip and a random ``size`` crop per image, ``x / 127.5 - 1``, gray
replicated to 3 channels; validation and classification use the test transform (resize straight to ``size``).
Class imbalance: class-weighted cross-entropy (``balance="loss"``, weights ``N / (2 n_c)``), a class-balanced
sampler (``"sampler"``), or neither. Adam; the rate is constant, then decays linearly to 0 (the R2C-GAN schedule).

Run folder (like the R2C-GAN trainer)::

    <out>/train_log.csv    step, epoch, lr, loss, batch accuracy, seconds
    <out>/val_log.jsonl    validation metrics at every epoch end
    <out>/state/           model + Adam state + step and best-so-far (resume with ``resume=``)
    <out>/classifier/      the exported classifier of the best validation epoch (kind "baseline-classifier")
    <out>/summary.json     steps, timings, images per second, the chosen epoch

Every random draw comes from a generator seeded by ``(seed, epoch)`` or ``(seed, step)``, so a resumed run sees
the same batches as an uninterrupted one.

The training pack (:func:`write_pack`, :func:`load_pack`, :func:`unpack_to_folder`) holds every image of the split
file resized to ``size`` x ``size`` as PNG bytes plus the manifest rows, ids, labels, splits and domains in one
``.npz``, small enough (< 64 MiB) to travel to a GPU machine, where ``unpack_to_folder`` recreates a data folder
(``MANIFEST.csv`` + ``images/``) that every command reads through ``R2C_DATA``.

Modules: :mod:`.config` (names, building, the frozen run configuration), :mod:`.data` (split rows, caches,
augmentation, batches), :mod:`.trainer` (the trainer on the shared run loop), :mod:`.classifier` (a trained
baseline as a classifier), :mod:`.pack` (the training pack).
"""

from __future__ import annotations

from .classifier import BaselineClassifier
from .config import (
    BASELINE_KIND,
    BASELINE_NAMES,
    LOG_COLUMNS,
    MIN_SIZE,
    SELECT_METRICS,
    STATE_KIND,
    BaselineConfig,
    baseline_config_from_dict,
    build_baseline,
    count_parameters,
    load_baseline_config,
)
from .data import (
    SupervisedBatches,
    SupervisedData,
    augment,
    class_weights,
    limit_rows,
    split_rows,
)
from .pack import PACK_FORMAT, Pack, load_pack, unpack_to_folder, write_pack
from .trainer import BaselineTrainer, state_baseline_config, train_baseline

__all__ = [
    "BASELINE_KIND", "BASELINE_NAMES", "LOG_COLUMNS", "MIN_SIZE", "PACK_FORMAT", "SELECT_METRICS", "STATE_KIND",
    "BaselineClassifier", "BaselineConfig", "BaselineTrainer", "Pack", "SupervisedBatches", "SupervisedData",
    "augment", "baseline_config_from_dict", "build_baseline", "class_weights", "count_parameters", "limit_rows",
    "load_baseline_config", "load_pack", "split_rows", "state_baseline_config", "train_baseline",
    "unpack_to_folder", "write_pack",
]
