"""Base optimizers, schedules and reparameterizations against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from shorthorizon.optim import (Optimizer, adam, adamw, constant, exponential, from_effective, inverse_time,
                                make_optimizer, momentum, sgd, to_effective)


def quadratic_grads(params):
    return jax.grad(lambda p: 0.5 * jnp.sum(p["w"] ** 2 * jnp.arange(1.0, 4.0)) + jnp.sum(p["b"] ** 3))(params)


PARAMS = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.3])}


def test_adam_matches_optax(x64):
    params = jax.tree.map(lambda a: a.astype(jnp.float64), PARAMS)
    ours = adam()
    state = ours.init(params, {"lr": 0.01, "momentum": 0.8})
    ref = optax.adam(0.01, b1=0.8, b2=0.999, eps=1e-8)
    ref_params, ref_state = params, ref.init(params)
    for _ in range(20):
        params, state = ours.update(quadratic_grads(params), state, params)
        updates, ref_state = ref.update(quadratic_grads(ref_params), ref_state)
        ref_params = optax.apply_updates(ref_params, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), params, ref_params)


def test_momentum_matches_heavy_ball_by_hand(x64):
    lr, mu = 0.1, 0.9
    params = jax.tree.map(lambda a: a.astype(jnp.float64), PARAMS)
    opt = momentum()
    state = opt.init(params, {"lr": lr, "momentum": mu})
    p, v = params, jax.tree.map(jnp.zeros_like, params)
    for _ in range(10):
        g = quadratic_grads(p)
        v = jax.tree.map(lambda v, g: mu * v - lr * g, v, g)
        p = jax.tree.map(jnp.add, p, v)
        params, state = opt.update(quadratic_grads(params), state, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), params, p)
    assert int(state.step) == 10


def test_sgd_with_inverse_time_decay_by_hand(x64):
    params = {"w": jnp.array([1.0]), "b": jnp.array([0.0])}
    opt = sgd(inverse_time(decay_steps=2.0))
    state = opt.init(params, {"lr": 0.5, "decay_exponent": 1.0})
    w = 1.0
    for t in range(4):
        params, state = opt.update({"w": jnp.array([1.0]), "b": jnp.array([0.0])}, state, params)
        w -= 0.5 / (1 + t / 2.0)
    assert float(params["w"][0]) == pytest.approx(w, rel=1e-12)


def test_schedules_worked_by_hand():
    hyper = {"lr": 0.2, "decay_exponent": 2.0, "decay_rate": 0.5}
    assert float(constant()(hyper, 7)) == pytest.approx(0.2)
    assert float(inverse_time(5000.0)(hyper, 5000)) == pytest.approx(0.2 / 4)
    assert float(exponential(10.0)(hyper, 20)) == pytest.approx(0.2 / 4)


def test_effective_reparameterization_round_trips(x64):
    lr, mu = jnp.float64(0.1), jnp.float64(0.9)
    raw = to_effective(lr, mu)
    assert float(raw["log_lr_eff"]) == pytest.approx(np.log(1.0))
    assert float(raw["log_one_minus_momentum"]) == pytest.approx(np.log(0.1))
    back = from_effective(raw)
    assert float(back["lr"]) == pytest.approx(0.1, rel=1e-12)
    assert float(back["momentum"]) == pytest.approx(0.9, rel=1e-12)


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop")


def test_heavy_ball_chain_equals_the_paper_update_bit_for_bit():
    """The optax chain (scale by -lr_t, then trace) is v <- μ v - lr_t g, θ <- θ + v to the
    last bit in float32, under a schedule too (optax.sgd, which traces before scaling, is not)."""
    opt = momentum(inverse_time(decay_steps=3.0))
    params = {"w": jax.random.normal(jax.random.PRNGKey(0), (50,)), "b": jnp.ones(3)}
    state = opt.init(params, {"lr": 0.1, "momentum": 0.9, "decay_exponent": 0.7})
    grad = lambda p: jax.tree.map(lambda a: jnp.sin(3 * a) + a**3, p)

    def ours(carry, _):
        p, s = carry
        return opt.update(grad(p), s, p), None

    def by_hand(carry, t):
        p, v = carry
        lr = 0.1 * (1 + t / 3.0) ** -0.7
        v = jax.tree.map(lambda v, g: 0.9 * v - lr * g, v, grad(p))
        return (jax.tree.map(jnp.add, p, v), v), None

    (p, _), _ = jax.jit(lambda c: jax.lax.scan(ours, c, None, length=30))((params, state))
    (ref, _), _ = jax.jit(lambda c: jax.lax.scan(by_hand, c, jnp.arange(30)))((params, jax.tree.map(jnp.zeros_like, params)))
    jax.tree.map(np.testing.assert_array_equal, p, ref)


def test_any_injected_optax_optimizer_with_its_hyperparameters_in_the_state(x64):
    """optax.adamw through inject_hyperparams: every numeric hyperparameter is in ``hyper``,
    a changed value there is the one the step uses, and the steps are optax's own."""
    params = jax.tree.map(lambda a: a.astype(jnp.float64), PARAMS)
    opt = Optimizer("adamw", optax.inject_hyperparams(optax.adamw)(learning_rate=0.1, weight_decay=0.0))
    state = opt.init(params, {"weight_decay": 0.3})
    # optax's learning_rate is lr here, as in every optimizer of the package
    assert {"lr", "b1", "b2", "eps", "weight_decay"} <= set(state.hyper) and "learning_rate" not in state.hyper
    ref = optax.adamw(0.1, weight_decay=0.3)
    ref_params, ref_state = params, ref.init(params)
    for _ in range(5):
        params, state = opt.update(quadratic_grads(params), state, params)
        updates, ref_state = ref.update(quadratic_grads(ref_params), ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), params, ref_params)


