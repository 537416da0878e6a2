"""One module per paper experiment, each exposing the same small interface.

An experiment module defines:

- ``NAME``: the CLI command (``shorthorizon NAME``);
- ``Config``: a frozen dataclass whose every field declares its rule (``x: int =
  shorthorizon.config.key(10, POSITIVE)``: type, range, order, uniqueness), and ``PRESETS``:
  ``{"quick": Config(...), "paper": Config(...)}``;
- ``FLAGS``: config keys that also get their own CLI flag (``("dataset",)`` -> ``--dataset``);
- ``validate(config) -> None``: raise ValueError naming the config key for any value the run
  cannot use: every key's rule (``shorthorizon.config.check``), then the constraints between
  keys (lengths that must match, a horizon a key must divide). The CLI calls it for
  every config of a command before any work starts (``reproduce``: every experiment's, before
  the first runs), so a bad value exits with status 2 and leaves no folder behind;
- ``run(config, run_dir, executor="local", ray_address=None) -> dict``: call ``validate``
  (library use), resolve what the config leaves open (e.g. ``dataset="auto"``), then
  ``run_dir.write_config(config, **extras)`` before the first unit: that claims the folder for
  this command and resolved config, and refuses another's results there. Then compute with
  ``run_units`` (finished units resume), store curves and figures in ``run_dir``, write
  ``summary.json`` with ``run_dir.write_summary`` (adds ``wall_time_s``) and return its content.
  The CLI holds the folder's lock (``RunDir.open``) while ``run`` works;
- ``report(run_dir, prefix="") -> str``: a Markdown section built from saved results only;
  figure links are written as ``prefix + file``. The CLI hands it to
  ``shorthorizon.report.document`` (which never imports an experiment: the experiments import
  it): after ``run``, for the folder's own ``report.md`` (prefix ``""``, beside the claims its
  summary decides, also in ``claims.json``), and for reproduce's (prefix ``"<name>/"``). Figures
  (``plot(run_dir)``, called by ``run``) and ``report`` are defined in the module, or, where the
  module would outgrow 450 lines, in ``shorthorizon.report.<module>`` and imported by name into
  it (``estimators``, ``online``): the interface is the same either way;
- optionally ``ready(config, fetch: bool) -> str | None``: why the experiment cannot run here (e.g. no
  dataset), or None; reproduce skips it with that message.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# command name -> module path
_MODULES = {
    "nqm": "shorthorizon.experiments.nqm",
    "estimators": "shorthorizon.experiments.estimators",
    "offline": "shorthorizon.experiments.offline",
    "online": "shorthorizon.experiments.online",
    "truncated": "shorthorizon.experiments.truncated",
    "nqm-map": "shorthorizon.experiments.nqm_map",
    "bias": "shorthorizon.experiments.bias",
}
# what `reproduce` runs: the paper's experiments and ours; `bias` studies a user's own model
REPRODUCED = ("nqm", "estimators", "offline", "online", "truncated", "nqm-map")


def names() -> list[str]:
    return list(_MODULES)


def get(name: str) -> ModuleType:
    if name not in _MODULES:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[name])
