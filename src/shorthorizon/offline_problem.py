"""The offline problem as one object, built once from a config: the data, the task, the
optimizer with its schedule, the warm start and the random streams, with what every command on
the problem does with them (``offline``, ``truncated``): a surface of schedules, full-horizon and
windowed SMD fits, long runs.

    >>> fit = OfflineFit.from_config(OfflineConfig(dataset="fashion-mnist"))
    >>> losses = fit.surface(surface_points(config), horizons=(100, 1000))
    >>> start = {"lr": 0.03, "decay_exponent": 1.0}
    >>> result = fit.fit(100, start, keys=jax.random.split(fit.keys["smd"], 50))
    >>> curves = fit.long_run({k: result[k][-1] for k in start}, horizon=1000)

Configs of commands built on the problem extend :class:`OfflineConfig` (its keys are theirs,
flat on the command line); :meth:`OfflineFit.from_config` reads only these keys, and the data,
task and warm start are built once per process for each problem, so runs that differ elsewhere
share them and their compiled programs.

This module is the edge that poses the problem (config keys and their rules, the optimizer
family's box, dataset resolution); the algorithms it composes live in :mod:`shorthorizon.meta`
(:mod:`~shorthorizon.meta.offline`, :mod:`~shorthorizon.meta.smd`), which reads no config and
prints nothing. It sits below ``experiments/`` and ``report/``, which both read it.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shorthorizon import optim
from shorthorizon.config import (ANY, DATA_DIR, FRACTION, NONNEGATIVE, POSITIVE, SEED, Rule, check, key,
                                 low_high, one_of, optimizer_hyper, optional)
from shorthorizon.data import splits
from shorthorizon.hypergrad import Data, Estimator, Truncated, batches
from shorthorizon.meta.offline import (Offline, Problem, fit_chunk, long_run, meta_objective, start_loss, surface,
                                       warm_start, windowed_chunk, windowed_init)
from shorthorizon.meta.search import log_coordinate
from shorthorizon.meta.smd import EVALUATION_COST
from shorthorizon.tasks import make_task, task_factory

DATASET = Rule(lambda v: splits.check_name(v) is None, "a dataset name")
TASK = Rule(lambda v: task_factory(v) is not None, "a task name or package.module:factory")


@dataclass(frozen=True)
class OfflineConfig:
    """The keys that pose the offline problem (defaults: the paper's, MLP 784-100-100-10,
    batch 100) and the settings its fits and surfaces share."""

    dataset: str = key("auto", DATASET)  # "auto": MNIST where present, else Fashion-MNIST
    data_dir: str = key("", DATA_DIR)  # extra folder searched first for the dataset ("" = the usual places)
    verify: bool = key(True, ANY)  # check published checksums (off for tiny fake test datasets)
    seed: int = key(0, SEED)
    seeds: int = key(1, POSITIVE)  # independent repetitions: seed k is the run with seed + k (summary: intervals)
    task: str = key("mlp", TASK)  # or package.module:factory (tasks.FACTORY)
    batch_size: int = key(100, POSITIVE)
    warm_start_steps: int = key(50, NONNEGATIVE)
    warm_start_lr: float = key(0.0, NONNEGATIVE)  # 0: the optimizer family's
    optimizer: str = key("momentum", one_of(optim.OPTIMIZERS))  # the base optimizer (momentum: the paper's)
    momentum: float = key(0.9, FRACTION)  # the heavy ball's momentum; Adam's b1
    hyper: tuple[str, ...] = key((), ANY)  # its other hyperparameters as NAME=VALUE, e.g. weight_decay=1e-4
    schedule: str = key("inverse-time", one_of(optim.SCHEDULES))  # the lr's schedule family (optim.SCHEDULES)
    decay_steps: float = key(5000.0, POSITIVE)  # inverse-time: lr_t = lr0 (1 + t / decay_steps)^(-decay_exponent)
    adapt: tuple[str, ...] = key((), ANY)  # more hyperparameters fitted (as constants): NAME or NAME:LOW:HIGH
    eval_batches: int = key(600, POSITIVE)  # fixed batches of the meta-objective; 600 x 100 = one epoch
    lr0_range: tuple[float, ...] = key((), optional(low_high(POSITIVE)))  # the lr's box; empty: the optimizer family's
    decay_exponent_range: tuple[float, ...] = key((1e-2, 10**2.3), low_high(POSITIVE))
    surface_samples: int = key(2500, POSITIVE)
    surface_chunk: int = key(125, POSITIVE)  # samples per unit of work
    surface_batch: int = key(16, POSITIVE)  # samples vmapped together (benchmarks/surface_speed.py)
    meta_lr: float = key(0.01, POSITIVE)  # Adam step in log space (SMD keeps values in the box)
    meta_chunk: int = key(50, POSITIVE)  # meta-steps per compiled scan (progress granularity)
    curve_points: int = key(100, POSITIVE)  # measurements along each long run
    zoom_width: float = key(0.3, POSITIVE)  # a zoom's box: its center +- this many decades; a widened bound moves as far
    widen: int = key(2, NONNEGATIVE)  # rounds of moving out a bound that a fit lands at and searching again

    def smd_settings(self) -> dict:
        """How SMD fits this config's problem: :meth:`OfflineFit.from_config`'s ``estimator`` and
        ``meta_lr`` (here the defaults, forward mode and Adam at ``meta_lr``); commands with keys
        of their own for them override it."""
        return {}


def validate_problem(config: OfflineConfig, long_horizon: int | None = None) -> None:
    """Raise ValueError naming the key for any value of :class:`OfflineConfig`'s keys that a run
    cannot use (before any work: nothing is loaded): each key's rule (:func:`check`), then the
    constraints between keys (a key the chosen schedule or optimizer does not read:
    :func:`_refuse_unread`) and, where given, the run's ``long_horizon`` (its long runs' steps)."""
    check(config)
    config = with_family(config)
    optimizer_hyper(config, config.warm_start_lr)  # names a wrong optimizer or hyperparameter
    own = set(optim.make_optimizer(config.optimizer).hyperparameters()) | set(_schedule(config, 1).defaults)
    always = [name for name, *_ in space(dataclasses.replace(config, adapt=())).ranges]  # fitted without adapt
    names = [*always, *(entry.split(":")[0] for entry in config.adapt)]  # before their bounds: a name it lacks first
    if set(names) - own or len(set(names)) != len(names):
        raise ValueError(f"config key 'adapt' must name distinct hyperparameters of optimizer {config.optimizer!r} "
                         f"or schedule {config.schedule!r} ({', '.join(sorted(own - set(always)))}; "
                         f"{' and '.join(always)} always fitted), got {','.join(config.adapt)}")
    try:
        space(config)
    except ValueError as err:
        raise ValueError(f"config key 'adapt': {err}") from None
    _refuse_unread(config)
    if config.surface_samples % config.surface_chunk:
        raise ValueError(f"config key 'surface_chunk' must divide surface_samples={config.surface_samples}")
    if long_horizon is not None and long_horizon % config.curve_points:
        raise ValueError(f"config key 'curve_points' must divide the long runs' horizon {long_horizon}")


# Config keys that set what only some schedule or optimizer families have (key -> that thing: a
# hyperparameter or shape field of the schedule, a hyperparameter of the optimizer). Under another
# family nothing reads the key, so a value set there would be ignored unsaid.
FAMILY_KEYS = {"momentum": "momentum", "decay_steps": "decay_steps", "decay_exponent_range": "decay_exponent",
               "init_decay_exponent": "decay_exponent"}


def _families(name: str) -> tuple[str, list[str]]:
    """Which config key chooses what has ``name`` (``schedule`` or ``optimizer``) and the
    families that have it."""
    schedules = [s for s, cls in optim.SCHEDULES.items()
                 if name in cls.hyperparameters or name in {f.name for f in dataclasses.fields(cls)}]
    if schedules:
        return "schedule", schedules
    return "optimizer", [o for o in optim.OPTIMIZERS if name in optim.make_optimizer(o).hyperparameters()]


def _refuse_unread(config: OfflineConfig) -> None:
    """A ValueError naming the first :data:`FAMILY_KEYS` key that ``config``'s schedule or
    optimizer does not read, where its value is not its class default (which every preset keeps:
    the preset a config came from is not known here, and a user who changes only the family
    must not be refused for a value they never set)."""
    default = type(config)()
    for key, name in FAMILY_KEYS.items():
        if not hasattr(config, key) or getattr(config, key) == getattr(default, key):
            continue
        chooser, families = _families(name)
        if getattr(config, chooser) not in families:
            raise ValueError(f"config key {key!r} is not read: {chooser} {getattr(config, chooser)!r} has no "
                             f"{name}; drop it, or set {chooser} to one that has ({', '.join(families)})")


def refuse_fd(key: str, names: Sequence[str], choices: str) -> None:
    """A ValueError naming config ``key`` where its estimator ``names`` hold fd: central
    differences need float64, and the offline problem trains in float32."""
    if "fd" in names:
        raise ValueError(f"config key {key!r}: fd (central differences) needs float64, and the offline problem trains "
                         f"in float32 (`shorthorizon unroll --estimator fd --x64` computes one); choose {choices}")


PREFERRED = ("mnist", "fashion-mnist")  # the datasets of dataset="auto", the first one present


def ready(config: OfflineConfig, fetch: bool = False) -> str | None:
    """Why ``config``'s problem cannot be posed here (its dataset, ``auto``: any of
    :data:`PREFERRED`, missing from its ``data_dir`` and the usual places, after fetching one if
    asked), or None: the ``ready`` of the commands built on it."""
    wanted = PREFERRED if config.dataset == splits.AUTO else (config.dataset,)
    return splits.ready(wanted, fetch, config.data_dir or None)


def resolve_dataset(config: OfflineConfig) -> OfflineConfig:
    """``config`` with ``dataset="auto"`` resolved to the first of :data:`PREFERRED` present;
    raises, before any work, where the dataset named is unknown or not all present."""
    return dataclasses.replace(config, dataset=splits.resolve(config.dataset, PREFERRED, config.data_dir or None))


# the keys that pose the problem: runs that differ only elsewhere share its data, warm start and
# compiled programs (a new Task object would compile every program anew)
PROBLEM = ("dataset", "data_dir", "verify", "seed", "task", "batch_size", "warm_start_steps", "warm_start_lr",
           "optimizer", "momentum", "hyper", "schedule", "decay_steps", "eval_batches")
STREAMS = ("warm_start", "eval_set", "surface", "smd", "long_run")


# The optimizer families' boxes of the schedule's lr and their warm-start lr: the heavy ball's
# (and SGD's) are the paper's; Adam's step is ~lr per coordinate whatever the gradient's scale,
# so its useful lr lies two decades lower. AdamW's weight decay is optax's default unless given.
FAMILIES = {"momentum": ((1e-3, 10**-0.3), 0.1), "sgd": ((1e-3, 10**-0.3), 0.1),
            "adam": ((1e-5, 1e-2), 1e-3), "adamw": ((1e-5, 1e-2), 1e-3)}
ADAPT_RANGES = {"weight_decay": (1e-6, 1.0), "momentum": (0.0, 0.999)}  # bounds of adapt entries without them


def with_family(config: OfflineConfig) -> OfflineConfig:
    """``config`` with what it leaves open set as its optimizer family's: the lr's box, the
    warm-start lr, and AdamW's weight decay (optax's default, read off ``optax.adamw``)."""
    box, warm = FAMILIES.get(config.optimizer, FAMILIES["momentum"])
    hyper = config.hyper
    if config.optimizer == "adamw" and not any(h.partition("=")[0] == "weight_decay" for h in hyper):
        default = inspect.signature(optax.adamw).parameters["weight_decay"].default
        hyper = (*hyper, f"weight_decay={default!r}")
    return dataclasses.replace(config, lr0_range=config.lr0_range or box, warm_start_lr=config.warm_start_lr or warm,
                               hyper=hyper)


def _schedule(config: OfflineConfig, length: int) -> optim.Schedule:
    """The config's schedule laid over ``length`` steps (``decay_steps``: the families that have it)."""
    fields = {f.name for f in dataclasses.fields(optim.SCHEDULES[config.schedule])}
    return optim.make_schedule(config.schedule, length,
                               **({"decay_steps": config.decay_steps} if "decay_steps" in fields else {}))


