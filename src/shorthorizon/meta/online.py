"""Online meta-optimization (paper Section 3.3): adapt hyperparameters of the base
optimizer by SMD while training, then stop and decay.

Training has two halves. During the first ``adapt_steps`` steps, every ``interval``
training steps are preceded by ``meta_steps`` SMD meta-steps, each on a ``horizon``-step
lookahead from the current weights and optimizer state (:class:`~shorthorizon.hypergrad.Unroll`,
stochastic or deterministic). The meta-optimizer works in ``space``: by default the paper's,
learning rate and momentum of the heavy ball as ``{"log_lr_eff", "log_one_minus_momentum"}``
(:class:`~shorthorizon.optim.EffectiveSpace`); any optax optimizer's positive hyperparameters
in log space otherwise (:class:`~shorthorizon.optim.LogSpace`, e.g. AdamW's ``lr`` and
``weight_decay``). Its Adam state persists through training. At the midpoint adaptation
stops: every hyperparameter is frozen but ``lr``, which decays exponentially until the
space's effective learning rate (``lr / (1 - momentum)`` for the heavy ball, ``lr`` itself
otherwise) reaches ``final_lr_eff`` at the last step. ``meta_steps=0`` gives the hand-tuned
baseline: fixed hyperparameters, the same second half.

Each phase runs as a few jitted chunks (``lax.scan`` over intervals, each a ``lax.scan`` of
meta-steps then of training steps); between chunks the host checks for divergence and
reports progress. Curves (``loss``, ``lr`` and the space's hyperparameters per training step)
are scan outputs.

With a persistent estimator (PES, ``make_estimator("pes", particles=N, sigma=S)``, or NRES, ``"nres"``) there is
no lookahead: its particles train beside the main run (:meth:`Online.particles`), from its
initial weights, and every interval one estimate over their last ``interval`` steps drives one
meta-step. They persist rather than restart from the main run's weights at each window: PES
(NRES) is unbiased for the whole run only when each particle's perturbation sum ξ (its one
perturbation) covers the whole history of its weights; restarted particles would give ES over
a short lookahead, as biased as the lookahead itself.

    >>> from shorthorizon.tasks import mlp
    >>> from shorthorizon.hypergrad import Data
    >>> import jax, jax.numpy as jnp
    >>> data = Data(jax.random.uniform(jax.random.key(0), (64, 4, 4, 1)), jnp.arange(64) % 10)
    >>> online = Online(mlp((4, 4, 1), hidden=(8,)), batch_size=8, interval=2, meta_steps=3)
    >>> out = online.run(data, jax.random.key(1), {"lr": 0.1, "momentum": 0.9}, adapt_steps=8, decay_steps=8)
    >>> out.curves["lr"].shape, bool(out.diverged)
    ((16,), False)

AdamW's learning rate and weight decay instead (the decay half takes ``lr`` to ``final_lr_eff``):

    >>> from shorthorizon.optim import LogSpace, adamw
    >>> online = Online(mlp((4, 4, 1), hidden=(8,)), batch_size=8, interval=2, meta_steps=3, optimizer=adamw(),
    ...                 space=LogSpace((("lr", 1e-5, 1.0), ("weight_decay", 1e-6, 1.0))))
    >>> out = online.run(data, jax.random.key(1), {"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4}, 8, 8)
    >>> sorted(out.at_stop)
    ['lr', 'weight_decay']
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shorthorizon import optim
from shorthorizon.hypergrad import (Data, EstState, Estimator, TrainingRun, Truncated, Unroll, model_key,
                                    stochastic_batches, train)
from shorthorizon.meta.smd import EVALUATION_COST, SMD, SMDState
from shorthorizon.optim import OptState
from shorthorizon.tasks import ModelState, Params, Task


HEAVY_BALL = optim.momentum()  # one object, so that runs with the default share compiled code


class OnlineResult(NamedTuple):
    params: Params
    steps_done: int  # training steps taken (fewer than planned when the run diverged)
    at_stop: dict  # "lr" and the space's hyperparameters when adaptation stopped (or the run did)
    diverged: bool
    curves: dict  # per training step: "loss" (minibatch, before the step), "lr", the space's hyperparameters
    model_state: ModelState = ()  # the task's at the end (BatchNorm statistics)


class Online(NamedTuple):
    """Online SMD on ``task``; hashable, so it is a static argument of the jitted chunks."""

    task: Task
    lookahead: str | None = "stochastic"  # None: no lookahead (a persistent estimator's run, or no meta-steps)
    horizon: int = 5
    meta_steps: int = 100
    interval: int = 10
    meta_lr: float = 0.01
    clip: float = 10.0
    batch_size: int = 100
    final_lr_eff: float = 1e-4
    chunks: int = 10  # jitted pieces per phase: divergence checks and progress in between
    estimator: Estimator = Truncated(mode="forward")  # SMD's hypergradients (an unbound estimator object)
    optimizer: optim.Optimizer = HEAVY_BALL  # the base optimizer, without a schedule
    space: optim.EffectiveSpace | optim.LogSpace = optim.EffectiveSpace()  # what SMD adapts, how, within what

    def smd(self, params: Params, opt_state: OptState, data: Data, model_state: ModelState = ()) -> SMD:
        """SMD whose objective is the lookahead loss from ``params``, ``opt_state`` and ``model_state``."""
        unroll = Unroll(self.task, self.optimizer, self.horizon, self.batch_size, self.lookahead)

        def objective(raw, key):
            return unroll.objective(self.space.from_raw(raw), params, opt_state, data, key, model_state=model_state)

        return SMD(objective, self.meta_lr, self.clip, self.space.bounds(), self.estimator)

    @property
    def curve_names(self) -> tuple[str, ...]:
        """The hyperparameters recorded per step: ``lr`` (the decay half changes it) and the space's."""
        return ("lr",) + tuple(n for n in self.space.names if n != "lr")

    def interval_cost(self) -> float:
        """One adaptation interval in plain training steps: ``meta_steps`` meta-steps, each a
        hypergradient (the estimator's ``work``) of a ``horizon``-step lookahead and its one-batch
        objective, then ``interval`` training steps. With the paper's settings (100 meta-steps
        on 5-step lookaheads every 10 steps) an adaptation step costs ~ 200 plain ones: a bar
        that counted steps would read the first half's pace as the whole run's. A persistent
        estimator (:attr:`persistent`): its pairs train the interval's window twice each (+ and -)."""
        work = self.estimator.work(len(self.space.names))  # one estimate, in plain passes
        return ((work + 1) * self.interval if self.persistent
                else self.meta_steps * work * (self.horizon + EVALUATION_COST) + self.interval)

    def cost(self, adapt_steps: int, decay_steps: int) -> float:
        """The whole run in plain training steps, the sum of what :meth:`run` reports to
        ``progress``."""
        return adapt_steps // self.interval * self.interval_cost() + decay_steps

    @property
    def persistent(self) -> bool:
        """Whether meta-steps come from a persistent estimator's particles (PES, NRES) beside the
        run (no lookahead)."""
        return getattr(self.estimator, "persistent", False) and self.meta_steps > 0

    def particles(self, start: tuple[Params, OptState, ModelState], data: Data, steps: int):
        """The persistent estimator over the adaptation half: antithetic pairs, each training
        ``steps`` steps from ``start`` (the main run's weights, optimizer and model state) at the
        meta-hyperparameters ± their perturbation, one window of ``interval`` steps per
        meta-step; unbiased for the gradient of the smoothed mean training loss over the half.
        Costs 2 x particles training runs beside the main one."""
        params, opt_state, model_state = start
        inner = TrainingRun(self.task, self.optimizer, data, params, opt_state, steps, self.batch_size,
                            self.space.from_raw, model_state)
        return dataclasses.replace(self.estimator, inner=inner, truncation=self.interval, stagger=False)

    def run(self, data: Data, key: jax.Array, hyper: Mapping[str, float], adapt_steps: int,
            decay_steps: int, chance_loss: float = math.inf,
            progress: Callable[[int], None] | None = None) -> OnlineResult:
        """Train from fresh weights and the initial hyperparameters ``hyper`` (those of the
        optimizer it must be given and any others; :func:`check`); stop early (``diverged``)
        when a chunk's losses are not finite or, after the first chunk, their mean exceeds
        twice ``chance_loss`` (a diverging run's loss explodes; one near chance may yet learn).
        ``progress(c)`` gets the cost of each chunk done, in plain training steps (:meth:`cost`)."""
        if adapt_steps % self.interval:
            raise ValueError(f"adapt_steps={adapt_steps} is not a multiple of interval={self.interval}")
        check(self.optimizer, self.space, hyper)
        init_key, adapt_key, decay_key = jax.random.split(key, 3)
        params, model_state = self.task.init(init_key), self.task.init_state(init_key)
        opt_state = self.optimizer.init(params, hyper)
        # the values SMD starts from are those its space gives back (the heavy ball's lr and
        # momentum round-trip through the effective space, as every later meta-step's do)
        raw = self.space.to_raw(opt_state.hyper)
        opt_state = opt_state.with_hyper(self.space.from_raw(raw))
        smd_state = self.smd(params, opt_state, data).init(raw)
        start = (params, opt_state, model_state)
        est_state = (self.particles(start, data, adapt_steps).init(raw, jax.random.fold_in(init_key, 1))
                     if self.persistent else None)
        pieces: list[dict] = []

        def finished(curves, cost: float) -> bool:
            pieces.append(jax.device_get(curves))
            if progress is not None:
                progress(cost)
            losses = pieces[-1]["loss"]
            # the first chunk starts from an untrained net, whose loss is about chance; a net
            # that learns slowly (BatchNorm at init) can stay just above it for a few chunks
            return not np.all(np.isfinite(losses)) or (len(pieces) > 1 and float(np.mean(losses)) > 2 * chance_loss)

        diverged = False
        for i, intervals in enumerate(_split(adapt_steps // self.interval, self.chunks)):
            params, opt_state, model_state, smd_state, est_state, curves = _adapt(
                self, params, opt_state, model_state, smd_state, est_state, start, data,
                jax.random.fold_in(adapt_key, i), intervals, adapt_steps)
            if diverged := finished(curves, intervals * self.interval_cost()):
                break
        if not diverged:
            final_lr = self.final_lr_eff * opt_state.hyper["lr"] / self.space.lr_eff(opt_state.hyper)
            opt_state = opt_state._replace(hyper=decay_hyper(opt_state.hyper, adapt_steps, decay_steps, final_lr))
            for i, steps in enumerate(_split(decay_steps, self.chunks)):
                params, opt_state, model_state, curves = _decay(self, params, opt_state, model_state, data,
                                                                jax.random.fold_in(decay_key, i), steps)
                if diverged := finished(curves, steps):
                    break
        curves = {k: np.concatenate([p[k] for p in pieces]) for k in ("loss",) + self.curve_names}
        stop = min(adapt_steps, len(curves["lr"]))
        return OnlineResult(params, len(curves["loss"]), {k: _last_finite(curves[k][:stop]) for k in self.curve_names},
                            diverged, curves, model_state)


def adaptable(optimizer: optim.Optimizer, names) -> None:
    """Raise ValueError, naming the fix, unless ``optimizer`` can be adapted online in its
    hyperparameters ``names``: it has a learning rate ``lr`` (the decay half sets it) and no
    schedule, and it has each of ``names``."""
    own = optimizer.hyperparameters()
    if "lr" not in own or optimizer.schedule is not None:
        raise ValueError(f"optimizer {optimizer.name!r}: online runs need a learning rate named lr and no "
                         "schedule (the second half sets its own); build it as optim.adamw() is built")
    missing = [n for n in names if n not in own]
    if missing:
        raise ValueError(f"optimizer {optimizer.name!r} has no hyperparameter {missing} to adapt; "
                         f"it has {', '.join(sorted(own))}")


def check(optimizer: optim.Optimizer, space, hyper: Mapping[str, float]) -> None:
    """Raise ValueError, naming the fix, unless ``optimizer`` can be adapted online in ``space``
    (:func:`adaptable`) from the initial values ``hyper``: they give the space's hyperparameters,
    within the bounds of a :class:`~shorthorizon.optim.LogSpace`."""
    adaptable(optimizer, space.names)
    unset = [n for n in space.names if n not in hyper]
    if unset:
        raise ValueError(f"give the initial value of the adapted hyperparameters {unset}")
    for name, low, high in getattr(space, "ranges", ()):
        if not low <= hyper[name] <= high:
            raise ValueError(f"the initial {name} {hyper[name]:g} lies outside its bounds [{low:g}, {high:g}]")


def decay_hyper(hyper: dict, start: int, steps: int, final_lr: float) -> dict:
    """Hyperparameters of :func:`decay_schedule` for the second half: from ``hyper`` at step
    ``start``, ``lr`` decays exponentially to ``final_lr`` at step ``start + steps - 1``;
    the others stay fixed."""
    per_step = jnp.exp(jnp.log(final_lr / hyper["lr"]) / max(steps - 1, 1))
    return {**hyper, "decay_rate": per_step, "decay_start": jnp.asarray(start, per_step.dtype)}


def decay_schedule(hyper: dict, step: jax.Array) -> jax.Array:
    """α at global ``step`` of the second half (hyperparameters from :func:`decay_hyper`)."""
    return optim.exponential(1.0)(hyper, step - hyper["decay_start"])


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def _split(total: int, chunks: int) -> list[int]:
    """``total`` as at most ``chunks`` near-equal positive parts."""
    return [len(part) for part in np.array_split(np.arange(total), max(1, min(chunks, total))) if len(part)]


@partial(jax.jit, static_argnames=("online", "intervals", "adapt_steps"))
def _adapt(online: Online, params, opt_state: OptState, model_state, smd_state: SMDState, est_state: EstState | None,
           start: tuple[Params, OptState, ModelState], data: Data, key, intervals: int, adapt_steps: int):
    """``intervals`` x (``meta_steps`` SMD steps, or one step of the persistent particles started
    at ``start``, then ``interval`` training steps)."""

    def body(carry, k):
        params, opt_state, model_state, smd_state, est_state = carry
        meta_key, train_key = jax.random.split(k)
        smd = online.smd(params, opt_state, data, model_state)
        if online.persistent:
            _, grad, est_state = online.particles(start, data, adapt_steps).estimate(est_state, smd_state.raw,
                                                                                     meta_key)
            smd_state = smd.update(smd_state, grad)
        elif online.meta_steps:
            smd_state, _ = smd.run(smd_state, jax.random.split(meta_key, online.meta_steps))
        if online.meta_steps:
            opt_state = opt_state.with_hyper(online.space.from_raw(smd_state.raw))
        params, opt_state, model_state, losses = train(
            online.task, online.optimizer, params, opt_state,
            stochastic_batches(data, train_key, online.interval, online.batch_size), online.interval,
            model_state=model_state, key=model_key(train_key))
        hyper = {name: jnp.full(online.interval, opt_state.hyper[name]) for name in online.curve_names}
        return (params, opt_state, model_state, smd_state, est_state), {"loss": losses, **hyper}

    (params, opt_state, model_state, smd_state, est_state), curves = jax.lax.scan(
        body, (params, opt_state, model_state, smd_state, est_state), jax.random.split(key, intervals))
    return params, opt_state, model_state, smd_state, est_state, jax.tree.map(lambda a: a.reshape(-1), curves)


@partial(jax.jit, static_argnames=("online", "steps"))
def _decay(online: Online, params, opt_state: OptState, model_state, data: Data, key, steps: int):
    """``steps`` training steps under :func:`decay_schedule`."""
    t = opt_state.step + jnp.arange(steps)
    curves = {name: jnp.full(steps, opt_state.hyper[name]) for name in online.curve_names}
    curves["lr"] = decay_schedule(opt_state.hyper, t)
    params, opt_state, model_state, losses = train(online.task, online.optimizer._replace(schedule=decay_schedule),
                                                   params, opt_state,
                                                   stochastic_batches(data, key, steps, online.batch_size), steps,
                                                   model_state=model_state, key=model_key(key))
    return params, opt_state, model_state, {"loss": losses, **curves}
