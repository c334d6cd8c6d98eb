"""Importing the reference (TensorFlow/Keras) R2C-GAN variables into our modules, and the golden-weight formula.

The reference lists each model's variables in creation order: per top-level layer, and inside an operational
layer per power p = 1..q (kernel, then bias if any). TF layouts: Conv2D kernel (kh, kw, in, out) -> torch
(out, in, kh, kw); Conv2DTranspose kernel (kh, kw, out, in) -> torch (in, out, kh, kw); Dense kernel (in, out)
-> torch (out, in). Our modules expose ``tf_order()``; :func:`import_reference_variables` walks it and consumes
the variables in order, checking every shape, so a list that does not fit fails with one clear error.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError
from .layers import OpConv2d, OpConvTranspose2d

#: Phase of the golden weight formula per reference model.
GOLDEN_PHASES = {"G_A2B": 0.0, "G_B2A": 0.5, "D_A": 1.0, "D_B": 1.5}


def golden_variable(index: int, shape: Sequence[int], kind: str, phase: float) -> np.ndarray:
    """The reference-golden weight formula (see ``reference-golden/README.md``), in TF layout, float32."""
    n = int(np.prod(shape))
    base = np.sin(0.7 * np.arange(n, dtype=np.float64) + 1.3 * index + phase).reshape(shape)
    if kind == "kernel":
        arr = 0.2 * base / np.sqrt(n / shape[-1])
    elif kind == "bias":
        arr = 0.05 * base
    elif kind == "norm_gamma":
        arr = 1.0 + 0.1 * base
    elif kind == "norm_beta":
        arr = 0.1 * base
    else:
        raise ValueError(f"unknown variable kind {kind!r}")
    return arr.astype(np.float32)


def golden_variables(var_list: Iterable[dict[str, Any]], phase: float) -> list[np.ndarray]:
    return [golden_variable(v["index"], v["shape"], v["kind"], phase) for v in var_list]


def import_reference_variables(model: nn.Module, arrays: Sequence[np.ndarray]) -> None:
    """Load TF-ordered, TF-layout variable arrays into ``model`` (which must define ``tf_order()``)."""
    it = iter(enumerate(arrays))

    def take(expected: tuple[int, ...], what: str) -> torch.Tensor:
        try:
            i, a = next(it)
        except StopIteration:
            raise CheckpointError(f"reference variable list too short: ran out at {what}") from None
        if tuple(a.shape) != expected:
            raise CheckpointError(f"reference variable {i} ({what}) has shape {tuple(a.shape)}, expected {expected}")
        return torch.from_numpy(np.ascontiguousarray(a))

    with torch.no_grad():
        for mod in model.tf_order():
            name = mod.__class__.__name__
            if isinstance(mod, OpConv2d):
                k, ci, co = mod.kernel_size, mod.in_channels, mod.out_channels
                for p in range(mod.q):
                    w = take((k, k, ci, co), f"{name} power {p + 1} kernel")
                    mod.weight[:, p * ci : (p + 1) * ci].copy_(w.permute(3, 2, 0, 1))
                    if mod.bias is not None:
                        mod.bias[p].copy_(take((co,), f"{name} power {p + 1} bias"))
            elif isinstance(mod, OpConvTranspose2d):
                k, ci, co = mod.kernel_size, mod.in_channels, mod.out_channels
                for p in range(mod.q):
                    w = take((k, k, co, ci), f"{name} power {p + 1} kernel")
                    mod.weight[p * ci : (p + 1) * ci].copy_(w.permute(3, 2, 0, 1))
                    if mod.bias is not None:
                        mod.bias[p].copy_(take((co,), f"{name} power {p + 1} bias"))
            elif isinstance(mod, nn.InstanceNorm2d):
                mod.weight.copy_(take((mod.num_features,), "instance-norm gamma"))
                mod.bias.copy_(take((mod.num_features,), "instance-norm beta"))
            elif isinstance(mod, nn.Linear):
                mod.weight.copy_(take((mod.in_features, mod.out_features), "dense kernel").T)
                mod.bias.copy_(take((mod.out_features,), "dense bias"))
            else:
                raise TypeError(f"no reference import rule for {name}")
    rest = sum(1 for _ in it)
    if rest:
        raise CheckpointError(f"reference variable list has {rest} variable(s) left over after filling {model.__class__.__name__}")
