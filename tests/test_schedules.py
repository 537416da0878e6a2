"""Learning-rate schedule objects against numbers worked by hand, the old inverse-time formula
bit for bit, finite differences, vmap, jit and an optimizer that trains with one."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shorthorizon.optim import (SCHEDULES, LogSpace, Schedule, exponential, inverse_time, make_optimizer,
                                make_schedule, sgd)

LR, F = 0.5, 0.2


def at(schedule, steps, **hyper):
    """The schedule's lr at each of ``steps`` (Python floats), with lr = LR and ``hyper``."""
    return [float(schedule({"lr": jnp.float32(LR), **hyper}, jnp.int32(t))) for t in steps]


def test_cosine_worked_by_hand():
    # lr (f + (1 - f) (1 + cos(pi t / T)) / 2) up to T, then f lr
    quarter = LR * (F + (1 - F) * (1 + math.cos(math.pi / 4)) / 2)
    expected = [LR, quarter, LR * (1 + F) / 2, F * LR, F * LR]
    np.testing.assert_allclose(at(make_schedule("cosine", 100), [0, 25, 50, 100, 150], final_fraction=F),
                               expected, rtol=1e-6)


def test_linear_worked_by_hand():
    np.testing.assert_allclose(at(make_schedule("linear", 100), [0, 30, 99, 100, 130]),
                               [LR, 0.7 * LR, 0.01 * LR, 0.0, 0.0], rtol=1e-5, atol=1e-9)


def test_wsd_three_phases_worked_by_hand():
    # 100 steps: warmup over steps 0..10, lr until step 80, then down to zero at step 100
    wsd = make_schedule("wsd", 100, warmup_fraction=0.1, decay_fraction=0.2)
    np.testing.assert_allclose(at(wsd, [0, 5, 10, 50, 80, 90, 95, 100, 120]),
                               [0.0, LR / 2, LR, LR, LR, LR / 2, LR / 4, 0.0, 0.0], rtol=1e-6, atol=1e-9)


def test_warmup_cosine_peaks_at_the_end_of_its_warmup():
    # warmup over steps 0..10, then a cosine over the 90 steps left: its middle at step 55
    schedule = make_schedule("warmup-cosine", 100, warmup_fraction=0.1)
    np.testing.assert_allclose(at(schedule, [0, 5, 10, 55, 100, 130], final_fraction=F),
                               [0.0, LR / 2, LR, LR * (1 + F) / 2, F * LR, F * LR], rtol=1e-6, atol=1e-9)
    curve = at(schedule, range(101), final_fraction=F)
    assert int(np.argmax(curve)) == 10


def test_length_free_families_worked_by_hand():
    hyper = {"decay_exponent": 2.0, "decay_rate": 0.5}
    assert at(make_schedule("constant", 7), [0, 7, 10**6]) == [LR] * 3
    np.testing.assert_allclose(at(inverse_time(5000.0), [0, 5000, 15000], **hyper), [LR, LR / 4, LR / 16], rtol=1e-6)
    np.testing.assert_allclose(at(exponential(10.0), [0, 10, 20], **hyper), [LR, LR / 2, LR / 4], rtol=1e-6)


def test_inverse_time_and_exponential_equal_the_old_formulas_bit_for_bit():
    steps = jnp.arange(0, 20000, 37, dtype=jnp.int32)
    beta = jnp.asarray(np.logspace(-2, 2.3, 9), jnp.float32)[:, None]
    lr = jnp.asarray(np.logspace(-3, -0.3, 9), jnp.float32)[:, None]
    hyper = {"lr": lr, "decay_exponent": beta, "decay_rate": jnp.linspace(0.05, 1.0, 9, dtype=jnp.float32)[:, None]}
    old_inverse = lambda hyper, step: hyper["lr"] * (1.0 + step / 5000.0) ** (-hyper["decay_exponent"])
    old_exponential = lambda hyper, step: hyper["lr"] * hyper["decay_rate"] ** (step / 300.0)
    for new, old in ((make_schedule("inverse-time", decay_steps=5000.0), old_inverse),
                     (exponential(300.0), old_exponential)):
        assert new(hyper, steps).dtype == jnp.float32
        assert jnp.array_equal(new(hyper, steps), old(hyper, steps))
        assert jnp.array_equal(jax.jit(new)(hyper, steps), jax.jit(old)(hyper, steps))


def test_over_lays_a_shape_over_another_length():
    cosine = make_schedule("cosine", 100)
    longer = cosine.over(1000)
    assert longer == make_schedule("cosine", 1000) and longer.length == 1000
    np.testing.assert_allclose(at(longer, [100, 500, 1000, 2000], final_fraction=F),
                               [at(cosine, [10], final_fraction=F)[0], LR * (1 + F) / 2, F * LR, F * LR], rtol=1e-6)
    wsd = make_schedule("wsd", 100, warmup_fraction=0.1, decay_fraction=0.3)
    assert wsd.over(50) == make_schedule("wsd", 50, warmup_fraction=0.1, decay_fraction=0.3)
    for name in ("inverse-time", "constant", "exponential"):
        schedule = make_schedule(name, 100)
        assert not schedule.depends_on_length and schedule.over(7) is schedule and schedule.length is None
    assert all(make_schedule(name, 10).depends_on_length for name in ("cosine", "warmup-cosine", "linear", "wsd"))


