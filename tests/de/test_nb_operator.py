"""DifferentiableNBGLM: DiffBio's API, scipy's log-likelihood, frozen dispersion, bad inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import stats

from diffbio_prob.operators.base import FrozenParam
from diffbio_prob.operators.statistical import DifferentiableNBGLM, NBGLMConfig

G, C, N = 5, 2, 8


def _data(seed=0):
    rng = np.random.default_rng(seed)
    design = np.column_stack([np.ones(N), np.repeat([0.0, 1.0], N // 2)])
    sf = np.exp(rng.normal(0, 0.3, N))
    counts = rng.poisson(20.0, (N, G)).astype(float)
    return {"counts": counts, "design": design, "size_factors": sf}


def _glm(estimate_dispersion=True, seed=1):
    glm = DifferentiableNBGLM(NBGLMConfig(n_features=G, n_covariates=C, estimate_dispersion=estimate_dispersion), rngs=nnx.Rngs(seed))
    glm.load_model_params({"alpha": np.linspace(0.05, 1.0, G)})
    return glm


def test_batched_output_matches_scipy_and_closed_form_mean():
    glm, data = _glm(), _data()
    out, state, meta = glm.apply(data, {"s": 1}, {"m": 2})
    assert state == {"s": 1} and meta == {"m": 2}
    assert set(data) <= set(out)
    beta = np.asarray(glm.get_coefficients())
    r = np.asarray(glm.get_dispersion())
    mu = data["size_factors"][:, None] * np.exp(data["design"] @ beta)
    np.testing.assert_allclose(out["predicted_mean"], mu, rtol=1e-12)
    expected = stats.nbinom.logpmf(data["counts"], r, r / (r + mu)).sum(axis=1)
    np.testing.assert_allclose(out["log_likelihood"], expected, rtol=1e-12)
    assert out["coefficients"].shape == (C, G)
    np.testing.assert_allclose(out["dispersion"], 1.0 / np.linspace(0.05, 1.0, G), rtol=1e-12)


def test_per_sample_input_and_apply_batch_agree():
    glm, data = _glm(), _data()
    batched, _, _ = glm.apply_batch(data)
    for n in (0, 5):
        one = {"counts": data["counts"][n], "design": data["design"][n], "size_factor": data["size_factors"][n]}
        out, _, _ = glm.apply(one, {}, None)
        assert out["log_likelihood"].shape == ()
        np.testing.assert_allclose(out["log_likelihood"], batched["log_likelihood"][n], rtol=1e-13)
        np.testing.assert_allclose(out["predicted_mean"], batched["predicted_mean"][n], rtol=1e-13)
    # the key spelling "size_factor" works for a batch too; size factors default to 1
    alt = {"counts": data["counts"], "design": data["design"], "size_factor": data["size_factors"]}
    np.testing.assert_allclose(glm.apply(alt, {}, None)[0]["log_likelihood"], batched["log_likelihood"])
    ones = glm.apply({"counts": data["counts"], "design": data["design"]}, {}, None)[0]
    assert ones["predicted_mean"].shape == (N, G)


def test_gradient_matches_finite_differences():
    glm, data = _glm(), _data()

    def loglik(module):
        return jnp.sum(module.apply(data, {}, None)[0]["log_likelihood"])

    grads = nnx.grad(loglik)(glm)
    g_beta = np.asarray(grads["beta"][...])
    g_disp = np.asarray(grads["log_dispersion"][...])
    h = 1e-6
    for idx in [(0, 0), (1, 3)]:
        base = np.asarray(glm.beta[...])
        up, dn = base.copy(), base.copy()
        up[idx] += h
        dn[idx] -= h
        glm.beta[...] = jnp.asarray(up)
        f_up = float(loglik(glm))
        glm.beta[...] = jnp.asarray(dn)
        f_dn = float(loglik(glm))
        glm.beta[...] = jnp.asarray(base)
        np.testing.assert_allclose(g_beta[idx], (f_up - f_dn) / (2 * h), rtol=1e-6)
    base = np.asarray(glm.log_dispersion[...])
    up, dn = base.copy(), base.copy()
    up[2] += h
    dn[2] -= h
    glm.log_dispersion[...] = jnp.asarray(up)
    f_up = float(loglik(glm))
    glm.log_dispersion[...] = jnp.asarray(dn)
    f_dn = float(loglik(glm))
    glm.log_dispersion[...] = jnp.asarray(base)
    np.testing.assert_allclose(g_disp[2], (f_up - f_dn) / (2 * h), rtol=1e-6)


def test_frozen_dispersion_is_not_trained_and_training_reaches_the_mle():
    from diffbio_prob.cores import nb_glm_fit
    from diffbio_prob.inference import fit_gradient

    glm, data = _glm(estimate_dispersion=False), _data(3)
    assert isinstance(glm.log_dispersion, FrozenParam)
    assert "log_dispersion" not in nnx.state(glm, nnx.Param)
    before = np.asarray(glm.log_dispersion[...]).copy()
    fit_gradient(glm, data, optimizer=optax.adam(0.05), num_steps=1500, progress=False)
    np.testing.assert_array_equal(np.asarray(glm.log_dispersion[...]), before)
    # gradient ascent with the dispersion frozen reaches IRLS's maximum-likelihood coefficients
    alpha = 1.0 / np.exp(before)
    x = data["design"]
    init = np.linalg.lstsq(x, np.log(data["counts"] / data["size_factors"][:, None] + 0.1), rcond=None)[0].T
    irls = nb_glm_fit.irls_fit(data["counts"].T, x, np.log(data["size_factors"]), alpha, init, np.zeros(C), min_mu=1e-12, tol=1e-13)
    np.testing.assert_allclose(np.asarray(glm.get_coefficients()).T, irls.beta, atol=2e-3)


def test_model_params_round_trip():
    glm = _glm()
    params = glm.to_model_params()
    assert set(params) == {"beta", "alpha"}
    other = DifferentiableNBGLM(NBGLMConfig(n_features=G, n_covariates=C), rngs=nnx.Rngs(9))
    other.load_model_params(params)
    np.testing.assert_allclose(other.get_coefficients(), glm.get_coefficients(), rtol=1e-15)
    np.testing.assert_allclose(other.get_dispersion(), glm.get_dispersion(), rtol=1e-13)
    with pytest.raises(ValueError, match="beta: expected shape"):
        other.load_model_params({"beta": np.zeros((C, G + 1))})
    with pytest.raises(ValueError, match="alpha: expected finite positive"):
        other.load_model_params({"alpha": -np.ones(G)})
    with pytest.raises(ValueError, match="unknown keys"):
        other.load_model_params({"size": np.ones(G)})


def _bad(data, **changes):
    out = dict(data)
    out.update(changes)
    return out


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"counts": "neg"}, ValueError, "counts: expected non-negative"),
        ({"counts": "frac"}, ValueError, "counts: expected integer"),
        ({"counts": "nan"}, ValueError, "counts: contains NaN"),
        ({"counts": "inf"}, ValueError, "counts: contains infinite"),
        ({"counts": "genes"}, ValueError, "counts: expected 5 genes"),
        ({"counts": "rank3"}, ValueError, "counts: expected shape"),
        ({"design": "cols"}, ValueError, "design: expected shape"),
        ({"design": "nan"}, ValueError, "design: contains NaN"),
        ({"size_factors": "zero"}, ValueError, "size_factors: expected finite positive"),
        ({"size_factors": "len"}, ValueError, r"size_factors: expected shape \(8,\)"),
        ({"counts": "str"}, TypeError, "counts: expected numbers"),
    ],
)
def test_bad_inputs_raise_before_tracing(change, error, match):
    glm, data = _glm(), _data()
    (key, kind), = change.items()
    value = np.array(data[key], dtype=float)
    if kind == "neg":
        value[0, 0] = -1
    elif kind == "frac":
        value[1, 2] = 2.5
    elif kind == "nan":
        value[0, 1] = np.nan
    elif kind == "inf":
        value[0, 1] = np.inf
    elif kind == "genes":
        value = value[:, :3]
    elif kind == "rank3":
        value = value[None]
    elif kind == "cols":
        value = np.ones((N, C + 1))
    elif kind == "zero":
        value[2] = 0.0
    elif kind == "len":
        value = value[:3]
    elif kind == "str":
        value = np.full(value.shape, "x")
    with pytest.raises(error, match=match):
        glm.apply(_bad(data, **{key: value}), {}, None)


def test_bad_keys_and_config():
    glm, data = _glm(), _data()
    with pytest.raises(ValueError, match="missing key 'design'"):
        glm.apply({"counts": data["counts"]}, {}, None)
    with pytest.raises(ValueError, match="either 'size_factors' or 'size_factor'"):
        glm.apply({**data, "size_factor": data["size_factors"]}, {}, None)
    with pytest.raises(TypeError, match="data: expected a dict"):
        glm.apply([1, 2], {}, None)
    with pytest.raises(ValueError, match="apply_batch expects shape"):
        glm.apply_batch({"counts": data["counts"][0], "design": data["design"][0]})
    with pytest.raises(ValueError, match="n_features"):
        NBGLMConfig(n_features=0)
    with pytest.raises(TypeError, match="estimate_dispersion"):
        NBGLMConfig(estimate_dispersion="yes")
    with pytest.raises(TypeError, match="NBGLMConfig"):
        DifferentiableNBGLM(object())


def test_seed_defaults():
    cfg = NBGLMConfig()
    assert (cfg.n_features, cfg.n_covariates, cfg.estimate_dispersion) == (2000, 2, True)
    glm = DifferentiableNBGLM(NBGLMConfig(n_features=4))
    np.testing.assert_array_equal(np.asarray(glm.get_dispersion()), np.ones(4))
    assert isinstance(glm.log_dispersion, nnx.Param)


@pytest.mark.float32
def test_float32_operator_accurate():
    glm, data = _glm(), _data()
    out, _, _ = glm.apply(data, {}, None)
    assert out["log_likelihood"].dtype == jnp.float32
    beta = np.asarray(glm.get_coefficients(), dtype=float)
    r = np.asarray(glm.get_dispersion(), dtype=float)
    mu = data["size_factors"][:, None] * np.exp(data["design"] @ beta)
    expected = stats.nbinom.logpmf(data["counts"], r, r / (r + mu)).sum(axis=1)
    np.testing.assert_allclose(np.asarray(out["log_likelihood"], dtype=float), expected, rtol=2e-6)
    assert jax.numpy.all(jnp.isfinite(out["log_likelihood"]))
