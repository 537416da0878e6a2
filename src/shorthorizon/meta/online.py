"""Online meta-optimization (paper Section 3.3): adapt learning rate and momentum by SMD
while training, then stop and decay.

Training has two halves. During the first ``adapt_steps`` steps, every ``interval``
training steps are preceded by ``meta_steps`` SMD meta-steps, each on a ``horizon``-step
lookahead from the current weights and velocity (:class:`~shorthorizon.hypergrad.Unroll`,
stochastic or deterministic). The meta-optimizer works on
``{"log_lr_eff", "log_one_minus_momentum"}`` (:func:`~shorthorizon.optim.to_effective`)
and its Adam state persists through training. At the midpoint adaptation stops: momentum
is frozen and the effective learning rate ``lr / (1 - momentum)`` decays exponentially to
``final_lr_eff`` at the last step. ``meta_steps=0`` gives the hand-tuned baseline: fixed
hyperparameters, the same second half.

Each phase runs as a few jitted chunks (``lax.scan`` over intervals, each a ``lax.scan`` of
meta-steps then of training steps); between chunks the host checks for divergence and
reports progress. Curves (``loss``, ``lr``, ``momentum`` per training step) are scan outputs.

With ``estimator=("pes", particles, sigma)`` there is no lookahead: PES particles train beside
the main run (:meth:`Online.particles`), from its initial weights, and every interval one PES
estimate over their last ``interval`` steps drives one meta-step. They persist rather than
restart from the main run's weights at each window: PES is unbiased for the whole run only
when each particle's perturbation sum ξ covers the whole history of its weights; restarted
particles would give ES over a short lookahead, as biased as the lookahead itself.

    >>> from shorthorizon.tasks import mlp
    >>> from shorthorizon.hypergrad import Data
    >>> import jax, jax.numpy as jnp
    >>> data = Data(jax.random.uniform(jax.random.key(0), (64, 4, 4, 1)), jnp.arange(64) % 10)
    >>> online = Online(mlp((4, 4, 1), hidden=(8,)), batch_size=8, interval=2, meta_steps=3)
    >>> out = online.run(data, jax.random.key(1), lr=0.1, momentum=0.9, adapt_steps=8, decay_steps=8)
    >>> out.curves["lr"].shape, bool(out.diverged)
    ((16,), False)
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shorthorizon import optim
from shorthorizon.hypergrad import ES, Data, EstState, TrainingRun, Unroll, model_key, stochastic_batches, train
from shorthorizon.meta.smd import EVALUATION_COST, SMD, SMDState
from shorthorizon.optim import OptState, from_effective, to_effective
from shorthorizon.tasks import ModelState, Params, Task


class OnlineResult(NamedTuple):
    params: Params
    steps_done: int  # training steps taken (fewer than planned when the run diverged)
    lr_at_stop: float  # α when adaptation stopped (or the run did)
    momentum_at_stop: float
    diverged: bool
    curves: dict  # per training step: "loss" (minibatch, before the step), "lr", "momentum"
    model_state: ModelState = ()  # the task's at the end (BatchNorm statistics)


class Online(NamedTuple):
    """Online SMD on ``task``; hashable, so it is a static argument of the jitted chunks."""

    task: Task
    lookahead: str = "stochastic"
    horizon: int = 5
    meta_steps: int = 100
    interval: int = 10
    meta_lr: float = 0.01
    clip: float = 10.0
    batch_size: int = 100
    lr_eff_bounds: tuple[float, float] = (1e-4, 10.0)
    one_minus_momentum_bounds: tuple[float, float] = (1e-4, 1.0)
    final_lr_eff: float = 1e-4
    chunks: int = 10  # jitted pieces per phase: divergence checks and progress in between
    estimator: tuple[str, int, float] = ("forward", 1, 0.01)  # SMD's: (name, particles, sigma)

    def smd(self, params: Params, opt_state: OptState, data: Data, model_state: ModelState = ()) -> SMD:
        """SMD whose objective is the lookahead loss from ``params``, ``opt_state`` and ``model_state``."""
        unroll = Unroll(self.task, optim.momentum(), self.horizon, self.batch_size, self.lookahead)

        def objective(raw, key):
            return unroll.objective(from_effective(raw), params, opt_state, data, key, model_state=model_state)

        name, particles, sigma = self.estimator
        return SMD(objective, self.meta_lr, self.clip, self.bounds(), name, particles, sigma)

    def bounds(self) -> dict:
        """SMD's bounds on the adapted hyperparameters, in its log space."""
        return {"log_lr_eff": tuple(map(math.log, self.lr_eff_bounds)),
                "log_one_minus_momentum": tuple(map(math.log, self.one_minus_momentum_bounds))}

    def interval_cost(self) -> float:
        """One adaptation interval in plain training steps: ``meta_steps`` meta-steps, each a
        hypergradient (:meth:`SMD.step_cost`) of a ``horizon``-step lookahead and its one-batch
        objective, then ``interval`` training steps. With the paper's settings (100 meta-steps
        on 5-step lookaheads every 10 steps) an adaptation step costs ~ 200 plain ones: a bar
        that counted steps would read the first half's pace as the whole run's. PES
        (:attr:`persistent`): its pairs train the interval's window twice each (+ and -)."""
        name, particles, sigma = self.estimator
        if self.persistent:
            return (2 * particles + 1) * self.interval
        meta_step = SMD(estimator=name, particles=particles, sigma=sigma).step_cost(len(self.bounds()))
        return self.meta_steps * meta_step * (self.horizon + EVALUATION_COST) + self.interval

    def cost(self, adapt_steps: int, decay_steps: int) -> float:
        """The whole run in plain training steps, the sum of what :meth:`run` reports to
        ``progress``."""
        return adapt_steps // self.interval * self.interval_cost() + decay_steps

    @property
    def persistent(self) -> bool:
        """Whether meta-steps come from PES particles beside the run (no lookahead)."""
        return self.estimator[0] == "pes" and self.meta_steps > 0

    def particles(self, start: tuple[Params, OptState, ModelState], data: Data, steps: int) -> ES:
        """PES over the adaptation half: antithetic pairs, each training ``steps`` steps from
        ``start`` (the main run's weights, optimizer and model state) at the meta-hyperparameters ± their
        accumulated perturbation, one window of ``interval`` steps per meta-step; unbiased for
        the gradient of the smoothed mean training loss over the half. Costs 2 x particles
        training runs beside the main one."""
        _, particles, sigma = self.estimator
        params, opt_state, model_state = start
        inner = TrainingRun(self.task, optim.momentum(), data, params, opt_state, steps, self.batch_size,
                            from_effective, model_state)
        return ES(inner, self.interval, particles, sigma, persistent=True, stagger=False)

    def run(self, data: Data, key: jax.Array, lr: float, momentum: float, adapt_steps: int,
            decay_steps: int, chance_loss: float = math.inf,
            progress: Callable[[int], None] | None = None) -> OnlineResult:
        """Train from fresh weights; stop early (``diverged``) when a chunk's losses are not
        finite or, after the first chunk, their mean exceeds ``chance_loss``. ``progress(c)``
        gets the cost of each chunk done, in plain training steps (:meth:`cost`)."""
        if adapt_steps % self.interval:
            raise ValueError(f"adapt_steps={adapt_steps} is not a multiple of interval={self.interval}")
        init_key, adapt_key, decay_key = jax.random.split(key, 3)
        params, model_state = self.task.init(init_key), self.task.init_state(init_key)
        dtype = jax.tree.leaves(params)[0].dtype
        raw = to_effective(jnp.asarray(lr, dtype), jnp.asarray(momentum, dtype))
        opt_state = optim.momentum().init(params, from_effective(raw))
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
            # the first chunk starts from an untrained net, whose loss is about chance
            return not np.all(np.isfinite(losses)) or (len(pieces) > 1 and float(np.mean(losses)) > chance_loss)

        diverged = False
        for i, intervals in enumerate(_split(adapt_steps // self.interval, self.chunks)):
            params, opt_state, model_state, smd_state, est_state, curves = _adapt(
                self, params, opt_state, model_state, smd_state, est_state, start, data,
                jax.random.fold_in(adapt_key, i), intervals, adapt_steps)
            if diverged := finished(curves, intervals * self.interval_cost()):
                break
        if not diverged:
            opt_state = opt_state._replace(hyper=decay_hyper(
                opt_state.hyper, adapt_steps, decay_steps, self.final_lr_eff))
            for i, steps in enumerate(_split(decay_steps, self.chunks)):
                params, opt_state, model_state, curves = _decay(self, params, opt_state, model_state, data,
                                                                jax.random.fold_in(decay_key, i), steps)
                if diverged := finished(curves, steps):
                    break
        curves = {k: np.concatenate([p[k] for p in pieces]) for k in ("loss", "lr", "momentum")}
        at_stop = min(adapt_steps, len(curves["lr"])) - 1
        return OnlineResult(params, len(curves["loss"]), _last_finite(curves["lr"][: at_stop + 1]),
                            _last_finite(curves["momentum"][: at_stop + 1]), diverged, curves, model_state)


def decay_hyper(hyper: dict, start: int, steps: int, final_lr_eff: float) -> dict:
    """Hyperparameters of :func:`decay_schedule` for the second half: from ``hyper`` at step
    ``start``, the effective lr decays exponentially to ``final_lr_eff`` at step
    ``start + steps - 1``; momentum stays fixed."""
    lr_eff = hyper["lr"] / (1 - hyper["momentum"])
    per_step = jnp.exp(jnp.log(final_lr_eff / lr_eff) / max(steps - 1, 1))
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
    """``intervals`` x (``meta_steps`` SMD steps, or one PES step from the particles started
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
            opt_state = opt_state._replace(hyper=from_effective(smd_state.raw))
        params, opt_state, model_state, losses = train(
            online.task, optim.momentum(), params, opt_state,
            stochastic_batches(data, train_key, online.interval, online.batch_size), online.interval,
            model_state=model_state, key=model_key(train_key))
        hyper = {name: jnp.full(online.interval, v) for name, v in opt_state.hyper.items()}
        return (params, opt_state, model_state, smd_state, est_state), {"loss": losses, **hyper}

    (params, opt_state, model_state, smd_state, est_state), curves = jax.lax.scan(
        body, (params, opt_state, model_state, smd_state, est_state), jax.random.split(key, intervals))
    return params, opt_state, model_state, smd_state, est_state, jax.tree.map(lambda a: a.reshape(-1), curves)


@partial(jax.jit, static_argnames=("online", "steps"))
def _decay(online: Online, params, opt_state: OptState, model_state, data: Data, key, steps: int):
    """``steps`` training steps under :func:`decay_schedule`."""
    t = opt_state.step + jnp.arange(steps)
    curves = {"lr": decay_schedule(opt_state.hyper, t), "momentum": jnp.full(steps, opt_state.hyper["momentum"])}
    params, opt_state, model_state, losses = train(online.task, optim.momentum(decay_schedule), params, opt_state,
                                                   stochastic_batches(data, key, steps, online.batch_size), steps,
                                                   model_state=model_state, key=model_key(key))
    return params, opt_state, model_state, {"loss": losses, **curves}
