"""Precision choices shared by the trainers: does this CPU compute bf16 natively, and the autocast context.

bf16 autocast on a CPU without native bf16 instructions is emulated and slower than float32, so the trainers
switch it on only where :func:`cpu_has_native_bf16` is true (AVX512-BF16 or AMX, read from the CPU flags, or
oneDNN's own check) and fall back to float32 elsewhere, saying so in the log.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (x86 AVX512-BF16/AMX; oneDNN's check elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
        if any(f in flags for f in _BF16_FLAGS):
            return True
    except OSError:
        pass
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(device: torch.device, cuda_amp: bool, cpu_amp: bool) -> bool:
    """Whether to run bf16 autocast on ``device`` given the two switches (CPU only with native bf16)."""
    if device.type == "cuda":
        return cuda_amp
    if device.type == "cpu" and cpu_amp:
        if cpu_has_native_bf16():
            return True
        log.warning("cpu_amp requested but this CPU has no native bf16: training in float32")
    return False


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()
