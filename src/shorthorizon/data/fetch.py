"""Obtaining datasets: official downloads, Debian's package, and what to tell the user.

Downloads stream into a temporary file beside the target and are renamed into place only
after their size and SHA-256 match the published values, so nothing half-written ever
lands in the cache.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from shorthorizon.data.errors import ChecksumError, DownloadError
from shorthorizon.data.registry import DEBIAN_DATASET, DEBIAN_PACKAGE, Download, get_spec
from shorthorizon.data.store import cache_dir, default_dataset, file_digest, ways_to_obtain

TIMEOUT_S = 15.0
_CHUNK = 1 << 20


def _log(message: str) -> None:
    print(f"[data] {message}", file=sys.stderr)


def _fetch(download: Download, target: Path, opener, timeout: float) -> None:
    """Download one file to ``target`` via a temporary file renamed once verified."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp_path = Path(name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as tmp:
            try:
                with opener(download.url, timeout=timeout) as response:
                    while chunk := response.read(_CHUNK):
                        digest.update(chunk)
                        tmp.write(chunk)
                        size += len(chunk)
            except (OSError, http.client.HTTPException) as err:
                reason = err.reason if isinstance(err, urllib.error.URLError) else err
                raise DownloadError(f"could not download {download.url} ({reason})") from None
        if size != download.size or digest.hexdigest() != download.sha256:
            raise ChecksumError(f"{download.url}: got {size} bytes with SHA-256 {digest.hexdigest()}, "
                                f"published {download.size} bytes with {download.sha256}; nothing "
                                "was saved, try again later or fetch the file by hand")
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def download(name: str, data_dir: Path | str | None = None, opener=None,
             timeout: float = TIMEOUT_S) -> Path:
    """Fetch the official files of ``name`` into ``<data_dir or cache>/<name>/``.

    Files already there with the published checksum are kept. ``opener`` defaults to
    ``urllib.request.urlopen``. Raises DownloadError (a RuntimeError) that says what to do
    instead when the network cannot be reached. Returns the folder.
    """
    spec = get_spec(name)
    opener = opener or urllib.request.urlopen
    folder = (Path(data_dir).expanduser() if data_dir else cache_dir()) / name
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for item in spec.downloads:
            target = folder / item.filename
            if target.is_file() and file_digest(target, "sha256", decompress=False) == item.sha256:
                continue
            _log(f"downloading {item.url} ({item.size / 1e6:.1f} MB)")
            try:
                _fetch(item, target, opener, timeout)
            except DownloadError as err:
                ways = "; or ".join(w for kind, w in ways_to_obtain(name, data_dir).items() if kind != "download")
                raise DownloadError(f"{err}. Without network access: {ways}; every way: "
                                    "shorthorizon data --help") from None
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # an empty folder of the dataset's name would look like a partial copy
        raise
    return folder


def _run(command: list[str]) -> bool:
    """Run a command quietly; whether it succeeded."""
    _log("running: " + " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (OSError, subprocess.SubprocessError) as err:
        _log(f"failed: {err}")
        return False
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        _log(f"failed (exit {done.returncode}): {last}")
    return done.returncode == 0


def _can_apt() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_dataset(preferred, data_dir=None, fetch: bool = False) -> str | None:
    """The first present dataset among ``preferred``; when none is and ``fetch``, obtain one
    first: Debian's package where running as root with apt-get (if Fashion-MNIST is
    among ``preferred``), else the official downloads in order of preference. Returns the
    dataset name, or None (then print ``missing_data_instructions(preferred)``)."""
    found = default_dataset(preferred, data_dir)
    if found or not fetch:
        return found
    if DEBIAN_DATASET in preferred and _can_apt():
        if _run(["apt-get", "update"]) and _run(["apt-get", "install", "-y", DEBIAN_PACKAGE]):
            found = default_dataset(preferred, data_dir)
            if found:
                return found
    for name in preferred:
        try:
            download(name, data_dir)
        except (DownloadError, ChecksumError) as err:
            _log(str(err).splitlines()[0])
            continue
        return name
    return None
