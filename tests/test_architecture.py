"""The layer rules of docs/ARCHITECTURE.md, checked on every module's imports, and the shared run loop driving a
minimal fourth trainer (only its step, epoch end, state and finish written)."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import torch

from r2c_core.training.loop import LoopResult, LoopSettings, RunLoop

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module level) for every import in a file (relative imports resolved to the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = path.relative_to(REPO).parts[0]
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                name = pkg + "." + name
            out.append((name, node.lineno, id(node) in top))
    return out


def _violations(folder: str, forbidden: tuple[str, ...], allow: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    bad = []
    for path in sorted((REPO / folder).rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for name, line, _ in _imports(path):
            root = name.split(".")[0]
            if root in forbidden and name not in (allow or {}).get(rel, ()):
                bad.append(f"{rel}:{line} imports {name}")
    return bad


def test_r2c_core_imports_neither_the_study_nor_streamlit_except_the_manifest_reader() -> None:
    reader = {"r2c_core/data.py": ("study.errors", "study.manifest")}
    assert _violations("r2c_core", ("study", "app", "streamlit"), reader) == []
    # that edge too is local to the function that reads a manifest
    assert all(not top for name, _, top in _imports(REPO / "r2c_core" / "data.py") if name.startswith("study"))


def test_study_imports_neither_r2c_core_nor_streamlit_except_the_cli_edge() -> None:
    edge = {"study/cli.py": ("r2c_core.study_renderer",)}
    assert _violations("study", ("r2c_core", "app", "streamlit"), edge) == []
    # the edge import is local to the function that needs it, never at module level
    assert all(not top for name, _, top in _imports(REPO / "study" / "cli.py") if name.startswith("r2c_core"))


class TinyTrainer:
    """The fourth trainer of docs/ARCHITECTURE.md: a linear classifier on fixed batches."""

    def __init__(self, out: Path, epochs: int = 2, steps_per_epoch: int = 3) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 2)
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-2)
        g = torch.Generator().manual_seed(1)
        self.batches = [(torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)) for _ in range(5)]
        self.out, self.step, self.steps_per_epoch = out, 0, steps_per_epoch
        self.end = epochs * steps_per_epoch
        self.epoch_ends: list[tuple[int, bool]] = []
        self.saved: list[int] = []

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(end=self.end, desc="train tiny", log_columns=("step", "epoch", "loss", "seconds"),
                            progress=False)

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches[step % len(self.batches)]

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    def postfix(self, terms: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{terms['loss']:.3f}"}

    def on_epoch_end(self, last: bool) -> None:
        self.epoch_ends.append((self.step, last))

    def save_state(self) -> None:
        self.saved.append(self.step)

    def finish(self, result: LoopResult) -> dict[str, object]:
        self.save_state()
        return {"step": self.step, "steps_run": result.steps_run, "stopped_early": result.stopped_early}


def test_a_fourth_trainer_needs_only_its_hooks(tmp_path: Path) -> None:
    t = TinyTrainer(tmp_path)
    summary = RunLoop(t).run()
    assert summary == {"step": 6, "steps_run": 6, "stopped_early": False}
    assert t.epoch_ends == [(3, False), (6, True)]
    assert t.saved == [3, 6]  # at the first epoch end, then by finish (never twice at the last step)
    rows = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(6)) and [r["epoch"] for r in rows] == ["0"] * 3 + ["1"] * 3
    # a resumed run (step set by the trainer) continues the log without repeating a step
    t2 = TinyTrainer(tmp_path, epochs=3)
    t2.step = 6
    RunLoop(t2).run()
    rows = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(9))


def test_training_does_not_import_inference() -> None:
    """Image/tensor conversions and the device choice live in r2c_core.tensors, generator export in checkpoints."""
    bad = [f"{p.relative_to(REPO)} imports {n}" for folder in ("r2c_core/training", "r2c_core/baselines")
           for p in sorted((REPO / folder).rglob("*.py")) for n, _, _ in _imports(p) if n == "r2c_core.inference"]
    assert bad == []
