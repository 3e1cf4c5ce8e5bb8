"""The NumPyro side: DiscreteHMM (sample vs log_prob), hmm_model sites, relabelling, NUTS on the casino."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import log_likelihood as numpyro_log_likelihood

from diffbio_prob.models import DiscreteHMM, hmm_model, interior_params, relabel_states

PI = np.array([0.3, 0.7])
A = np.array([[0.8, 0.2], [0.4, 0.6]])
B = np.array([[0.9, 0.1], [0.2, 0.8]])


def test_discrete_hmm_sample_frequencies_match_log_prob():
    """Draw many length-3 sequences: the frequency of each of the 8 outcomes is exp(log_prob)."""
    d = DiscreteHMM(PI, A, B, num_steps=3)
    n = 20_000
    draws = np.asarray(d.sample(jax.random.key(0), (n,)))
    assert draws.shape == (n, 3)
    outcomes = np.array(list(itertools.product([0, 1], repeat=3)))
    probs = np.exp(np.asarray(d.log_prob(jnp.asarray(outcomes))))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    freq = np.array([(draws == o).all(1).mean() for o in outcomes])
    assert np.all(np.abs(freq - probs) < 4 * np.sqrt(probs * (1 - probs) / n) + 1e-3)
    # an explicit value: p(y = [0, 0, 0]) by brute force over the 8 state paths
    ref = sum(
        PI[z[0]] * B[z[0], 0] * A[z[0], z[1]] * B[z[1], 0] * A[z[1], z[2]] * B[z[2], 0]
        for z in itertools.product([0, 1], repeat=3)
    )
    assert probs[0] == pytest.approx(ref, rel=1e-12)


def test_discrete_hmm_batch_lengths_and_states():
    d = DiscreteHMM(PI, A, B, num_steps=3, lengths=jnp.array([3, 1]))
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    # 10,000 x 2 sequences of 3 steps: the same compiled sampler as the test above
    y, (z,) = d.sample_with_intermediates(jax.random.key(1), (10_000,))
    assert y.shape == (10_000, 2, 3) and z.shape == (10_000, 2, 3)
    assert (np.asarray(y[:, 1, 1:]) == -1).all() and (np.asarray(z[:, 1, 1:]) == -1).all()
    y = y[:5]
    lp = d.log_prob(y)
    assert lp.shape == (5, 2)
    # a length-1 sequence has p(y_1) = sum_k pi_k B[k, y_1]
    np.testing.assert_allclose(np.exp(lp[:, 1]), (PI @ B)[np.asarray(y[:, 1, 0])], rtol=1e-12)
    with pytest.raises(ValueError, match="lengths"):
        DiscreteHMM(PI, A, B, num_steps=3, lengths=jnp.array([4]))
    with pytest.raises(ValueError, match="num_steps"):
        DiscreteHMM(PI, A, B, num_steps=0)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        DiscreteHMM(PI, np.eye(3), B, num_steps=2)


def test_hmm_model_sites_and_pointwise_log_likelihood():
    y = jnp.array([[0, 1, 1, 0], [1, 1, -1, -1], [0, 0, 0, 1]])
    lengths = jnp.array([4, 2, 4])
    params = {"initial_probs": PI, "transition_probs": A, "emission_probs": B}
    tr = handlers.trace(handlers.substitute(hmm_model, data=params)).get_trace(y, lengths, num_states=2)
    assert [n for n, s in tr.items() if s["type"] == "sample"] == [
        "initial_probs",
        "transition_probs",
        "emission_probs",
        "observations",
    ]
    assert tr["transition_probs"]["fn"].event_shape == (2, 2) and tr["emission_probs"]["fn"].event_shape == (2, 2)
    assert tr["observations"]["is_observed"]
    samples = {k: jnp.asarray(v)[None] for k, v in params.items()}
    ll = numpyro_log_likelihood(hmm_model, samples, y, lengths, num_states=2)["observations"]
    assert ll.shape == (1, 3)
    d = DiscreteHMM(PI, A, B, 4, lengths)
    np.testing.assert_allclose(ll[0], d.log_prob(y), atol=1e-12)
    with pytest.raises(TypeError, match="observations: expected integer"):
        hmm_model(jnp.array([0.5, 1.0]), num_states=2)
    with pytest.raises(ValueError, match="observations: symbols"):
        hmm_model(jnp.array([0, 3]), num_states=2, num_emissions=2)
    with pytest.raises(ValueError, match="transition_concentration"):
        hmm_model(y, lengths, num_states=2, transition_concentration=-1.0)


def test_relabel_states_permutes_every_site_consistently():
    e = np.array([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])  # symbol 1 probs: 0.9, 0.3, 0.5 -> order 1, 2, 0
    pi = np.array([0.2, 0.3, 0.5])
    a = np.arange(9.0).reshape(3, 3)
    out = relabel_states({"emission_probs": e[None, None], "initial_probs": pi[None, None], "transition_probs": a[None, None], "x": np.ones(2)})
    perm = [1, 2, 0]
    np.testing.assert_array_equal(out["emission_probs"][0, 0], e[perm])
    np.testing.assert_array_equal(out["initial_probs"][0, 0], pi[perm])
    np.testing.assert_array_equal(out["transition_probs"][0, 0], a[np.ix_(perm, perm)])
    np.testing.assert_array_equal(out["x"], np.ones(2))
    # the likelihood is invariant under the relabelling
    y = jnp.array([0, 1, 1, 0, 1])
    a_prob = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    lp = DiscreteHMM(pi, a_prob, e, 5).log_prob(y)
    r = relabel_states({"emission_probs": e, "initial_probs": pi, "transition_probs": a_prob})
    lp2 = DiscreteHMM(r["initial_probs"], r["transition_probs"], r["emission_probs"], 5).log_prob(y)
    assert float(lp) == pytest.approx(float(lp2), abs=1e-12)


CASINO = {
    "initial_probs": np.array([0.5, 0.5]),
    "transition_probs": np.array([[0.95, 0.05], [0.10, 0.90]]),
    "emission_probs": np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]]),
}


@pytest.mark.slow
def test_nuts_recovers_dishonest_casino():
    """Durbin et al.'s dishonest casino, 1000 rolls (seeded), flat Dirichlet priors: NUTS (2 chains,
    300 warmup + 1000 draws, every chain started from a Baum-Welch fit, draws relabelled by the
    probability of a six) has no divergences, R-hat < 1.01 on all 18 probabilities, and the central 90%
    intervals cover the true stay-probabilities and six-probabilities. (About 35 s of CPU; with 300
    draws per chain R-hat of this posterior lands between 1.00 and 1.03.)"""
    import arviz as az

    from diffbio_prob.inference import fit_nuts
    from diffbio_prob.inference.baum_welch import baum_welch

    d = DiscreteHMM(CASINO["initial_probs"], CASINO["transition_probs"], CASINO["emission_probs"], 1000)
    y = d.sample(jax.random.key(7))
    em = baum_welch(np.asarray(y), 2, 6, num_iters=100, seed=0)
    init = interior_params(relabel_states(em.params))
    res = fit_nuts(hmm_model, y, num_states=2, num_emissions=6, init_params=init, num_warmup=300,
                   num_samples=1000, num_chains=2, rng_key=1, progress=False)
    draws = relabel_states(res.samples)
    assert res.num_divergences == 0
    for name in ("initial_probs", "transition_probs", "emission_probs"):
        x = draws[name].reshape(draws[name].shape[:2] + (-1,))
        rhat = np.array([float(az.rhat(x[..., i])) for i in range(x.shape[-1])])
        assert (rhat < 1.01).all(), (name, rhat)
    checks = {
        "stay fair": (draws["transition_probs"][..., 0, 0], 0.95),
        "stay loaded": (draws["transition_probs"][..., 1, 1], 0.90),
        "six | fair": (draws["emission_probs"][..., 0, 5], 1 / 6),
        "six | loaded": (draws["emission_probs"][..., 1, 5], 0.5),
    }
    for label, (x, truth) in checks.items():
        lo, hi = np.quantile(x, [0.05, 0.95])
        assert lo <= truth <= hi, (label, lo, hi, truth)
    # the pointwise log-likelihood recorded for LOO is the model's, per draw
    assert res.log_likelihood["observations"].shape == (2, 1000)


# --- DiscreteHMM.log_prob on bad values ------------------------------------------------------------------
def brute_log_prob(y):
    """log p(y) by enumerating the 2**T state paths (-1 = missing, factor 1)."""
    total = []
    for z in itertools.product([0, 1], repeat=len(y)):
        lp = np.log(PI[z[0]])
        for t, (zt, yt) in enumerate(zip(z, y)):
            if t:
                lp += np.log(A[z[t - 1], zt])
            if yt >= 0:
                lp += np.log(B[zt, yt])
        total.append(lp)
    return np.logaddexp.reduce(total)


@pytest.mark.parametrize("validate_args", [False, True])
def test_out_of_support_symbols_have_log_prob_minus_inf(validate_args):
    """Before: NaN for symbol 2 (M = 2), and -2 was silently treated as missing."""
    d = DiscreteHMM(PI, A, B, num_steps=4, validate_args=validate_args)
    values = jnp.array([[0, 1, 0, 0], [0, 1, 2, 0], [0, 1, -2, 0], [0, -1, 1, 1]])
    ctx = pytest.warns(UserWarning, match=r"value: 2 at index \(1, 2\) is outside the support") if validate_args \
        else _no_warning()
    with ctx:
        lp = np.asarray(d.log_prob(values))
    np.testing.assert_allclose(lp[[0, 3]], [brute_log_prob([0, 1, 0, 0]), brute_log_prob([0, -1, 1, 1])], rtol=1e-12)
    assert lp[1] == -np.inf and lp[2] == -np.inf
    # non-integral floats are outside the support; integral floats are fine
    with _no_warning() if not validate_args else pytest.warns(UserWarning, match="0.5"):
        lp = np.asarray(d.log_prob(jnp.array([[0.5, 1, 0, 0], [0.0, 1, 0, 0]])))
    assert lp[0] == -np.inf
    np.testing.assert_allclose(lp[1], brute_log_prob([0, 1, 0, 0]), rtol=1e-12)


def _no_warning():
    import warnings
    from contextlib import contextmanager

    @contextmanager
    def ctx():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield

    return ctx()


def test_out_of_support_under_jit_and_grad_is_minus_inf_without_nan():
    f = jax.jit(lambda v: DiscreteHMM(PI, A, B, num_steps=3).log_prob(v))
    assert float(f(jnp.array([0, 5, 1]))) == -np.inf
    with pytest.warns(UserWarning, match="outside the support"):  # concrete value, validation on (default)
        g = jax.grad(lambda p: DiscreteHMM(p, A, B, num_steps=3).log_prob(jnp.array([0, 5, 1])))(jnp.asarray(PI))
    assert np.all(np.isfinite(np.asarray(g)))


def test_padding_past_lengths_is_not_checked():
    d = DiscreteHMM(PI, A, B, num_steps=3, lengths=jnp.array([3, 1]))
    lp = np.asarray(d.log_prob(jnp.array([[0, 1, 1], [1, 7, 9]])))  # 7, 9 lie in the second row's padding
    np.testing.assert_allclose(lp, [brute_log_prob([0, 1, 1]), brute_log_prob([1])], rtol=1e-12)


@pytest.mark.parametrize(
    "value,exc,match",
    [
        ([0, 1, 0], ValueError, r"value: expected event shape \(4,\) \(num_steps\) on the last axis, got shape \(3,\)"),
        ([[0, 1, 0, 0, 1]], ValueError, r"value: expected event shape \(4,\)"),
        (0, ValueError, r"value: expected event shape \(4,\)"),
        (np.array([True, False, True, True]), TypeError, "value: expected integer symbols"),
        ("0101", TypeError, "value: expected integer symbols"),
    ],
)
def test_bad_value_shapes_and_dtypes_are_named(value, exc, match):
    """Before: a JAX broadcasting message ('Incompatible types for broadcasting')."""
    d = DiscreteHMM(PI, A, B, num_steps=4)
    with pytest.raises(exc, match=match):
        d.log_prob(value if isinstance(value, str) else jnp.asarray(value))


def test_value_batch_that_does_not_broadcast_is_named():
    d = DiscreteHMM(PI, A, B, num_steps=2, lengths=jnp.array([2, 1, 2]))
    with pytest.raises(ValueError, match=r"value: batch shape \(2,\) does not broadcast"):
        d.log_prob(jnp.zeros((2, 2), jnp.int32))


def test_hmm_model_argument_checks():
    run = lambda *a, **k: handlers.seed(hmm_model, 0)(*a, **k)  # noqa: E731
    # before: a (3,) lengths with a (2, T) batch was accepted (the batch shape silently became (3,))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\) \(one per sequence"):
        run(jnp.array([[0, 1], [1, 0]]), lengths=jnp.array([1, 2, 2]))
    # before: 2.5 steps became 2
    with pytest.raises(ValueError, match="num_steps: expected a positive integer, got 2.5"):
        run(None, num_emissions=2, num_steps=2.5)
    # before: AttributeError ('list' object has no attribute 'shape'); a list is fine now
    tr = handlers.trace(handlers.seed(hmm_model, 0)).get_trace([0, 1, 1])
    assert tr["observations"]["value"].shape == (3,)


# ---- any emission: observation_dist (Pyro's convention) and the core's emission objects -----------------
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer.util import log_density  # noqa: E402
from scipy import stats  # noqa: E402

from diffbio_prob.cores import hmm as core  # noqa: E402

RATES = np.array([[1.0, 6.0], [2.0, 9.0], [0.5, 4.0]])  # per-sequence Poisson rates (B, S)
COUNTS = np.array([[0, 3, 7, 1, 5], [2, 9, 9, 1, 0], [0, 0, 4, 4, -1]])
LENS = np.array([5, 5, 4])


def _enumerate(log_emission_rows):
    """log p(y) over all state paths, from a (T, S) table of log-densities (any T)."""
    t = log_emission_rows.shape[0]
    total = []
    for z in itertools.product(range(2), repeat=t):
        lp = np.log(PI[z[0]]) + sum(np.log(A[z[i - 1], z[i]]) for i in range(1, t))
        total.append(lp + sum(log_emission_rows[i, z[i]] for i in range(t)))
    return np.logaddexp.reduce(total)


def test_observation_dist_poisson_equals_enumeration_and_the_core_emission():
    y = COUNTS[0]
    ref = _enumerate(stats.poisson.logpmf(y[:, None], RATES[0][None, :]))
    d = DiscreteHMM(PI, A, observation_dist=dist.Poisson(RATES[0]), num_steps=5)
    e = DiscreteHMM(PI, A, emission="poisson", emission_params={"rates": RATES[0]}, num_steps=5)
    assert d.batch_shape == () and d.event_shape == (5,)
    np.testing.assert_allclose(d.log_prob(y), ref, rtol=1e-12)
    np.testing.assert_allclose(e.log_prob(y), ref, rtol=1e-12)
    # filter / posterior marginals / viterbi agree with the core on the same matrix
    ll = core.poisson_log_likelihoods(jnp.log(RATES[0]), y)
    hp = core.HMMParams(jnp.log(PI), jnp.log(A))
    np.testing.assert_allclose(d.posterior_marginals(y), core.smoother(hp, ll).smoothed, atol=1e-12)
    np.testing.assert_allclose(d.filter(y), core.forward_filter(hp, ll).filtered, atol=1e-12)
    np.testing.assert_array_equal(d.viterbi(y)[0], core.viterbi(hp, ll)[0])


def test_observation_dist_gaussian_vector_event_equals_enumeration():
    mu = np.array([[0.0, 1.0], [2.0, -1.0]])
    cov = np.array([[[1.0, 0.4], [0.4, 0.5]], [[0.6, -0.3], [-0.3, 1.2]]])
    y = np.array([[0.3, 0.9], [1.8, 0.1], [2.5, -0.2]])
    table = np.stack([stats.multivariate_normal.logpdf(y, mu[k], cov[k]) for k in range(2)], -1)
    d = DiscreteHMM(PI, A, observation_dist=dist.MultivariateNormal(mu, cov), num_steps=3)
    e = DiscreteHMM(PI, A, emission="gaussian_full", emission_params={"means": mu, "covariances": cov}, num_steps=3)
    assert d.event_shape == (3, 2)
    np.testing.assert_allclose(d.log_prob(y), _enumerate(table), rtol=1e-12)
    np.testing.assert_allclose(e.log_prob(y), _enumerate(table), rtol=1e-12)


def test_per_sequence_emissions_under_plate_vmap_and_mask_equal_a_loop():
    loop = np.array([_enumerate(stats.poisson.logpmf(COUNTS[i, : LENS[i], None], RATES[i][None, :])) for i in range(3)])
    d = DiscreteHMM(PI, A, observation_dist=dist.Poisson(RATES), num_steps=5, lengths=LENS)
    assert d.batch_shape == (3,)
    np.testing.assert_allclose(d.log_prob(COUNTS), loop, rtol=1e-12)
    e = DiscreteHMM(PI, A, emission="poisson", emission_params={"rates": RATES}, num_steps=5, lengths=LENS)
    np.testing.assert_allclose(e.log_prob(COUNTS), loop, rtol=1e-12)
    # vmap over sequences (lengths equal: the first two)
    vm = jax.vmap(lambda r, y: DiscreteHMM(PI, A, observation_dist=dist.Poisson(r), num_steps=5).log_prob(y))
    np.testing.assert_allclose(vm(RATES[:2], COUNTS[:2]), loop[:2], rtol=1e-12)
    keep = np.array([True, False, True])

    def model():
        with numpyro.plate("sequences", 3):
            numpyro.sample("y", DiscreteHMM(PI, A, observation_dist=dist.Poisson(RATES), num_steps=5,
                                            lengths=LENS).mask(keep), obs=COUNTS)

    np.testing.assert_allclose(log_density(model, (), {}, {})[0], loop[keep].sum(), rtol=1e-12)
    # shared rates broadcast by the plate
    def shared():
        with numpyro.plate("sequences", 3):
            numpyro.sample("y", DiscreteHMM(PI, A, observation_dist=dist.Poisson(RATES[0]), num_steps=5,
                                            lengths=LENS), obs=COUNTS)

    ref = sum(_enumerate(stats.poisson.logpmf(COUNTS[i, : LENS[i], None], RATES[0][None, :])) for i in range(3))
    np.testing.assert_allclose(log_density(shared, (), {}, {})[0], ref, rtol=1e-12)
    # gradients: finite, and padding contributes nothing
    g = jax.grad(lambda r: DiscreteHMM(PI, A, observation_dist=dist.Poisson(r), num_steps=5,
                                       lengths=LENS).log_prob(COUNTS).sum())(jnp.asarray(RATES))
    assert np.isfinite(np.asarray(g)).all()


def test_observation_dist_sampling_frequencies_match_log_prob():
    d = DiscreteHMM(PI, A, observation_dist=dist.Bernoulli(probs=jnp.array([0.1, 0.8])), num_steps=3)
    n = 20_000
    draws = np.asarray(d.sample(jax.random.key(0), (n,)))
    assert draws.shape == (n, 3)
    outcomes = np.array(list(itertools.product([0, 1], repeat=3)))
    probs = np.exp(np.asarray(d.log_prob(jnp.asarray(outcomes, dtype=float))))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    freq = np.array([(draws == o).all(1).mean() for o in outcomes])
    assert np.all(np.abs(freq - probs) < 4 * np.sqrt(probs * (1 - probs) / n) + 1e-3)
    y, (z,) = DiscreteHMM(PI, A, emission="poisson", emission_params={"rates": RATES}, num_steps=5,
                          lengths=LENS).sample_with_intermediates(jax.random.key(1))
    assert y.shape == z.shape == (3, 5) and int(y[2, 4]) == -1 and int(z[2, 4]) == -1


def test_discrete_hmm_emission_argument_errors():
    with pytest.raises(ValueError, match="exactly one of emission_probs, observation_dist or emission"):
        DiscreteHMM(PI, A, B, 3, observation_dist=dist.Poisson(jnp.ones(2)))
    with pytest.raises(ValueError, match=r"observation_dist: expected a batch shape ending in \(2,\)"):
        DiscreteHMM(PI, A, observation_dist=dist.Poisson(jnp.ones(3)), num_steps=3)
    with pytest.raises(ValueError, match="num_steps: required"):
        DiscreteHMM(PI, A, observation_dist=dist.Poisson(jnp.ones(2)))
    with pytest.raises(ValueError, match=r"emission_params: missing \['concentrations'\]"):
        DiscreteHMM(PI, A, emission="negative_binomial", emission_params={"means": jnp.ones(2)}, num_steps=3)
    with pytest.raises(ValueError, match=r"value: expected event shape \(3,\)"):
        DiscreteHMM(PI, A, observation_dist=dist.Poisson(jnp.ones(2)), num_steps=3).log_prob(jnp.zeros(4))


@pytest.mark.parametrize("emission, num_features", [("poisson", None), ("negative_binomial", None),
                                                    ("gaussian", 2), ("gaussian_full", 2), ("bernoulli", 3)])
def test_hmm_model_emission_sites_and_likelihood_is_the_core(emission, num_features):
    from numpyro.infer import Predictive

    em = core.get_emission(emission)
    prior = Predictive(hmm_model, num_samples=1)(jax.random.key(0), num_states=2, num_steps=6, emission=emission,
                                                 num_features=num_features)
    for site in em.site_names:
        assert site in prior
    y = np.asarray(prior["observations"][0])
    params = {k: v[0] for k, v in prior.items() if k != "observations"}
    tr = handlers.trace(handlers.substitute(hmm_model, data=params)).get_trace(y, num_states=2, emission=emission)
    ll = em.log_likelihoods({n: params[s] for n, s in zip(em.param_names, em.site_names)}, y)
    ref = core.log_likelihood(core.HMMParams(jnp.log(params["initial_probs"]), jnp.log(params["transition_probs"])), ll)
    np.testing.assert_allclose(tr["observations"]["fn"].log_prob(y), ref, rtol=1e-12)


def test_hmm_model_emission_argument_errors():
    with pytest.raises(ValueError, match="emission_prior: unknown keys"):
        hmm_model(np.array([1, 2]), emission="poisson", emission_prior={"shape": 1.0})
    with pytest.raises(ValueError, match="observations: negative value"):
        hmm_model(np.array([1, -2]), emission="poisson")
    with pytest.raises(ValueError, match="num_features: expected a positive integer"):
        handlers.seed(hmm_model, 0)(num_steps=3, emission="gaussian")
    with pytest.raises(ValueError, match="observations: required for the multinomial"):
        handlers.seed(hmm_model, 0)(num_steps=3, emission="multinomial", num_features=2)
    with pytest.raises(ValueError, match="emission: unknown 'gamma'"):
        hmm_model(np.array([1, 2]), emission="gamma")


def test_validated_construction_with_constant_parameters_inside_a_trace():
    # JAX arrays made outside a jit stay concrete inside it, but jnp ops on them there are staged: the
    # emission check must not call bool() on a staged result (it raised TracerBoolConversionError)
    pi, a, b = jnp.asarray(PI), jnp.asarray(A), jnp.asarray(B)
    f = jax.jit(lambda v: DiscreteHMM(pi, a, b, num_steps=3, validate_args=True).log_prob(v))
    expected = DiscreteHMM(PI, A, B, num_steps=3).log_prob(jnp.array([0, 1, 1]))
    np.testing.assert_allclose(f(jnp.array([0, 1, 1])), expected, rtol=1e-12)
    bad = b.at[0, 0].add(0.1)
    with pytest.raises(ValueError, match="emission_probs: each row must be a probability vector"):
        jax.jit(lambda v: DiscreteHMM(pi, a, bad, num_steps=3, validate_args=True).log_prob(v))(jnp.array([0, 1, 1]))
