"""The real Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (installed by ``.ci/run``)."""

from __future__ import annotations

import numpy as np
import pytest

from shorthorizon.data import dataset_status, find_dataset, load_dataset, store


@pytest.fixture
def debian_fashion(tmp_path, monkeypatch):
    """The Debian files, found with a fresh cache (so checksums are really computed)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(store.ENV_VAR, raising=False)
    folder = store.SYSTEM_ROOT / "fashion-mnist"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"{folder} is missing: install Debian's Fashion-MNIST with "
                    "`apt-get install -y dataset-fashion-mnist` (as root; .ci/run does this)")
    return folder


def test_debian_fashion_mnist_loads_and_verifies(debian_fashion):
    assert find_dataset("fashion-mnist").folder == debian_fashion
    assert find_dataset("mnist") is None, "Fashion-MNIST files must not pass for MNIST"
    status = dataset_status("fashion-mnist")
    assert status.verified, status.problem
    ds = load_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 28, 28, 1) and ds.test_x.shape == (10000, 28, 28, 1)
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int32
    for x in (ds.train_x, ds.test_x):
        assert x.min() == 0.0 and x.max() == 1.0
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
    assert np.array_equal(np.bincount(ds.train_y), np.full(10, 6000))
    assert np.array_equal(np.bincount(ds.test_y), np.full(10, 1000))
