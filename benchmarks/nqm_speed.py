"""Time ``shorthorizon nqm --preset paper`` as a whole subprocess (imports and compilation
included) and print the ratio to the 30 s goal. Prints; never asserts.

    .venv/bin/python benchmarks/nqm_speed.py [--preset paper] [--goal 30]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--preset", default="paper")
parser.add_argument("--goal", type=float, default=30.0, help="target wall time in seconds")
args = parser.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / "run"  # fresh folder: nothing to resume
    command = [sys.executable, "-m", "shorthorizon.cli", "nqm", "--preset", args.preset,
               "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    summary = json.loads((out / "summary.json").read_text())

noisy = summary["noisy"]
print(f"nqm --preset {args.preset}: {wall:.1f} s wall (in-run {summary['wall_time_s']:.1f} s); "
      f"goal {args.goal:.0f} s; ratio {wall / args.goal:.2f}")
print(f"CPU time {cpu:.1f} s on {os.cpu_count()} cores; load average now "
      f"{os.getloadavg()[0]:.1f} (wall time on a shared machine is an upper bound)")
print("noisy final loss: " + ", ".join(f"{k} {noisy[k]['final_loss']:.3f}" for k in
                                       ("greedy", "fixed", "optimized"))
      + f"; optimized max_component_ratio {noisy['optimized']['max_component_ratio']:.6f}")
