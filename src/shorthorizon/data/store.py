"""Finding, verifying and loading datasets on disk.

Search order for the folder holding a dataset: ``data_dir`` (``--data-dir``), then
``$SHORTHORIZON_DATA``, then the user cache ``~/.cache/shorthorizon``, then the system
folder ``/usr/share/datasets`` (Debian's ``dataset-fashion-mnist`` installs
``/usr/share/datasets/fashion-mnist/``). In each root a dataset is looked for in
``<root>/<name>/`` and then in ``<root>/`` itself; a complete set of files wins over a
partial one found earlier.

A folder the user names (``data_dir``, ``$SHORTHORIZON_DATA``) that holds some of a dataset's
files but not all (or a folder in a file's place) ends the search with an error naming the
folder and what it lacks: the dataset is the one named, never another copy found later.

Verification compares each file's content with its published checksum (see ``registry``),
hashed on every check: a file changed in place keeps neither its digest nor its
verification, whatever its size and modification time. Only gunzipping is cached: a stamp in
``~/.cache/shorthorizon/verified/`` named by the SHA-256 of a gzip file's own bytes holds the
digest of what it decompresses to; nothing is ever written next to the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from shorthorizon.data import formats
from shorthorizon.data.errors import ChecksumError, CorruptFileError, DatasetNotFoundError
from shorthorizon.data.registry import DEBIAN_DATASET, DEBIAN_PACKAGE, SPECS, Spec, get_spec
from shorthorizon.results import RunDirError, write_json

ENV_VAR = "SHORTHORIZON_DATA"
SYSTEM_ROOT = Path("/usr/share/datasets")


class Dataset(NamedTuple):
    """A loaded dataset: float32 images in [0, 1] (NHWC) and int32 labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: Path
    num_classes: int


@dataclass(frozen=True)
class Location:
    """Where a dataset's files were found: ``files`` maps each member to the file holding
    it (every member maps to the archive when it is read from one); ``missing`` lists the
    members not found in ``folder``."""

    name: str
    folder: Path
    files: dict[str, Path]
    missing: tuple[str, ...]
    named: bool = False  # in a folder the user named (data_dir, $SHORTHORIZON_DATA): the search ends here

    @property
    def complete(self) -> bool:
        return not self.missing


def cache_dir() -> Path:
    """The per-user folder for downloads and verification stamps."""
    return Path.home() / ".cache" / "shorthorizon"


def search_roots(data_dir: Path | str | None = None) -> tuple[Path, ...]:
    """The folders searched for datasets, in order."""
    return (*_named_roots(data_dir), cache_dir(), SYSTEM_ROOT)


def _named_roots(data_dir: Path | str | None) -> list[Path]:
    """The searched folders the user named: ``data_dir``, then ``$SHORTHORIZON_DATA``."""
    roots = [Path(data_dir).expanduser()] if data_dir else []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    return roots


def _candidates(spec: Spec, folder: Path) -> dict[str, tuple[Path, ...]]:
    """The paths each member may be read from in ``folder``, in order of preference."""
    return {m: (folder / f"{m}.gz" if spec.fmt == "idx" else folder / spec.subfolder / m, folder / m)
            for m in spec.members}


def _member_files(spec: Spec, folder: Path) -> dict[str, Path]:
    """The member files present in ``folder`` (an archive counts for all its members)."""
    files = {m: next((p for p in paths if p.is_file()), None) for m, paths in _candidates(spec, folder).items()}
    files = {m: p for m, p in files.items() if p is not None}
    archive = folder / spec.archive if spec.archive else None
    if len(files) < len(spec.members) and archive is not None and archive.is_file():
        return {m: archive for m in spec.members}
    return files


def _not_files(spec: Spec, folder: Path, members) -> dict[str, Path]:
    """Of ``members``, those whose place in ``folder`` holds something that is not a file (a folder):
    present, yet not readable as the member."""
    places = {m: next((p for p in paths if p.exists() and not p.is_file()), None)
              for m, paths in _candidates(spec, folder).items() if m in members}
    return {m: p for m, p in places.items() if p is not None}


