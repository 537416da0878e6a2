"""Data package: formats round-trip, discovery, verification, errors, CLI, downloads."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from shorthorizon import experiments
from shorthorizon.data import (ChecksumError, CorruptFileError, DatasetNotFoundError, DownloadError,
                               default_dataset, download, ensure_dataset, find_dataset, load_dataset,
                               make_fake_dataset, missing_data_instructions, write_cifar_batches,
                               write_idx)
from shorthorizon.data import fetch, formats, registry, store


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real data: HOME, $SHORTHORIZON_DATA and the system root point into tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(store.ENV_VAR, raising=False)
    monkeypatch.setattr(store, "SYSTEM_ROOT", tmp_path / "system")
    return tmp_path


def _images(rng, n, shape):
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def _as_bytes(x):
    """Loaded float32 images back to the bytes they were decoded from."""
    return np.rint(np.asarray(x) * 255).astype(np.uint8)


def _use_digests_of(monkeypatch, name, folder):
    """Make the files in ``folder`` the 'published' ones for ``name`` (to test verification)."""
    spec = registry.get_spec(name)
    location = store.Location(name, folder, store._member_files(spec, folder), ())
    digests = {m: f"{a}:{hashlib.new(a, formats.file_bytes(location.files[m])).hexdigest()}"
               for m, a in ((m, spec.digests[m].split(':')[0]) for m in spec.members)}
    monkeypatch.setitem(registry.SPECS, name, dataclasses.replace(spec, digests=digests))


# --- formats -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 4, 6), (0, 28, 28)])
def test_idx_round_trip(tmp_path, suffix, shape):
    array = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
    path = write_idx(tmp_path / f"a{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    decoded = formats.parse_idx(formats.file_bytes(path), path)
    assert decoded.shape == array.shape and np.array_equal(decoded, array)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_idx_dataset_exact(tmp_path, name, suffix):
    rng = np.random.default_rng(1)
    folder = tmp_path / "d" / name
    folder.mkdir(parents=True)
    arrays = {"train-images-idx3-ubyte": _images(rng, 13, (28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 13, dtype=np.uint8),
              "t10k-images-idx3-ubyte": _images(rng, 6, (28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 6, dtype=np.uint8)}
    for member, array in arrays.items():
        write_idx(folder / f"{member}{suffix}", array)
    ds = load_dataset(name, data_dir=tmp_path / "d", verify=False)
    assert ds.name == name and ds.source == folder and ds.num_classes == 10
    assert ds.train_x.dtype == np.float32 and ds.train_x.shape == (13, 28, 28, 1)
    assert ds.test_y.dtype == np.int32 and ds.test_x.shape == (6, 28, 28, 1)
    assert 0 <= ds.train_x.min() and ds.train_x.max() <= 1
    assert np.array_equal(_as_bytes(ds.train_x)[..., 0], arrays["train-images-idx3-ubyte"])
    assert np.array_equal(_as_bytes(ds.test_x)[..., 0], arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(ds.train_y, arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(ds.test_y, arrays["t10k-labels-idx1-ubyte"])


@pytest.mark.parametrize("archive", [False, True])
def test_load_cifar_exact(tmp_path, archive):
    rng = np.random.default_rng(2)
    train_x, test_x = _images(rng, 12, (32, 32, 3)), _images(rng, 4, (32, 32, 3))
    train_y, test_y = rng.integers(0, 10, 12), rng.integers(0, 10, 4)
    written = write_cifar_batches(tmp_path / "cifar10", train_x, train_y, test_x, test_y, archive=archive)
    assert written.name == ("cifar-10-python.tar.gz" if archive else "cifar-10-batches-py")
    ds = load_dataset("cifar10", data_dir=tmp_path, verify=False)
    assert ds.train_x.shape == (12, 32, 32, 3) and ds.test_x.shape == (4, 32, 32, 3)
    assert np.array_equal(_as_bytes(ds.train_x), train_x) and np.array_equal(_as_bytes(ds.test_x), test_x)
    assert np.array_equal(ds.train_y, train_y) and np.array_equal(ds.test_y, test_y)
    assert ds.train_y.dtype == np.int32


def test_cifar_batch_layout_is_channel_major(tmp_path):
    """A published batch row is 1024 red, then 1024 green, then 1024 blue bytes."""
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 0, 1] = (10, 20, 30)
    folder = write_cifar_batches(tmp_path, image.repeat(5, 0), [1] * 5, image, [2])
    row = formats.pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")[b"data"][0]
    assert (row[1], row[1024 + 1], row[2048 + 1]) == (10, 20, 30)


@pytest.mark.parametrize("name", list(registry.SPECS))
@pytest.mark.parametrize("compress", [False, True])
def test_make_fake_dataset_loads(tmp_path, name, compress):
    folder = make_fake_dataset(tmp_path / "root", name, n_train=11, n_test=5, seed=3, compress=compress)
    assert folder == tmp_path / "root" / name
    ds = load_dataset(name, data_dir=tmp_path / "root", verify=False)
    shape = registry.get_spec(name).image_shape
    assert ds.train_x.shape == (11, *shape) and ds.test_x.shape == (5, *shape)
    assert set(np.unique(ds.train_y)) <= set(range(10))
    again = make_fake_dataset(tmp_path / "again", name, 11, 5, seed=3, compress=compress)
    assert np.array_equal(load_dataset(name, data_dir=again.parent, verify=False).train_x, ds.train_x)


# --- discovery ---------------------------------------------------------------------------

def test_discovery_order(isolated, monkeypatch):
    roots = {"arg": isolated / "arg", "env": isolated / "env",
             "cache": isolated / "home" / ".cache" / "shorthorizon", "system": isolated / "system"}
    for n_train, root in enumerate(reversed(list(roots.values())), start=1):
        make_fake_dataset(root, "mnist", n_train=n_train, n_test=1)
    monkeypatch.setenv(store.ENV_VAR, str(roots["env"]))
    assert store.search_roots(roots["arg"]) == tuple(roots.values())
    assert find_dataset("mnist", roots["arg"]).folder == roots["arg"] / "mnist"
    assert find_dataset("mnist").folder == roots["env"] / "mnist"
    monkeypatch.delenv(store.ENV_VAR)
    assert find_dataset("mnist").folder == roots["cache"] / "mnist"
    assert len(load_dataset("mnist", verify=False).train_y) == 2
    for name in ("env", "arg", "cache"):
        for f in (roots[name] / "mnist").iterdir():
            f.unlink()
    assert find_dataset("mnist").folder == roots["system"] / "mnist"


def test_name_folder_before_root_and_root_directly(isolated):
    make_fake_dataset(isolated / "d", "cifar10", 5, 2)
    assert find_dataset("cifar10", isolated / "d").folder == isolated / "d" / "cifar10"
    flat = isolated / "flat"
    make_fake_dataset(flat, "mnist", 5, 2)
    for f in (flat / "mnist").iterdir():
        f.rename(flat / f.name)
    assert find_dataset("mnist", flat).folder == flat


def test_files_in_root_are_claimed_by_their_checksums(isolated, monkeypatch):
    """MNIST and Fashion-MNIST share file names: files placed directly in a root belong to
    the dataset whose published checksums they match."""
    root = isolated / "flat"
    make_fake_dataset(root, "fashion-mnist", 6, 3)
    _use_digests_of(monkeypatch, "fashion-mnist", root / "fashion-mnist")
    for f in (root / "fashion-mnist").iterdir():
        f.rename(root / f.name)
    assert find_dataset("fashion-mnist", root).folder == root
    assert find_dataset("mnist", root) is None
    assert default_dataset(data_dir=root) == "fashion-mnist"
    assert load_dataset("fashion-mnist", data_dir=root).train_x.shape == (6, 28, 28, 1)


def test_a_partial_set_ends_the_search_in_a_named_folder_only(isolated):
    make_fake_dataset(isolated / "a", "mnist", 4, 2)
    make_fake_dataset(isolated / "b", "mnist", 5, 2)
    (isolated / "a" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    cache = isolated / "home" / ".cache" / "shorthorizon"
    cache.parent.mkdir(parents=True)
    (isolated / "b").rename(cache)
    # the folder the user named is the dataset, or an error: never the complete copy in the cache
    assert find_dataset("mnist", isolated / "a").folder == isolated / "a" / "mnist"
    with pytest.raises(DatasetNotFoundError, match=f"{isolated / 'a' / 'mnist'} lacks t10k-labels-idx1-ubyte"):
        default_dataset(data_dir=isolated / "a")
    # a partial set in the cache (an interrupted download) does not shadow a complete one after it
    make_fake_dataset(isolated / "system", "mnist", 6, 2)
    (cache / "mnist" / "train-images-idx3-ubyte.gz").unlink()
    assert find_dataset("mnist").folder == isolated / "system" / "mnist"
    (isolated / "system" / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    assert default_dataset() is None
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte.*data download mnist"):
        load_dataset("mnist", verify=False)


def test_default_dataset_prefers_in_order(isolated):
    assert default_dataset() is None
    make_fake_dataset(isolated / "d", "fashion-mnist", 3, 2)
    assert default_dataset(data_dir=isolated / "d") == "fashion-mnist"
    make_fake_dataset(isolated / "d", "mnist", 3, 2)
    assert default_dataset(data_dir=isolated / "d") == "mnist"
    assert default_dataset(("cifar10", "fashion-mnist"), isolated / "d") == "fashion-mnist"


def test_not_found_says_what_to_do_in_one_line_and_help_lists_every_way(isolated, cli, capsys):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10")
    text = str(err.value)
    assert len(text.splitlines()) == 1 and text.endswith("shorthorizon data --help")
    assert f"shorthorizon data download cifar10 (into {isolated / 'home' / '.cache' / 'shorthorizon' / 'cifar10'}/)" in text
    assert "apt-get" in missing_data_instructions(("mnist", "fashion-mnist"))
    assert "apt-get" not in missing_data_instructions(("cifar10",))
    with pytest.raises(SystemExit):
        cli(["data", "--help"])
    shown = capsys.readouterr().out
    assert "apt-get install -y dataset-fashion-mnist" in shown and "put cifar-10-python.tar.gz into" in shown
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in shown and "SHORTHORIZON_DATA=DIR" in shown


# --- corrupt files and checksums -----------------------------------------------------------

def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("name, member", [
    ("mnist", "train-images-idx3-ubyte.gz"),
    ("mnist", "t10k-labels-idx1-ubyte"),
    ("cifar10", "cifar-10-batches-py/data_batch_3"),
    ("cifar10", "cifar-10-python.tar.gz"),
])
def test_truncated_file_error_names_file(isolated, name, member):
    compress = member.endswith(".gz")
    folder = make_fake_dataset(isolated / "d", name, 20, 10, compress=compress)
    _truncate(folder / member)
    with pytest.raises(CorruptFileError) as err:
        load_dataset(name, data_dir=isolated / "d", verify=False)
    assert str(folder / member) in str(err.value) and f"data download {name}" in str(err.value)


def test_foreign_pickle_is_refused(isolated):
    folder = make_fake_dataset(isolated / "d", "cifar10", 10, 2, compress=False)
    (folder / "cifar-10-batches-py" / "test_batch").write_bytes(formats.pickle.dumps(io.BytesIO()))
    with pytest.raises(CorruptFileError, match="test_batch.*not a CIFAR-10"):
        load_dataset("cifar10", data_dir=isolated / "d", verify=False)


def test_labels_and_images_must_agree(isolated):
    folder = make_fake_dataset(isolated / "d", "mnist", 8, 4)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(CorruptFileError, match="8 images.*7 labels"):
        load_dataset("mnist", data_dir=isolated / "d", verify=False)


@pytest.mark.parametrize("name", list(registry.SPECS))
def test_checksum_mismatch(isolated, name):
    make_fake_dataset(isolated / "d", name, 5, 2)
    with pytest.raises(ChecksumError, match=f"does not match the published.*data download {name}.*"
                                            "--no-verify for unroll, --set verify=false for offline"):
        load_dataset(name, data_dir=isolated / "d")
    assert not store.dataset_status(name, isolated / "d").verified


def test_verification_is_cached_and_invalidated(isolated, monkeypatch):
    folder = make_fake_dataset(isolated / "d", "mnist", 30, 10)
    _use_digests_of(monkeypatch, "mnist", folder)
    assert store.dataset_status("mnist", isolated / "d").verified
    stamps = isolated / "home" / ".cache" / "shorthorizon" / "verified"
    assert len(list(stamps.iterdir())) == 4
    calls = []  # the files decompressed: a stamp, keyed by a gzip file's bytes, spares the verified ones
    real = formats.decoded
    monkeypatch.setattr(formats, "decoded", lambda data, origin: calls.append(origin) or real(data, origin))
    assert store.dataset_status("mnist", isolated / "d").verified and calls == []
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.ones(10, np.uint8))
    status = store.dataset_status("mnist", isolated / "d")
    assert not status.verified and "t10k-labels-idx1-ubyte.gz" in status.problem
    assert calls == [folder / "t10k-labels-idx1-ubyte.gz"]


def test_gunzipped_copy_verifies_against_same_digest(isolated, monkeypatch):
    folder = make_fake_dataset(isolated / "d", "mnist", 5, 2)
    _use_digests_of(monkeypatch, "mnist", folder)
    for f in folder.iterdir():
        (folder / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()
    assert load_dataset("mnist", data_dir=isolated / "d").train_x.shape == (5, 28, 28, 1)


# --- CLI ---------------------------------------------------------------------------------

@pytest.fixture
def cli(monkeypatch):
    """``shorthorizon.cli.main`` with only the non-experiment commands registered."""
    monkeypatch.setattr(experiments, "names", lambda: [])
    from shorthorizon.cli import main
    return main


def test_a_command_is_ready_where_its_config_finds_its_dataset(isolated):
    """reproduce skips a command whose dataset is missing (its ``ready``): it looks where the
    command's config would (its ``data_dir``), for the dataset it names (``auto``: any it takes)."""
    from shorthorizon.experiments import offline, online

    own = isolated / "own"
    make_fake_dataset(own, "mnist", n_train=2, n_test=1)
    mine = dataclasses.replace(offline.PRESETS["quick"], dataset="auto", data_dir=str(own))
    assert offline.ready(mine) is None and offline.ready(dataclasses.replace(mine, dataset="mnist")) is None
    assert "dataset-fashion-mnist" in offline.ready(dataclasses.replace(mine, data_dir=""))
    assert "fashion-mnist" in offline.ready(dataclasses.replace(mine, dataset="fashion-mnist"))
    assert online.ready(dataclasses.replace(online.PRESETS["quick"], task=("mlp",), data_dir=str(own))) is None
    assert "cifar10" in online.ready(dataclasses.replace(online.PRESETS["quick"], task=("cnn",), dataset="auto",
                                                         data_dir=str(own)))


