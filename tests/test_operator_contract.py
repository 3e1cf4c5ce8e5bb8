"""The contract between each operator and its NumPyro twin (diffbio_prob.cores.contract).

For every operator: its ``to_model_params()`` substituted into the model gives the operator's own
log-likelihood, and both equal a closed form computed here with scipy (brute-force enumeration of the
hidden paths for the HMM); ``load_model_params`` returns the same operator with the same parameters.
Also: ``to_operator`` refuses what is not an operator with that contract, the simplex nudge's
properties, and ``relabel_states`` on every emission family (the likelihood is invariant under it).
"""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from numpyro import handlers
from scipy import special, stats

from diffbio_prob.cores import em as em_core
from diffbio_prob.cores import hmm as hmm_core
from diffbio_prob.cores.contract import EM_SITES, HMM_SITES, NB_GLM_SITES, interior
from diffbio_prob.inference import FitResult, to_operator
from diffbio_prob.models.em import em_model
from diffbio_prob.models.hmm import emission_dims, hmm_model, relabel_states
from diffbio_prob.models.nb_glm import nb_glm_model
from diffbio_prob.operators.base import OperatorConfig, OperatorModule
from diffbio_prob.operators.statistical import (
    DifferentiableEMQuantifier,
    DifferentiableHMM,
    DifferentiableNBGLM,
    EMQuantifierConfig,
    HMMConfig,
    NBGLMConfig,
)

S, T, D = 2, 4, 2


def _trace(model, params, *args, **kwargs):
    return handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(*args, **kwargs)


def _observed_log_prob(tr, name):
    site = tr[name]
    return float(jnp.sum(site["fn"].log_prob(site["value"])))


# ------------------------------------------------------------------------------------------ HMM
def _emission_case(name, rng):
    """(natural params, observations (T, *event), scipy log-pmf/pdf of one step y under state k)."""
    if name == "categorical":
        p = rng.dirichlet(np.ones(3), size=S)
        return {"probs": p}, rng.integers(0, 3, T), lambda y, k: np.log(p[k, y])
    if name == "poisson":
        r = np.array([1.5, 6.0])
        return {"rates": r}, rng.poisson(3.0, T), lambda y, k: stats.poisson.logpmf(y, r[k])
    if name == "negative_binomial":
        mu, c = np.array([2.0, 9.0]), np.array([1.5, 4.0])
        return ({"means": mu, "concentrations": c}, rng.poisson(5.0, T),
                lambda y, k: stats.nbinom.logpmf(y, c[k], c[k] / (c[k] + mu[k])))
    if name == "gaussian":
        m, sd = rng.normal(size=(S, D)), rng.uniform(0.5, 2.0, (S, D))
        return ({"means": m, "scales": sd}, rng.normal(size=(T, D)),
                lambda y, k: stats.norm.logpdf(y, m[k], sd[k]).sum())
    if name == "gaussian_full":
        m = rng.normal(size=(S, D))
        a = rng.normal(size=(S, D, D))
        cov = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(D)
        return ({"means": m, "covariances": cov}, rng.normal(size=(T, D)),
                lambda y, k: stats.multivariate_normal.logpdf(y, m[k], cov[k]))
    if name == "bernoulli":
        p = rng.uniform(0.1, 0.9, (S, D))
        return {"probs": p}, rng.integers(0, 2, (T, D)), lambda y, k: stats.bernoulli.logpmf(y, p[k]).sum()
    if name == "multinomial":
        p = rng.dirichlet(np.ones(3), size=S)
        y = rng.multinomial(5, [0.2, 0.3, 0.5], size=T)
        return {"probs": p}, y, lambda y, k: stats.multinomial.logpmf(y, y.sum(), p[k])
    raise AssertionError(name)


def _enumerated(pi, a, obs, logpdf):
    """log p(y) by summing over every one of the S^T state paths."""
    terms = []
    for path in itertools.product(range(S), repeat=len(obs)):
        lp = np.log(pi[path[0]]) + sum(np.log(a[i, j]) for i, j in zip(path[:-1], path[1:]))
        terms.append(lp + sum(logpdf(obs[t], k) for t, k in enumerate(path)))
    return float(special.logsumexp(terms))


