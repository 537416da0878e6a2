"""Noisy quadratic model: exact dynamics, greedy schedules, fitted schedules, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shorthorizon.nqm import (
    NQM,
    Moments,
    chebyshev_spectrum,
    fit_schedule,
    geometric_spectrum,
    greedy_schedule,
    greedy_step,
    harmonic_spectrum,
    loss_curve,
    max_component_ratio,
    moment_trajectory,
    simulate,
    step_moments,
)


def small_problem(noisy=True, dim=4):
    h = geometric_spectrum(dim, 0.05, 1.0)
    return NQM(h, sigma2=1.0 / h if noisy else 0.0, mean0=np.linspace(1.0, 3.0, dim), var0=0.3)


# --- exact dynamics -------------------------------------------------------------------------
def test_exact_dynamics_match_monte_carlo(x64):
    nqm = small_problem()
    key_lr, key_mu, key_sim = jax.random.split(jax.random.PRNGKey(0), 3)
    horizon, n = 25, 20_000
    lr = jax.random.uniform(key_lr, (horizon,), minval=0.2, maxval=1.2)
    momentum = jax.random.uniform(key_mu, (horizon,), minval=0.0, maxval=0.9)
    exact = moment_trajectory(nqm, lr, momentum)
    thetas = simulate(nqm, lr, momentum, key_sim, n)  # (T+1, n, d)
    mean, var = thetas.mean(axis=1), thetas.var(axis=1)
    mean_se = jnp.sqrt(exact.var_theta / n)
    var_se = exact.var_theta * np.sqrt(2.0 / n)  # Gaussian: Var of sample variance
    assert jnp.all(jnp.abs(mean - exact.mean_theta) <= 5 * mean_se + 1e-12)
    assert jnp.all(jnp.abs(var - exact.var_theta) <= 5 * var_se + 1e-12)
    losses = 0.5 * (nqm.curvature * thetas**2).sum(-1)  # (T+1, n)
    loss_se = losses.std(axis=1) / np.sqrt(n)
    assert jnp.all(jnp.abs(losses.mean(axis=1) - loss_curve(nqm, lr, momentum)) <= 5 * loss_se)


def test_loss_curve_shape_dtype_and_gradient(x64):
    nqm = small_problem()
    lr, momentum = jnp.full(10, 0.5), jnp.full(10, 0.3)
    curve = loss_curve(nqm, lr, momentum)
    assert curve.shape == (11,) and curve.dtype == jnp.float64
    h = nqm.curvature
    assert np.isclose(curve[0], 0.5 * np.sum(h * (nqm.mean0**2 + nqm.var0)))
    # The hand-written reverse pass agrees with central differences in every input.
    key = jax.random.PRNGKey(1)
    inputs = {"lr": lr, "momentum": momentum, "curvature": jnp.asarray(nqm.curvature),
              "sigma2": jnp.asarray(nqm.sigma2), "mean0": jnp.asarray(nqm.mean0)}

    def f(x):
        problem = jax.tree_util.tree_unflatten(
            jax.tree_util.tree_structure(nqm),
            [x["curvature"], x["sigma2"], x["mean0"], jnp.asarray(nqm.var0)])
        return jnp.sum(loss_curve(problem, x["lr"], x["momentum"]) * jnp.arange(1.0, 12.0))

    f = jax.jit(f)
    grad = jax.jit(jax.grad(f))(inputs)
    for name, value in inputs.items():
        direction = jax.random.normal(jax.random.fold_in(key, len(name)), value.shape)
        shift = lambda eps: {**inputs, name: value + eps * direction}
        fd = (f(shift(1e-6)) - f(shift(-1e-6))) / 2e-6
        np.testing.assert_allclose(jnp.vdot(grad[name], direction), fd, rtol=1e-6, err_msg=name)


# --- greedy schedules -------------------------------------------------------------------------
def random_state(key, dim):
    k = jax.random.split(key, 5)
    var_theta = jax.random.uniform(k[0], (dim,), minval=0.1, maxval=2.0)
    var_v = jax.random.uniform(k[1], (dim,), minval=0.1, maxval=2.0)
    corr = jax.random.uniform(k[2], (dim,), minval=-0.9, maxval=0.9)
    return Moments(
        mean_theta=jax.random.normal(k[3], (dim,)) * 3,
        mean_v=jax.random.normal(k[4], (dim,)),
        var_theta=var_theta,
        var_v=var_v,
        cov=corr * jnp.sqrt(var_theta * var_v),
    )


def one_step_loss(nqm, state, hyper):
    m = step_moments(nqm, state, hyper[0], hyper[1])
    return 0.5 * jnp.sum(nqm.curvature * (m.mean_theta**2 + m.var_theta))


@jax.jit
def newton_minimum(nqm, state):
    """Minimise the one-step loss over (lr, momentum) numerically, by Newton's method from the
    origin (the loss is quadratic in (lr, momentum): one step lands on the minimum, the second
    guards against round-off)."""
    f = lambda hyper: one_step_loss(nqm, state, hyper)
    x = jnp.zeros(2)
    for _ in range(2):
        x = x - jnp.linalg.solve(jax.hessian(f)(x), jax.grad(f)(x))
    return x


@pytest.mark.parametrize("seed", range(5))
def test_greedy_step_minimises_the_one_step_loss(x64, seed):
    nqm = NQM(geometric_spectrum(6, 0.05, 1.0), sigma2=0.5, mean0=1.0)
    state = random_state(jax.random.PRNGKey(seed), nqm.dim)
    lr, momentum = greedy_step(nqm, state)
    np.testing.assert_allclose([lr, momentum], newton_minimum(nqm, state), rtol=1e-8, atol=1e-10)
    # The minimum is a minimum: every nearby (lr, momentum) is worse.
    best = one_step_loss(nqm, state, jnp.array([lr, momentum]))
    for delta in ([1e-3, 0], [-1e-3, 0], [0, 1e-3], [0, -1e-3]):
        assert one_step_loss(nqm, state, jnp.array([lr, momentum]) + jnp.array(delta)) > best
    # Without momentum: the Theorem 3 learning rate minimises over lr alone.
    lr_sgd, zero = greedy_step(nqm, state, momentum=False)
    assert zero == 0
    g = jax.grad(lambda a: one_step_loss(nqm, state, jnp.array([a, 0.0])))(lr_sgd)
    assert abs(g) < 1e-9 * one_step_loss(nqm, state, jnp.zeros(2))


def test_greedy_schedule_first_step_has_no_momentum(x64):
    schedule = greedy_schedule(small_problem(), 5)
    assert schedule.lr.shape == schedule.momentum.shape == (5,)
    assert schedule.loss.shape == (6,)
    assert schedule.momentum[0] == 0  # v(0) = 0: momentum has no effect on step 1
    np.testing.assert_allclose(schedule.loss, loss_curve(small_problem(), schedule.lr, schedule.momentum))


@pytest.mark.parametrize("dim", [1, 5])
def test_greedy_is_optimal_for_sgd_on_spherical_problems(x64, dim):
    """Theorem 3: univariate (or spherical) SGD: greedy schedule = optimal schedule."""
    nqm = NQM(np.full(dim, 0.5), sigma2=2.0, mean0=5.0, var0=0.0)
    horizon = 20
    greedy = greedy_schedule(nqm, horizon, momentum=False)
    fit = fit_schedule(nqm, horizon, momentum=False, constrained=False, steps=1500, adam_lr=0.05,
                       init_lr=1.0)
    np.testing.assert_allclose(fit.schedule.loss[-1], greedy.loss[-1], rtol=1e-3)
    assert fit.schedule.loss[-1] >= greedy.loss[-1] * (1 - 1e-9)  # greedy is the optimum
    # The last steps determine the final loss most strongly; there the schedules agree.
    np.testing.assert_allclose(fit.schedule.lr[-5:], greedy.lr[-5:], rtol=2e-2)


def test_without_noise_greedy_and_fitted_schedules_both_converge(x64):
    nqm = NQM(chebyshev_spectrum(50, 1e-2, 1.0), sigma2=0.0, mean0=10.0)
    horizon = 60
    greedy = greedy_schedule(nqm, horizon)
    fit = fit_schedule(nqm, horizon, steps=600, adam_lr=0.03)
    initial = float(greedy.loss[0])
    # Both drive the loss down by many orders of magnitude.
    assert greedy.loss[-1] < 1e-6 * initial
    assert fit.schedule.loss[-1] < 1e-6 * initial


def test_fit_respects_the_constraint_and_unconstrained_does_not(x64):
    nqm = NQM(chebyshev_spectrum(40, 1e-3, 1.0), sigma2=0.0, mean0=10.0)
    nqm = nqm.replace(sigma2=1.0 / nqm.curvature)
    horizon = 40
    constrained = fit_schedule(nqm, horizon, steps=300, adam_lr=0.03)
    assert constrained.max_component_ratio <= 1.0
    np.testing.assert_allclose(
        constrained.max_component_ratio,
        max_component_ratio(nqm, constrained.schedule.lr, constrained.schedule.momentum))
    fixed = fit_schedule(nqm, horizon, fixed=True, steps=300, adam_lr=0.03)
    assert fixed.max_component_ratio <= 1.0
    assert np.ptp(fixed.schedule.lr) == 0 and np.ptp(fixed.schedule.momentum) == 0
    greedy = greedy_schedule(nqm, horizon)
    # Per-step beats fixed; both beat greedy on this short-horizon-biased problem.
    assert constrained.schedule.loss[-1] < fixed.schedule.loss[-1] < greedy.loss[-1]


# --- problem construction and bad input --------------------------------------------------------
def test_paper_problem():
    nqm = NQM.paper()
    assert nqm.dim == 1000
    assert np.isclose(nqm.curvature.max(), 1.0) and np.isclose(nqm.curvature.min(), 1e-3)
    np.testing.assert_allclose(nqm.sigma2 * nqm.curvature, 1.0)
    assert np.all(nqm.mean0 == 10.0) and np.all(nqm.var0 == 0.0)
    assert np.all(NQM.paper(noisy=False).sigma2 == 0.0)


def test_spectra():
    for spectrum in (chebyshev_spectrum(7, 0.1, 2.0), geometric_spectrum(7, 0.1, 2.0)):
        assert spectrum.shape == (7,) and np.isclose(spectrum.max(), 2.0) and np.isclose(spectrum.min(), 0.1)
        assert np.all(np.diff(spectrum) < 0)
    np.testing.assert_allclose(harmonic_spectrum(4), [1, 1 / 2, 1 / 3, 1 / 4])
    with pytest.raises(ValueError, match="positive integer"):
        chebyshev_spectrum(0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(curvature=[1.0, -0.5]), "curvature must be non-negative"),
        (dict(curvature=[1.0, np.nan]), "curvature must be finite"),
        (dict(curvature=[1.0, 2.0], sigma2=[1.0, 2.0, 3.0]), "sigma2 has shape"),
        (dict(curvature=[1.0, 2.0], mean0=np.ones((2, 1))), "mean0 has shape"),
        (dict(curvature=[1.0], var0=-1.0), "var0 must be non-negative"),
        (dict(curvature=[]), "non-empty"),
    ],
)
def test_bad_problem_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NQM(**kwargs)


def test_bad_horizon_and_schedule_raise():
    nqm = NQM([1.0, 0.5])
    for horizon in (0, -3):
        with pytest.raises(ValueError, match="horizon"):
            greedy_schedule(nqm, horizon)
        with pytest.raises(ValueError, match="horizon"):
            fit_schedule(nqm, horizon)
    with pytest.raises(ValueError, match="horizon"):
        loss_curve(nqm, jnp.zeros(0), jnp.zeros(0))
    with pytest.raises(ValueError, match="same length"):
        loss_curve(nqm, jnp.zeros(3), jnp.zeros(4))
