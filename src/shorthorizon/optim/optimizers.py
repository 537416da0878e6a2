"""Base optimizers with their hyperparameters in their state (see the package docstring);
their learning-rate schedules are in :mod:`shorthorizon.optim.schedules`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from shorthorizon.optim.schedules import Hyper, LrSchedule, Schedule


# --- optimizers -----------------------------------------------------------------------
class OptState(NamedTuple):
    step: jax.Array  # number of updates taken so far
    slots: Any  # the optax transformation's state (its ``hyperparams``: the values of the last step)
    hyper: dict  # hyperparameters, the thing meta-optimization differentiates

    def with_hyper(self, hyper: Hyper) -> "OptState":
        """This state with the values of ``hyper`` in place of its own; a name it does not hold
        is an error (its hypergradient would be silently zero)."""
        unknown = sorted(set(hyper) - set(self.hyper))
        if unknown:
            raise ValueError(f"hyperparameters {unknown} are not the optimizer's; it has {sorted(self.hyper)}")
        return self._replace(hyper={**self.hyper, **hyper})


class Optimizer(NamedTuple):
    """A base optimizer: an optax transformation built with ``optax.inject_hyperparams``
    (e.g. ``optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=1e-4)``),
    whose numeric hyperparameters live in :attr:`OptState.hyper` and are written into the
    transformation's state before every step, so each is a differentiable input of training.

    ``schedule(hyper, step)``, if given, is the value of the hyperparameter ``lr`` at ``step``
    (its own parameters, e.g. ``decay_exponent``, are entries of ``hyper`` too): a
    :class:`~shorthorizon.optim.Schedule`, or any function of ``(hyper, step)``. ``required``:
    hyperparameters that :meth:`init` must be given (the transformation holds placeholders).

    The learning rate is ``lr`` here whatever the transformation calls it: optax's
    ``learning_rate`` is ``lr`` in :attr:`OptState.hyper`, in :meth:`hyperparameters` and for
    schedules and online runs, which set it by that name (one name per idea).

    Adam and its kin: give ``eps_root`` a tiny positive value (1e-30). With optax's default 0,
    a parameter whose gradient is exactly zero (a bias before BatchNorm, a dead unit) makes the
    derivative of sqrt(ν) infinite and every hypergradient NaN; 1e-30 changes no value.
    """

    name: str
    tx: optax.GradientTransformation
    schedule: LrSchedule | None = None
    required: tuple[str, ...] = ()

    def init(self, params, hyper: Hyper | None = None) -> OptState:
        """State for ``params``; ``hyper`` overrides the transformation's hyperparameters (and
        gives the schedule's). A name that neither has is an error."""
        slots = self.tx.init(params)
        if not isinstance(getattr(slots, "hyperparams", None), dict):
            raise TypeError(f"optimizer {self.name!r}: its state has no hyperparameters; build it with "
                            "optax.inject_hyperparams, e.g. optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3)")
        dtype = jax.tree.leaves(params)[0].dtype
        hyper = {k: jnp.asarray(v, dtype) for k, v in (hyper or {}).items()}
        own = {ours: slots.hyperparams[k] for k, ours in _names(slots.hyperparams).items()}
        reads = self._schedule_reads(hyper, own)
        unknown = sorted(set(hyper) - set(own) - reads)  # first: a misspelt name explains what seems missing
        if unknown:
            raise ValueError(f"optimizer {self.name!r} has no hyperparameter {unknown}; its numeric "
                             f"hyperparameters are {sorted(set(own) | reads)}")
        missing = [k for k in self.required if k not in hyper]
        if missing:
            raise ValueError(f"optimizer {self.name!r} needs a value for {missing}")
        unread = sorted(reads - set(hyper))
        if unread:
            raise ValueError(f"optimizer {self.name!r}: its schedule needs hyperparameter {unread[0]!r}")
        return OptState(jnp.zeros((), jnp.int32), slots, {**own, **hyper})

    def hyperparameters(self) -> dict:
        """The transformation's hyperparameters and their default values (``required`` ones
        hold placeholders)."""
        own = self.tx.init(jnp.zeros(())).hyperparams
        return {ours: own[k] for k, ours in _names(own).items()}

    def _schedule_reads(self, hyper: dict, own: dict) -> set:
        """The names the schedule reads from ``hyper``: a :class:`Schedule`'s declared ones, else
        those a call reads (found by calling it once; those ``hyper`` lacks read as 0).
        ``own``: the transformation's hyperparameters, which must include the ``lr`` it sets."""
        if self.schedule is None:
            return set()
        if "lr" not in own:
            raise ValueError(f"optimizer {self.name!r}: a schedule sets the hyperparameter 'lr', which it does not "
                             "have; name its learning rate lr (e.g. inject_hyperparams(lambda lr, ...: ...))")
        if isinstance(self.schedule, Schedule):
            return set(self.schedule.reads)
        reads = _Reads(hyper)
        self.schedule(reads, jnp.zeros((), jnp.int32))
        return reads.names

    def update(self, grads, state: OptState, params) -> tuple[Any, OptState]:
        """One step: ``(new params, new state)``."""
        values = dict(state.hyper)
        if self.schedule is not None:
            values["lr"] = self.schedule(state.hyper, state.step)
        names = _names(state.slots.hyperparams)
        slots = state.slots._replace(hyperparams={k: values[ours] for k, ours in names.items()})
        updates, slots = self.tx.update(grads, slots, params)
        return optax.apply_updates(params, updates), state._replace(step=state.step + 1, slots=slots)


