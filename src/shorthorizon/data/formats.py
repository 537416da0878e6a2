"""Readers and writers for the on-disk formats: IDX (MNIST family) and CIFAR-10 batches.

Readers take bytes plus the path they came from (for error messages) and return uint8
images in NHWC layout and int32 labels. Writers produce files in the real published
formats, so tests anywhere in the project can build tiny datasets::

    folder = make_fake_dataset(tmp_path, "mnist", n_train=20, n_test=10, seed=0)
    ds = load_dataset("mnist", data_dir=tmp_path, verify=False)  # fake files: no checksums
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from shorthorizon.data.errors import CorruptFileError
from shorthorizon.data.registry import get_spec

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08
_CIFAR_PIXELS = 32 * 32 * 3


def file_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed when it is gzip (detected by its magic)."""
    return decoded(Path(path).read_bytes(), path)


def is_gzip(data: bytes) -> bool:
    return data.startswith(_GZIP_MAGIC)


def decoded(data: bytes, origin: Path | str) -> bytes:
    """``data`` (read from ``origin``), decompressed when it is gzip."""
    if not is_gzip(data):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:
        raise CorruptFileError(f"{origin}: truncated or corrupt gzip file ({err})") from None


def parse_idx(data: bytes, origin: Path | str) -> np.ndarray:
    """Decode an unsigned-byte IDX file (header, big-endian dims, payload) to a uint8 array."""
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise CorruptFileError(f"{origin}: not an IDX file (bad magic number)")
    if data[2] != _IDX_UBYTE:
        raise CorruptFileError(f"{origin}: IDX element type {data[2]:#04x}, expected unsigned byte 0x08")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(f"{origin}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise CorruptFileError(f"{origin}: {what}: {len(data)} bytes, the header implies {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path | str, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer takes uint8 arrays, got {array.dtype}")
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds what a CIFAR batch holds (dicts, lists, numpy arrays)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def parse_cifar_batch(data: bytes, origin: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one CIFAR-10 python batch to (uint8 images (N, 32, 32, 3), int32 labels (N,))."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        pixels = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int32)
    except Exception as err:  # pickle raises many types on truncated or foreign input
        raise CorruptFileError(f"{origin}: not a CIFAR-10 python batch ({type(err).__name__}: {err})") from None
    if pixels.ndim != 2 or pixels.shape[1] != _CIFAR_PIXELS or labels.shape != (len(pixels),):
        raise CorruptFileError(f"{origin}: CIFAR-10 batch has data {pixels.shape} and "
                               f"labels {labels.shape}, expected (N, {_CIFAR_PIXELS}) and (N,)")
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_tar_members(archive: Path, names: dict[str, str]) -> dict[str, bytes]:
    """Bytes of the archive members ``names`` (key -> member path), reading the tar.gz once."""
    wanted = {path: key for key, path in names.items()}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                if info.name in wanted and info.isfile():
                    found[wanted[info.name]] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise CorruptFileError(f"{archive}: truncated or corrupt archive ({err})") from None
    missing = sorted(set(names) - set(found))
    if missing:
        raise CorruptFileError(f"{archive}: archive lacks {', '.join(names[m] for m in missing)}")
    return found


def _cifar_batch_bytes(images: np.ndarray, labels: np.ndarray, label: str) -> bytes:
    """One batch pickled like the published files (bytes keys, (N, 3072) channel-major rows)."""
    images = np.asarray(images, dtype=np.uint8)
    batch = {
        b"batch_label": label.encode(),
        b"labels": [int(y) for y in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), _CIFAR_PIXELS),
        b"filenames": [f"{i}.png".encode() for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar_batches(folder: Path | str, train_x: np.ndarray, train_y: np.ndarray,
                        test_x: np.ndarray, test_y: np.ndarray, archive: bool = False) -> Path:
    """Write uint8 NHWC images as CIFAR-10 python batches under ``folder``.

    The training set is split over ``data_batch_1..5``. Writes the folder
    ``cifar-10-batches-py/`` or, with ``archive=True``, ``cifar-10-python.tar.gz``
    holding that folder. Returns the path written.
    """
    spec = get_spec("cifar10")
    chunks = zip(np.array_split(np.asarray(train_x), len(spec.train)),
                 np.array_split(np.asarray(train_y), len(spec.train)))
    batches = {m: _cifar_batch_bytes(x, y, f"training batch {i + 1} of 5")
               for i, (m, (x, y)) in enumerate(zip(spec.train, chunks))}
    batches["test_batch"] = _cifar_batch_bytes(test_x, test_y, "testing batch 1 of 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if archive:
        path = folder / spec.archive
        with tarfile.open(path, "w:gz") as tar:
            for member, data in batches.items():
                info = tarfile.TarInfo(f"{spec.subfolder}/{member}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path
    path = folder / spec.subfolder
    path.mkdir(exist_ok=True)
    for member, data in batches.items():
        (path / member).write_bytes(data)
    return path


def make_fake_dataset(folder: Path | str, name: str, n_train: int, n_test: int, seed: int = 0,
                      compress: bool = True) -> Path:
    """Write a random dataset ``name`` in its real file format into ``folder/<name>/``.

    Images are uniform random bytes and labels uniform over the classes, drawn from
    ``seed``. IDX files are gzipped unless ``compress=False``; CIFAR-10 is written as the
    ``.tar.gz`` archive when ``compress`` else as extracted batches. The files do not match
    the published checksums, so load them with ``verify=False``. Returns ``folder/<name>``.
    """
    spec = get_spec(name)
    rng = np.random.default_rng(seed)
    target = Path(folder) / name
    target.mkdir(parents=True, exist_ok=True)
    train, test = ((rng.integers(0, 256, (n, *spec.image_shape), dtype=np.uint8),
                    rng.integers(0, spec.num_classes, n, dtype=np.uint8)) for n in (n_train, n_test))
    if spec.fmt == "cifar":
        write_cifar_batches(target, *train, *test, archive=compress)
        return target
    suffix = ".gz" if compress else ""
    for members, (images, labels) in ((spec.train, train), (spec.test, test)):
        write_idx(target / f"{members[0]}{suffix}", images[..., 0])
        write_idx(target / f"{members[1]}{suffix}", labels)
    return target
