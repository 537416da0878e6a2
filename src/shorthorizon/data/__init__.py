"""Datasets for the neural-net experiments: MNIST, Fashion-MNIST and CIFAR-10.

    >>> from shorthorizon.data import default_dataset, load_dataset
    >>> name = default_dataset()            # "mnist" where present, else "fashion-mnist"
    >>> ds = load_dataset(name)              # float32 NHWC in [0, 1], int32 labels, verified

Files are found in ``--data-dir``, ``$SHORTHORIZON_DATA``, ``~/.cache/shorthorizon`` and
``/usr/share/datasets`` (Debian's ``dataset-fashion-mnist``), checked against the
published checksums, and can be fetched with ``shorthorizon data download NAME``.
``make_fake_dataset`` writes tiny datasets in the real formats for tests.
"""

from shorthorizon.data.errors import ChecksumError, CorruptFileError, DatasetNotFoundError, DownloadError
from shorthorizon.data.fetch import download, ensure_dataset
from shorthorizon.data.formats import make_fake_dataset, write_cifar_batches, write_idx
from shorthorizon.data.store import (Dataset, dataset_status, default_dataset, find_dataset,
                                     load_dataset, locate_dataset, missing_data_instructions,
                                     search_roots)

__all__ = [
    "ChecksumError", "CorruptFileError", "Dataset", "DatasetNotFoundError",
    "DownloadError", "dataset_status", "default_dataset", "download", "ensure_dataset",
    "find_dataset", "load_dataset", "locate_dataset", "make_fake_dataset",
    "missing_data_instructions", "search_roots", "write_cifar_batches", "write_idx",
]
