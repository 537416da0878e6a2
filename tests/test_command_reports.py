"""Every experiment command's folder carries its own report; ``report/`` sits below the
experiments; Ctrl-C exits 130 with the resume line from the console script's first statement."""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shorthorizon.cli import main
from shorthorizon.experiments import nqm
from shorthorizon.report import claims
from shorthorizon.results import RunDir

from test_run_folders import NQM

REPORT = Path(claims.__file__).parent  # src/shorthorizon/report


def _claims_rows(report: str) -> list[list[str]]:
    """The cells of each row of the Markdown table under ``## Claims`` (header and rule aside)."""
    block = report.split("## Claims", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in block.splitlines()]
    assert rows[0] == ["claim", "paper", "ours", "judged against", "verdict"] and set(rows[1][0]) == {"-", "|"}
    return rows[2:]


def test_a_command_writes_its_report_with_its_claims_and_section(tmp_path, capsys):
    """``shorthorizon nqm --out DIR``: DIR/report.md holds the NQM's claims (the rows the claims
    table judges on its results alone, each with a number and a verdict), the section the module
    writes for it with every figure it links present in DIR, and the config/environment line;
    the claims go to claims.json, and summary.json stays the command's headline numbers."""
    out = tmp_path / "nqm"
    assert main([*NQM, "--out", str(out)]) == 0
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"; summary: {out / 'summary.json'}; report: {out / 'report.md'}")
    report = (out / "report.md").read_text()

    section = nqm.report(RunDir(out), prefix="")
    assert section.rstrip() in report and section.splitlines()[0] in report.splitlines()  # its heading
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert linked and all((out / link).is_file() for link in linked), linked
    environment = json.loads((out / "config.json").read_text())["environment"]
    line = next(line for line in report.splitlines() if line.startswith("<sub>config: `config.json`; environment: "))
    assert all(f"{key} {value}" in line for key, value in environment.items()), line

    rows = _claims_rows(report)
    mine = [c.text for c in claims.CLAIMS if c.source == "nqm"]
    assert [r[0] for r in rows] == [f"{text} ([nqm](#nqm))" for text in mine] and '<a id="nqm"></a>' in report
    for claim, paper, ours, against, verdict in rows:
        assert ours and ours != "—" and against != "—", claim
        assert verdict.strip("*") in (claims.HOLDS, claims.FAILS, claims.OPEN, claims.NOT_IDENTIFIED), claim
    stored = json.loads((out / "claims.json").read_text())
    assert [(r["claim"], r["ours"], f"**{r['verdict']}**") for r in stored["claims"]] == [
        (text, row[2], row[4]) for text, row in zip(mine, rows)]
    assert stored["rule"] == claims.RULE
    assert "claims" not in json.loads((out / "summary.json").read_text())


def test_reproduce_reads_a_folder_stored_before_commands_wrote_reports(tmp_path):
    """A reproduction folder whose experiment folder has no report.md or claims.json (stored by
    an older version) resumes: the folder gets its report, and the reproduction's report its
    section with figures linked through the sub-folder."""
    out = tmp_path / "reproduction"
    assert main([*NQM, "--out", str(out / "nqm")]) == 0
    for name in ("report.md", "claims.json"):
        (out / "nqm" / name).unlink()
    assert main(["reproduce", *NQM[1:], "--only", "nqm", "--out", str(out)]) == 0
    assert (out / "nqm" / "report.md").is_file() and (out / "nqm" / "claims.json").is_file()
    report = (out / "report.md").read_text()
    assert nqm.report(RunDir(out / "nqm"), prefix="nqm/").rstrip() in report
    assert "config: `nqm/config.json`" in report


# --- report/ never imports experiments/ ------------------------------------------------------

