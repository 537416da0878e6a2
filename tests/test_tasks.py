"""Tasks with model state and randomness (Flax NNX, Equinox) under unrolled training and every
derivative mode; tasks named as package.module:factory, and the errors for a wrong one."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from shorthorizon import cli
from shorthorizon.data import make_fake_dataset
from shorthorizon.hypergrad import Data, Unroll, evaluate, hypergradient, train
from shorthorizon.optim import Optimizer
from shorthorizon.tasks import models
from shorthorizon.tasks import (Task, cast_floats, check_output, classification_loss, cnn, initialize, make_task,
                               mlp)

import example_tasks
from test_hypergrad import teacher_data

ADAMW_HYPER = {"lr": 0.02, "weight_decay": 0.1}


def _agree(task, data, fd=True):
    """Forward, reverse and (``fd``) central finite differences of a 3-step AdamW unroll's
    objective w.r.t. learning rate and weight decay agree to 1e-5 (float64); returns the model
    state before and after the unroll."""
    key = jax.random.PRNGKey(0)
    params, model_state = cast_floats((task.init(key), task.init_state(key)), jnp.float64)
    adamw = optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, weight_decay=0.0, eps_root=1e-30)
    opt = Optimizer("adamw", adamw)
    state = opt.init(params, ADAMW_HYPER)
    unroll = Unroll(task, opt, steps=3, batch_size=8, eval_batches=2)

    def run(h):
        return unroll.run(h, params, state, data, jax.random.PRNGKey(7), model_state=model_state)

    objective = lambda h: run(h)[0]
    hyper = {k: jnp.float64(v) for k, v in ADAMW_HYPER.items()}
    *exact, after = jax.jit(lambda h: (hypergradient(objective, h, "forward"), hypergradient(objective, h, "reverse"),
                                       run(h)[1][2]))(hyper)
    value, ref = exact[0] if not fd else hypergradient(jax.jit(objective), hyper, "fd", fd_step=1e-6)
    ref = np.array([ref[k] for k in hyper])
    assert np.all(np.abs(ref) > 1e-4)  # both hyperparameters matter
    for v, grad in exact:
        np.testing.assert_allclose(v, value, rtol=1e-12)
        np.testing.assert_allclose([grad[k] for k in hyper], ref, rtol=1e-5)
    return model_state, after


def test_flax_batchnorm_dropout_hypergradients_agree(x64):
    """BatchNorm statistics and dropout inside the unroll: the statistics move in training,
    and forward, reverse and finite-difference hypergradients of AdamW's learning rate and
    weight decay agree."""
    before, after = _agree(example_tasks.nnx_net((4, 4, 1), 10), teacher_data(jax.random.PRNGKey(1), (4, 4, 1), n=64))
    assert not np.allclose(after["bn"]["mean"], before["bn"]["mean"])


def test_equinox_batchnorm_dropout_forward_and_reverse_agree(x64):
    before, after = _agree(example_tasks.equinox_net((4, 4, 1), 10),
                           teacher_data(jax.random.PRNGKey(1), (4, 4, 1), n=64), fd=False)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))


@pytest.mark.parametrize("build", [lambda: mlp((4, 4, 1), hidden=(8,)), lambda: example_tasks.nnx_net((4, 4, 1), 10),
                                   lambda: example_tasks.equinox_net((4, 4, 1), 10)], ids=["mlp", "flax", "equinox"])
def test_initial_weights_are_the_same_in_float32_and_float64(build):
    """One key, one set of weights: float64's are float32's, cast (the initializers' own
    float64 draws would be other numbers)."""
    task, key = build(), jax.random.PRNGKey(0)
    single, _ = initialize(task, key)
    with jax.enable_x64(True):
        double, state = initialize(task, key, jnp.float64)
        task.loss(double, state, (jnp.zeros((4, 4, 4, 1)), jnp.zeros(4, jnp.int32)), key)  # the model takes its state
    assert jax.tree.structure(single) == jax.tree.structure(double)
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(double)):
        assert a.dtype == jnp.float32 and b.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(b).astype(np.float32), a)


def test_classification_loss_is_optax_integer_label_cross_entropy(x64):
    # the one-hot form (no gather: faster derivatives) against optax's integer-label form, in
    # value and gradient w.r.t. the logits
    logits = jax.random.normal(jax.random.PRNGKey(0), (32, 10), jnp.float64) * 3
    labels = jax.random.randint(jax.random.PRNGKey(1), (32,), 0, 10)
    reference = lambda z: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, labels))
    np.testing.assert_allclose(classification_loss(logits, labels), reference(logits), rtol=1e-13)
    np.testing.assert_allclose(jax.grad(classification_loss)(logits, labels), jax.grad(reference)(logits),
                               rtol=1e-12, atol=1e-15)


def test_cnn_cpu_forms_equal_the_library_convolution_and_pooling(x64, monkeypatch):
    # im2col and reshape-max against lax.conv_general_dilated and lax.reduce_window (the forms
    # used off CPU): loss, gradient and the forward-over-reverse derivative SMD takes, on an
    # odd-sized input (7x7: the first pooling pads)
    task = cnn(input_shape=(7, 7, 3), channels=(4, 8), dense=16)
    params = cast_floats(task.init(jax.random.PRNGKey(0)), jnp.float64)
    batch = (jax.random.normal(jax.random.PRNGKey(1), (5, 7, 7, 3), jnp.float64),
             jax.random.randint(jax.random.PRNGKey(2), (5,), 0, 10))

    def derivatives():
        grad = jax.grad(lambda p: task.loss(p, (), batch, None)[0])
        return task.loss(params, (), batch, None)[0], grad(params), jax.jvp(grad, (params,), (params,))[1]

    cpu = derivatives()
    monkeypatch.setattr(models, "_cpu_workarounds", lambda: False)
    library = derivatives()
    for a, b in zip(jax.tree.leaves(cpu), jax.tree.leaves(library)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_non_scalar_loss_is_a_clear_error():
    base = mlp((4, 4, 1), hidden=(8,))
    per_example = base._replace(loss=lambda p, s, b, k: (optax.softmax_cross_entropy_with_integer_labels(
        base.init(jax.random.PRNGKey(0))[-1][1] + jnp.zeros((b[0].shape[0], 10)), b[1]), (s, {})))
    data = teacher_data(jax.random.PRNGKey(0), (4, 4, 1), n=32, dtype=jnp.float32)
    opt = Optimizer("sgd", optax.inject_hyperparams(optax.sgd)(learning_rate=0.1))
    params = per_example.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"loss has shape \(8,\), not a scalar.*jnp.mean"):
        train(per_example, opt, params, opt.init(params), lambda t: jax.tree.map(lambda a: a[:8], data), 2)


def test_task_by_module_and_factory():
    task = make_task("example_tasks:nnx_net", (4, 4, 1), 10)
    assert isinstance(task, Task) and task.name == "nnx_net"
    data = Data(jnp.zeros((8, 4, 4, 1)), jnp.zeros(8, jnp.int32))
    metrics = evaluate(task, task.init(jax.random.PRNGKey(0)), data, 8, task.init_state(jax.random.PRNGKey(0)))
    assert set(metrics) == {"loss", "error"}


@pytest.mark.parametrize("spec,message", [
    ("no_such_module_xyz:net", "cannot import module 'no_such_module_xyz'"),
    ("example_tasks:missing", "module 'example_tasks' has no attribute 'missing'"),
    ("example_tasks:NOT_A_FUNCTION", "'NOT_A_FUNCTION' is a int, not a function"),
    ("example_tasks:wrong_signature", "wrong_signature does not take \\(input_shape, num_classes\\)"),
    ("example_tasks:", "expected package.module:factory"),
])
def test_wrong_task_spec_names_the_problem_and_the_signature(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        make_task(spec, (4, 4, 1))
    assert "factory(input_shape: tuple[int, int, int], num_classes: int) -> shorthorizon.tasks.Task" in str(err.value)
    with pytest.raises(ValueError, match="returned a dict, not a Task"):
        make_task("example_tasks:not_a_task", (4, 4, 1))


def test_a_failing_or_broken_user_task_is_named(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"task example_tasks:needs_color for images of shape \(4, 4, 1\), "
                                         "10 classes: ValueError: needs color images"):
        make_task("example_tasks:needs_color", (4, 4, 1))
    (tmp_path / "broken_task_module.py").write_text("def net(input_shape, num_classes)\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="module 'broken_task_module' has a syntax error"):
        make_task("broken_task_module:net", (4, 4, 1))


def test_unroll_cli_with_a_task_named_by_module(capsys, tmp_path):
    make_fake_dataset(tmp_path, "mnist", n_train=100, n_test=20, seed=0)
    base = ["unroll", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-verify", "--lr", "0.05",
            "--momentum", "0.9", "--steps", "2", "--batch-size", "8", "--eval-batches", "1"]
    assert cli.main([*base, "--task", "example_tasks:nnx_net"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["hypergrad"]) == {"lr", "momentum"} and all(map(np.isfinite, result["hypergrad"].values()))
    assert cli.main([*base, "--task", "example_tasks:missing"]) == 2
    assert "no attribute 'missing'" in capsys.readouterr().err


def test_offline_and_online_configs_take_a_task_spec():
    import dataclasses

    from shorthorizon.experiments import offline, online

    own = dict(user_steps=200, user_init_lrs=(0.1,), user_baseline_lr=0.1, user_batch_size=100)  # a user's task's
    for module, good, bad in ((offline, "example_tasks:nnx_net", "example_tasks:missing"),
                              (online, ("mlp", "example_tasks:nnx_net"), ("example_tasks:missing",))):
        config = module.PRESETS["quick"]
        config = dataclasses.replace(config, **own) if module is online else config
        module.validate(dataclasses.replace(config, task=good))
        with pytest.raises(ValueError, match="has no attribute 'missing'"):
            module.validate(dataclasses.replace(config, task=bad))
    # a user's task never takes the MLP's settings: without its own, the keys to set are named
    with pytest.raises(ValueError, match="^task 'example_tasks:nnx_net' has no settings of its own: set config keys "
                                         "user_steps, user_init_lrs, user_baseline_lr, user_batch_size "):
        online.validate(dataclasses.replace(online.PRESETS["quick"], task=("example_tasks:nnx_net",)))


WRONG_OUTPUTS = {  # a user's task whose outputs do not fit the images: its one-line error
    "example_tasks:too_few_logits": r"its model's outputs for a batch of 2 images of shape \(28, 28, 1\) have shape "
                                    r"\(2, 7\); wanted \(2, 10\)",
    "example_tasks:unflattened": r"its model on a batch of 2 images of shape \(28, 28, 1\) fails: TypeError: "
                                 r"dot_general requires contracting dimensions",
}


@pytest.mark.parametrize("spec", WRONG_OUTPUTS)
def test_outputs_that_do_not_fit_the_dataset_are_one_line_before_training(spec):
    # logits of width 7 for 10 classes trained without an error (one-hot rows of zeros);
    # an unflattened image in a dense layer failed deep in the first compiled step
    with pytest.raises(ValueError, match=f"^task {spec}: {WRONG_OUTPUTS[spec]}") as err:
        make_task(spec, (28, 28, 1), 10)
    assert "\n" not in str(err.value)
    make_task("example_tasks:nnx_net", (28, 28, 1), 10)  # the same model with its width right passes
    with pytest.raises(ValueError, match=r"^task equinox_net: .* have shape \(2, 10\); wanted \(2, 12\)"):
        check_output(example_tasks.equinox_net((28, 28, 1), 10), (28, 28, 1), 12)  # a dataset of 12 classes
    # a hand-built task without ``apply``: its loss is traced on the images instead
    bare = mlp((4, 4, 1), hidden=(8,))._replace(apply=None)
    with pytest.raises(ValueError, match=r"^task mlp: its loss on a batch of 2 images of shape \(5, 5, 1\) fails"):
        check_output(bare, (5, 5, 1), 10)


def test_every_command_checks_the_task_against_its_dataset_before_training(capsys, tmp_path):
    make_fake_dataset(tmp_path / "data", "mnist", n_train=100, n_test=20, seed=0)
    data = str(tmp_path / "data")
    small = {  # settings that would train for seconds, were the task right
        "unroll": ["--data-dir", data, "--no-verify", "--lr", "0.05", "--momentum", "0.9", "--steps", "2",
                   "--batch-size", "20", "--eval-batches", "2"],
        "offline": ["--set", f"data_dir={data}", "--set", "verify=false", "--set", "horizons=10",
                    "--set", "warm_start_steps=5", "--set", "eval_batches=2", "--set", "surface_samples=4",
                    "--set", "surface_chunk=4", "--set", "meta_steps=2", "--set", "curve_points=2"],
        "online": ["--set", f"data_dir={data}", "--set", "verify=false", "--set", "eval_examples=100",
                   "--set", "user_steps=20", "--set", "meta_steps=1", "--set", "interval=5",
                   "--set", "user_init_lrs=0.1", "--set", "user_baseline_lr=0.1", "--set", "lookaheads=stochastic",
                   "--set", "user_batch_size=20"],
    }
    for command, args in small.items():
        out = tmp_path / command
        extra = [] if command == "unroll" else ["--out", str(out)]
        capsys.readouterr()
        assert cli.main([command, "--dataset", "mnist", *args, *extra, "--task", "example_tasks:too_few_logits"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "have shape (2, 7); wanted (2, 10)" in err, (command, err)
        assert not out.exists()  # nothing computed, no folder left


def test_online_with_a_users_task_writes_portable_file_names(capsys, tmp_path):
    """Unit and figure names hold no colon (package.module:factory), and the figures find the units."""
    import re

    make_fake_dataset(tmp_path / "data", "mnist", n_train=100, n_test=20, seed=0)
    out = tmp_path / "run"
    assert cli.main(["online", "--dataset", "mnist", "--task", "example_tasks:small_mlp", "--out", str(out),
                     "--set", f"data_dir={tmp_path / 'data'}", "--set", "verify=false", "--set", "eval_examples=100",
                     "--set", "user_steps=20", "--set", "meta_steps=1", "--set", "interval=5", "--set", "chunks=1",
                     "--set", "user_init_lrs=0.1", "--set", "user_baseline_lr=0.1", "--set", "lookaheads=stochastic",
                     "--set", "user_batch_size=20"]) == 0
    names = sorted(p.name for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert "example_tasks_small_mlp_baseline.npz" in names and "online_example_tasks_small_mlp.png" in names
    assert all(re.fullmatch(r"[\w.-]+", name) for name in names), names
