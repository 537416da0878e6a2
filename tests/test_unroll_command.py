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
