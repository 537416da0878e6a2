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


def test_adamw_comparison_runs_and_adapts_both_hyperparameters():
    """The example's comparison at tiny scale: the hand-tuned run keeps its values, the adapted
    one moves lr and weight decay (three intervals of two meta-steps, each moving a log value by
    at most meta_lr)."""
    example = load_example()
    task = example.resnet((8, 8, 1), 10, channels=4, blocks=1)
    data = teacher_data(jax.random.PRNGKey(0), (8, 8, 1), n=128, dtype=np.float32)
    out = example.compare(task, data, data, jax.random.PRNGKey(1), 1e-2, 1e-3, 12, interval=2, meta_steps=2,
                          horizon=2, batch_size=16, meta_lr=0.03)
    hand_tuned = out["hand_tuned"]
    assert hand_tuned["lr_at_stop"] == pytest.approx(1e-2) and hand_tuned["weight_decay_at_stop"] == pytest.approx(1e-3)
    for name, start in (("lr", 1e-2), ("weight_decay", 1e-3)):
        value = out["adapted"][f"{name}_at_stop"]
        assert not np.isclose(value, start) and abs(np.log(value / start)) <= 6 * 0.03 + 1e-6
    assert not out["adapted"]["diverged"] and np.isfinite(out["adapted"]["final_train_loss"])
    assert out["lr_below_hand_tuned"] == (out["adapted"]["lr_at_stop"] < 1e-2)
