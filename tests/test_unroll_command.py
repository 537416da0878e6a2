"""The ``unroll`` command: every optimizer's hyperparameters from flags, the same run in float32
and float64, and finite differences only where they can be right."""

import json

import pytest

from shorthorizon import cli
from shorthorizon.data import make_fake_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_fake_dataset(folder, "mnist", n_train=300, n_test=50, seed=0)
    return folder


def unroll(capsys, data_dir, *args, status=0):
    """``shorthorizon unroll`` on the fake MNIST: its JSON (status 0) or its stderr."""
    capsys.readouterr()
    code = cli.main(["unroll", "--dataset", "mnist", "--data-dir", str(data_dir), "--no-verify",
                     "--batch-size", "20", "--eval-batches", "2", "--seed", "3", *args])
    out = capsys.readouterr()
    assert code == status, out.err
    return json.loads(out.out.strip().splitlines()[-1]) if status == 0 else out.err


def test_x64_changes_the_precision_not_the_weights_or_batches(capsys, data_dir):
    """One step at a negligible lr: the loss is the initial weights' on the seed's batches, so
    float32 and float64 agree to float32 rounding when both draw the same weights and batches
    (float64 draws from the same key are other numbers)."""
    args = ("--optimizer", "sgd", "--lr", "1e-8", "--steps", "1")
    single, double = unroll(capsys, data_dir, *args), unroll(capsys, data_dir, *args, "--x64")
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-6)
    assert double["hypergrad"]["lr"] == pytest.approx(single["hypergrad"]["lr"], rel=1e-4)


def test_adamw_takes_its_weight_decay_and_flags_match_the_optimizer(capsys, data_dir):
    result = unroll(capsys, data_dir, "--optimizer", "adamw", "--lr", "1e-3", "--momentum", "0.9",
                    "--weight-decay", "1e-2", "--steps", "3")
    assert set(result["hypergrad"]) == {"lr", "momentum", "weight_decay"}
    assert result["hypergrad"]["weight_decay"] != 0 and not result["diverged"]
    base = ("--lr", "1e-3", "--momentum", "0.9", "--steps", "3")
    assert "--optimizer adamw needs --weight-decay" in unroll(capsys, data_dir, "--optimizer", "adamw", *base, status=2)
    assert "--optimizer adam has no weight_decay; leave out --weight-decay" in unroll(
        capsys, data_dir, "--optimizer", "adam", *base, "--weight-decay", "1e-2", status=2)
    assert "--weight-decay must be zero or more" in unroll(
        capsys, data_dir, "--optimizer", "adamw", *base, "--weight-decay", "-1", status=2)


def test_finite_differences_need_x64(capsys, data_dir):
    """In float32 the relative step (1e-7) is below the resolution: lr ± step rounds to other
    steps, and the quotient was off by 2x or more without a word. Refused, with the fix."""
    args = ("--lr", "0.05", "--momentum", "0.9", "--steps", "3", "--estimator")
    err = unroll(capsys, data_dir, *args, "fd", status=2)
    assert "--estimator fd needs --x64" in err and len(err.strip().splitlines()) == 1
    fd, forward = unroll(capsys, data_dir, *args, "fd", "--x64"), unroll(capsys, data_dir, *args, "forward", "--x64")
    for name in ("lr", "momentum"):
        assert fd["hypergrad"][name] == pytest.approx(forward["hypergrad"][name], rel=1e-4)


def test_the_library_refuses_finite_differences_that_round_away():
    import jax.numpy as jnp

    from shorthorizon.hypergrad import hypergradient

    f = lambda h: (h["lr"] - 0.3) ** 2
    with pytest.raises(ValueError, match=r"relative steps of 1e-07 in float32 .*compute in float64"):
        hypergradient(f, {"lr": jnp.float32(0.1)}, "fd")
    _, grad = hypergradient(f, {"lr": jnp.float32(0.1)}, "fd", fd_step=1e-2)  # a step float32 resolves
    assert float(grad["lr"]) == pytest.approx(-0.4, rel=1e-3)