FAMILIES = {"inverse-time": make_schedule("inverse-time", decay_steps=20.0),
            "exponential": exponential(20.0),
            "cosine": make_schedule("cosine", 100),
            "warmup-cosine": make_schedule("warmup-cosine", 100, warmup_fraction=0.1),
            "linear": make_schedule("linear", 100),
            "wsd": make_schedule("wsd", 100, warmup_fraction=0.1, decay_fraction=0.3),
            "constant": make_schedule("constant")}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_gradients_match_finite_differences(name, x64):
    """d lr_t / d (lr and each hyperparameter the schedule reads), at steps inside each phase
    (away from the kinks), against central differences in float64."""
    schedule = FAMILIES[name]
    assert set(FAMILIES) == set(SCHEDULES)
    hyper = {"lr": 0.3, **{k: 0.8 * v for k, v in schedule.defaults.items()}}
    hyper = {k: jnp.float64(v) for k, v in hyper.items()}
    for step in (3, 37, 85, 150):
        grads = jax.grad(schedule)(hyper, jnp.int32(step))
        assert set(grads) == set(schedule.reads)
        for k in hyper:
            eps = 1e-6
            up, down = schedule({**hyper, k: hyper[k] + eps}, step), schedule({**hyper, k: hyper[k] - eps}, step)
            np.testing.assert_allclose(float(grads[k]), float((up - down) / (2 * eps)), rtol=1e-8, atol=1e-11,
                                       err_msg=f"d lr_{step} / d {k}")


def test_float64_throughout_where_it_is_on(x64):
    """The optimizer's step is int32; optax divides it by Python ints, which would round the
    shape to float32 even in a float64 run."""
    hyper = {"lr": jnp.float64(0.3), "final_fraction": jnp.float64(0.1)}
    step = jnp.int32(81)
    cases = {"linear": 1 - 81 / 100, "wsd": (100 - 81) / 30,  # its decay: the last 30 steps
             "warmup-cosine": 0.1 + 0.9 * (1 + math.cos(math.pi * (81 - 10) / 90)) / 2}
    for name, multiplier in cases.items():
        lr = FAMILIES[name](hyper, step)
        assert lr.dtype == jnp.float64
        np.testing.assert_allclose(float(lr), 0.3 * multiplier, rtol=1e-14, err_msg=name)


def test_gradients_of_the_fitted_hyperparameters_worked_by_hand(x64):
    hyper = {"lr": jnp.float64(0.3), "final_fraction": jnp.float64(0.1), "decay_exponent": jnp.float64(1.5)}
    # past the end a cosine is final_fraction * lr: d/d final_fraction = lr, d/d lr = final_fraction
    grads = jax.grad(make_schedule("cosine", 100))(hyper, 120)
    np.testing.assert_allclose([grads["final_fraction"], grads["lr"]], [0.3, 0.1], rtol=1e-12)
    # d/d beta of lr (1 + t/d)^(-beta) = -lr (1 + t/d)^(-beta) log(1 + t/d); at t = d: -lr 2^(-beta) log 2
    grad = jax.grad(inverse_time(50.0))(hyper, 50)["decay_exponent"]
    np.testing.assert_allclose(grad, -0.3 * 2**-1.5 * math.log(2), rtol=1e-12)


def test_vmap_over_hyperparameter_values():
    lr, fraction = jnp.array([0.1, 0.3, 1.0]), jnp.array([0.0, 0.2, 0.9])
    cosine = make_schedule("warmup-cosine", 60, warmup_fraction=0.25)
    batched = jax.vmap(cosine, in_axes=(0, None))({"lr": lr, "final_fraction": fraction}, 40)
    one_by_one = [cosine({"lr": a, "final_fraction": f}, 40) for a, f in zip(lr, fraction)]
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-6)
    betas = jnp.array([0.01, 1.0, 100.0])
    batched = jax.vmap(inverse_time(10.0), in_axes=({"lr": None, "decay_exponent": 0}, None))(
        {"lr": jnp.float32(0.5), "decay_exponent": betas}, 10)
    np.testing.assert_allclose(batched, 0.5 * 2.0 ** -betas, rtol=1e-6)


