"""The reports, from saved results only: each experiment folder's ``report.md`` (the claims judged
on its results alone, then its section) and the reproduction's (every claim, then every
experiment's section). Both are built from the same part per experiment (:func:`_part`).

A section is the experiment's own ``report(run_dir, prefix)``, handed in by the caller (the CLI,
which sits above both packages): the experiments draw their figures with this package, so it
never imports them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping

from shorthorizon.report import claims
from shorthorizon.results import RunDir, read_json, write_json, write_text

Section = Callable[..., str]  # an experiment's ``report(run_dir, prefix="")``: its Markdown section


def write_run_report(run_dir: RunDir, name: str, section: Section) -> Path:
    """Write ``run_dir/report.md`` for experiment ``name``'s folder: the claims of the table that
    its results alone decide, then its ``section``, figures linked relative to the folder. The
    claims, machine-readable as in a reproduction's ``summary.json``, go to ``claims.json``: the
    folder's ``summary.json`` is the command's own (its headline numbers, which the claims read),
    and a verdict is a judgement of this version's code that a reader of the folder should not
    have to recompute."""
    rows = claims.of(name, *_judged(run_dir))
    return _write(run_dir.path, f"# shorthorizon {name}", "The section reads the results saved in this folder.",
                  rows, "claims.json", [_part(name, run_dir, section, prefix="")])


def write_report(out: Path, sections: Mapping[str, Section]) -> Path:
    """Write ``out/report.md`` from the experiments stored under ``out/<name>/`` (``sections``: each
    experiment's section function, for those that ran), every claim of the table judged (those
    of an experiment that did not run: *not comparable*), and the table, machine-readable, to
    ``out/summary.json``. Reads the folders' ``summary.json`` and ``config.json`` only, so folders
    stored before experiments wrote their own ``report.md`` read the same."""
    runs = {name: RunDir(Path(out) / name) for name in sections}
    rows = claims.table({name: _judged(run) for name, run in runs.items()})
    parts = [_part(name, run, sections[name], prefix=f"{name}/") for name, run in runs.items()]
    return _write(Path(out), "# shorthorizon reproduction report",
                  "Each section reads the results saved in its sub-folder; figures are linked relative to this file.",
                  rows, "summary.json", parts)


def _judged(run_dir: RunDir) -> tuple[dict, dict]:
    """What the claims read from a run: (its summary, its resolved config)."""
    return run_dir.read_summary(), run_dir.read_config()


def _part(name: str, run_dir: RunDir, section: Section, prefix: str) -> str:
    """One experiment's part of a report: the anchor that the claims table links to, its section
    (figures linked as ``prefix + file``) and the line with its config file and environment."""
    environment = read_json(run_dir.path / "config.json").get("environment", {})
    environment = ", ".join(f"{k} {v}" for k, v in environment.items())
    return "\n".join([f'<a id="{name}"></a>', "", section(run_dir, prefix=prefix).rstrip(), "",
                      f"<sub>config: `{prefix}config.json`; environment: {environment}</sub>", ""])


def _write(folder: Path, title: str, about: str, rows: list[dict], claims_file: str, parts: list[str]) -> Path:
    """``folder/report.md``: ``title``, the claims table of ``rows``, then ``parts``; and ``rows``
    with the verdicts' rule in ``folder/claims_file``."""
    table = claims.markdown(rows) if rows else "No claim of the table is judged on this experiment's results."
    lines = [title, "", f"Generated {datetime.now():%Y-%m-%d %H:%M}. {about}", "", "## Claims", "", table, "",
             *(parts or ["No experiment ran.", ""])]
    write_json(folder / claims_file, {"claims": rows, "rule": claims.RULE})
    path = folder / "report.md"
    write_text(path, "\n".join(lines))
    return path
