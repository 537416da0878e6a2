"""The reproduction report: the claims table, then one Markdown section per experiment, from
saved results only."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from shorthorizon import experiments
from shorthorizon.report import claims
from shorthorizon.results import RunDir, read_json, write_json, write_text


def write_report(out: Path, names: list[str]) -> Path:
    """Write ``out/report.md`` from the experiments stored under ``out/<name>/``, and the claims
    table, machine-readable, to ``out/summary.json``."""
    runs = {name: RunDir(Path(out) / name) for name in names}
    table = claims.table({name: (run.read_summary(), run.read_config()) for name, run in runs.items()})
    lines = [
        "# shorthorizon reproduction report",
        "",
        f"Generated {datetime.now():%Y-%m-%d %H:%M}. Each section reads the results saved in "
        "its sub-folder; figures are linked relative to this file.",
        "",
        "## Claims",
        "",
        claims.markdown(table),
        "",
    ]
    if not names:
        lines.append("No experiment ran.")
    for name, run_dir in runs.items():
        config = read_json(run_dir.path / "config.json")
        section = experiments.get(name).report(run_dir, prefix=f"{name}/")
        environment = ", ".join(f"{k} {v}" for k, v in config.get("environment", {}).items())
        lines += [f'<a id="{name}"></a>', "", section.rstrip(), "",
                  f"<sub>config: `{name}/config.json`; environment: {environment}</sub>", ""]
    write_json(Path(out) / "summary.json", {"claims": table, "rule": claims.RULE})
    path = Path(out) / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
