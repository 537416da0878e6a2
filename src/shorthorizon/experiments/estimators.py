"""Hypergradient estimators on the NQM: bias and variance against the exact whole-run gradient.

The inner problem is the paper's noisy quadratic (Section 2.3: Chebyshev spectrum on
[1e-3, 1], σ² = 1/h, E[θ(0)] = 10) trained by SGD with momentum on an inverse-time schedule
lr_t = lr (1 + t / decay_steps)^(−decay_exponent), momentum constant. The meta-objective is the
whole run's mean expected excess loss J = (1/T) Σ_{t=1..T} L_t, computed exactly from
Theorem 1 (:class:`~shorthorizon.nqm.inner.ExactNQM`); the estimators see the *sampled* NQM
(:class:`~shorthorizon.nqm.inner.SampledNQM`), one trajectory per particle, exactly as they
would see a neural net.

Measured, for every estimator and truncation K, at fixed settings away from the optimum and at
the exact optimum: the mean of many independent single-particle estimates (each particle runs
a whole inner run, one estimate per window), its standard error (from per-particle means: a
particle's windows are correlated), the standard deviation of one estimate, its variance per
unit of compute (below), and its distance from three references, all exact: the whole-run
gradient, the expected truncated gradient (moments held constant at each window start), and,
for the persistent estimators (PES, NRES), the gradient of the smoothed objective: window w's
hyperparameters at ``hyper + ε_w`` with the ε_w the estimator draws over a run (PES: one per
window; NRES: one for the whole run; ``window_perturbations``), averaged by antithetic Monte
Carlo over exact gradients.

Variance per unit of compute: n independent estimates costing w plain passes each average to a
variance v / n = v w / B within a budget of B passes, so v w (v relative to |exact|²) ranks
estimators at equal cost. Per estimate, v is one window's; per run, it is the variance of a
particle's mean over its whole run and w the run's cost: the windows of one run are correlated
(an NRES particle credits the same ε in every one), which the per-estimate figure ignores.

Then every estimator fits the schedule (same SMD update, same budget of inner steps), and the
fits are judged by the exact J, beside the estimator's **fixed point**, where its expected
gradient vanishes: the exact optimum for the unbiased ones (full horizon; PES and NRES up to
their O(σ²) smoothing) and, for a truncated one, the zero of the expected truncated gradient,
found by the same Adam on exact expectations (one particle at every window phase). A fit whose
J is more than ``convergence`` from its fixed point's has not converged within the budget
(or, noise aside, stopped before it): its number says what the budget gave, not where the
estimator leads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from shorthorizon.config import DIM, FRACTION, POSITIVE, SEED, check, items, key, low_high, one_of, seeded, within
from shorthorizon.hypergrad import ESTIMATORS, WINDOWED, Truncated, make_estimator
from shorthorizon.meta.smd import SMD, cosine
from shorthorizon.nqm import NQM, greedy_schedule, loss_curve
from shorthorizon.nqm.inner import RAW, ExactNQM, SampledNQM, from_raw, schedule, to_raw
from shorthorizon.optim import LogSpace
from shorthorizon.report.estimators import plot, report  # noqa: F401 (report: the experiment's section)
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, run_seeded, run_units, seed_name
from shorthorizon.stats import FACTORS, PROPORTION, over_seeds

NAME = "estimators"
FLAGS = ()
HYPER = ("lr", "decay_exponent", "momentum")
TRIPLE = (POSITIVE, POSITIVE, FRACTION)  # rules of (lr, decay_exponent, momentum): log, log, log(1 - momentum)
TRIPLE_TEXT = "with lr and decay_exponent positive and finite, momentum in [0, 1)"
# The headline numbers of every estimator and K ({name}), summarised over seeds (stats.over_seeds:
# FACTORS = varies by factors, by its logs; else its natural bounds). Seeds repeat the sampled parts: the measured particles,
# the fits and the Monte-Carlo smoothing of the references; the exact optimum and fixed points
# are computed once.
HEADLINES = {"estimators.{name}.relative_bias": FACTORS, "estimators.{name}.relative_bias_from_expected": FACTORS,
             "estimators.{name}.fitted_loss_ratio": FACTORS, "estimators.{name}.fitted_hyper.lr": FACTORS,
             "estimators.{name}.fitted_hyper.decay_exponent": FACTORS,
             "estimators.{name}.fitted_hyper.momentum": PROPORTION}


@dataclass(frozen=True)
class Config:
    dim: int = key(1000, DIM)  # the paper's NQM (Section 2.3)
    horizon: int = key(250, POSITIVE)  # T: steps of one inner run
    decay_steps: float = key(10.0, POSITIVE)  # lr_t = lr (1 + t / decay_steps)^(-decay_exponent)
    estimators: tuple[str, ...] = key(WINDOWED, items(one_of(ESTIMATORS), distinct=True))
    truncations: tuple[int, ...] = key((1, 10, 50, 250), items(POSITIVE, distinct=True))  # K; K = horizon: the full run
    sigma: float = key(0.02, POSITIVE)  # ES/PES/NRES perturbation (log space)
    # settings away from the optimum, as (lr, decay_exponent, momentum) triples, flattened
    settings: tuple[float, ...] = key((1.0, 0.5, 0.5, 0.5, 3.0, 0.9), items(
        *TRIPLE, wanted=f"lr,decay_exponent,momentum triples, flattened, {TRIPLE_TEXT}"))
    estimates: int = key(400, POSITIVE)  # independent particles per measurement (each: T/K estimates)
    smoothing_samples: int = key(16, POSITIVE)  # antithetic pairs for the exact smoothed gradient (error O(sigma^2))
    # Adam steps on exact expectations (the optimum, the truncated fixed points): on the paper NQM
    # the optimum's J is within 1e-9 of its value at 2,000 steps by step 200
    exact_steps: int = key(500, POSITIVE)
    fit_particles: int = key(8, POSITIVE)  # particles per meta-step of every fit
    fit_inner_steps: int = key(200_000, POSITIVE)  # the budget of each fit: inner steps over all particles
    convergence: float = key(0.02, POSITIVE)  # a fit within this fraction of its fixed point's J has converged
    meta_lr: float = key(0.05, POSITIVE)  # Adam, cosine-decayed to 1% over the fit (values kept in the box)
    init: tuple[float, ...] = key((0.3, 0.3, 0.5), items(*TRIPLE, repeat=False, wanted=f"lr,decay_exponent,momentum "
                                                           f"{TRIPLE_TEXT}"))  # every fit starts here, in the box
    lr_range: tuple[float, ...] = key((1e-2, 2.0), low_high(POSITIVE))  # the box of the fits
    decay_exponent_range: tuple[float, ...] = key((1e-2, 10.0), low_high(POSITIVE))
    momentum_range: tuple[float, ...] = key((0.0, 0.99), low_high(FRACTION))
    seed: int = key(0, SEED)
    seeds: int = key(1, POSITIVE)  # independent repetitions of the sampled parts: seed k is the run with seed + k


PRESETS = {
    "paper": Config(),
    # Quick: a smaller problem (d = 100, T = 100) and fewer samples; its numbers are not the
    # paper problem's. Truncated forward mode (the paper's short-horizon SMD; truncated reverse
    # gives the same estimates), PES and NRES, at K = 10 and the full run. On a CPU its time is
    # mostly XLA compiling one program per estimator and K, so fewer of them, not smaller ones;
    # the steps themselves are cheap at d = 100, so the budget gives the costliest fit (a full
    # run of 8 pairs, 1,600 inner steps per meta-step) as many meta-steps as the exact optimum's
    # Adam takes (1,000), and every fit can reach its fixed point. Three seeds (the seeds share
    # the compiled programs), so that no claim rests on one draw.
    "quick": Config(dim=100, horizon=100, estimators=("forward", "pes", "nres"), truncations=(10, 100),
                    estimates=100, smoothing_samples=8,
                    exact_steps=1000, fit_inner_steps=1_600_000, seeds=3),
}


def validate(config: Config) -> None:
    check(config)
    for k in config.truncations:
        if config.horizon % k:
            raise ValueError(f"config key 'truncations': {k} must divide the horizon {config.horizon}")
    if config.horizon not in config.truncations:
        raise ValueError(f"config key 'truncations' must include the horizon {config.horizon} (the full-run reference)")
    for value, box in zip(config.init, ("lr_range", "decay_exponent_range", "momentum_range")):
        within("init", value, box, getattr(config, box))


# --- pieces shared by the units (float64, inside _dispatch) -------------------------------------
def _problem(config: Config):
    nqm = NQM.paper(config.dim)
    return (ExactNQM(nqm, config.horizon, config.decay_steps),
            SampledNQM(nqm, config.horizon, config.decay_steps))


def _vector(tree) -> np.ndarray:
    """A raw-hyperparameter dict as a vector in the fixed order of ``to_raw``'s keys."""
    return np.stack([np.asarray(tree[k]) for k in RAW], axis=-1)