def _names(optax_names) -> dict:
    """The transformation's hyperparameter names -> this package's: optax's ``learning_rate``
    is ``lr`` (unless the transformation has both)."""
    rename = "learning_rate" in optax_names and "lr" not in optax_names
    return {k: "lr" if rename and k == "learning_rate" else k for k in optax_names}


class _Reads(dict):
    """A dict that records which keys were read; a key it lacks reads as 0."""

    def __init__(self, values):
        super().__init__(values)
        self.names = set()

    def __getitem__(self, key):
        self.names.add(key)
        return super().__getitem__(key) if key in self else jnp.zeros(())


def _heavy_ball(lr, momentum):
    """The paper's v <- μ v - lr ∇L, θ <- θ + v: scale by -lr first, then the trace (optax's
    ``sgd`` traces first and scales after, which differs once lr varies between steps)."""
    return optax.chain(optax.scale_by_learning_rate(lr), optax.trace(decay=momentum))


def _sgd(lr):
    return optax.scale_by_learning_rate(lr)


def _adam(lr, momentum, b2=0.999, eps=1e-8):
    # eps_root: the same values to float rounding, and a finite derivative of sqrt where a
    # gradient is exactly zero (a dead unit) instead of 0 * inf
    return optax.adam(lr, b1=momentum, b2=b2, eps=eps, eps_root=1e-30)


def _adamw(lr, momentum, weight_decay, b2=0.999, eps=1e-8):
    return optax.adamw(lr, b1=momentum, b2=b2, eps=eps, eps_root=1e-30, weight_decay=weight_decay)


def sgd(schedule: LrSchedule | None = None) -> Optimizer:
    """θ <- θ - lr_t ∇L."""
    return Optimizer("sgd", optax.inject_hyperparams(_sgd)(0.0), schedule, ("lr",))


def momentum(schedule: LrSchedule | None = None) -> Optimizer:
    """Heavy ball: v <- μ v - lr_t ∇L, θ <- θ + v (hyper: ``lr``, ``momentum``)."""
    return Optimizer("momentum", optax.inject_hyperparams(_heavy_ball)(0.0, 0.0), schedule,
                     ("lr", "momentum"))


def adam(schedule: LrSchedule | None = None) -> Optimizer:
    """Adam with bias correction; hyper ``lr`` and ``momentum`` (= β1), and ``b2``, ``eps``."""
    return Optimizer("adam", optax.inject_hyperparams(_adam)(0.0, 0.0), schedule, ("lr", "momentum"))


def adamw(schedule: LrSchedule | None = None) -> Optimizer:
    """AdamW (decoupled weight decay, scaled by lr as in optax); hyper ``lr``, ``momentum``
    (= β1), ``weight_decay``, and ``b2``, ``eps``."""
    return Optimizer("adamw", optax.inject_hyperparams(_adamw)(0.0, 0.0, 0.0), schedule,
                     ("lr", "momentum", "weight_decay"))


OPTIMIZERS = {"sgd": sgd, "momentum": momentum, "adam": adam, "adamw": adamw}


def make_optimizer(name: str, schedule: LrSchedule | None = None) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](schedule)
