"""Saves cut off by a kill: a checkpoint's weights and config, and a training state's optimizer file, carry one
``save_token``; files of different saves are refused on loading instead of resuming silently from a mix."""

from __future__ import annotations

import shutil

import pytest
import torch

from r2c_core.checkpoints import load_checkpoint, save_checkpoint, weights_token
from r2c_core.errors import CheckpointError
from r2c_core.runio import OPTIM_FILE, load_optimizers, save_training_state


def test_weights_and_config_carry_one_token_and_a_mix_is_refused(tmp_path) -> None:
    first = save_checkpoint(tmp_path / "first", {"w": torch.zeros(3)}, {"kind": "x", "step": 1})
    second = save_checkpoint(tmp_path / "second", {"w": torch.ones(3)}, {"kind": "x", "step": 2})
    tensors, cfg = load_checkpoint(second)
    assert cfg["save_token"] == weights_token(second / "model.safetensors") and torch.equal(tensors["w"], torch.ones(3))
    assert not list(second.glob("*.tmp"))  # both files renamed into place
    # a kill between the two renames: the new weights beside the old config (its step)
    shutil.copyfile(second / "model.safetensors", first / "model.safetensors")
    with pytest.raises(CheckpointError, match="different saves"):
        load_checkpoint(first, same_save=True)  # as the training states load themselves before resuming
    # weights folders are not refused on the token: a config paired by hand with other weights is caught by fitting
    # them to the model ("does not fit", tests/test_cli_models.py), with the clearer message
    assert torch.equal(load_checkpoint(first)[0]["w"], torch.ones(3))


def test_a_checkpoint_without_tokens_still_loads(tmp_path) -> None:
    from safetensors.torch import save_file

    d = tmp_path / "old"
    d.mkdir()
    save_file({"w": torch.zeros(2)}, str(d / "model.safetensors"), metadata={"format": "r2c-checkpoint/1"})
    (d / "config.json").write_text('{"kind": "x"}\n')
    tensors, cfg = load_checkpoint(d, same_save=True)
    assert "save_token" not in cfg and tensors["w"].shape == (2,)


def test_training_state_optimizers_of_another_save_are_refused(tmp_path) -> None:
    d = tmp_path / "state"
    save_training_state(d, {"w": torch.zeros(2)}, {"kind": "x", "step": 1}, {"opt": {"state": {}, "param_groups": []}})
    old_optim = (d / OPTIM_FILE).read_bytes()
    save_training_state(d, {"w": torch.ones(2)}, {"kind": "x", "step": 2}, {"opt": {"state": {}, "param_groups": [{"lr": 2}]}})
    _, cfg = load_checkpoint(d)
    assert load_optimizers(d, "cpu", cfg["save_token"])["opt"]["param_groups"] == [{"lr": 2}]
    assert not list(d.glob("*.tmp"))
    # a kill after the weights and config were renamed, before optim.pt: new step, old Adam moments
    (d / OPTIM_FILE).write_bytes(old_optim)
    with pytest.raises(CheckpointError, match="another save"):
        load_optimizers(d, "cpu", cfg["save_token"])


def test_optimizer_files_written_before_the_token_still_load(tmp_path) -> None:
    torch.save({"opt_g": {"state": {}, "param_groups": []}}, tmp_path / OPTIM_FILE)  # the format of earlier states
    assert load_optimizers(tmp_path, "cpu", "any-token") == {"opt_g": {"state": {}, "param_groups": []}}