def space(config: OfflineConfig) -> optim.LogSpace:
    """The fitted hyperparameters and their box (SMD's space; the surface's samples): the lr, the
    decay exponent of the inverse-time schedule (the paper's fit), then the ``adapt`` entries
    (the optimizer's hyperparameters or the schedule's shape, as constants)."""
    config = with_family(config)
    fitted = (("lr", *config.lr0_range),) + (
        (("decay_exponent", *config.decay_exponent_range),) if config.schedule == "inverse-time" else ())
    boxes = {**ADAPT_RANGES, **{n: p.box for n, p in _schedule(config, 1).hyperparameters.items()}}
    return optim.LogSpace(fitted + optim.log_space(config.adapt, boxes, limits(config)).ranges)


def limits(config: OfflineConfig) -> dict:
    """The values each hyperparameter ``config`` may fit can take (name -> :class:`~shorthorizon.optim.Limits`;
    a name it lacks: any positive number): the optimizers' and its schedule's."""
    return {**optim.LIMITS, **{n: p.limits for n, p in _schedule(config, 1).hyperparameters.items()}}


def _log_uniform(rng: np.random.Generator, space: optim.LogSpace, samples: int, box=None) -> dict:
    """``samples`` values of each of ``space``'s hyperparameters, log-uniform within ``box``
    (name -> (low, high); default the space's ranges) in its coordinate (log(1 − μ) for a momentum)."""
    points = {}
    for name, low, high in space.ranges:
        low, high = (box or {}).get(name, (low, high))
        flip = name in optim.COMPLEMENTED
        value = np.exp(rng.uniform(*np.log((1 - high, 1 - low) if flip else (low, high)), samples))
        points[name] = (1 - value if flip else value).astype(np.float32)
    return points


