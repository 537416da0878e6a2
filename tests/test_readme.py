"""The README's library examples run as written (on the dataset CI installs)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BLOCKS = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_example_runs(index):
    stdout = run(BLOCKS[index])
    if "greedy final loss" in BLOCKS[index]:
        greedy = float(re.search(r"greedy final loss ([\d.]+)", stdout).group(1))
        assert 50 < greedy < 75  # paper 63.86; DESIGN.md's calibration gives ~59
        assert re.search(r"d loss / d lr -?[\d.]+", stdout)
    if "SampledNQM" in BLOCKS[index]:  # one noisy PES estimate: it runs and prints a number
        assert re.search(r"window loss [\d.]+, d J / d log lr ~ -?[\d.]+", stdout)
    if "nnx_classifier" in BLOCKS[index]:  # BatchNorm model, AdamW: finite hypergradients for both
        match = re.search(r"loss ([\d.]+), d loss / d lr (-?[\d.]+), d / d wd (-?[\d.]+)", stdout)
        assert match and 0 < float(match.group(1)) < 5 and float(match.group(2)) != 0
    if "OfflineFit" in BLOCKS[index]:  # both fits ran and landed inside the paper's box of decay exponents
        match = re.search(r"at T=100: ([\d.e+-]+), by PES over runs of 500: ([\d.e+-]+)", stdout)
        assert match and all(1e-2 <= float(v) <= 10**2.3 for v in match.groups())
    if "LogSpace" in BLOCKS[index]:  # AdamW adapted online: both values moved from where they started
        match = re.search(r"at stop: lr ([\d.e+-]+), weight decay ([\d.e+-]+)", stdout)
        assert match and float(match.group(1)) != 1e-3 and float(match.group(2)) != 1e-4


def test_the_public_api_is_importable_without_loading_jax():
    """Every name in ``shorthorizon.__all__`` resolves, and ``import shorthorizon`` alone (what
    the command line does first) does not import JAX."""
    stdout = run("import sys, shorthorizon; print('jax' in sys.modules); "
                 "[getattr(shorthorizon, n) for n in shorthorizon.__all__]; print(len(shorthorizon.__all__))")
    loaded, count = stdout.split()
    assert loaded == "False" and int(count) == len(__import__("shorthorizon").__all__)


def test_the_type_checkers_view_of_the_api_is_the_lazy_one():
    """The ``if TYPE_CHECKING:`` imports of ``shorthorizon/__init__.py`` (what an IDE or a type
    checker reads) name exactly ``_API``'s names, each from the module ``_API`` loads it from."""
    import ast

    import shorthorizon

    tree = ast.parse(open(shorthorizon.__file__).read())
    block = next(node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING")
    seen = {alias.asname or alias.name: (node.module, alias.name)
            for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    wanted = {name: target if isinstance(target, tuple) else (target, name) for name, target in shorthorizon._API.items()}
    assert seen == wanted
