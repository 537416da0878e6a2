"""Hypergradients: forward (SMD), reverse and finite differences agree; the unroll is the loop."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shorthorizon import cli
from shorthorizon.data import make_fake_dataset
from shorthorizon.hypergrad import Data, Unroll, hypergradient, sample_batch, train
from shorthorizon.optim import adam, inverse_time, momentum, sgd
from shorthorizon.tasks import cast_floats, cnn, mlp


def teacher_data(key, shape, n=256, dtype=jnp.float64):
    """Images in [0, 1] with labels from a random linear teacher: learnable, smooth losses."""
    kx, kw = jax.random.split(key)
    x = jax.random.uniform(kx, (n, *shape), dtype)
    w = jax.random.normal(kw, (int(np.prod(shape)), 10), dtype)
    y = jnp.argmax((x.reshape(n, -1) - 0.5) @ w, axis=-1)
    return Data(x, y)


def as_f64(tree):
    return cast_floats(tree, jnp.float64)


def cross_entropy(task, params, batch):
    return task.loss(params, (), batch, None)[0]


OPTIMIZERS = {
    "sgd": (sgd, {"lr": 0.05, "decay_exponent": 0.7}),
    "momentum": (momentum, {"lr": 0.02, "momentum": 0.8, "decay_exponent": 0.7}),
    "adam": (adam, {"lr": 1e-3, "momentum": 0.85, "decay_exponent": 0.7}),
}
TASKS = {
    "mlp": (lambda: mlp(input_shape=(8, 8, 1), hidden=(16, 16)), (8, 8, 1)),
    # the paper's CNN layout (3 conv+pool blocks, dense, output), narrowed to keep tests fast
    "cnn": (lambda: cnn(input_shape=(8, 8, 3), channels=(4, 4, 8), dense=16), (8, 8, 3)),
}


# every optimizer on the MLP; the CNN's convolution and pooling under the paper's optimizer
@pytest.mark.parametrize("task_name,opt_name", [*itertools.product(["mlp"], OPTIMIZERS), ("cnn", "momentum")])
def test_forward_reverse_fd_agree(x64, task_name, opt_name):
    make_task, shape = TASKS[task_name]
    make_opt, hyper = OPTIMIZERS[opt_name]
    task, optimizer = make_task(), make_opt(inverse_time(10.0))
    key = jax.random.PRNGKey(3)
    data = teacher_data(key, shape)
    params = as_f64(task.init(key))
    hyper = {k: jnp.float64(v) for k, v in hyper.items()}
    state = optimizer.init(params, hyper)
    unroll = Unroll(task, optimizer, steps=4, batch_size=16, eval_batches=2)
    objective = jax.jit(lambda h: unroll.objective(h, params, state, data, jax.random.PRNGKey(7)))

    results = {est: hypergradient(objective, hyper, est) for est in ("forward", "reverse", "fd")}
    value, ref = results["forward"][0], np.array([results["forward"][1][k] for k in hyper])
    assert np.all(ref != 0)  # every hyperparameter matters
    for est, (v, grad) in results.items():
        np.testing.assert_allclose(v, value, rtol=1e-12)
        # relative error 1e-5 per component, and 1e-5 of the hypergradient's norm for a tiny
        # component (finite differences round off there: d/d decay_exponent can be ~1e-5)
        np.testing.assert_allclose([grad[k] for k in hyper], ref, rtol=1e-5,
                                   atol=1e-5 * np.linalg.norm(ref), err_msg=f"{est} vs forward")


def test_forward_subset_and_bad_names(x64):
    f = lambda h: h["a"] ** 2 * h["b"]
    value, grad = hypergradient(f, {"a": 3.0, "b": 2.0}, "forward", wrt=("a",))
    assert float(value) == 18.0 and set(grad) == {"a"} and float(grad["a"]) == 12.0
    with pytest.raises(ValueError, match="not among"):
        hypergradient(f, {"a": 3.0, "b": 2.0}, wrt=("c",))
    with pytest.raises(ValueError, match="unknown derivative mode 'backward'; choose one of: forward, reverse, fd"):
        hypergradient(f, {"a": 3.0, "b": 2.0}, "backward")


def test_unroll_equals_python_loop(x64):
    task, optimizer = mlp(input_shape=(8, 8, 1), hidden=(16,)), momentum(inverse_time(10.0))
    key = jax.random.PRNGKey(0)
    data = teacher_data(key, (8, 8, 1))
    params = as_f64(task.init(key))
    state = optimizer.init(params, {"lr": 0.1, "momentum": 0.9, "decay_exponent": 1.0})
    unroll = Unroll(task, optimizer, steps=12, batch_size=8, eval_batches=3)
    run_key = jax.random.PRNGKey(5)
    objective, (final, _, _, losses) = jax.jit(lambda s: unroll.run({}, params, s, data, run_key))(state)

    # the same thing, one step at a time in Python with the documented batch keys
    train_key, eval_key = jax.random.split(run_key)
    p, s, loop_losses = params, state, []
    for t in range(12):
        batch = sample_batch(data, jax.random.fold_in(train_key, t), 8)
        loss, grads = jax.value_and_grad(lambda q: cross_entropy(task, q, batch))(p)
        p, s = optimizer.update(grads, s, p)
        loop_losses.append(loss)
    eval_losses = [cross_entropy(task, p, b) for b in
                   (sample_batch(data, k, 8) for k in jax.random.split(eval_key, 3))]
    np.testing.assert_allclose(losses, loop_losses, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), final, p)
    np.testing.assert_allclose(objective, np.mean(eval_losses), rtol=1e-12)


def test_deterministic_lookahead_repeats_one_batch(x64):
    task, optimizer = mlp(input_shape=(8, 8, 1), hidden=(16,)), sgd()
    key = jax.random.PRNGKey(1)
    data = teacher_data(key, (8, 8, 1))
    params = as_f64(task.init(key))
    state = optimizer.init(params, {"lr": 0.1})
    unroll = Unroll(task, optimizer, steps=5, batch_size=8, lookahead="deterministic")
    objective, (final, _, _, losses) = unroll.run({}, params, state, data, jax.random.PRNGKey(2))
    batch = sample_batch(data, jax.random.split(jax.random.PRNGKey(2))[0], 8)
    # every step saw that batch: the loss on it falls monotonically for a small lr,
    # and the objective is the loss on that same batch after the last step
    assert np.all(np.diff(losses) < 0)
    np.testing.assert_allclose(objective, cross_entropy(task, final, batch), rtol=1e-12)


def test_train_halves_the_loss_on_a_learnable_problem():
    """Plain float32 training through ``train`` reduces the loss on a learnable problem."""
    task, optimizer = mlp(input_shape=(8, 8, 1), hidden=(32,)), momentum()
    key = jax.random.PRNGKey(4)
    data = teacher_data(key, (8, 8, 1), n=512, dtype=jnp.float32)
    params = task.init(key)
    state = optimizer.init(params, {"lr": 0.1, "momentum": 0.9})
    batch_at = lambda t: sample_batch(data, jax.random.fold_in(key, t), 32)
    _, state, _, losses = jax.jit(lambda p, s: train(task, optimizer, p, s, batch_at, 300))(params, state)
    assert int(state.step) == 300
    assert float(losses[-50:].mean()) < 0.5 * float(losses[:10].mean())


def _unroll_cli(capsys, tmp_path, *extra, lr="0.05", status=0):
    make_fake_dataset(tmp_path, "mnist", n_train=300, n_test=50, seed=0)
    code = cli.main(["unroll", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-verify",
                     "--lr", lr, "--momentum", "0.9", "--decay-exponent", "0.5",
                     "--steps", "5", "--eval-batches", "2", "--seed", "3", *extra])
    assert code == status
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1], parse_constant=pytest.fail)


def test_unroll_cli_reproducible_and_estimators_agree(capsys, tmp_path):
    forward = _unroll_cli(capsys, tmp_path, "--x64")
    again = _unroll_cli(capsys, tmp_path, "--x64")
    reverse = _unroll_cli(capsys, tmp_path, "--x64", "--estimator", "reverse")
    assert forward == again and forward["diverged"] is False
    assert set(forward["hypergrad"]) == {"lr", "momentum", "decay_exponent"}
    for name, value in forward["hypergrad"].items():
        assert value == pytest.approx(reverse["hypergrad"][name], rel=1e-8)
    assert 0 < forward["loss"] < 10


def test_unroll_cli_divergence_is_strict_json_and_status_3(capsys, tmp_path):
    """A learning rate so large that training diverges: the JSON (parsed strictly: NaN and
    Infinity fail) has null for what is not finite, and the exit status says so."""
    result = _unroll_cli(capsys, tmp_path, lr="1e6", status=3)
    assert result["diverged"] is True and result["loss"] is None


def test_unroll_cli_bad_input(capsys, tmp_path):
    code = cli.main(["unroll", "--lr", "0.1", "--steps", "0", "--data-dir", str(tmp_path)])
    assert code == 2 and "--steps must be positive" in capsys.readouterr().err
