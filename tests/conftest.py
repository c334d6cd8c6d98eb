"""Shared fixtures: real-data and reference-golden locations (skipping with a clear reason when absent)."""

from __future__ import annotations

import os

import pytest
import torch

from r2c_core.paths import data_dir, golden_dir, has_data

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread (and the CI CPU is shared); restores the count afterwards.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def cxr_dir():
    """The real X-ray folder (R2C_DATA, default ../shared/data/cxr); skips when it is not there."""
    if not has_data():
        pytest.skip(f"real X-rays not found: no MANIFEST.csv in {data_dir()} (set R2C_DATA to the cxr folder)")
    return data_dir()


@pytest.fixture(scope="session")
def cxr_manifest(cxr_dir):
    import pandas as pd

    return pd.read_csv(cxr_dir / "MANIFEST.csv")


@pytest.fixture(scope="session")
def golden_path():
    """The authors' TensorFlow reference outputs (R2C_GOLDEN, default ../shared/data/reference-golden)."""
    d = golden_dir()
    if not (d / "golden.json").is_file():
        pytest.skip(f"reference-golden outputs not found in {d} (set R2C_GOLDEN)")
    return d
