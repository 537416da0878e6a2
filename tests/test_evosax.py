"""Our PES and NRES against an independent implementation, evosax's ``PersistentES`` and
``NoiseReuseES`` (:mod:`evosax_driver`), on the sampled NQM over two whole inner runs.

Same perturbations: our ES draws a window's ε as σ N(0, I) from the first half of the split of
the window's key, and evosax's ``ask`` draws σ N(0, I) from the key it is given, so PES gets
evosax's draws by handing it that key (checked: a different convention on either side fails
the first assertion, not the gradients). NRES draws its ε when a run starts; the test gives
that particle state evosax's ε (``EstState.xi`` is the run's perturbation) at every run start.
The members' inner states start from our particles' fresh runs and train independently of
ours from then on; every window's gradient must then agree to rounding.
"""

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from shorthorizon.hypergrad import make_estimator
from shorthorizon.nqm import NQM
from shorthorizon.nqm.inner import SampledNQM, to_raw

from evosax_driver import Evosax

T, K, PAIRS, SIGMA = 40, 5, 16, 0.1


@pytest.mark.parametrize("name", ["pes", "nres"])
def test_our_estimates_equal_evosax_with_the_same_perturbations(x64, name):
    sampled = SampledNQM(NQM.paper(20), T)
    raw = to_raw(0.8, 0.7, 0.4)
    x, unravel = ravel_pytree(raw)
    ours = make_estimator(name, sampled, K, PAIRS, SIGMA, stagger=False)
    theirs = Evosax(name, sampled, PAIRS, SIGMA, K, x, unravel)
    estimate = jax.jit(ours.estimate)
    ask, tell = jax.jit(theirs.ask), jax.jit(theirs.tell)
    state, es_state = ours.init(raw, jax.random.PRNGKey(0)), theirs.init(jax.random.PRNGKey(1))
    states = state.inner  # the members' fresh runs: each pair's + and − start alike
    windows = T // K
    for w in range(2 * windows):  # two whole runs: the perturbation state restarts in between
        key = jax.random.fold_in(jax.random.PRNGKey(2), w)
        ask_key = jax.random.split(key)[0] if name == "pes" else jax.random.fold_in(key, 1)
        population, es_state = ask(es_state, ask_key)
        eps = population[:PAIRS] - x
        np.testing.assert_allclose(population[PAIRS:] - x, -eps, rtol=0, atol=1e-15)  # antithetic
        if name == "nres" and w % windows == 0:
            state = state._replace(xi=eps)  # the run's perturbation: evosax's
        _, grad, new = estimate(state, raw, key)
        last = w % windows == windows - 1  # the window that ends both runs
        # the same perturbations this window: NRES's run-long one, PES's fresh draw (what its sum
        # grew by; a run's last window resets the sum)
        used = state.xi if name == "nres" else None if last else new.xi - state.xi
        if used is not None:
            np.testing.assert_allclose(used, eps, rtol=1e-12, atol=1e-15,
                                       err_msg="our estimator and evosax draw different perturbations")
        evosax_grad, es_state, states = tell(es_state, population, states, jax.random.PRNGKey(3))
        np.testing.assert_allclose(ravel_pytree(grad)[0], evosax_grad, rtol=1e-9, err_msg=f"window {w}")
        if last:  # evosax reset its counter, ours its particles
            assert int(es_state.inner_step_counter) == 0 and np.all(np.asarray(new.steps) == 0)
            np.testing.assert_array_equal(new.inner.theta, np.broadcast_to(sampled.nqm.mean0, new.inner.theta.shape))
            states = new.inner  # the next run's fresh states (a fresh run involves no estimator logic)
        state = new