def surface_points(config: OfflineConfig, chunk: int | None = None) -> dict:
    """The surface's samples of the fitted hyperparameters (:func:`space`), log-uniform in their
    box; with ``chunk``, that chunk's ``surface_chunk`` samples alone (a unit's)."""
    points = _log_uniform(np.random.default_rng(config.seed), space(config), config.surface_samples)
    if chunk is None:
        return points
    return {k: v[chunk * config.surface_chunk:(chunk + 1) * config.surface_chunk] for k, v in points.items()}


def zoom_points(config: OfflineConfig, horizon: int, center: dict, width: float, samples: int) -> dict:
    """``samples`` points around ``center`` for ``horizon``: the first is ``center`` itself, the
    others log-uniform within ``width`` decades of it on each axis, inside the box (:func:`space`)."""
    fitted = space(config)
    rng = np.random.default_rng([config.seed, horizon])
    box = {}
    for name, low, high in fitted.ranges:
        log, value = np.sort(log_coordinate(name, (low, high))), log_coordinate(name, center[name])
        near = np.clip(value + np.array([-width, width]), *log)
        box[name] = tuple(1 - 10 ** near[::-1] if name in optim.COMPLEMENTED else 10 ** near)
    points = _log_uniform(rng, fitted, samples - 1, box)
    return {k: np.concatenate([[center[k]], v]).astype(np.float32) for k, v in points.items()}


