"""Dataset choice for the neural-net tasks: ``"auto"`` resolves to the first
present dataset of a preference list, and the data go to the device once."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

from shorthorizon.data.fetch import ensure_dataset
from shorthorizon.data.registry import SPECS
from shorthorizon.data.store import Dataset, default_dataset, load_dataset, locate_dataset, missing_data_instructions
from shorthorizon.hypergrad import Data

AUTO = "auto"
# the datasets each task uses by default, in order of preference: the first one present
PREFERRED = {"mlp": ("mnist", "fashion-mnist"), "cnn": ("cifar10", "fashion-mnist")}


def preferred(task: str) -> tuple[str, ...]:
    """The datasets ``task`` uses by default; a user's task (``package.module:factory``) the
    MLP's, the image sets every installation can have."""
    return PREFERRED.get(task, PREFERRED["mlp"])


def check_name(name: str) -> None:
    """ValueError unless ``name`` is ``"auto"`` or a known dataset."""
    if name != AUTO and name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {AUTO}, {', '.join(SPECS)}")


def resolve(name: str, preferred: Sequence[str], data_dir: str | None = None) -> str:
    """``name``, or for ``"auto"`` the first present dataset of ``preferred``; raises (before
    any work needs the data) when the name is unknown or its files are not all present."""
    check_name(name)
    if name != AUTO:
        locate_dataset(name, data_dir)
        return name
    found = default_dataset(tuple(preferred), data_dir)
    if found is None:
        raise FileNotFoundError(missing_data_instructions(tuple(preferred), data_dir))
    return found


def ready(preferred: Sequence[str], fetch: bool, data_dir: str | None = None) -> str | None:
    """None when a dataset of ``preferred`` is present (after fetching one if asked), else
    the instructions for obtaining one."""
    if ensure_dataset(tuple(preferred), data_dir, fetch=fetch):
        return None
    return missing_data_instructions(tuple(preferred), data_dir)


def check_fits(name: str, examples: int, counts: dict[str, int]) -> None:
    """ValueError naming the first of ``counts`` (what -> how many training examples it takes)
    that exceeds the ``examples`` of dataset ``name``: checked once the data is loaded, before
    any program is compiled for sizes the data cannot fill."""
    for what, count in counts.items():
        if count > examples:
            raise ValueError(f"{what} is {count}, more than the {examples} training examples of {name}")


def load(name: str, data_dir: str | None = None, verify: bool = True,
         dtype=jnp.float32) -> tuple[Dataset, Data, Data]:
    """The dataset, and its train and test splits as device arrays (``verify=False`` skips
    the published-checksum check, for tiny fake datasets in tests)."""
    ds = load_dataset(name, data_dir, verify=verify)
    train = Data(jnp.asarray(ds.train_x, dtype), jnp.asarray(ds.train_y))
    test = Data(jnp.asarray(ds.test_x, dtype), jnp.asarray(ds.test_y))
    return ds, train, test