def _as_raw(x) -> dict:
    """A vector in that order as a raw-hyperparameter dict (the inverse of :func:`_vector`)."""
    return {k: x[i] for i, k in enumerate(RAW)}


def _smd(config: Config, steps: int) -> SMD:
    """Every fit's update: Adam cosine-decayed over the fit, unclipped, within the box."""
    space = LogSpace((("lr", *config.lr_range), ("decay_exponent", *config.decay_exponent_range),
                      ("momentum", *config.momentum_range)))
    return SMD(meta_lr=cosine(config.meta_lr, steps), clip=math.inf, bounds=space.bounds())


def _window_estimates(estimator, raw, key):
    """Every particle of ``estimator`` through one whole inner run (unstaggered): the estimate of
    every window, shape (windows, particles, 3)."""

    def body(state, w):
        _, grad, state = estimator.estimate_particles(state, raw, jax.random.fold_in(key, w))
        return state, jnp.stack([grad[k] for k in raw], axis=-1)

    return jax.lax.scan(body, estimator.init(raw, key), jnp.arange(estimator.windows))[1]


def _fixed_point(config: Config, truncation: int):
    """Adam (``exact_steps``, the fits' update) on the exact expected gradient of truncation K:
    forward mode on the exact moments, one particle at every window phase, so every meta-step
    averages the windows of a run (K = T: the whole-run gradient, one particle). Returns the
    final SMD state and the per-step objective (the mean window loss)."""
    exact, _ = _problem(config)
    est = Truncated(exact, "forward", truncation, particles=config.horizon // truncation)
    state, (loss, _, _) = jax.jit(lambda r, k: _smd(config, config.exact_steps).fit(est, r, k, config.exact_steps))(
        to_raw(*config.init), jax.random.PRNGKey(config.seed))
    return state, loss


# --- units ---------------------------------------------------------------------------------
def exact_unit(config: Config) -> dict:
    """The exact optimum (Adam on the exact whole-run objective, full forward mode), its loss
    curve, and the greedy schedule's curve (Theorem 2) for comparison."""
    exact, _ = _problem(config)
    state, loss = _fixed_point(config, config.horizon)
    greedy = greedy_schedule(exact.nqm, config.horizon)
    natural = from_raw(state.raw)
    return {"raw": _vector(state.raw), "hyper": np.array([natural[k] for k in HYPER]),
            "loss": exact.unroll(state.raw, exact.init(), config.horizon)[0], "history": loss,
            "curve": loss_curve(exact.nqm, *schedule(state.raw, config.horizon, config.decay_steps)),
            "greedy_curve": greedy.loss, "greedy_lr": greedy.lr, "greedy_momentum": greedy.momentum}


def fixed_point_unit(config: Config, truncation: int) -> dict:
    """Where the expected truncated gradient of K vanishes (:func:`_fixed_point`), and the
    exact whole-run J there."""
    exact, _ = _problem(config)
    state, _ = _fixed_point(config, truncation)
    return {"raw": _vector(state.raw), "loss": exact.unroll(state.raw, exact.init(), config.horizon)[0]}


def references_unit(config: Config, points: np.ndarray) -> dict:
    """Exact references at each point (rows of raw vectors): the whole-run gradient, the
    expected truncated gradient per K, and, per persistent estimator and K, the whole-run
    gradient smoothed by its perturbations with its Monte-Carlo standard error."""
    exact, _ = _problem(config)

    def truncated(x, k):
        est = Truncated(exact, "forward", k, stagger=False)
        return jnp.mean(_window_estimates(est, _as_raw(x), jax.random.PRNGKey(0)), axis=(0, 1))

    def smoothed_objective(x, eps, k):  # every window at x + its own perturbation
        def body(state, e):
            loss, state = exact.unroll(_as_raw(x + e), state, k)
            return state, loss

        return jnp.mean(jax.lax.scan(body, exact.init(), eps)[1])

    def smoothed(x, k, eps):  # eps: (samples, windows, coordinates), the estimator's draws
        # forward mode: three tangents carried along the moment scan, no stored intermediates
        grad = jax.jacfwd(smoothed_objective)
        grads = jax.vmap(lambda e: (grad(x, e, k) + grad(x, -e, k)) / 2)(eps)
        return grads.mean(0), grads.std(0) / math.sqrt(config.smoothing_samples)

    points = jnp.asarray(points)
    out = {"whole_run": jax.jit(jax.vmap(lambda x: truncated(x, config.horizon)))(points)}
    # the full-horizon forward and reverse estimators against an independent reference: the
    # custom-VJP rollout behind loss_curve
    reference = jax.jit(jax.vmap(jax.grad(lambda x: loss_curve(exact.nqm, *schedule(
        _as_raw(x), config.horizon, config.decay_steps))[1:].mean())))(points)
    for mode in ("forward", "reverse"):
        est = Truncated(exact, mode, stagger=False)
        full = jax.jit(jax.vmap(lambda x: _window_estimates(est, _as_raw(x), jax.random.PRNGKey(0))[0, 0]))(points)
        # relative to the gradient's norm, away from the optimum (where it vanishes)
        out[f"full_{mode}_relative_error"] = jnp.max(jnp.linalg.norm(full - reference, axis=-1)[:-1]
                                                     / jnp.linalg.norm(reference, axis=-1)[:-1])
    done = {}  # (windows' length, perturbations) -> smoothed gradient and its standard error
    for k in config.truncations:
        out[f"truncated_K{k}"] = jax.jit(jax.vmap(lambda x: truncated(x, k)))(points)
        for name in _persistent(config):
            est = make_estimator(name, exact, k, sigma=config.sigma)
            eps = np.asarray(jax.vmap(lambda key: est.window_perturbations(key, len(RAW), points.dtype))(
                jax.random.split(jax.random.PRNGKey(config.seed + 1), config.smoothing_samples)))
            length = k
            if np.all(eps == eps[:, :1]):  # one perturbation per run (NRES): J at x + ε, whatever K
                eps, length = eps[:, :1], config.horizon
            key = length, eps.tobytes()
            if key not in done:
                done[key] = jax.jit(lambda p: jax.lax.map(lambda x: smoothed(x, length, eps), p))(points)
            out[f"smoothed_{name}_K{k}"], out[f"smoothed_se_{name}_K{k}"] = done[key]
    return out


def measure_unit(config: Config, estimator: str, truncation: int, points: np.ndarray) -> dict:
    """``config.estimates`` independent single-particle runs at each point: per-particle mean
    estimate (points, particles, 3) and the pooled moments of single estimates."""
    _, sampled = _problem(config)
    est = make_estimator(estimator, sampled, truncation, config.estimates, config.sigma, stagger=False)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), truncation)

    @jax.jit
    def at(x):
        g = _window_estimates(est, _as_raw(x), key)  # (windows, particles, 3)
        return g.mean(0), g.reshape(-1, g.shape[-1]).std(0)

    particle_means, std = zip(*(at(jnp.asarray(x)) for x in points))
    return {"particle_means": np.stack(particle_means), "std": np.stack(std)}