def _imported(source: str, module: str) -> set[str]:
    """Every module that ``source`` (the text of module ``module``) imports, by absolute name:
    ``import a.b``, ``from a import b`` (both ``a`` and ``a.b``: ``b`` may be a module), relative
    imports resolved, and ``importlib.import_module("a.b")`` with a literal name."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(module.split(".")[:-node.level] + [node.module or ""]) if node.level else node.module
            base = base.strip(".")
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(node.args[0].value)
    return names


def _upward(names: set[str]) -> set[str]:
    return {n for n in names if n == "shorthorizon.experiments" or n.startswith("shorthorizon.experiments.")}


def test_the_import_finder_sees_every_form_of_import():
    """The test below can fail: every way a module can import the experiments is seen."""
    module = "shorthorizon.report.demo"
    for source in ("import shorthorizon.experiments.offline", "from shorthorizon import experiments",
                   "from shorthorizon.experiments.offline import is_paper_horizons", "from .. import experiments",
                   "from ..experiments import nqm", "def f():\n    from shorthorizon.experiments import get",
                   "importlib.import_module('shorthorizon.experiments.nqm')"):
        assert _upward(_imported(source, module)), source
    assert not _upward(_imported("from shorthorizon.report import figures\nimport shorthorizon.results", module))


def test_report_never_imports_the_experiments():
    """The experiments import ``report`` for their figures and sections; ``report`` takes the
    sections it needs as arguments (``document.write_report``), so the arrow points one way."""
    modules = sorted(REPORT.rglob("*.py"))
    assert len(modules) > 5
    upward = {p.name: _upward(_imported(p.read_text(), ".".join(("shorthorizon.report",
                                                                  *p.relative_to(REPORT).with_suffix("").parts))))
              for p in modules}
    assert not any(upward.values()), upward


# --- Ctrl-C from the first statement ----------------------------------------------------------

def test_importing_the_command_line_loads_nothing_before_it_takes_ctrl_c_over():
    """The console script imports ``shorthorizon.cli`` before :func:`entry` can take Ctrl-C over:
    an interrupt during that import is the interpreter's (a traceback), so the import must load
    nothing but the package and the module (it loaded argparse, dataclasses, pathlib and the
    experiments' registry: ~0.1 s in which Ctrl-C printed a traceback, issue 32; then typing,
    importlib and __future__, which on a busy machine took over 20 ms)."""
    code = ("import sys; before = set(sys.modules); import shorthorizon.cli; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert set(loaded) <= {"shorthorizon", "shorthorizon.cli"}, loaded


# The console script's statements (pip's wrapper: `import sys`, `from shorthorizon.cli import
# entry`, `sys.exit(entry())`) as a terminal starts them, with Ctrl-C raising KeyboardInterrupt (a
# process started in the background of a non-interactive shell inherits SIGINT ignored, and Python
# leaves it so), after a line that tells the test the interpreter has started and runs them.
CONSOLE_SCRIPT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                  "os.write(1, b'started\\n'); from shorthorizon.cli import entry; sys.exit(entry())")


@pytest.mark.parametrize("delay", [0.02, 0.05, 0.1])
def test_ctrl_c_while_the_console_script_starts_exits_130_with_the_resume_line(tmp_path, delay):
    """SIGINT ``delay`` seconds after the console script's first statement: in the import of the
    command line (issue 32: for ~0.1 s it loaded modules, and Ctrl-C printed a traceback), the
    handover, or the parser loading the experiments and JAX. Status 130, no traceback, the resume
    line, no folder left behind. Not at 0 s: the import's first milliseconds (finding the package
    on the path) are the interpreter's, like its own start, where no program's code can take
    Ctrl-C over yet; the test above keeps that import short."""
    out = tmp_path / "run"
    for _ in range(3):  # the instant an interrupt lands varies from run to run
        process = subprocess.Popen([sys.executable, "-c", CONSOLE_SCRIPT, *NQM, "--out", str(out)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "started\n"
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        err = process.communicate(timeout=120)[1]
        assert process.returncode == 130, err
        assert "Traceback" not in err, err
        assert err.splitlines()[-1] == f"shorthorizon nqm: interrupted; run the same command with --out {out} to resume"
        assert not out.exists()