def _belongs_to_other(spec: Spec, files: dict[str, Path]) -> bool:
    """Whether files found directly in a root are another dataset's (MNIST and
    Fashion-MNIST share file names); decided by the smallest file's checksum."""
    member, path = min(files.items(), key=lambda item: item[1].stat().st_size)
    for other in SPECS.values():
        if other is not spec and member in other.digests:
            algorithm, expected = other.digests[member].split(":")
            if file_digest(path, algorithm) == expected:
                return True
    return False


def find_dataset(name: str, data_dir: Path | str | None = None) -> Location | None:
    """Where dataset ``name`` is: the first complete set of files in search order, else the
    first partial one (so errors can name what is missing), else None. A ``data_dir`` that is
    not a folder is an error (a mistyped path would otherwise be passed over in silence)."""
    spec = get_spec(name)
    if data_dir and not Path(data_dir).expanduser().is_dir():
        raise DatasetNotFoundError(f"the data folder {data_dir} does not exist; give the folder that holds "
                                   f"<name>/ with the dataset's files (or leave it out to search {cache_dir()} "
                                   f"and {SYSTEM_ROOT})")
    partial, named = None, _named_roots(data_dir)
    for root in search_roots(data_dir):
        for folder in (root / name, root):
            files = _member_files(spec, folder)
            missing = tuple(m for m in spec.members if m not in files)
            if not (files or _not_files(spec, folder, missing)) or (files and folder == root
                                                                    and _belongs_to_other(spec, files)):
                continue
            location = Location(name, folder, files, missing, root in named)
            if location.complete or location.named:
                return location
            partial = partial or location
    return partial


def default_dataset(preferred=("mnist", "fashion-mnist"), data_dir=None) -> str | None:
    """The first name in ``preferred`` whose files are all present, or None; DatasetNotFoundError
    where a folder the user named holds some of a preferred dataset's files but not all (rather
    than the next dataset found elsewhere)."""
    for name in preferred:
        location = find_dataset(name, data_dir)
        if location is not None and location.complete:
            return name
        if location is not None and location.named:
            raise _incomplete(location)
    return None


def file_digest(path: Path, algorithm: str, decompress: bool = True,
                content: bytes | None = None) -> str:
    """Hex digest of the bytes of ``path`` (gunzipped first when ``decompress`` and the file
    is gzip; ``content``: those bytes when already read), hashed from the content every time.
    A gzip file's digest is kept in a stamp named by the SHA-256 of its own bytes, so that each
    is decompressed once (the cost, not the hashing: on the real Fashion-MNIST, gunzipping its
    31 MB takes ~1.3 s on a 2-core machine, hashing them ~0.1 s and the 55 MB they hold ~0.16 s)."""
    if content is not None:
        return hashlib.new(algorithm, content).hexdigest()
    raw = path.read_bytes()
    if not (decompress and formats.is_gzip(raw)):
        return hashlib.new(algorithm, raw).hexdigest()
    stamp_path = cache_dir() / "verified" / f"{hashlib.sha256(raw).hexdigest()}.{algorithm}.json"
    with contextlib.suppress(OSError, ValueError, TypeError):  # no stamp, or an unreadable one: decompress
        digest = json.loads(stamp_path.read_text())["digest"]
        if isinstance(digest, str):
            return digest
    digest = hashlib.new(algorithm, formats.decoded(raw, path)).hexdigest()
    with contextlib.suppress(RunDirError):  # read-only home: verification still works, only slower next time
        write_json(stamp_path, {"digest": digest})
    return digest


def _fix(spec: Spec, folder: Path) -> str:
    """What to do about a missing or bad file of ``spec`` in ``folder``."""
    urls = ", ".join(d.url for d in spec.downloads)
    download = cache_dir() / spec.name
    if folder.resolve() == download.resolve():
        return (f"fix: run `shorthorizon data download {spec.name}` (fetches {urls} into "
                f"{download}), or put the published files there yourself")
    # the folder is searched before the download's, so a download alone would not be used
    return (f"fix: put the published files ({urls}) into {folder}, or remove {folder} so that another copy "
            f"is found (`shorthorizon data download {spec.name}` puts one into {download})")