def fit_unit(config: Config, estimator: str, truncation: int) -> dict:
    """Fit the schedule with ``estimator`` (``config.fit_particles`` staggered particles, the
    same SMD update and inner-step budget as every other fit); the exact J of the result."""
    exact, sampled = _problem(config)
    est = make_estimator(estimator, sampled, truncation, config.fit_particles, config.sigma)
    steps = max(1, config.fit_inner_steps // est.cost)
    state, (loss, _, raws) = jax.jit(lambda r, k: _smd(config, steps).fit(est, r, k, steps))(
        to_raw(*config.init), jax.random.fold_in(jax.random.PRNGKey(config.seed + 2), truncation))
    natural = from_raw(state.raw)
    return {"raw": _vector(state.raw), "hyper": np.array([natural[k] for k in HYPER]),
            "loss": exact.unroll(state.raw, exact.init(), config.horizon)[0],
            "curve": loss_curve(exact.nqm, *schedule(state.raw, config.horizon, config.decay_steps)),
            "trajectory": _vector(raws), "meta_steps": steps, "inner_steps": steps * est.cost}


def _dispatch(fn: str, **kwargs) -> dict:
    """One picklable entry point for every executor; float64 for this call only."""
    with jax.enable_x64(True):
        return {"exact": exact_unit, "references": references_unit, "measure": measure_unit,
                "fit": fit_unit, "fixed_point": fixed_point_unit}[fn](**kwargs)


def _label(name: str, k: int, config: Config) -> str:
    return make_estimator(name, truncation=k).label(config.horizon)


def _persistent(config: Config) -> list[str]:
    """The configured estimators whose expectation is the smoothed whole-run gradient (PES, NRES)."""
    return [name for name in config.estimators if make_estimator(name).persistent]


def _fixed_truncations(config: Config) -> list[int]:
    """The truncations K < T of the configured estimators that expect the truncated gradient
    (the others' fixed point is the exact optimum)."""
    biased = [name for name in config.estimators if name not in _persistent(config)]
    return [k for k in config.truncations if k < config.horizon] if biased else []


# --- the experiment ------------------------------------------------------------------------
def headlines(config: Config) -> dict:
    """:data:`HEADLINES` of every configured estimator and K (each one's numbers together)."""
    return {path.format(name=_label(e, k, config)): kind for e in config.estimators
            for k in config.truncations for path, kind in HEADLINES.items()}


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address=None) -> dict:
    validate(config)
    run_dir.write_config(config)
    stage = dict(run_dir=run_dir, executor=executor, ray_address=ray_address)
    once = seeded(config, 0)  # the exact parts, the same for every seed
    exact = run_units(_dispatch, [Unit("exact", dict(fn="exact", config=once))], desc="exact optimum",
                      **stage)["exact"]
    fixed = run_units(_dispatch, [Unit(f"fixed_point_K{k}", dict(fn="fixed_point", config=once, truncation=k))
                                  for k in _fixed_truncations(config)], desc="fixed points", **stage)
    with jax.enable_x64(True):
        away = np.stack([_vector(to_raw(*t)) for t in np.reshape(config.settings, (-1, 3))])
    points = np.concatenate([away, exact["raw"][None]])
    pairs = [(e, k) for e in config.estimators for k in config.truncations]
    seeds = [seeded(config, k) for k in range(config.seeds)]
    sampled = run_seeded(_dispatch, [[
        Unit("references", dict(fn="references", config=s, points=points)),
        *[Unit(f"measure_{_label(e, k, config)}", dict(fn="measure", config=s, estimator=e, truncation=k,
                                                       points=points)) for e, k in pairs],
        *[Unit(f"fit_{_label(e, k, config)}", dict(fn="fit", config=s, estimator=e, truncation=k))
          for e, k in pairs],
    ] for s in seeds], desc="estimators", **stage)
    per_seed = []
    for seed, (s, results) in enumerate(zip(seeds, sampled)):
        results = {**fixed, **results}
        per_seed.append(_summary(s, exact, results, points, pairs))
        run_dir.save_curves(seed_name("estimators", seed), truncation=config.truncations,
                            estimators=list(config.estimators), exact_curve=exact["curve"],
                            greedy_curve=exact["greedy_curve"],
                            **{f"{_label(e, k, config)}_curve": results[f"fit_{_label(e, k, config)}"]["curve"]
                               for e, k in pairs})
    summary = run_dir.write_summary(over_seeds(per_seed, headlines(config)))
    plot(run_dir)
    return summary


