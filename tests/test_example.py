"""The worked example (examples/adamw_short_horizon.py) runs at tiny scale: a residual CNN with
BatchNorm (Flax NNX) under AdamW, learning rate and weight decay adapted online by SMD."""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from test_hypergrad import teacher_data

PATH = Path(__file__).parents[1] / "examples" / "adamw_short_horizon.py"


def load_example():
    spec = importlib.util.spec_from_file_location("adamw_short_horizon", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adamw_comparison_tunes_by_hand_then_adapts_both_hyperparameters():
    """The example's comparison at tiny scale: the hand-tuned runs keep their values and the
    best of them starts the adapted run, which moves lr and weight decay (three intervals of
    two meta-steps, each moving a log value by at most meta_lr)."""
    example = load_example()
    task = example.resnet((8, 8, 1), 10, channels=4, blocks=1)
    data = teacher_data(jax.random.PRNGKey(0), (8, 8, 1), n=128, dtype=np.float32)
    out = example.compare(task, data, data, jax.random.PRNGKey(1), (1e-3, 1e-2), 1e-3, 12, interval=2, meta_steps=2,
                          horizon=2, batch_size=16, meta_lr=0.03)
    losses = {lr: run["final_train_loss"] for lr, run in out["hand_tuned"].items()}
    assert set(losses) == {"0.001", "0.01"} and out["tuned_lr"] == float(min(losses, key=losses.get))
    for lr, run in out["hand_tuned"].items():
        assert run["lr_at_stop"] == pytest.approx(float(lr)) and run["weight_decay_at_stop"] == pytest.approx(1e-3)
    for name, start in (("lr", out["tuned_lr"]), ("weight_decay", 1e-3)):
        value = out["adapted"][f"{name}_at_stop"]
        assert not np.isclose(value, start) and abs(np.log(value / start)) <= 6 * 0.03 + 1e-6
    assert not out["adapted"]["diverged"] and np.isfinite(out["adapted"]["final_train_loss"])
    assert out["lr_below_tuned"] == (out["adapted"]["lr_at_stop"] < out["tuned_lr"])