def _model_values(em, params):
    """The operator's site values plus, for the full-covariance Gaussian, the model's latent
    parameterisation of the same covariances (scales and correlation Cholesky factors)."""
    out = dict(params)
    if em.name == "gaussian_full":
        cov = np.asarray(params["emission_covariances"])
        scales = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
        out["emission_scales"] = scales
        out["emission_corr_cholesky"] = np.linalg.cholesky(cov / (scales[:, :, None] * scales[:, None, :]))
    return out


@pytest.mark.parametrize("name", sorted(hmm_core.EMISSIONS))
def test_hmm_contract_round_trip(name):
    rng = np.random.default_rng(7)
    em = hmm_core.get_emission(name)
    natural, obs, logpdf = _emission_case(name, rng)
    pi = np.array([0.3, 0.7])
    a = np.array([[0.8, 0.2], [0.35, 0.65]])
    cat = isinstance(em, hmm_core.Categorical)
    config = HMMConfig(num_states=S, num_emissions=3 if cat else 4, emission=name,
                       num_features=None if cat or em.event_ndim == 0 else obs.shape[-1])
    given = {HMM_SITES.initial: pi, HMM_SITES.transition: a,
             **dict(zip(em.site_names, natural.values()))}
    op = DifferentiableHMM(config, rngs=nnx.Rngs(1))
    assert op.load_model_params(given) is op
    params = op.to_model_params()
    assert set(params) == {HMM_SITES.initial, HMM_SITES.transition, *em.site_names}
    for k, v in given.items():
        np.testing.assert_allclose(params[k], v, rtol=1e-10, atol=1e-12)

    expected = _enumerated(pi, a, obs, logpdf)
    op_ll = float(op.forward_pass(obs))
    kw = {"num_states": S, "emission": name}
    if cat:
        kw["num_emissions"] = 3
    tr = _trace(hmm_model, _model_values(em, params), jnp.asarray(obs), **kw)
    assert op_ll == pytest.approx(expected, rel=1e-10)
    assert _observed_log_prob(tr, HMM_SITES.observations) == pytest.approx(expected, rel=1e-10)

    # what the model sampled: the chain's sites and exactly the core's declared emission sites
    latent = {k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    extra = {"emission_scales", "emission_corr_cholesky"} if name == "gaussian_full" else set()
    want = {HMM_SITES.initial, HMM_SITES.transition, *em.site_names} - (
        {"emission_covariances"} if name == "gaussian_full" else set()) | extra
    assert latent == want
    dims = emission_dims(name)
    for k, s in tr.items():
        if s["type"] in ("sample", "deterministic") and not s.get("is_observed"):
            assert len(dims[k]) == np.ndim(s["value"]), k

    other = DifferentiableHMM(config, rngs=nnx.Rngs(2))
    assert other.load_model_params(params) is other
    assert float(other.forward_pass(obs)) == pytest.approx(op_ll, rel=1e-12)


@pytest.mark.float32
def test_full_covariance_init_and_round_trip_stay_spd_in_float32():
    config = HMMConfig(num_states=3, emission="gaussian_full", num_features=3)
    op = DifferentiableHMM(config, rngs=nnx.Rngs(0))
    cov = np.asarray(op.to_model_params()["emission_covariances"], float)
    np.testing.assert_array_equal(cov, np.swapaxes(cov, -1, -2))
    assert np.linalg.eigvalsh(cov).min() > 0
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 3, 3))
    target = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(3)
    assert op.load_model_params({"emission_covariances": target}) is op
    back = np.asarray(op.to_model_params()["emission_covariances"], float)
    assert np.linalg.eigvalsh(back).min() > 0
    np.testing.assert_allclose(back, target, rtol=2e-5, atol=2e-5 * np.abs(target).max())