def ways_to_obtain(name: str, data_dir=None) -> dict[str, str]:
    """Each way to obtain dataset ``name``, by kind: ``"apt"`` (Debian's package, for
    Fashion-MNIST), ``"download"`` and ``"by hand"``."""
    spec = get_spec(name)
    dest = (Path(data_dir).expanduser() if data_dir else cache_dir()) / name
    flag = f" --data-dir {data_dir}" if data_dir else ""
    ways = {"apt": f"as root on Debian/Ubuntu: apt-get update && apt-get install -y {DEBIAN_PACKAGE} "
                   f"(installs {SYSTEM_ROOT / DEBIAN_DATASET}/)"} if name == DEBIAN_DATASET else {}
    ways["download"] = f"with network access: shorthorizon data download {name}{flag} (into {dest}/)"
    ways["by hand"] = (f"by hand: put {', '.join(d.filename for d in spec.downloads)} into {dest}/ "
                       f"(from: {' '.join(d.url for d in spec.downloads)})")
    return ways


def missing_data_instructions(preferred=("mnist", "fashion-mnist"), data_dir=None) -> str:
    """One line for when none of the ``preferred`` datasets is present: where they were looked
    for, and the quickest ways to obtain one (every way: :func:`obtaining_data_help`, which
    ``shorthorizon data --help`` prints)."""
    ways = [ways_to_obtain(name, data_dir) for name in preferred]
    quick = [w["apt"] for w in ways if "apt" in w] + [w["download"] for w in ways]
    return (f"No dataset among {', '.join(preferred)} was found (searched "
            f"{', '.join(str(r) for r in search_roots(data_dir))}); obtain one {'; or '.join(quick)}; "
            "the files by hand or another folder: shorthorizon data --help")


def obtaining_data_help(data_dir=None) -> str:
    """Every way to obtain each known dataset, and the folders searched for it (several lines)."""
    lines = ["Obtaining a dataset (each is looked for in DIR/<name>/ of every searched folder: "
             f"{', '.join(str(r) for r in search_roots(data_dir))}):"]
    for name in SPECS:
        lines += [f"  {name}:", *(f"    - {way}" for way in ways_to_obtain(name, data_dir).values())]
    lines.append(f"Another folder works too, with the files in DIR/<name>/: set {ENV_VAR}=DIR, or pass "
                 "--data-dir DIR (unroll, data) or --set data_dir=DIR (offline, online, truncated).")
    return "\n".join(lines)


def _archive_of(spec: Spec, location: Location) -> Path | None:
    """The archive the members are read from, or None when they are separate files."""
    archive = location.folder / spec.archive
    return archive if spec.archive and set(location.files.values()) == {archive} else None


def verify_location(location: Location, contents: dict[str, bytes] | None = None) -> None:
    """Raise ChecksumError unless every file of ``location`` matches its published checksum.

    ``contents``: the members' decoded bytes when already read (saves reading them twice).
    """
    spec = get_spec(location.name)
    contents = contents or {}
    archive = _archive_of(spec, location)
    if archive is not None:
        expected = next(d.sha256 for d in spec.downloads if d.filename == spec.archive)
        checks = [(archive, "sha256", expected, file_digest(archive, "sha256", decompress=False))]
    else:
        checks = []
        for member, path in location.files.items():
            algorithm, expected = spec.digests[member].split(":")
            checks.append((path, algorithm, expected,
                           file_digest(path, algorithm, content=contents.get(member))))
    for path, algorithm, expected, actual in checks:
        if actual != expected:
            raise ChecksumError(
                f"{path}: {algorithm.upper()} {actual} does not match the published {expected}; "
                f"the file is corrupt or not the {spec.name} file ({_fix(spec, location.folder)}; to use files you "
                "built yourself, skip the check: --no-verify for unroll, --set verify=false for "
                "offline and online, verify=False in Python)")


def _read_contents(spec: Spec, location: Location) -> dict[str, bytes]:
    """Each member's bytes, decompressed; an archive is read once for all members."""
    archive = _archive_of(spec, location)
    if archive is not None:
        return formats.read_tar_members(archive,
                                        {m: f"{spec.subfolder}/{m}" for m in spec.members})
    return {m: formats.file_bytes(p) for m, p in location.files.items()}


