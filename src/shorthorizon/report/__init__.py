"""The reproduction report: one Markdown section per experiment, from saved results only."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from shorthorizon import experiments
from shorthorizon.results import RunDir, read_json, write_text


def write_report(out: Path, names: list[str]) -> Path:
    """Write ``out/report.md`` from the experiments stored under ``out/<name>/``."""
    lines = [
        "# shorthorizon reproduction report",
        "",
        f"Generated {datetime.now():%Y-%m-%d %H:%M}. Each section reads the results saved in "
        "its sub-folder; figures are linked relative to this file.",
        "",
    ]
    if not names:
        lines.append("No experiment ran.")
    for name in names:
        run_dir = RunDir(Path(out) / name)
        config = read_json(run_dir.path / "config.json")
        section = experiments.get(name).report(run_dir, prefix=f"{name}/")
        environment = ", ".join(f"{k} {v}" for k, v in config.get("environment", {}).items())
        lines += [section.rstrip(), "", f"<sub>config: `{name}/config.json`; environment: {environment}</sub>", ""]
    path = Path(out) / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