def optimizer_text(config: dict) -> str:
    """The base optimizer as the report names it, from a stored config (older ones: the heavy
    ball): its fixed hyperparameters (a fitted one, in ``adapt``, is not fixed)."""
    name, fitted = config.get("optimizer", "momentum"), {entry.split(":")[0] for entry in config.get("adapt", ())}
    parts = [] if name == "momentum" else [f"optimizer {name}"]
    if "momentum" in optim.make_optimizer(name).hyperparameters() and "momentum" not in fitted:
        parts.append(f"momentum {config['momentum']:g}" + ("" if name == "momentum" else " (b1)"))
    return ", ".join(parts + [h for h in config.get("hyper", ()) if h.split("=")[0] not in fitted])


def lr0_named(values: dict) -> dict:
    """``values`` with the schedule's ``lr`` called ``lr0``, as the paper (and the offline and
    truncated commands' stored results) call it."""
    return {("lr0" if k == "lr" else k): v for k, v in values.items()}


def best(loss: np.ndarray) -> np.ndarray:
    """Indices of ``loss`` from the lowest, the non-finite (diverged) last."""
    return np.argsort(np.where(np.isfinite(loss), loss, np.inf), kind="stable")


@lru_cache(maxsize=4)
def _static(task: str, input_shape: tuple[int, ...], num_classes: int, optimizer: str, schedule: optim.Schedule,
            batch_size: int) -> Offline:
    """One task and optimizer object per process and kind: problems that differ in seed or data
    alone (seeds of one run) share every compiled program."""
    return Offline(make_task(task, input_shape, num_classes), optim.make_optimizer(optimizer, schedule), batch_size)


@lru_cache(maxsize=4)
def _build(config: OfflineConfig) -> "OfflineFit":
    """The problem of ``config`` (its :data:`PROBLEM` keys alone), built once per process."""
    ds, train, test = splits.load(config.dataset, config.data_dir or None, verify=config.verify)
    # the warm start runs the optimizer without its schedule: the schedule's length is set later (over)
    offline = _static(config.task, tuple(ds.train_x.shape[1:]), ds.num_classes, config.optimizer,
                      _schedule(config, 1), config.batch_size)
    base = jax.random.PRNGKey(config.seed)
    keys = {name: jax.random.fold_in(base, i) for i, name in enumerate(STREAMS)}
    eval_set = batches(train, keys["eval_set"], config.eval_batches, config.batch_size, replace=False)
    problem = warm_start(offline, train, keys["warm_start"], eval_set, config.warm_start_steps,
                         optimizer_hyper(with_family(config), with_family(config).warm_start_lr))
    return OfflineFit(offline, problem, test, keys, config)