# ------------------------------------------------------------------------------------------ NB-GLM
def test_nb_glm_contract_round_trip():
    rng = np.random.default_rng(2)
    n, c, g = 5, 2, 3
    x = np.column_stack([np.ones(n), rng.integers(0, 2, n)]).astype(float)
    sf = rng.uniform(0.5, 2.0, n)
    y = rng.poisson(8.0, (n, g)).astype(float)
    op = DifferentiableNBGLM(NBGLMConfig(n_features=g, n_covariates=c), rngs=nnx.Rngs(0))
    beta, alpha = rng.normal(1.0, 0.5, (c, g)), rng.uniform(0.05, 1.0, g)
    assert op.load_model_params({NB_GLM_SITES.coefficients: beta, NB_GLM_SITES.dispersion: alpha}) is op
    params = op.to_model_params()
    assert set(params) == {NB_GLM_SITES.coefficients, NB_GLM_SITES.dispersion}
    mu = sf[:, None] * np.exp(x @ beta)
    r = 1.0 / alpha
    expected = float(stats.nbinom.logpmf(y, r, r / (r + mu)).sum())
    out = op.apply({"counts": y, "design": x, "size_factors": sf}, {}, None)[0]
    tr = _trace(nb_glm_model, params, jnp.asarray(y), jnp.asarray(x), jnp.asarray(sf))
    assert float(jnp.sum(out["log_likelihood"])) == pytest.approx(expected, rel=1e-10)
    assert _observed_log_prob(tr, NB_GLM_SITES.counts) == pytest.approx(expected, rel=1e-10)
    other = DifferentiableNBGLM(NBGLMConfig(n_features=g, n_covariates=c), rngs=nnx.Rngs(5))
    assert other.load_model_params(params) is other
    for k in params:
        np.testing.assert_allclose(other.to_model_params()[k], params[k], rtol=1e-12)


# ------------------------------------------------------------------------------------------ EM
def test_em_contract_round_trip():
    compat = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    counts = np.array([3.0, 5.0, 2.0, 4.0, 1.0])
    lengths = np.array([100.0, 250.0, 80.0])
    data = {"compatibility": jnp.asarray(compat), "counts": jnp.asarray(counts),
            "effective_lengths": jnp.asarray(lengths)}
    op = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=3, n_iterations=50))

    def closed_form(a):
        return float(np.sum(counts * np.log(compat @ (a / lengths))))

    out = op.apply(data, {}, None)[0]
    assert float(out["log_likelihood"]) == pytest.approx(closed_form(np.asarray(out["abundances"])), rel=1e-10)
    params = op.to_model_params(data)
    assert set(params) == {EM_SITES.abundances}
    a = np.asarray(params[EM_SITES.abundances])
    tr = _trace(em_model, params, em_core.from_dense(jnp.asarray(compat), jnp.asarray(counts)), jnp.asarray(lengths))
    assert _observed_log_prob(tr, EM_SITES.class_counts) == pytest.approx(closed_form(a), rel=1e-10)
    assert op.load_model_params(params) is op  # the EM operator used to return None
    np.testing.assert_allclose(op.get_initial_abundances(), a, rtol=1e-10)
    # a posterior mean also holds the model's deterministic sites; they are accepted and ignored
    assert op.load_model_params({**params, EM_SITES.tpm: np.ones(3)}) is op
    with pytest.raises(TypeError, match="params: expected a dict"):
        op.load_model_params([a])


# ------------------------------------------------------------------------------------------ to_operator
class _NoTwinConfig(OperatorConfig):
    pass


class _NoTwin(OperatorModule):
    def apply(self, data, state, metadata, random_params=None, stats=None):
        return data, state, metadata


def test_to_operator_refuses_an_operator_without_the_contract():
    res = FitResult(method="nuts", samples={"abundances": np.full((1, 2, 3), 1 / 3)})
    for bad in (object(), {"load_model_params": None}, _NoTwin(_NoTwinConfig())):
        with pytest.raises(TypeError, match="operator: expected an OperatorModule implementing to_model_params"):
            to_operator(res, bad)


def test_to_operator_loads_only_the_operators_sites():
    draws = np.array([[[0.2, 0.3, 0.5], [0.4, 0.4, 0.2]]])  # (chain, draw, T)
    res = FitResult(method="nuts", samples={"abundances": draws, "tpm": draws * 1e6,
                                            "estimated_counts": draws * 10})
    op = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=3))
    assert to_operator(res, op) is op
    np.testing.assert_allclose(op.get_initial_abundances(), draws.mean((0, 1)), rtol=1e-12)
    with pytest.raises(ValueError, match="result: has none of the operator's sites"):
        to_operator(FitResult(method="nuts", samples={"theta": draws}), op)


