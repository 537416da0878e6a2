"""Windowed hypergradient estimators, each checked against the others and the exact NQM truth.

The NQM gives exact references: the whole-run gradient (moments, Theorem 1), and the expected
truncated gradient (moments held constant at window starts). Sampled estimators must agree
with the reference they are unbiased for, within Monte-Carlo error, and disagree with the one
they are not (which shows each test can fail).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shorthorizon.hypergrad.estimators import ES, NRES, PES, Truncated, make_estimator
from shorthorizon.meta.smd import SMD
from shorthorizon.nqm import NQM, loss_curve
from shorthorizon.nqm.inner import ExactNQM, SampledNQM, from_raw, schedule, to_raw, whole_run_loss

T = 40


def small_nqm():
    return NQM.paper(20)


def window_estimates(estimator, raw, keys):
    """Per particle (one key each), the estimate of every window of one whole run."""
    def one(key):
        def body(state, w):
            _, grad, state = estimator.estimate(state, raw, jax.random.fold_in(key, w))
            return state, jnp.stack([grad[k] for k in sorted(grad)])

        return jax.lax.scan(body, estimator.init(raw, key), jnp.arange(estimator.windows))[1]

    return np.asarray(jax.jit(jax.vmap(one))(keys))  # (particles, windows, 3), keys sorted


def sorted_vec(tree):
    return np.array([tree[k] for k in sorted(tree)])


@pytest.fixture
def raw(x64):
    return to_raw(0.8, 0.7, 0.4)


def test_exact_full_forward_reverse_fd_equal_the_loss_curve_gradient(raw):
    nqm = small_nqm()
    exact = ExactNQM(nqm, T)
    # an independent reference: the custom-VJP rollout behind loss_curve
    ref = jax.grad(lambda r: loss_curve(nqm, *schedule(r, T, 10.0))[1:].mean())(raw)
    value = whole_run_loss(nqm, raw, T)
    np.testing.assert_allclose(value, loss_curve(nqm, *schedule(raw, T, 10.0))[1:].mean(), rtol=1e-12)
    for mode, rtol in (("forward", 1e-10), ("reverse", 1e-10), ("fd", 1e-6)):
        est = Truncated(exact, mode)
        loss, grad, _ = jax.jit(lambda r: est.estimate(est.init(r, jax.random.PRNGKey(0)), r,
                                                       jax.random.PRNGKey(1)))(raw)
        np.testing.assert_allclose(loss, value, rtol=1e-12)
        np.testing.assert_allclose(sorted_vec(grad), sorted_vec(ref), rtol=rtol)


def test_truncation_equal_to_horizon_is_the_full_gradient_and_checkpointing_changes_nothing(raw):
    sampled = SampledNQM(small_nqm(), T)
    key = jax.random.PRNGKey(4)
    state0 = sampled.init(key)
    ref = jax.grad(lambda r: sampled.unroll(r, state0, T)[0])(raw)
    for est in (Truncated(sampled, "reverse", T), Truncated(sampled, "reverse", None, checkpoint=8),
                Truncated(sampled, "forward", T)):
        # init(key) with one particle draws the particle's run from split(key, 1)
        state = est.init(raw, key)
        state = state._replace(inner=jax.tree.map(lambda a: a[None], state0))
        _, grad, _ = jax.jit(est.estimate)(state, raw, key)
        np.testing.assert_allclose(sorted_vec(grad), sorted_vec(ref), rtol=1e-10)


def test_sampled_truncated_agrees_with_exact_expected_truncated_gradient(raw):
    nqm, k = small_nqm(), 5
    exact = window_estimates(Truncated(ExactNQM(nqm, T), "forward", k, stagger=False), raw,
                             jax.random.split(jax.random.PRNGKey(0), 1))[0].mean(0)
    whole = window_estimates(Truncated(ExactNQM(nqm, T), "forward", stagger=False), raw,
                             jax.random.split(jax.random.PRNGKey(0), 1))[0].mean(0)
    g = window_estimates(Truncated(SampledNQM(nqm, T), "reverse", k, stagger=False), raw,
                         jax.random.split(jax.random.PRNGKey(1), 200)).mean(1)
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.all(np.abs(mean - exact) < 4 * se)
    # and the truncated expectation is not the whole-run gradient: the estimator is biased
    assert np.max(np.abs(mean - whole) / se) > 10


def test_pes_is_unbiased_for_the_whole_run_gradient_and_truncated_es_is_not(raw):
    # K = 1: on this problem the truncation bias is largest there (~7 standard errors of 1000
    # PES particles), so the test can tell a truncated estimate from an unbiased one
    nqm, k = small_nqm(), 1
    whole = window_estimates(Truncated(ExactNQM(nqm, T), "forward", stagger=False), raw,
                             jax.random.split(jax.random.PRNGKey(0), 1))[0].mean(0)
    truncated = window_estimates(Truncated(ExactNQM(nqm, T), "forward", k, stagger=False), raw,
                                 jax.random.split(jax.random.PRNGKey(0), 1))[0].mean(0)
    keys = jax.random.split(jax.random.PRNGKey(2), 1000)
    sampled = SampledNQM(nqm, T)
    # sigma 1e-3: the smoothing moves the gradient by O(sigma^2), far below the standard error
    pes = window_estimates(PES(sampled, k, sigma=1e-3, stagger=False), raw, keys).mean(1)
    mean, se = pes.mean(0), pes.std(0, ddof=1) / np.sqrt(len(pes))
    assert np.all(np.abs(mean - whole) < 4 * se), (mean, whole, se)
    assert np.max(np.abs(truncated - whole) / se) > 5  # the test could tell a truncated estimate
    es = window_estimates(ES(sampled, k, sigma=1e-3, stagger=False), raw, keys).mean(1)
    mean, se = es.mean(0), es.std(0, ddof=1) / np.sqrt(len(es))
    assert np.all(np.abs(mean - truncated) < 4 * se)
    assert np.max(np.abs(mean - whole) / se) > 4


def test_nres_is_unbiased_for_the_gradient_smoothed_by_one_perturbation_per_run(raw):
    # the exact reference: E over eps of the exact whole-run gradient at raw + eps, one eps for
    # the whole run (antithetic pairs of exact gradients; its Monte-Carlo error is counted)
    nqm, k, sigma = small_nqm(), 1, 0.1
    vec = sorted_vec(raw)
    grad = jax.jit(jax.vmap(jax.grad(lambda v: whole_run_loss(nqm, dict(zip(sorted(raw), v)), T))))
    eps = sigma * np.asarray(jax.random.normal(jax.random.PRNGKey(7), (2000, 3)))
    pairs = (np.asarray(grad(vec + eps)) + np.asarray(grad(vec - eps))) / 2
    smoothed, smoothed_se = pairs.mean(0), pairs.std(0, ddof=1) / np.sqrt(len(pairs))
    truncated = window_estimates(Truncated(ExactNQM(nqm, T), "forward", k, stagger=False), raw,
                                 jax.random.split(jax.random.PRNGKey(0), 1))[0].mean(0)
    nres = window_estimates(NRES(SampledNQM(nqm, T), k, sigma=sigma, stagger=False), raw,
                            jax.random.split(jax.random.PRNGKey(2), 1000)).mean(1)
    mean, se = nres.mean(0), np.hypot(nres.std(0, ddof=1) / np.sqrt(len(nres)), smoothed_se)
    assert np.all(np.abs(mean - smoothed) < 4 * se), (mean, smoothed, se)
    assert np.max(np.abs(truncated - smoothed) / se) > 5  # the test could tell a truncated estimate


def test_nres_keeps_one_perturbation_per_run_through_staggering_and_restarts(raw):
    sampled = SampledNQM(small_nqm(), T)
    est = NRES(sampled, truncation=5, particles=4, sigma=0.1)  # 8 windows per run
    state = jax.jit(est.init)(raw, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(state.steps, [0, 10, 20, 30])
    # every particle drew its run's perturbation when it started, the unstaggered one too, and
    # ran its staggered windows at it: its + and - states differ
    assert np.all(np.abs(state.xi) > 0) and len(np.unique(state.xi[:, 0])) == 4
    assert np.all(np.abs(state.inner.theta[1:, 0] - state.inner.theta[1:, 1]) > 0)
    assert int(state.inner.step.sum()) == est.init_cost == 2 * (10 + 20 + 30)
    step = jax.jit(est.estimate)
    _, grad, first = step(state, raw, jax.random.PRNGKey(1))
    assert int(first.inner.step.sum() - state.inner.step.sum()) == est.cost == 4 * 2 * 5
    np.testing.assert_array_equal(first.xi, state.xi)  # reused, not redrawn
    # the estimate credits the run's perturbation: each pair's gradient is parallel to its xi
    _, per_particle, _ = jax.jit(est.estimate_particles)(state, raw, jax.random.PRNGKey(1))
    g = np.stack([per_particle[k] for k in sorted(per_particle)], -1)
    np.testing.assert_allclose(g / state.xi, (g / state.xi)[:, :1] * np.ones(3), rtol=1e-10)
    _, _, second = step(first, raw, jax.random.PRNGKey(2))
    # the last particle finished its run (30 + 2 x 5 = 40 = T) and restarted with a new
    # perturbation; the others kept theirs
    np.testing.assert_array_equal(second.steps, [10, 20, 30, 0])
    np.testing.assert_array_equal(second.xi[:3], state.xi[:3])
    assert np.all(np.abs(second.xi[3]) > 0) and np.all(second.xi[3] != state.xi[3])
    np.testing.assert_allclose(second.inner.theta[-1, 0], sampled.nqm.mean0)
    # a restarted run's perturbation has the draw's scale: sigma per coordinate, over many restarts
    many = NRES(sampled, truncation=40, particles=2000, sigma=0.1, stagger=False)
    _, _, restarted = jax.jit(many.estimate)(many.init(raw, jax.random.PRNGKey(3)), raw, jax.random.PRNGKey(4))
    np.testing.assert_array_equal(restarted.steps, 0)
    assert np.all(np.abs(restarted.xi.std(0) / 0.1 - 1) < 0.1) and np.all(np.abs(restarted.xi.mean(0)) < 0.01)


def test_particles_stagger_and_restart_when_a_run_ends(raw):
    sampled = SampledNQM(small_nqm(), T)
    est = PES(sampled, truncation=5, particles=4)  # 8 windows per run
    state = jax.jit(est.init)(raw, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(state.steps, [0, 10, 20, 30])
    np.testing.assert_array_equal(state.inner.step[:, 0], [0, 10, 20, 30])
    assert np.all(state.xi[0] == 0) and np.all(np.abs(state.xi[1:]) > 0)  # perturbations accumulated
    # the cost accounting counts the steps the inner states took (both members of every pair)
    assert int(state.inner.step.sum()) == est.init_cost == 2 * (10 + 20 + 30)
    _, _, first = jax.jit(est.estimate)(state, raw, jax.random.PRNGKey(1))
    assert int(first.inner.step.sum() - state.inner.step.sum()) == est.cost == 4 * 2 * 5
    _, _, state = jax.jit(est.estimate)(first, raw, jax.random.PRNGKey(1))
    # the last particle finished its run (30 + 2 x 5 = 40 = T) and restarted from scratch
    np.testing.assert_array_equal(state.steps, [10, 20, 30, 0])
    assert np.all(state.xi[-1] == 0)
    np.testing.assert_allclose(state.inner.theta[-1, 0], sampled.nqm.mean0)


def test_fit_with_the_exact_estimator_finds_a_stationary_point(raw):
    exact = ExactNQM(small_nqm(), T)
    est = Truncated(exact, "forward")
    smd = SMD(meta_lr=0.05, clip=np.inf)
    state, (losses, _, _) = jax.jit(lambda r: smd.fit(est, r, jax.random.PRNGKey(0), 1500))(raw)
    grad = jax.grad(lambda r: whole_run_loss(exact.nqm, r, T))(state.raw)
    assert float(losses[-1]) < float(losses[0])
    assert np.max(np.abs(sorted_vec(grad))) < 1e-3 * float(losses[-1])
    assert 0 < float(from_raw(state.raw)["momentum"]) < 1


def test_meta_steps_in_chunks_continue_where_the_last_chunk_stopped(raw):
    est = PES(SampledNQM(small_nqm(), T), truncation=5, particles=2)
    smd = SMD(meta_lr=0.05)
    key = jax.random.PRNGKey(3)
    state, (loss, _, _) = jax.jit(lambda r: smd.fit(est, r, key, 6))(raw)
    init_key, key = jax.random.split(key)  # fit's keys, split as it does
    keys = jax.random.split(key, 6)
    carry, losses = (smd.init(raw), jax.jit(est.init)(raw, init_key)), []
    for chunk in (keys[:4], keys[4:]):
        carry, (chunk_loss, _, _) = jax.jit(lambda c, k: smd.run_windowed(est, *c, k))(carry, chunk)
        losses.append(chunk_loss)
    np.testing.assert_allclose(np.concatenate(losses), loss, rtol=1e-12)
    np.testing.assert_allclose(sorted_vec(carry[0].raw), sorted_vec(state.raw), rtol=1e-12)


def test_bad_arguments_name_the_problem(raw):
    sampled = SampledNQM(small_nqm(), T)
    with pytest.raises(ValueError, match="positive divisor of the horizon 40"):
        Truncated(sampled, "forward", 7).init(raw, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="unknown estimator 'tbptt'"):
        make_estimator("tbptt", sampled)
    with pytest.raises(ValueError, match="unknown derivative mode"):
        est = Truncated(sampled, "backward", 5)
        est.estimate(est.init(raw, jax.random.PRNGKey(0)), raw, jax.random.PRNGKey(0))
    assert make_estimator("reverse", truncation=10).label(250) == "tbptt_K10"
    assert make_estimator("pes", truncation=250).label(250) == "pes_full"
    assert make_estimator("nres", truncation=10).label(250) == "nres_K10"
    with pytest.raises(ValueError, match="sigma must be positive"):
        make_estimator("nres", sampled, 5, sigma=0.0).init(raw, jax.random.PRNGKey(0))
    assert make_estimator("forward").label(250) == "forward_full"


def test_the_same_estimators_run_on_a_neural_net(x64):
    """TrainingRun makes an MLP an inner problem: the full-window estimate is the plain
    hypergradient of the run's mean training loss, a truncated one is the derivative of its
    window with the start held fixed, and ES/PES estimates point the same way as the exact one."""
    from shorthorizon.hypergrad import TrainingRun, hypergradient, stochastic_batches, train
    from shorthorizon.optim import inverse_time, momentum
    from shorthorizon.tasks import mlp

    from test_hypergrad import as_f64, teacher_data

    task, opt = mlp(input_shape=(4, 4, 1), hidden=(8,)), momentum(inverse_time(10.0))
    key = jax.random.PRNGKey(0)
    data = teacher_data(key, (4, 4, 1), n=128)
    params = as_f64(task.init(key))
    hyper = {"lr": jnp.float64(0.1), "momentum": jnp.float64(0.5), "decay_exponent": jnp.float64(0.5)}
    opt_state = opt.init(params, hyper)
    run = TrainingRun(task, opt, data, params, opt_state, horizon=12, batch_size=16)
    run_key = Truncated(run).init(hyper, jax.random.PRNGKey(5)).inner.key[0]  # the particle's batches

    def mean_loss(h, steps=12, p=params, s=opt_state, start=0):
        s = s._replace(hyper=h)
        batch_at = stochastic_batches(data, run_key, steps, 16, start=start)
        return jnp.mean(train(task, opt, p, s, batch_at, steps)[3])

    _, ref = hypergradient(mean_loss, hyper, "reverse")
    est = Truncated(run, "forward")
    _, grad, _ = jax.jit(lambda h: est.estimate(est.init(h, jax.random.PRNGKey(5)), h, key))(hyper)
    np.testing.assert_allclose(sorted_vec(grad), sorted_vec(ref), rtol=1e-10)

    # the second window of K = 6, from the state after the first six steps held constant
    p6, s6, _, _ = train(task, opt, params, opt_state._replace(hyper=hyper),
                         stochastic_batches(data, run_key, 6, 16), 6)
    _, ref6 = hypergradient(lambda h: mean_loss(h, 6, p6, s6, 6), hyper, "reverse")
    est = Truncated(run, "reverse", 6)
    state = est.init(hyper, jax.random.PRNGKey(5))
    _, _, state = est.estimate(state, hyper, key)
    _, grad6, _ = est.estimate(state, hyper, key)
    np.testing.assert_allclose(sorted_vec(grad6), sorted_vec(ref6), rtol=1e-10)

    # PES's first window (ES and PES agree there) points the way of the exact window gradient
    first = Truncated(run, "reverse", 6)
    _, ref6, _ = first.estimate(first.init(hyper, jax.random.PRNGKey(5)), hyper, key)
    pes = PES(run, 6, particles=256, sigma=1e-3, stagger=False)
    _, grad, _ = jax.jit(lambda h: pes.estimate(pes.init(h, jax.random.PRNGKey(5)), h, key))(hyper)
    g, r = sorted_vec(grad), sorted_vec(ref6)
    assert g @ r > 0.5 * np.linalg.norm(g) * np.linalg.norm(r)


def test_objective_gradient_es_matches_the_exact_gradient_of_a_quadratic(x64):
    # antithetic ES on a quadratic: each pair estimates eps eps^T grad / sigma^2 exactly (no
    # smoothing bias), so the mean over pairs is within Monte-Carlo error of the gradient
    f = lambda h, key: 3.0 * h["a"] ** 2 + h["a"] * h["b"] + 0.5 * h["b"] ** 2
    hyper = {"a": jnp.float64(1.0), "b": jnp.float64(-2.0)}
    exact = np.array([6.0 - 2.0, 1.0 - 2.0])
    _, grads = jax.vmap(lambda k: make_estimator("es", particles=1, sigma=0.1).objective_gradient(f, hyper, k))(
        jax.random.split(jax.random.PRNGKey(0), 4000))
    g = np.stack([grads["a"], grads["b"]], -1)
    assert np.all(np.abs(g.mean(0) - exact) < 4 * g.std(0) / np.sqrt(len(g)))
    value, forward = Truncated().objective_gradient(f, hyper, jax.random.PRNGKey(0))
    assert float(value) == 3.0 - 2.0 + 2.0
    np.testing.assert_allclose([forward["a"], forward["b"]], exact)


def test_a_new_estimator_is_one_class_and_one_entry_in_the_table(raw, monkeypatch):
    """Adding an estimator touches one module alone: a class (here forward mode with every
    estimate halved, so its answers are known) with its colour and description, and its name in
    ESTIMATORS. By name it is then made, labelled and costed, drives SMD, the commands' configs
    accept it and the report draws and describes it; a class without them cannot be made."""
    import dataclasses

    from shorthorizon import config as configlib
    from shorthorizon.experiments import offline as offline_experiment
    from shorthorizon.experiments import truncated as truncated_experiment
    from shorthorizon.hypergrad import ESTIMATORS, WINDOWED, Estimator
    from shorthorizon.report import estimators as report

    @dataclasses.dataclass(frozen=True)
    class Halved(Truncated):
        color = "tab:pink"
        description = "halved: forward mode, every estimate halved."

        @property
        def name(self):
            return "halved"

        def estimate_particles(self, state, hyper, key):
            losses, grads, state = super().estimate_particles(state, hyper, key)
            return losses, jax.tree.map(lambda g: g / 2, grads), state

        def objective_gradient(self, f, hyper, key):
            value, grads = super().objective_gradient(f, hyper, key)
            return value, jax.tree.map(lambda g: g / 2, grads)

    monkeypatch.setitem(ESTIMATORS, "halved", (Halved, {"mode": "forward"}))
    exact = ExactNQM(small_nqm(), T)
    halved, forward = make_estimator("halved", exact, truncation=8), make_estimator("forward", exact, truncation=8)
    key = jax.random.PRNGKey(0)
    _, g_half, _ = halved.estimate(halved.init(raw, key), raw, key)
    _, g_full, _ = forward.estimate(forward.init(raw, key), raw, key)
    np.testing.assert_allclose(sorted_vec(g_half), sorted_vec(g_full) / 2, rtol=1e-12)
    assert halved.label(T) == "halved_K8" and halved.work(3) == forward.work(3)

    f = lambda h, key: (h["a"] - 1.0) ** 2  # SMD's recorded hypergradient is the estimator's
    _, (_, grads, _) = SMD(f, estimator=make_estimator("halved")).run(SMD().init({"a": 0.0}),
                                                                      jax.random.split(key, 1))
    np.testing.assert_allclose(grads["a"][0], -1.0)

    offline_config = dataclasses.replace(offline_experiment.PRESETS["quick"], estimator="halved")
    offline_experiment.validate(offline_config)
    assert isinstance(configlib.estimator(offline_config), Halved)
    truncated_config = dataclasses.replace(truncated_experiment.PRESETS["quick"], estimators=("halved", "pes"))
    truncated_experiment.validate(truncated_config)
    assert truncated_experiment.names(truncated_config) == ["smd_full", "halved_K100", "pes_K100"]

    for name in ESTIMATORS:  # every estimator says how the report shows it, and whether it is windowed
        est = make_estimator(name)
        assert isinstance(est, Estimator) and est.name == name
        assert est.color.startswith("tab:") and est.description and isinstance(est.windowed, bool)
    assert WINDOWED == ("forward", "reverse", "es", "pes", "nres")  # the experiments' default, fixed at import
    assert make_estimator("halved").windowed and not make_estimator("fd").windowed
    assert report.color("halved") == "tab:pink" and report.color("reverse") == "tab:cyan"
    assert report.descriptions(["forward", "halved", "reverse", "nres"]) == [
        Truncated.description, "halved: forward mode, every estimate halved.", NRES.description]

    class Bare(Estimator):  # says nothing of itself: refused when made, not when traced
        pass

    with pytest.raises(TypeError, match="color"):
        Bare()
