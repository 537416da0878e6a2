"""This tree's training and hypergradient speed against another commit's, interleaved.

Runs ``benchmarks/hypergrad_speed.py`` (this tree's copy, so both sides are timed by the same
code) alternately against the library of ``REF`` (checked out into a temporary git worktree)
and of this tree, ``--pairs`` times, and prints each mode's steps/s ratio (this tree / REF) per
pair and their median. Alternating whole processes puts a slow spell of a shared machine on
both sides alike; within each process the script keeps every mode's fastest round. Whole
processes also differ in speed by themselves (on a 2-core VM one process's plain steps ran 40%
faster than the next one's, same code; normalizing by each process's own matmul speed made the
ratios noisier, not steadier), so take many pairs and read the spread beside the median.

    python benchmarks/speed_against.py 8a3a6e3 [--pairs 3] [--rounds 3] [--modes "plain,forward (2 hypers)"]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def speeds(src: Path, rounds: int, out: Path) -> dict[str, float]:
    """steps/s of every mode of one hypergrad_speed run on the library in ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hypergrad_speed.py"), "--rounds", str(rounds),
                    "--out", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
    return {row["mode"]: row["steps_per_s"] for row in json.loads(out.read_text())["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="the commit to compare with (e.g. the one before a change)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds within each process")
    parser.add_argument("--modes", default="plain,forward (1 hyper),forward (2 hypers)",
                        help="comma-separated rows of hypergrad_speed.py to report")
    args = parser.parse_args()
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.ref], check=True,
                       capture_output=True)
        try:
            ratios: dict[str, list[float]] = {m: [] for m in modes}
            for pair in range(args.pairs):
                ref = speeds(tree / "src", args.rounds, Path(tmp) / "ref.json")
                new = speeds(ROOT / "src", args.rounds, Path(tmp) / "new.json")
                for m in modes:
                    ratios[m].append(new[m] / ref[m])
                print(f"pair {pair + 1}: " + ", ".join(f"{m} {new[m]:.0f}/{ref[m]:.0f} steps/s" for m in modes),
                      flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)
    print(f"this tree / {args.ref}, steps/s ratio, median of {args.pairs} interleaved pairs (per pair):")
    for m in modes:
        print(f"  {m:22s} {statistics.median(ratios[m]):.3f} ({', '.join(f'{x:.3f}' for x in ratios[m])})")


if __name__ == "__main__":
    main()
