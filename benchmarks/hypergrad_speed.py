"""Speed of unrolled training and hypergradients on the paper's MLP (784-100-100-10, batch 100).

Prints a table (steps/s, ratio to a plain step, achieved FLOP/s as a fraction of this
machine's float32 2048x2048 matmul) and writes it as JSON. FLOPs per step come from XLA's
cost analysis of one step of each mode. Timing runs in rounds, each timing the matmul and
every mode once, and keeps each one's fastest round: on a shared machine a slow spell then
hits no single row (and the matmul peak) alone. Goals (issue 3): forward mode with one
hyperparameter <= 2x a plain step, with two <= 3x; plain >= 30% of matmul FLOP/s, vmap >= 40%.

Column "floor": for forward modes, the cost ratio that the FLOPs alone set, if the primal
unroll were computed once and shared by all tangents and every FLOP ran as fast as a plain
step's: 1 + n * (one-tangent FLOPs - plain FLOPs) / plain FLOPs for n hyperparameters. A
tangent step costs more FLOPs than a plain one (layers past the first carry two products per
matmul), so with two hyperparameters the floor is above 3. Row "fwd 2, vmap tangents" is that
shared-primal variant (``vmap`` over the tangents), for comparison with the engine's
``lax.map`` of one jvp per hyperparameter.

Rows "<estimator> K=<k>": the windowed estimators (issue 10) on the same MLP as an inner
problem (``TrainingRun``), one particle, lr and momentum, windows of ``--window`` steps run
back to back through the whole unroll; their "x plain" is the cost per step the inner run
advances (ES, PES and NRES run two copies, + and -). No FLOP count for these rows.

    python benchmarks/hypergrad_speed.py [--steps 200] [--window 20] [--rounds 7] [--scan-unroll 1] [--out benchmarks/results/hypergrad_speed.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from shorthorizon.hypergrad import Data, TrainingRun, Unroll, hypergradient, make_estimator
from shorthorizon.optim import inverse_time, momentum
from shorthorizon.tasks import mlp

HYPER = {"lr": 0.05, "momentum": 0.9, "decay_exponent": 0.5}
VMAP = 16
FORWARD = {"forward (1 hyper)": ("lr",), "forward (2 hypers)": ("lr", "momentum")}  # mode -> wrt
ESTIMATORS = ("forward", "reverse", "es", "pes", "nres")  # windowed, on lr and momentum


def best_times(jobs: dict, rounds: int) -> dict:
    """Fastest of ``rounds`` timings of each ``(fn, arg)``, timed round-robin (compiled first)."""
    for fn, arg in jobs.values():
        jax.block_until_ready(fn(arg))
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(rounds):
        for name, (fn, arg) in jobs.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(arg))
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--window", type=int, default=20, help="K of the windowed estimator rows")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scan-unroll", type=int, default=1, help="steps per loop iteration (lax.scan's unroll)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hypergrad_speed.json"))
    args = parser.parse_args()

    key = jax.random.PRNGKey(0)
    data = Data(jax.random.uniform(key, (10_000, 28, 28, 1)), jax.random.randint(key, (10_000,), 0, 10))
    task, optimizer = mlp(), momentum(inverse_time(5000.0))
    params = task.init(key)
    state = optimizer.init(params, HYPER)
    hyper = {k: jnp.float32(v) for k, v in HYPER.items()}

    def objective_for(steps, scan_unroll=1):
        unroll = Unroll(task, optimizer, steps, batch_size=100, scan_unroll=scan_unroll)
        return lambda h: unroll.objective(h, params, state, data, jax.random.PRNGKey(1))

    def modes(steps, scan_unroll=args.scan_unroll, one_tangent=False):
        """name -> (function, argument, settings per call); ``one_tangent``: forward modes
        differentiate w.r.t. their first hyperparameter only."""
        f = objective_for(steps, scan_unroll)

        def forward(wrt):
            return lambda h: hypergradient(f, h, "forward", wrt=wrt[:1] if one_tangent else wrt)

        def shared_primal(h):  # both tangents at once under vmap: the primal unroll runs once
            wrt = FORWARD["forward (2 hypers)"]
            g = lambda v: f({**h, **dict(zip(wrt, v))})
            x = jnp.stack([h[k] for k in wrt])
            return jax.vmap(lambda t: jax.jvp(g, (x,), (t,)), out_axes=(None, 0))(jnp.eye(len(wrt)))

        return {
            "plain": (f, hyper, 1),
            **{name: (forward(wrt), hyper, 1) for name, wrt in FORWARD.items()},
            "fwd 2, vmap tangents": (shared_primal, hyper, 1),
            "reverse": (lambda h: hypergradient(f, h, "reverse", wrt=("lr", "momentum")), hyper, 1),
            f"vmap x{VMAP} (plain)": (jax.vmap(f), {k: jnp.full((VMAP,), v) for k, v in hyper.items()}, VMAP),
        }

    def windowed(name):
        """``name``'s estimates over every window of one ``args.steps``-step run."""
        run = TrainingRun(task, optimizer, data, params, state, args.steps, 100)
        est = make_estimator(name, run, args.window, 1, 0.01, stagger=False)

        def all_windows(h):
            h = {"lr": h["lr"], "momentum": h["momentum"]}

            def body(s, w):
                _, grad, s = est.estimate(s, h, jax.random.PRNGKey(w))
                return s, grad

            return jax.lax.scan(body, est.init(h, jax.random.PRNGKey(1)), jnp.arange(est.windows))[1]

        return all_windows

    estimator_rows = {f"{name} K={args.window}": (windowed(name), hyper, 1) for name in ESTIMATORS}

    def flops_per_step(name, arg):
        """One step's FLOPs: XLA's count for 2 steps minus 1 step, with the scan unrolled.
        The cost analysis counts a loop body once, whatever its trip count, so forward mode
        (a ``lax.map`` loop of one jvp per hyperparameter) is its one-hyperparameter count
        times the number of hyperparameters."""
        tangents = len(FORWARD.get(name, ("",)))
        cost = lambda steps: jax.jit(modes(steps, True, one_tangent=True)[name][0]).lower(arg).compile(
        ).cost_analysis()["flops"]
        return tangents * (cost(2) - cost(1))

    matrix = jax.random.normal(jax.random.PRNGKey(0), (2048, 2048), jnp.float32)
    long_modes = modes(args.steps)
    jobs = {"matmul": (jax.jit(lambda a: a @ a), matrix),
            **{name: (jax.jit(fn), arg) for name, (fn, arg, _) in {**long_modes, **estimator_rows}.items()}}
    times = best_times(jobs, args.rounds)
    peak = 2 * 2048**3 / times["matmul"]
    rows = []
    for name, (fn, arg, width) in long_modes.items():
        seconds = times[name]
        step_flops = flops_per_step(name, arg)
        rate = args.steps * width / seconds
        rows.append({"mode": name, "steps_per_s": rate, "seconds": seconds,
                     "flops_per_step": step_flops / width,
                     "fraction_of_matmul": step_flops * args.steps / seconds / peak})
    for name in estimator_rows:
        rows.append({"mode": name, "steps_per_s": args.steps / times[name], "seconds": times[name]})
    plain = rows[0]["steps_per_s"]
    plain_flops = rows[0]["flops_per_step"]
    for row in rows:
        row["cost_vs_plain"] = plain / row["steps_per_s"]
        if row["mode"] in FORWARD:  # its FLOPs are n jvps, each a primal step and one tangent
            n = len(FORWARD[row["mode"]])
            row["flop_floor_vs_plain"] = 1 + n * (row["flops_per_step"] / n - plain_flops) / plain_flops

    print(f"device {jax.devices()[0]}, float32 2048x2048 matmul: {peak / 1e9:.1f} GFLOP/s")
    print(f"{'mode':22s} {'steps/s':>9s} {'x plain':>8s} {'floor':>6s} {'MFLOP/step':>11s} {'of matmul':>10s}")
    for row in rows:
        floor = f"{row['flop_floor_vs_plain']:6.2f}" if "flop_floor_vs_plain" in row else " " * 6
        flops = (f"{row['flops_per_step'] / 1e6:11.1f} {row['fraction_of_matmul']:10.1%}"
                 if "flops_per_step" in row else "")
        print(f"{row['mode']:22s} {row['steps_per_s']:9.0f} {row['cost_vs_plain']:8.2f} {floor} {flops}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"matmul_flops": peak, "steps": args.steps, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
