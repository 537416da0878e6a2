"""The worked example (examples/adamw_short_horizon.py) runs at tiny scale: a residual CNN with
BatchNorm (Flax NNX) under AdamW, learning rate and weight decay adapted online by SMD."""

import importlib.util
from pathlib import Path

import jax
import numpy as np

from test_hypergrad import teacher_data

PATH = Path(__file__).parents[1] / "examples" / "adamw_short_horizon.py"


def load_example():
    spec = importlib.util.spec_from_file_location("adamw_short_horizon", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adamw_online_adaptation_runs_and_moves_both_hyperparameters():
    example = load_example()
    task = example.resnet((8, 8, 1), 10, channels=4, blocks=1)
    data = teacher_data(jax.random.PRNGKey(0), (8, 8, 1), n=128, dtype=np.float32)
    run = example.online(task, data, jax.random.PRNGKey(1), 1e-2, 1e-3, steps=6, interval=2, meta_steps=2,
                         horizon=2, batch_size=16)
    assert np.all(np.isfinite(run["loss"])) and run["loss"].shape == (6,)
    for name, start in (("learning_rate", 1e-2), ("weight_decay", 1e-3)):
        values = np.asarray(run[name])
        # three intervals of two meta-steps; SMD's Adam moves log values by up to meta_lr a step
        assert not np.isclose(values[0], start) and np.all(np.abs(np.log(values / start)) <= 6 * 0.03 + 1e-6)
    stats = jax.tree.leaves(run["model_state"])
    assert any(not np.allclose(s, 0) and not np.allclose(s, 1) for s in stats)  # BatchNorm statistics moved
