"""nb_glm_model: the operator's log-likelihood, NumPyro's NB law, and Bayesian LFCs against DESeq2."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from flax import nnx
from numpyro import handlers
from numpyro.infer import log_likelihood
from scipy import stats

from diffbio_prob.models.nb_glm import NBCounts, nb_glm_model
from diffbio_prob.operators.statistical import DifferentiableNBGLM, NBGLMConfig
from diffbio_prob.workflows.de_bayes import bayesian_lfc, hdi, posterior_lfc_summary


def test_operator_and_model_give_the_same_log_likelihood():
    rng = np.random.default_rng(0)
    n, g = 9, 6
    x = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(size=n)])
    sf = np.exp(rng.normal(0, 0.3, n))
    y = rng.negative_binomial(2, 0.1, (n, g)).astype(float)
    glm = DifferentiableNBGLM(NBGLMConfig(n_features=g, n_covariates=3), rngs=nnx.Rngs(3))
    glm.load_model_params({"alpha": rng.uniform(1e-4, 3.0, g), "beta": rng.normal(0, 1, (3, g))})
    out, _, _ = glm.apply_batch({"counts": y, "design": x, "size_factors": sf})
    params = {k: jnp.asarray(v)[None] for k, v in glm.to_model_params().items()}
    pointwise = np.asarray(log_likelihood(nb_glm_model, params, y, x, sf)["counts"])[0]
    assert pointwise.shape == (n, g)
    np.testing.assert_allclose(pointwise.sum(axis=1), np.asarray(out["log_likelihood"]), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pointwise, np.asarray(glm.pointwise_log_likelihood(y, x, sf)), rtol=1e-12)


@pytest.mark.slow  # compiles JAX's gamma and Poisson samplers
def test_count_distribution_is_numpyros_negative_binomial():
    mu = jnp.array([0.3, 4.0, 250.0])
    size = jnp.array([0.2, 5.0, 1e6])
    y = jnp.array([0.0, 7.0, 240.0])
    ours = np.asarray(NBCounts(mu, size).log_prob(y))
    np.testing.assert_allclose(ours, stats.nbinom.logpmf(y, size, size / (size + mu)), rtol=1e-9)
    # NumPyro's NegativeBinomial2 is the same law (its betaln-based log_prob is good to ~1e-7)
    np.testing.assert_allclose(ours, dist.NegativeBinomial2(mu, size).log_prob(y), rtol=1e-6)
    draws = np.asarray(NBCounts(jnp.array(6.0), jnp.array(2.0)).sample(jax.random.key(1), (20000,)))
    assert abs(draws.mean() - 6.0) < 0.15  # sd of the mean: sqrt(24 / 20000) = 0.035
    assert abs(draws.var() - (6.0 + 36.0 / 2.0)) < 1.5


def test_priors_follow_the_arguments():
    x = np.column_stack([np.ones(4), [0, 0, 1, 1.0]])
    y = np.arange(12.0).reshape(4, 3)
    trace = handlers.trace(handlers.seed(nb_glm_model, 0)).get_trace(
        y, x, np.ones(4), prior="cauchy", prior_scale=2.0, dispersion_trend=np.array([0.1, 0.2, 0.3]),
        dispersion_prior_sd=0.5,
    )
    beta_d = trace["beta"]["fn"].base_dist if hasattr(trace["beta"]["fn"], "base_dist") else trace["beta"]["fn"]
    assert isinstance(beta_d, dist.Cauchy)
    scales = np.broadcast_to(np.asarray(beta_d.scale), (2, 3))
    np.testing.assert_allclose(scales[:, 0], [10 * np.log(2), 2 * np.log(2)])  # wide intercept, log2 -> ln
    alpha_d = trace["alpha"]["fn"]
    np.testing.assert_allclose(np.exp(np.asarray(alpha_d.base_dist.loc)), [0.1, 0.2, 0.3], rtol=1e-12)
    assert trace["counts"]["is_observed"] and trace["counts"]["value"].shape == (4, 3)
    np.testing.assert_allclose(np.asarray(alpha_d.base_dist.scale), 0.5)
    with pytest.raises(ValueError, match="prior"):
        handlers.seed(nb_glm_model, 0)(y, x, np.ones(4), prior="laplace")
    with pytest.raises(ValueError, match="n_genes"):
        handlers.seed(nb_glm_model, 0)(None, x, np.ones(4))


def test_intercept_prior_is_the_same_when_the_design_is_traced():
    # SVI and NUTS re-run the model under jit, where the design is a tracer; the intercept must
    # keep its wide prior there, or the sampler's start point and its steps score different models.
    from numpyro.infer.util import log_density

    x = np.column_stack([np.ones(4), [0, 0, 1, 1.0]])
    y = np.arange(12.0).reshape(4, 3)
    params = {"beta": jnp.array([[5.0, 6.0, 7.0], [0.5, -1.0, 0.0]]), "alpha": jnp.array([0.1, 0.2, 0.3])}

    def joint(design):
        return log_density(nb_glm_model, (y, design, np.ones(4)), {"prior_scale": 1.0}, params)[0]

    eager = float(joint(jnp.asarray(x)))
    traced = float(jax.jit(joint)(jnp.asarray(x)))
    assert traced == pytest.approx(eager, rel=1e-12)
    # and the intercepts really are scored under Normal(0, 10 ln 2), not the LFC width
    wide = stats.norm(0, 10 * np.log(2)).logpdf([5.0, 6.0, 7.0]).sum()
    narrow = stats.norm(0, np.log(2)).logpdf([5.0, 6.0, 7.0]).sum()
    without = float(log_density(nb_glm_model, (y, x, np.ones(4)), {"prior_scale": 1.0, "intercept_scale": 1.0},
                                params)[0])
    assert eager - without == pytest.approx(wide - narrow, rel=1e-10)


def test_hdi_and_threshold_probability_on_known_draws():
    rng = np.random.default_rng(0)
    draws = rng.normal([0.0, 1.5], [1.0, 0.5], size=(20000, 2))
    lo, hi = hdi(draws, 0.94)
    z = stats.norm.ppf(0.97)
    np.testing.assert_allclose(lo, [-z, 1.5 - 0.5 * z], atol=0.04)
    np.testing.assert_allclose(hi, [z, 1.5 + 0.5 * z], atol=0.04)

    class Fake:  # a FitResult's draws: beta (chain, draw, C, G) on the natural-log scale
        method = "fake"
        samples = {"beta": (draws * np.log(2)).reshape(1, 20000, 1, 2)}

    fake = Fake()
    table = posterior_lfc_summary(fake, np.array([1.0]), ["a", "b"], lfc_threshold=1.0)
    np.testing.assert_allclose(table["log2FoldChange"], [0.0, 1.5], atol=0.03)
    np.testing.assert_allclose(table["lfcSE"], [1.0, 0.5], rtol=0.03)
    expected = [2 * stats.norm.sf(1.0), stats.norm.sf(1.0, 1.5, 0.5) + stats.norm.cdf(-1.0, 1.5, 0.5)]
    np.testing.assert_allclose(table["prob_abs_lfc_gt"], expected, atol=0.015)


@pytest.fixture(scope="module")
def small_fit(deseq2_ref):
    from diffbio_prob.workflows.deseq2 import fit_deseq2

    counts = pd.read_csv(deseq2_ref / "synthetic" / "test_counts.csv", index_col=0)
    meta = pd.read_csv(deseq2_ref / "synthetic" / "test_metadata.csv", index_col=0)
    return fit_deseq2(counts.iloc[:3], meta, "~condition", fit_type="mean")  # 3 genes: no parametric trend


@pytest.mark.slow
def test_svi_and_nuts_posteriors_agree_with_deseq2(small_fit):
    # With a wide coefficient prior the posterior of each LFC sits on DESeq2's MLE with about its
    # standard error (the data carry the information: 100 samples).
    res = small_fit.results()
    for method, kw in (
        ("svi", dict(num_steps=300, num_samples=300, learning_rate=0.02)),
        ("nuts", dict(num_warmup=100, num_samples=100, num_chains=1)),
    ):
        table, result = bayesian_lfc(small_fit, ["condition", "B", "A"], method=method, prior_scale=20.0, **kw)
        assert list(table.index) == list(res.index)
        err = np.abs(table["log2FoldChange"] - res["log2FoldChange"]) / res["lfcSE"]
        assert err.max() < 0.5, (method, err)
        ratio = table["lfcSE"] / res["lfcSE"]
        assert ratio.between(0.6, 1.4).all(), (method, ratio)
        assert (table["hdi_lower"] < table["log2FoldChange"]).all() and (table["hdi_upper"] > table["log2FoldChange"]).all()
        tree = result.to_arviz()
        assert tree["log_likelihood"]["counts"].shape[-2:] == (100, 3)
    assert result.num_divergences == 0


# --- bad input: a clear error naming the argument, before NumPyro sees it -----------------------------------
def _model_data():
    x = np.column_stack([np.ones(4), [0.0, 0.0, 1.0, 1.0]])
    return np.array([[3, 0, 7], [1, 2, 5], [8, 1, 0], [4, 4, 2]], float), x, np.array([1.0, 0.8, 1.2, 1.0])


@pytest.mark.parametrize(
    "change,exc,match",
    [
        # before: log density -inf with only NumPyro's "Out-of-support values" warning
        (dict(counts=(0, 0, -1.0)), ValueError, r"counts: expected non-negative counts, found -1 at index \(0, 0\)"),
        (dict(counts=(1, 2, 2.5)), ValueError, r"counts: expected integer counts, found 2.5 at index \(1, 2\)"),
        (dict(counts=(0, 1, np.nan)), ValueError, "counts: contains NaN"),
        (dict(counts=(0, 1, np.inf)), ValueError, "counts: contains infinite values"),
        # before: -inf for 0, "NBCounts distribution got invalid mu parameter" for < 0
        (dict(size_factors=(1, 0.0)), ValueError, r"size_factors: expected finite positive values, got 0 at index \(1,\)"),
        (dict(size_factors=(1, -1.0)), ValueError, "size_factors: expected finite positive values, got -1"),
        (dict(size_factors=(1, np.nan)), ValueError, "size_factors: expected finite positive values, got nan"),
        (dict(size_factors="short"), ValueError, r"size_factors: expected shape \(4,\)"),
        (dict(counts="rows"), ValueError, r"counts: expected shape \(N, G\) with N=4"),
        (dict(design="1d"), ValueError, r"design: expected a non-empty \(N, C\) model matrix"),
        (dict(design=(0, 1, np.nan)), ValueError, "design: contains NaN or infinite values"),
        (dict(counts="str"), TypeError, "counts: expected numbers"),
        (dict(prior_scale=0.0), ValueError, "prior_scale: expected finite positive values"),
        (dict(intercept_scale=-1.0), ValueError, "intercept_scale: expected finite positive values"),
        (dict(dispersion_trend=np.array([0.1, -0.2, 0.3])), ValueError, "dispersion_trend: expected finite positive"),
        (dict(dispersion_trend=np.ones(5)), ValueError, r"dispersion_trend: expected a scalar or shape \(3,\)"),
        (dict(dispersion_prior_sd=0.0), ValueError, "dispersion_prior_sd: expected finite positive values"),
    ],
)
def test_model_rejects_bad_input(change, exc, match):
    y, x, sf = _model_data()
    kwargs = {}
    for key, value in change.items():
        if key == "counts":
            y = y[:3] if value == "rows" else np.full(y.shape, "x") if value == "str" else y.copy()
            if isinstance(value, tuple):
                y[value[0], value[1]] = value[2]
        elif key == "size_factors":
            sf = sf[:3] if value == "short" else sf.copy()
            if isinstance(value, tuple):
                sf[value[0]] = value[1]
        elif key == "design":
            x = x[:, 0] if value == "1d" else x.copy()
            if isinstance(value, tuple):
                x[value[0], value[1]] = value[2]
        else:
            kwargs[key] = value
    with pytest.raises(exc, match=match):
        handlers.seed(nb_glm_model, 0)(y, x, sf, **kwargs)


def test_model_checks_skip_traced_values_and_keep_the_log_density():
    """The checks look at concrete values only: under jit the model still gives the same log density."""
    from numpyro.infer.util import log_density

    y, x, sf = _model_data()
    params = {"beta": jnp.zeros((2, 3)), "alpha": jnp.full(3, 0.2)}
    eager = log_density(nb_glm_model, (y, x, sf), {}, params)[0]
    jitted = jax.jit(lambda y, x, sf: log_density(nb_glm_model, (y, x, sf), {}, params)[0])(y, x, sf)
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-12)
    mu = sf[:, None] * np.ones((4, 3))
    ref = stats.nbinom.logpmf(y, 5.0, 5.0 / (5.0 + mu)).sum()  # size r = 1/alpha = 5
    ref += stats.norm.logpdf(0.0, 0.0, np.array([10, 1])[:, None] * np.log(2) * np.ones((2, 3))).sum()
    ref += stats.lognorm.logpdf(0.2, 1.0, scale=0.1) * 3
    np.testing.assert_allclose(float(eager), ref, rtol=1e-10)
