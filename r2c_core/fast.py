"""Fast inference paths for R2C-GAN generators, each behind a switch and each checked against eager in tests.

Switches (:class:`FastOptions`): ``channels_last`` memory format; ``amp`` = bf16 autocast (instance-norm statistics
stay float32, see :class:`~r2c_core.layers.InstanceNorm2dF32`; outputs are returned as float32); ``compile`` =
``torch.compile`` with ``compile_mode``; ``cuda_graphs`` = capture the whole k-pass restoration for one fixed input
shape and replay it (CUDA only; the batch-1 study/app path). The operational layers are always fused (one
convolution over the concatenated powers, :mod:`r2c_core.layers`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class FastOptions:
    channels_last: bool = False
    amp: bool = False
    compile: bool = False
    compile_mode: str = "default"
    cuda_graphs: bool = False

    @classmethod
    def best_for(cls, device: torch.device) -> "FastOptions":
        """The combination the benchmark found fastest on each device type (see docs/RESULTS.md)."""
        if device.type == "cuda":  # not measured yet (no GPU so far): the standard Hopper recipe
            return cls(channels_last=True, amp=True, compile=True, compile_mode="max-autotune-no-cudagraphs", cuda_graphs=True)
        # CPU (2-core AVX-512, bench/bench_r2c.py): channels_last gains nothing; bf16 is 1.9x faster over 3 passes but
        # moves pixels by up to 0.14 (of 2); compile is 1.4x faster but costs tens of seconds per input shape.
        # Interactive use therefore stays eager float32.
        return cls()

    def label(self) -> str:
        parts = [n for n, on in (("channels_last", self.channels_last), ("bf16", self.amp), ("cuda_graphs", self.cuda_graphs)) if on]
        if self.compile:
            parts.append(f"compile[{self.compile_mode}]")
        return "+".join(parts) or "eager"


Passes = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class FastRestorer:
    """``runner(x) -> (image after k passes, logits of the first pass)`` for a generator, with :class:`FastOptions`."""

    def __init__(self, generator: nn.Module, passes: int = 1, options: FastOptions = FastOptions(), device: str | torch.device = "cpu") -> None:
        if passes < 1:
            raise ValueError("passes must be >= 1")
        self.device = torch.device(device)
        self.options = options
        self.passes = passes
        if options.cuda_graphs and self.device.type != "cuda":
            raise ValueError("cuda_graphs needs a CUDA device")
        gen = generator.to(self.device).eval()
        for p in gen.parameters():
            p.requires_grad_(False)
        if options.channels_last:
            gen = gen.to(memory_format=torch.channels_last)
        self.generator = gen
        fn: Passes = self._passes_eager
        if options.compile:
            fn = torch.compile(fn, mode=options.compile_mode, dynamic=False)
        self._fn = fn
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = {}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.options.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _passes_eager(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            x, logits = self.generator(x)
            for _ in range(self.passes - 1):
                x, _ = self.generator(x)
        return x.float(), logits.float()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._prepare(x)
        if not self.options.cuda_graphs:
            return self._fn(x)
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up (and compilation) outside the graph
                    self._fn(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._fn(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out[0].clone(), static_out[1].clone()