SMD_ESTIMATOR = Truncated(mode="forward")  # a full-horizon fit's hypergradients, unless a command's config names one


class OfflineFit(NamedTuple):
    """The offline problem of a config (:meth:`from_config`): :class:`Offline` (static),
    :class:`Problem` (arrays), the test split and the named random streams."""

    offline: Offline
    problem: Problem
    test: Data
    keys: dict
    config: OfflineConfig

    @classmethod
    def from_config(cls, config: OfflineConfig, estimator: Estimator = SMD_ESTIMATOR,
                    meta_lr: float | tuple[float, int] | None = None, length: int | None = None) -> "OfflineFit":
        """The problem ``config`` poses (any config that extends :class:`OfflineConfig`), with
        SMD's space (:func:`space`: the fitted hyperparameters in their box), its ``meta_lr`` (or
        ``meta_lr``: a number or ``(peak, steps)``, cosine-decayed), ``estimator`` for the
        full-horizon fits, and the schedule laid over ``length`` steps (:meth:`over`). The config
        is checked first (:func:`validate_problem`, the commands' check, less their long runs'):
        a value no run can use is the ValueError naming its key that the command line gives."""
        validate_problem(config)
        built = _build(OfflineConfig(**{k: getattr(config, k) for k in PROBLEM}))
        offline = built.offline._replace(space=space(config), estimator=estimator,
                                         meta_lr=config.meta_lr if meta_lr is None else meta_lr)
        fit = built._replace(offline=offline, config=with_family(OfflineConfig(
            **{f.name: getattr(config, f.name) for f in dataclasses.fields(OfflineConfig)})))
        if length is None and offline.optimizer.schedule.depends_on_length:
            raise ValueError(f"schedule {config.schedule!r} is laid over a run's length: give the problem its length")
        return fit if length is None else fit.over(length)

    def over(self, length: int) -> "OfflineFit":
        """This problem with its schedule laid over ``length`` steps (a length-free schedule,
        inverse-time or constant, is unchanged)."""
        optimizer = self.offline.optimizer
        return self._replace(offline=self.offline._replace(
            optimizer=optimizer._replace(schedule=optimizer.schedule.over(length))))

    def hyper(self, values: dict) -> dict:
        """Hyperparameter values (name -> number) in the weights' precision."""
        dtype = jax.tree.leaves(self.problem.params)[0].dtype
        return {k: jnp.asarray(v, dtype) for k, v in values.items()}

    def raw(self, values: dict) -> dict:
        """SMD's coordinates of the space's hyperparameters, strongly typed (so every chunk of
        meta-steps reuses one compiled program)."""
        return self.offline.space.to_raw({k: jnp.asarray(values[k], float) for k in self.offline.space.names})

    def surface(self, points: dict, horizons: tuple[int, ...]) -> jax.Array:
        """The meta-objective at each of ``horizons`` (rows) of each point (columns; ``points``:
        name -> values), on the batches of the surface stream (those every fit is judged on)."""
        return surface(self.offline, self.problem, points, self.keys["surface"], horizons, self.config.surface_batch)

    def objective(self, hyper: dict, horizon: int, key: str = "surface") -> jax.Array:
        """The meta-objective at ``horizon`` on the batches of stream ``key``."""
        return meta_objective(self.offline, self.problem, hyper, self.keys[key], horizon)

    def _chunks(self, keys: jax.Array, advance, progress=None):
        """``advance(chunk)`` over the meta-steps' ``keys``, ``meta_chunk`` at a time, calling
        ``progress(n)`` after each chunk with the meta-steps it finished (the edge's progress bar);
        the per-chunk outputs."""
        out = []
        for first in range(0, len(keys), self.config.meta_chunk):
            chunk = keys[first:first + self.config.meta_chunk]
            out.append(jax.block_until_ready(advance(chunk)))  # progress means finished meta-steps
            if progress is not None:
                progress(len(chunk))
        return out

    def fit(self, horizon: int, start: dict, keys: jax.Array, progress=None) -> dict:
        """Full-horizon SMD of the loss at ``horizon`` from ``start`` (name -> value), one
        meta-step per key (``progress(n)``: called as meta-steps finish): the trajectory of each
        of the space's hyperparameters, the objective per meta-step and the fit's meta-objective
        on the surface's batches, and the wall time."""
        begin = time.perf_counter()
        state = self.offline.smd(self.problem, horizon).init(self.raw(start))
        objectives, raws = [jnp.zeros(0)], [jax.tree.map(lambda v: v[None][:0], state.raw)]

        def advance(chunk):
            nonlocal state
            state, (objective, _, raw) = fit_chunk(self.offline, self.problem, state, chunk, horizon)
            raws.append(raw)
            return objective

        objectives += self._chunks(keys, advance, progress)
        raw = {k: jnp.concatenate([*(r[k] for r in raws), state.raw[k][None]]) for k in state.raw}
        hyper = self.offline.space.from_raw(raw)
        final = self.objective(self.offline.space.from_raw(state.raw), horizon)
        return {**hyper, "objective": jnp.concatenate(objectives), "meta_objective": final,
                "wall_time_s": time.perf_counter() - begin}

    def windowed_budget(self, estimator, horizon: int, inner_steps: int) -> tuple[int, int]:
        """(meta-steps, inner steps) of a windowed fit within ``inner_steps``: as many whole
        meta-steps as the budget holds after the particles' staggering."""
        est = self.offline.windowed(self.problem, estimator, horizon)
        steps = max(1, (inner_steps - est.init_cost) // est.cost)
        return steps, est.init_cost + steps * est.cost

    def windowed_fit(self, estimator, horizon: int, start: dict, steps: int, key: jax.Array, progress=None) -> dict:
        """``steps`` meta-steps of the windowed ``estimator`` over runs of ``horizon`` steps from
        ``start``, Adam's step cosine-decayed from ``meta_lr`` over the fit: the trajectory,
        window losses, the fraction of hypergradient coordinates the clip bound, and the wall time."""
        offline = self.offline._replace(meta_lr=(self.config.meta_lr, steps))
        init_key, key = jax.random.split(key)
        begin = time.perf_counter()
        carry = windowed_init(offline, self.problem, estimator, self.raw(start), init_key, horizon)

        def advance(chunk):
            nonlocal carry
            carry, out = windowed_chunk(offline, self.problem, estimator, *carry, chunk, horizon)
            return out

        history = self._chunks(jax.random.split(key, steps), advance, progress)
        wall = time.perf_counter() - begin
        state = carry[0]
        loss, grads, raws = (jax.tree.map(lambda *a: jnp.concatenate(a), *parts) for parts in zip(*history))
        hyper = offline.space.from_raw({k: jnp.concatenate([raws[k], state.raw[k][None]]) for k in raws})
        clipped = np.mean([np.mean(np.abs(np.asarray(g)) > offline.clip) for g in grads.values()])
        return {**hyper, "window_loss": loss, "clipped_fraction": clipped, "wall_time_s": wall}

    def long_run(self, values: dict, horizon: int) -> dict:
        """Train ``horizon`` steps with the hyperparameter ``values``: training-loss and
        test-error curves at ``curve_points`` points."""
        return long_run(self.offline, self.problem, self.hyper(values), self.keys["long_run"], self.test, horizon,
                        self.config.curve_points)

    def start_loss(self) -> float:
        """The warm start's training loss on the evaluation batches (the long runs' first point)."""
        return float(start_loss(self.offline, self.problem, self.keys["long_run"]))

    def speed(self, horizon: int, start: dict, seconds: float = 0.5) -> tuple[float, float]:
        """``(plain training steps per second, seconds to compile one program)``, timed on
        repeated meta-objectives at ``horizon`` for about ``seconds``; the compile time is the
        first call's excess over a compiled call (near 0 where JAX's persistent cache held the
        program). Each call is the unroll and its objective on ``eval_batches`` batches, counted
        in plain steps as every cost here is (:data:`EVALUATION_COST`): at T = 100 the paper's
        600 batches are most of the call."""
        hyper = self.hyper(start)
        begin = time.perf_counter()
        self.objective(hyper, horizon, "long_run").block_until_ready()
        first = time.perf_counter() - begin
        calls, begin = 0, time.perf_counter()
        while time.perf_counter() - begin < seconds:
            self.objective(hyper, horizon, "long_run").block_until_ready()
            calls += 1
        call = (time.perf_counter() - begin) / calls
        return (horizon + self.config.eval_batches * EVALUATION_COST) / call, max(first - call, 0.0)