def test_hyperparameter_names_the_optimizer_lacks_are_clear_errors():
    opt = Optimizer("adam", optax.inject_hyperparams(optax.adam)(learning_rate=0.1))
    with pytest.raises(ValueError, match=r"'adam' has no hyperparameter \['weight_decay'\].*'lr'"):
        opt.init(PARAMS, {"weight_decay": 0.1})
    state = opt.init(PARAMS, {"lr": 0.01})
    with pytest.raises(ValueError, match=r"\['learning_rate'\] are not the optimizer's"):
        state.with_hyper({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="'momentum' needs a value for \\['momentum'\\]"):
        momentum().init(PARAMS, {"lr": 0.1})
    # a misspelt name is named before the value it was meant to give is missed
    with pytest.raises(ValueError, match=r"'adamw' has no hyperparameter \['wd'\].*'weight_decay'"):
        adamw().init(PARAMS, {"lr": 0.1, "momentum": 0.9, "wd": 1e-4})
    with pytest.raises(ValueError, match="schedule needs hyperparameter 'decay_exponent'"):
        sgd(inverse_time(10.0)).init(PARAMS, {"lr": 0.1})
    with pytest.raises(ValueError, match=r"has no hyperparameter \['decay_exponnt'\]"):
        sgd(inverse_time(10.0)).init(PARAMS, {"lr": 0.1, "decay_exponnt": 1.0})
    # a plain function of (hyper, step) is a schedule too: the names it reads are found by calling it
    halving = lambda hyper, step: hyper["lr"] * hyper["halving"] ** step
    with pytest.raises(ValueError, match="schedule needs hyperparameter 'halving'"):
        sgd(halving).init(PARAMS, {"lr": 0.1})
    assert sgd(halving).init(PARAMS, {"lr": 0.1, "halving": 0.5}).hyper.keys() == {"lr", "halving"}
    scale = Optimizer("scale", optax.inject_hyperparams(optax.scale)(step_size=0.1))
    with pytest.raises(ValueError, match="a schedule sets the hyperparameter 'lr'"):
        scale._replace(schedule=inverse_time(10.0)).init(PARAMS, {"lr": 0.1, "decay_exponent": 1.0})
    with pytest.raises(TypeError, match="optax.inject_hyperparams"):
        Optimizer("plain", optax.adam(0.1)).init(PARAMS)
