"""One module per paper experiment, each exposing the same small interface.

An experiment module defines:

- ``NAME``: the CLI command (``shorthorizon NAME``);
- ``Config``: a frozen dataclass, and ``PRESETS``: ``{"quick": Config(...), "paper": Config(...)}``;
- ``FLAGS``: config keys that also get their own CLI flag (``("dataset",)`` -> ``--dataset``);
- ``run(config, run_dir, executor="local", ray_address=None) -> dict``: compute, store units,
  curves and figures in ``run_dir``, write and return ``summary.json``'s content;
- ``report(run_dir, prefix="") -> str``: a Markdown section built from saved results only;
  figure links are written as ``prefix + file`` (reproduce passes ``"<name>/"``);
- optionally ``ready(fetch: bool) -> str | None``: why the experiment cannot run here (e.g. no
  dataset), or None; reproduce skips it with that message.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# command name -> module path; reproduce runs them in this order.
_MODULES = {
    "nqm": "shorthorizon.experiments.nqm",
    "estimators": "shorthorizon.experiments.estimators",
    "offline": "shorthorizon.experiments.offline",
    "online": "shorthorizon.experiments.online",
    "nqm-map": "shorthorizon.experiments.nqm_map",
}


def names() -> list[str]:
    return list(_MODULES)


def get(name: str) -> ModuleType:
    if name not in _MODULES:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[name])