def test_cli_data_list(isolated, monkeypatch, cli, capsys):
    make_fake_dataset(isolated / "d", "mnist", 5, 2)
    make_fake_dataset(isolated / "d", "cifar10", 5, 2)
    _use_digests_of(monkeypatch, "mnist", isolated / "d" / "mnist")
    assert cli(["data", "list", "--data-dir", str(isolated / "d")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert str(isolated / "d") in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(registry.SPECS)
    assert str(isolated / "d" / "mnist") in rows["mnist"] and rows["mnist"].endswith("verified")
    assert "does not match the published" in rows["cifar10"]
    assert "not found" in rows["fashion-mnist"]


def test_cli_data_list_marks_a_corrupt_file_and_goes_on(isolated, cli, capsys):
    """A corrupt file lying directly in a searched folder (whose dataset cannot be told) is
    reported on the lines of the datasets it could belong to; the other lines are listed."""
    make_fake_dataset(isolated / "d", "cifar10", 5, 2)
    (isolated / "d" / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot gzip")
    assert cli(["data", "list", "--data-dir", str(isolated / "d")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    for name in ("mnist", "fashion-mnist"):
        assert "train-labels-idx1-ubyte.gz: truncated or corrupt gzip file" in rows[name]
    assert "does not match the published" in rows["cifar10"]


def test_cli_download_without_network(isolated, monkeypatch, cli, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert cli(["data", "download", "fashion-mnist", "--data-dir", str(isolated / "d")]) == 2
    err = capsys.readouterr().err
    error = err.splitlines()[-1]  # one line, after the download's progress
    assert error.startswith("shorthorizon data: error: ") and "could not download" in error
    assert "Name or service not known" in error
    assert "apt-get install -y dataset-fashion-mnist" in error and "put train-images-idx3-ubyte.gz" in error
    assert not (isolated / "d" / "fashion-mnist").exists()  # no empty folder left to look like a partial copy
    with pytest.raises(DownloadError, match="Without network access"):
        download("mnist", isolated / "d")


# --- downloads and ensure_dataset -----------------------------------------------------------

def _serve(files: dict[str, bytes]):
    """An opener serving ``files`` by URL, recording the URLs asked for."""
    asked = []

    def opener(url, timeout):
        asked.append(url)
        return io.BytesIO(files[url])

    opener.asked = asked
    return opener


def _publish(monkeypatch, name, folder):
    """Pretend the files of a fake dataset in ``folder`` are the official downloads."""
    spec = registry.get_spec(name)
    files = {f"https://example.org/{f.name}": f.read_bytes() for f in sorted(folder.iterdir())}
    downloads = tuple(registry.Download(url.rsplit("/", 1)[1], url, len(data),
                                        hashlib.sha256(data).hexdigest()) for url, data in files.items())
    monkeypatch.setitem(registry.SPECS, name, dataclasses.replace(spec, downloads=downloads))
    return files


def test_download_verifies_then_renames(isolated, monkeypatch):
    files = _publish(monkeypatch, "mnist", make_fake_dataset(isolated / "src", "mnist", 6, 3))
    opener = _serve(files)
    folder = download("mnist", opener=opener)
    assert folder == isolated / "home" / ".cache" / "shorthorizon" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(u.rsplit("/", 1)[1] for u in files)
    assert default_dataset() == "mnist"
    download("mnist", opener=opener)
    assert len(opener.asked) == len(files), "verified files are not fetched again"


def test_download_with_wrong_bytes_leaves_nothing(isolated, monkeypatch):
    files = _publish(monkeypatch, "cifar10", make_fake_dataset(isolated / "src", "cifar10", 6, 3))
    bad = {url: data[:-1] + b"x" for url, data in files.items()}
    with pytest.raises(ChecksumError, match="nothing was saved"):
        download("cifar10", isolated / "d", opener=_serve(bad))
    assert not (isolated / "d" / "cifar10").exists()


def test_ensure_dataset_uses_apt_as_root(isolated, monkeypatch):
    commands = []

    def run(command):
        commands.append(command)
        if command[:2] == ["apt-get", "install"]:
            make_fake_dataset(store.SYSTEM_ROOT, "fashion-mnist", 4, 2)
        return True

    monkeypatch.setattr(fetch, "_can_apt", lambda: True)
    monkeypatch.setattr(fetch, "_run", run)
    assert ensure_dataset(("mnist", "fashion-mnist"), fetch=False) is None and commands == []
    assert ensure_dataset(("mnist", "fashion-mnist"), fetch=True) == "fashion-mnist"
    assert commands == [["apt-get", "update"], ["apt-get", "install", "-y", "dataset-fashion-mnist"]]


def test_ensure_dataset_downloads_else_gives_up(isolated, monkeypatch):
    monkeypatch.setattr(fetch, "_can_apt", lambda: False)
    files = _publish(monkeypatch, "fashion-mnist", make_fake_dataset(isolated / "src", "fashion-mnist", 4, 2))

    def only_fashion(url, timeout):
        if url in files:
            return io.BytesIO(files[url])
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", only_fashion)
    assert ensure_dataset(("mnist", "fashion-mnist"), fetch=True) == "fashion-mnist"
    cache = isolated / "home" / ".cache" / "shorthorizon"
    assert find_dataset("fashion-mnist").folder == cache / "fashion-mnist"
    assert ensure_dataset(("cifar10",), fetch=True) is None
    assert not (cache / "cifar10").exists()
