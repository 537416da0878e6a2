"""The lock: it pins (with hashes) every dependency pyproject.toml names, `make venv` installs
from it, and every config.json records the digest of the lock the environment was installed from."""

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from shorthorizon import results
from shorthorizon.results import INSTALLED_LOCK, RunDir, lock_record

ROOT = Path(__file__).parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_with_hashes(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) for each ``name==version`` entry of a hashed lock."""
    entries = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M)
    return {canonical(name): (version, re.findall(r"[0-9a-f]{64}", hashes)) for name, version, hashes in entries}


def test_lock_pins_every_dependency_pyproject_names_with_hashes():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    named = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    for extra in pyproject["project"]["optional-dependencies"].values():
        named += extra
    text = LOCK.read_text()
    pins = pins_with_hashes(text)
    # every requirement line of the lock was parsed (a pin the regex missed would go unchecked)
    assert len(pins) == len(re.findall(r"^\S+==", text, re.M)) > len(named) // 2
    unhashed = [name for name, (_, hashes) in pins.items() if not hashes]
    assert not unhashed, f"pinned without a hash: {unhashed}"
    for requirement in map(Requirement, named):
        name = canonical(requirement.name)
        assert name in pins, f"{requirement} (pyproject.toml) is not in {LOCK.name}: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, outside pyproject.toml's {requirement}: run `make lock`")


def test_make_venv_installs_from_the_lock_with_hashes_and_keeps_its_copy():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # the defaults
    commands = subprocess.run(["make", "-n", "-B", "venv"], cwd=ROOT, env=env, capture_output=True, text=True,
                              check=True).stdout
    assert re.search(r"pip install --require-hashes -r requirements/lock\.txt\n", commands)
    assert re.search(r"pip install .*--no-deps .*-e \.\n", commands)  # the package adds no unlocked dependency
    assert f"cp requirements/lock.txt .venv/{INSTALLED_LOCK}\n" in commands


@pytest.fixture
def fake_lock(tmp_path):
    text = ("# a lock\nalpha==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
            "beta-pkg==2.0.1 ; sys_platform == 'linux' \\\n    --hash=sha256:" + "1" * 64 + "\n    # via alpha\n")
    (tmp_path / INSTALLED_LOCK).write_text(text)
    return tmp_path, hashlib.sha256(text.encode()).hexdigest()


def test_lock_record_is_the_digest_only_where_the_environment_is_the_lock(fake_lock):
    prefix, digest = fake_lock
    exact = {"alpha": "1.0", "Beta_Pkg": "2.0.1", "pip": "23.2.1", "shorthorizon": "0.1.0"}
    assert lock_record(prefix, exact) == {"lock_sha256": digest}
    changed = lock_record(prefix, {**exact, "alpha": "1.1"})
    assert changed == {"lock_sha256": None, "lock_differs": ["alpha 1.1 (lock: 1.0)"]}
    missing = lock_record(prefix, {"alpha": "1.0"})
    assert missing == {"lock_sha256": None, "lock_differs": ["beta-pkg missing (lock: 2.0.1)"]}
    added = lock_record(prefix, {**exact, "jax-cuda12-plugin": "0.10.2"})
    assert added == {"lock_sha256": None, "lock_differs": ["jax-cuda12-plugin 0.10.2 (not in the lock)"]}
    assert lock_record(prefix / "elsewhere", exact) == {"lock_sha256": None}  # installed without the lock


@dataclasses.dataclass(frozen=True)
class Demo:
    steps: int = 10


def test_config_json_records_the_lock_this_environment_was_installed_from(tmp_path):
    RunDir(tmp_path).write_config(Demo())
    recorded = results.read_json(tmp_path / "config.json")["environment"]
    installed = Path(sys.prefix) / INSTALLED_LOCK
    if not installed.is_file():  # not installed by `make venv` (make test always is)
        assert recorded["lock_sha256"] is None
        return
    assert "lock_differs" not in recorded, f"this environment is no longer the lock: {recorded['lock_differs']}"
    assert recorded["lock_sha256"] == hashlib.sha256(installed.read_bytes()).hexdigest()
    assert recorded["lock_sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest(), (
        f"{sys.prefix} was installed from another lock than this checkout's: run `make venv`")


def test_the_report_shows_the_lock_digest(tmp_path):
    from shorthorizon.report.document import write_report

    RunDir(tmp_path / "demo").write_config(Demo())
    RunDir(tmp_path / "demo").write_summary({})
    digest = results.read_json(tmp_path / "demo" / "config.json")["environment"]["lock_sha256"]
    assert f"lock_sha256 {digest}" in write_report(tmp_path, {"demo": lambda run_dir, prefix: "## demo\n"}).read_text()