def _summary(config: Config, exact: dict, results: dict, points: np.ndarray, pairs) -> dict:
    refs = results["references"]
    whole = refs["whole_run"]  # (points, 3)
    optimum = len(points) - 1
    estimators = {}
    for e, k in pairs:
        name = _label(e, k, config)
        m = results[f"measure_{name}"]
        per = m["particle_means"]  # (points, particles, 3)
        mean, se = per.mean(1), per.std(1, ddof=1) / math.sqrt(per.shape[1])
        persistent = e in _persistent(config)
        target = (refs[f"smoothed_{e}_K{k}"] if persistent else refs[f"truncated_K{k}"] if k < config.horizon
                  else whole)
        target_se = refs[f"smoothed_se_{e}_K{k}"] if persistent else np.zeros_like(target)
        # plain passes of one single-particle estimate (one window) and of its whole run
        estimate_work = make_estimator(e, truncation=k).work(len(RAW)) * k
        run_work = estimate_work * (config.horizon // k)
        rows = []
        for i in range(len(points)):
            rows.append({
                "point": "optimum" if i == optimum else f"setting {i + 1}",
                "mean": mean[i].tolist(), "standard_error": se[i].tolist(), "std": m["std"][i].tolist(),
                "exact": whole[i].tolist(), "expected": target[i].tolist(),
                # distance in standard errors, per coordinate, from zero / the whole-run gradient /
                # the estimator's own exact expectation (truncated; PES: smoothed whole run)
                "z_from_zero": (mean[i] / se[i]).tolist(),
                "z_from_exact": ((mean[i] - whole[i]) / se[i]).tolist(),
                "z_from_expected": ((mean[i] - target[i]) / np.hypot(se[i], target_se[i])).tolist(),
            })
            if i != optimum:  # relative to the exact gradient, which vanishes at the optimum
                norm = np.linalg.norm(whole[i])
                rows[-1].update({
                    "relative_bias": float(np.linalg.norm(mean[i] - whole[i]) / norm),
                    # the noise floor of relative_bias: an unbiased mean is this far off by chance
                    "relative_standard_error": float(np.linalg.norm(se[i]) / norm),
                    # against the estimator's own exact expectation, with that comparison's floor
                    "relative_bias_from_expected": float(np.linalg.norm(mean[i] - target[i]) / norm),
                    "relative_standard_error_from_expected": float(np.linalg.norm(np.hypot(se[i], target_se[i]))
                                                                   / norm),
                    "cosine": float(mean[i] @ whole[i] / np.linalg.norm(mean[i]) / norm),
                    # variance (summed over coordinates, relative to |exact|^2) x plain passes, of
                    # one estimate and of one particle's mean over its run (module docstring)
                    "relative_variance_x_work": float(np.sum(m["std"][i] ** 2) / norm**2 * estimate_work),
                    "run_relative_variance_x_work": float(np.sum(per[i].var(0, ddof=1)) / norm**2 * run_work),
                })
        fit = results[f"fit_{name}"]
        away = rows[:optimum]
        fixed = (results[f"fixed_point_K{k}"]["loss"] if k in _fixed_truncations(config) and not persistent
                 else exact["loss"])
        estimators[name] = {
            "estimator": e, "truncation": int(k),
            **{key: float(np.mean([r[key] for r in away])) for key in (
                "relative_bias", "relative_standard_error", "relative_bias_from_expected",
                "relative_standard_error_from_expected", "cosine", "relative_variance_x_work",
                "run_relative_variance_x_work")},
            "std": float(np.mean([np.linalg.norm(r["std"]) for r in away])),
            "estimate_work": float(estimate_work),
            "fitted_hyper": dict(zip(HYPER, fit["hyper"].tolist())), "fitted_loss": float(fit["loss"]),
            "fitted_loss_ratio": float(fit["loss"] / exact["loss"]),
            # where the estimator's expected gradient vanishes, and whether the fit got there
            "fixed_point_loss": float(fixed), "fixed_point_loss_ratio": float(fixed / exact["loss"]),
            "converged": bool(abs(fit["loss"] / fixed - 1) <= config.convergence),
            "meta_steps": int(fit["meta_steps"]), "inner_steps": int(fit["inner_steps"]),
            "estimates_per_point": int(per.shape[1] * (config.horizon // k)),
            "points": rows,
        }
    return {
        "objective": (f"mean expected excess loss over steps 1..{config.horizon} of the noisy quadratic "
                      f"(d={config.dim}), lr_t = lr (1 + t/{config.decay_steps:g})^-decay_exponent, constant momentum"),
        "coordinates": list(RAW),
        "exact": {"hyper": dict(zip(HYPER, exact["hyper"].tolist())), "loss": float(exact["loss"]),
                  "gradient_at_optimum": whole[optimum].tolist(),
                  # full-horizon forward / reverse on the exact inner problem vs loss_curve's VJP
                  "full_forward_relative_error": float(refs["full_forward_relative_error"]),
                  "full_reverse_relative_error": float(refs["full_reverse_relative_error"])},
        "greedy": {"loss": float(np.mean(exact["greedy_curve"][1:]))},
        "settings": [dict(zip(HYPER, t)) for t in np.reshape(config.settings, (-1, 3)).tolist()],
        "fit_inner_steps": config.fit_inner_steps, "convergence": config.convergence,
        "estimators": estimators,
    }
