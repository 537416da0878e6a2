"""Training on a real dataset: Debian's Fashion-MNIST, which .ci/run installs."""

import jax
import numpy as np

from shorthorizon.data import DatasetNotFoundError
from shorthorizon.data import splits
from shorthorizon.hypergrad import Unroll, evaluate
from shorthorizon.optim import momentum
from shorthorizon.tasks import mlp


def test_mlp_on_real_fashion_mnist_learns():
    try:
        ds, train, test = splits.load("fashion-mnist")
    except DatasetNotFoundError as err:  # say what to do; never skip silently
        raise AssertionError(f"{err}\nInstall it: apt-get install -y dataset-fashion-mnist") from err
    assert train.x.shape == (60000, 28, 28, 1) and test.x.shape == (10000, 28, 28, 1)
    task, optimizer = mlp(), momentum()
    params = task.init(jax.random.PRNGKey(0))
    state = optimizer.init(params, {"lr": 0.1, "momentum": 0.9})
    sample = jax.tree.map(lambda a: a[:5000], train)
    before = float(evaluate(task, params, sample)["loss"])
    unroll = Unroll(task, optimizer, steps=300, batch_size=100)
    _, (params, _, _, losses) = jax.jit(lambda p: unroll.run({}, p, state, train, jax.random.PRNGKey(1)))(params)
    after = evaluate(task, params, sample)
    assert before > 2.0  # near log(10) = 2.30 at initialization
    assert float(after["loss"]) < 0.75, after  # well below log(10)
    assert float(evaluate(task, params, test)["error"]) < 0.3
    assert np.all(np.isfinite(losses))