def _decode_split(spec: Spec, location: Location, members: tuple[str, ...],
                  contents: dict[str, bytes]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC images and int32 labels of one split (train or test)."""
    origin = ", ".join(str(location.files[m]) for m in members)
    if spec.fmt == "idx":
        images_member, labels_member = members
        images = formats.parse_idx(contents[images_member], location.files[images_member])
        labels = formats.parse_idx(contents[labels_member], location.files[labels_member])
        if images.ndim != 3 or labels.ndim != 1:
            raise CorruptFileError(f"{origin}: IDX shapes {images.shape} and {labels.shape}, "
                                   "expected images (N, H, W) and labels (N,)")
        images = images[..., None]
    else:
        batches = [formats.parse_cifar_batch(contents[m], location.files[m]) for m in members]
        images = np.concatenate([x for x, _ in batches])
        labels = np.concatenate([y for _, y in batches])
    if images.shape[1:] != spec.image_shape or len(images) != len(labels):
        raise CorruptFileError(f"{origin}: {len(images)} images of shape {images.shape[1:]} and "
                               f"{len(labels)} labels; expected equal counts of {spec.image_shape}")
    if labels.size and labels.max() >= spec.num_classes:
        raise CorruptFileError(f"{origin}: label {labels.max()} outside 0..{spec.num_classes - 1}")
    return images, labels.astype(np.int32)


def locate_dataset(name: str, data_dir: Path | str | None = None) -> Location:
    """Where the complete set of dataset ``name``'s files is; DatasetNotFoundError (a
    FileNotFoundError) saying what is missing and how to obtain it otherwise."""
    spec = get_spec(name)
    location = find_dataset(name, data_dir)
    if location is None:
        raise DatasetNotFoundError(missing_data_instructions((spec.name,), data_dir))
    if not location.complete:
        raise _incomplete(location)
    return location


def _incomplete(location: Location) -> DatasetNotFoundError:
    """The error for a folder that holds some of a dataset's files but not all: the folder, each
    member it lacks (and what is in a member's place when that is not a file), and the fix."""
    spec = get_spec(location.name)
    not_files = _not_files(spec, location.folder, location.missing)
    names = ", ".join(f"{m}{'(.gz)' if spec.fmt == 'idx' else ''}"
                      + (f" ({not_files[m]} is not a file)" if m in not_files else "")
                      for m in location.missing)
    return DatasetNotFoundError(f"{spec.name}: {location.folder} lacks {names}; {_fix(spec, location.folder)}")


def load_dataset(name: str, data_dir: Path | str | None = None, verify: bool = True) -> Dataset:
    """Load dataset ``name`` (``mnist``, ``fashion-mnist``, ``cifar10``) as float32 images in
    [0, 1], NHWC, and int32 labels; with ``verify`` every file must match its published
    checksum. Raises DatasetNotFoundError (a FileNotFoundError) or CorruptFileError /
    ChecksumError (ValueErrors) naming the file and the fix."""
    spec = get_spec(name)
    location = locate_dataset(name, data_dir)
    try:
        contents = _read_contents(spec, location)
        if verify:
            verify_location(location, contents)
        train = _decode_split(spec, location, spec.train, contents)
        test = _decode_split(spec, location, spec.test, contents)
    except ChecksumError:
        raise
    except CorruptFileError as err:
        raise CorruptFileError(f"{err}; {_fix(spec, location.folder)}") from None
    scale = np.float32(255)
    return Dataset(name, train[0] / scale, train[1], test[0] / scale, test[1],
                   location.folder, spec.num_classes)


@dataclass(frozen=True)
class Status:
    """One line of ``shorthorizon data list``: where a dataset is and whether it verified."""

    name: str
    location: Location | None
    verified: bool
    problem: str


def dataset_status(name: str, data_dir: Path | str | None = None) -> Status:
    """Find dataset ``name`` and check its files against the published checksums; a corrupt
    file is reported in ``problem``, never raised."""
    try:
        location = find_dataset(name, data_dir)
    except CorruptFileError as err:  # a file whose dataset cannot be told apart
        return Status(name, None, False, str(err))
    if location is None:
        return Status(name, None, False, "not found")
    if not location.complete:
        return Status(name, location, False, f"incomplete: lacks {', '.join(location.missing)}")
    try:
        verify_location(location)
    except CorruptFileError as err:
        return Status(name, location, False, str(err))
    return Status(name, location, True, "")
