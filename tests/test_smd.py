"""Stochastic meta-descent (Algorithm 1) on objectives whose minimum is known."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shorthorizon.meta.smd import SMD


def test_smd_reaches_known_minimum_and_persists_adam_state(x64):
    # minimum of (a - 1)^2 + 3 (b + 2)^2 at a=1, b=-2
    objective = lambda raw, key: (raw["a"] - 1.0) ** 2 + 3 * (raw["b"] + 2.0) ** 2
    smd = SMD(objective, meta_lr=0.05)
    state, (values, grads, raws) = jax.jit(smd.run)(smd.init({"a": 0.0, "b": 0.0}),
                                                   jax.random.split(jax.random.PRNGKey(0), 400))
    assert abs(float(state.raw["a"]) - 1) < 1e-2
    assert abs(float(state.raw["b"]) + 2) < 1e-2
    assert float(values[-1]) < 1e-3 * float(values[0])
    # the same trajectory as optax's Adam with a state kept across steps, fed exact gradients
    opt, raw = optax.adam(0.05), {"a": jnp.float64(0.0), "b": jnp.float64(0.0)}
    opt_state = opt.init(raw)
    for _ in range(5):
        g = jax.grad(lambda r: objective(r, None))(raw)
        updates, opt_state = opt.update(g, opt_state)
        raw = optax.apply_updates(raw, updates)
    np.testing.assert_allclose(raws["a"][5], raw["a"], rtol=1e-12)


def test_smd_clips_hypergradients_and_values(x64):
    # a steep objective: the first Adam step has size meta_lr whatever the gradient, the
    # recorded hypergradient is the raw one, and the values never leave the bounds
    objective = lambda raw, key: -1e6 * raw["u"]
    smd = SMD(objective, meta_lr=0.5, clip=10.0, bounds={"u": (-1.0, 2.0)})
    state, (_, grads, raws) = jax.jit(smd.run)(smd.init({"u": 0.0}), jax.random.split(jax.random.PRNGKey(0), 20))
    assert float(grads["u"][0]) == -1e6
    assert np.all(np.asarray(raws["u"]) <= 2.0) and float(state.raw["u"]) == 2.0
    np.testing.assert_allclose(raws["u"][1], 0.5, rtol=1e-6)