# ------------------------------------------------------------------------------------------ interior
def test_interior_is_strictly_inside_sums_to_one_and_moves_interior_points_little():
    rng = np.random.default_rng(0)
    for k in (1, 2, 5, 30):
        p = rng.dirichlet(np.full(k, 0.3), size=200)
        p[rng.random(p.shape) < 0.3] = 0.0  # exact zeros on the boundary
        p[p.sum(-1) == 0, 0] = 1.0
        p /= p.sum(-1, keepdims=True)
        for mix in (1e-6, 1e-3, 0.5):
            q = interior(p, mix)
            assert (q > 0).all() and (q < 1).all() or k == 1
            np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-12)
            assert np.abs(q - p).max() <= mix * (1 + 1e-12)
    inside = rng.dirichlet(np.ones(4), size=50)
    np.testing.assert_allclose(interior(inside, 1e-9), inside, atol=1e-9)
    np.testing.assert_allclose(interior(inside.T, 1e-3, axis=0).T, interior(inside, 1e-3), rtol=1e-15)
    for mix in (0, 1, -0.1, True):
        with pytest.raises(ValueError, match="mix: expected a number in"):
            interior(inside, mix)
    with pytest.raises(ValueError, match="p: expected finite non-negative"):
        interior(np.array([0.5, np.nan]))


# ------------------------------------------------------------------------------------------ relabel_states
@pytest.mark.parametrize("name", sorted(hmm_core.EMISSIONS))
def test_relabel_states_permutes_every_site_and_keeps_the_likelihood(name):
    rng = np.random.default_rng(11)
    em = hmm_core.get_emission(name)
    cases = [_emission_case(name, np.random.default_rng(i)) for i in range(3)]  # three "draws"
    obs = cases[0][1]
    draws = {}
    for natural, _, _ in cases:
        one = {HMM_SITES.initial: rng.dirichlet(np.ones(S)), HMM_SITES.transition: rng.dirichlet(np.ones(S), S),
               **dict(zip(em.site_names, natural.values()))}
        if name == "gaussian_full":
            one = _model_values(em, one)
        for k, v in one.items():
            draws.setdefault(k, []).append(np.asarray(v, float))
    draws = {k: np.stack(v)[None] for k, v in draws.items()}  # (chain=1, draw=3, ...)
    draws["unrelated"] = np.arange(3.0)[None]
    out = relabel_states(draws, symbol=0, emission=name)
    key = em.site_names[0]
    order = out[key] if out[key].ndim == 3 else out[key][..., 0]
    assert (np.diff(order, axis=-1) >= 0).all()
    np.testing.assert_array_equal(out["unrelated"], draws["unrelated"])
    cat = isinstance(em, hmm_core.Categorical)
    for i in range(3):
        before = {k: v[0, i] for k, v in draws.items() if k != "unrelated"}
        after = {k: v[0, i] for k, v in out.items() if k != "unrelated"}
        lls = []
        for p in (before, after):
            nat = {n: p[s] for n, s in zip(em.param_names, em.site_names)}
            params = hmm_core.HMMParams(jnp.log(p[HMM_SITES.initial]), jnp.log(p[HMM_SITES.transition]))
            lls.append(float(hmm_core.log_likelihood(params, em.log_likelihoods(nat, jnp.asarray(obs)))))
        assert lls[1] == pytest.approx(lls[0], rel=1e-12)
        if name == "gaussian_full":
            chol = after["emission_scales"][:, :, None] * after["emission_corr_cholesky"]
            np.testing.assert_allclose(chol @ np.swapaxes(chol, -1, -2), after["emission_covariances"], rtol=1e-10)
    if cat:
        # the historic call (categorical, key emission_probs) is unchanged
        np.testing.assert_array_equal(relabel_states(draws, 0)["emission_probs"], out["emission_probs"])
    with pytest.raises(ValueError, match="key: 'transition_probs' is not a state-indexed site"):
        relabel_states(draws, emission=name, key=HMM_SITES.transition)