def test_a_schedule_is_a_static_jit_argument_equal_objects_share_a_program():
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def lr_at(schedule, hyper, step):
        traces.append(schedule)
        return schedule(hyper, step)

    hyper = {"lr": jnp.float32(LR), "final_fraction": jnp.float32(F)}
    first, again = make_schedule("cosine", 100), make_schedule("cosine", 100)
    assert first is not again and first == again and hash(first) == hash(again)
    assert float(lr_at(first, hyper, 100)) == float(lr_at(again, hyper, 100)) == pytest.approx(F * LR)
    assert len(traces) == 1
    assert float(lr_at(first.over(200), hyper, 100)) == pytest.approx(LR * (1 + F) / 2)
    assert len(traces) == 2
    assert make_schedule("wsd", 100) != make_schedule("wsd", 100, decay_fraction=0.5)
    assert make_schedule("linear", 100) != make_schedule("cosine", 100)


def test_an_optimizer_trains_with_a_cosine_schedule():
    """Heavy ball under a cosine over 100 steps: the lr each update applies is the schedule's
    at its step, the parameters follow v <- mu v - lr_t g by hand, and the loss falls."""
    schedule = make_schedule("cosine", 100)
    opt = make_optimizer("momentum", schedule)
    curvature = jnp.array([1.0, 3.0, 0.5])
    loss = lambda p: 0.5 * jnp.sum(curvature * p["w"] ** 2)
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    state = opt.init(params, {"lr": 0.1, "momentum": 0.9, "final_fraction": F})
    p, v = params["w"], jnp.zeros(3)
    for t in range(8):
        params, state = opt.update(jax.grad(loss)(params), state, params)
        lr_t = 0.1 * (F + (1 - F) * (1 + math.cos(math.pi * t / 100)) / 2)
        assert float(state.slots.hyperparams["lr"]) == pytest.approx(lr_t, rel=1e-6)
        v = 0.9 * v - lr_t * curvature * p
        p = p + v
        np.testing.assert_allclose(params["w"], p, rtol=1e-5, atol=1e-7)
    assert int(state.step) == 8 and float(loss(params)) < 0.2 * float(loss({"w": jnp.array([1.0, -2.0, 0.5])}))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_schedule_declares_the_names_a_call_reads(name):
    """The optimizer takes a schedule object's declared names; a plain function of the same
    calls has its names found by calling it: both must agree, missing names included."""
    schedule, params = FAMILIES[name], {"w": jnp.ones(2)}
    hyper = {"lr": 0.1, **schedule.defaults}
    plain = lambda hyper, step: schedule(hyper, step)
    assert set(sgd(schedule).init(params, hyper).hyper) == set(sgd(plain).init(params, hyper).hyper) == set(hyper)
    for missing in schedule.hyperparameters:
        for opt in (sgd(schedule), sgd(plain)):
            with pytest.raises(ValueError, match=f"schedule needs hyperparameter '{missing}'"):
                opt.init(params, {k: v for k, v in hyper.items() if k != missing})


def test_hyperparameters_have_defaults_inside_their_boxes():
    assert make_schedule("inverse-time").hyperparameters["decay_exponent"].box == (1e-2, 10**2.3)  # the paper's
    for name, cls in SCHEDULES.items():
        assert issubclass(cls, Schedule) and cls.name == name
        for parameter, (default, (low, high), limits) in cls.hyperparameters.items():
            assert 0 < low <= default <= high and limits.holds(low) and limits.holds(high), (name, parameter)
    space = LogSpace(make_schedule("inverse-time").ranges(lr=(1e-3, 10**-0.3)))
    assert space.names == ("lr", "decay_exponent")
    np.testing.assert_allclose(space.bounds()["log_decay_exponent"], (math.log(1e-2), 2.3 * math.log(10)))


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown schedule 'step'; choose one of: inverse-time, constant.*wsd"):
        make_schedule("step", 100)
    with pytest.raises(ValueError, match=r"'cosine' has no field \['warmup_fraction'\]"):
        make_schedule("cosine", 100, warmup_fraction=0.1)
    for fraction in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"warmup-cosine's warmup_fraction must lie in \[0, 1\)"):
            make_schedule("warmup-cosine", 100, warmup_fraction=fraction)
    with pytest.raises(ValueError, match=r"wsd's decay_fraction must lie in \[0, 1\)"):
        make_schedule("wsd", 100, decay_fraction=1.0)
    with pytest.raises(ValueError, match="warmup_fraction \\+ decay_fraction must not exceed 1"):
        make_schedule("wsd", 100, warmup_fraction=0.6, decay_fraction=0.5)
    for length in (0, -5, None, 2.5):
        with pytest.raises(ValueError, match="cosine needs a length of at least 1 step"):
            make_schedule("cosine", length)
    with pytest.raises(ValueError, match="decay_steps must be positive"):
        make_schedule("inverse-time", decay_steps=0.0)
    with pytest.raises(ValueError, match="inverse-time's shape does not depend on the run's length"):
        SCHEDULES["inverse-time"](length=100)
    assert make_schedule("inverse-time", 0) == inverse_time()  # the length of a length-free family is ignored
