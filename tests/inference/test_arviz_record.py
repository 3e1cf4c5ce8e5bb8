"""``fit_nuts(...).to_arviz()`` has the layout ``az.from_numpyro`` gives, and ``fit_svi`` records ``log_p`` /
``log_q`` for ``az.loo_approximate_posterior``.

The peer is NumPyro's own ``MCMC`` converted by ``az.from_numpyro`` (with NumPyro's ``Predictive`` for the
prior and the predictive draws): the same groups, the same variables in each, the same sample statistics
(names and, the draws being MCMC's, values), the same dimension names, given or inferred from the plates.
The SVI densities are checked against their closed forms.
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS, Predictive, init_to_median
from scipy import stats

from diffbio_prob.inference import fit_nuts, fit_svi
from diffbio_prob.models import hmm_model

SIZES = dict(num_warmup=60, num_samples=40, num_chains=2)
EXTRA = ("num_steps", "energy", "accept_prob", "adapt_state.step_size", "potential_energy", "diverging")
NUTS_STATS = {"lp", "acceptance_rate", "step_size", "tree_depth", "n_steps", "diverging", "energy"}


def regression(x, y=None):
    """A line through the origin with unknown slope and noise; ``x`` is constant data, ``y`` observed."""
    slope = numpyro.sample("slope", dist.Normal(0.0, 5.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    numpyro.deterministic("precision", sigma**-2)
    with numpyro.plate("obs", x.shape[0]):
        numpyro.sample("y", dist.Normal(slope * x, sigma), obs=y)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=15)
    return x, 1.5 * x + rng.normal(0.0, 0.5, size=15)


def numpyro_tree(model, args, y, *, seed, prior_draws, coords=None, dims=None, **kwargs):
    """NumPyro's MCMC -> az.from_numpyro, with Predictive's prior and posterior predictive draws."""
    mcmc = MCMC(NUTS(model, init_strategy=init_to_median), progress_bar=False, chain_method="sequential", **SIZES)
    mcmc.run(jax.random.PRNGKey(seed), *args, y, extra_fields=EXTRA, **kwargs)
    samples = mcmc.get_samples()
    post_pred = Predictive(model, samples, return_sites=["y" if model is regression else "observations"])(
        jax.random.PRNGKey(1), *args, **kwargs)
    prior = Predictive(model, num_samples=prior_draws)(jax.random.PRNGKey(2), *args, **kwargs)
    constant = {"x": np.asarray(args[0])} if model is regression else None
    return mcmc, az.from_numpyro(mcmc, prior=prior, posterior_predictive=post_pred, constant_data=constant,
                                 log_likelihood=True, coords=coords, dims=dims)


def layout(dt) -> dict[str, dict[str, tuple[str, ...]]]:
    """``{group: {variable: dims}}`` of the groups both converters write."""
    return {g: {v: tuple(dt[g][v].dims) for v in dt[g].data_vars} for g in sorted(dt.children) if g != "loss_history"}


def assert_same_layout(ours, theirs):
    a, b = layout(ours), layout(theirs)
    assert set(a) == set(b) >= {"posterior", "sample_stats", "log_likelihood", "posterior_predictive", "prior",
                                "prior_predictive", "observed_data"}
    for group in a:
        if group == "sample_stats":  # ours adds reached_max_tree_depth; every name of NumPyro's is there
            assert NUTS_STATS <= set(b[group]) <= set(a[group]), (set(a[group]), set(b[group]))
            continue
        assert a[group] == b[group], group


def test_fit_nuts_to_arviz_is_az_from_numpyro(data):
    # y named by dims=/coords= in both converters
    x, y = data
    coords, dims = {"point": np.arange(15)}, {"y": ["point"]}
    theirs_mcmc, theirs = numpyro_tree(regression, (jnp.asarray(x),), jnp.asarray(y), seed=3, prior_draws=30,
                                       coords=coords, dims=dims)
    fit = fit_nuts(regression, jnp.asarray(x), jnp.asarray(y), rng_key=3, progress=False, prior_draws=30,
                   coords=coords, dims=dims, **SIZES)
    ours = fit.to_arviz()
    assert_same_layout(ours, theirs)
    assert ours["log_likelihood"]["y"].dims == ("chain", "draw", "point")
    np.testing.assert_array_equal(ours["posterior_predictive"]["point"].values, np.arange(15))
    # the same draws (ours is MCMC's program, compiled differently) and so the same statistics' values
    for var in ("slope", "sigma", "precision"):
        np.testing.assert_allclose(ours["posterior"][var].values, theirs["posterior"][var].values, rtol=1e-9)
    for name in sorted(NUTS_STATS):
        np.testing.assert_allclose(ours["sample_stats"][name].values.astype(float),
                                   theirs["sample_stats"][name].values.astype(float), rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(ours["log_likelihood"]["y"].values, theirs["log_likelihood"]["y"].values, rtol=1e-9)
    np.testing.assert_array_equal(ours["observed_data"]["y"].values, y)
    np.testing.assert_array_equal(ours["constant_data"]["x"].values, x)
    # the prior draws are the prior: the slope's N(0, 5) (30 draws: a loose check that can still fail)
    assert stats.kstest(ours["prior"]["slope"].values.ravel(), stats.norm(0, 5).cdf).pvalue > 0.001


@pytest.mark.slow
@pytest.mark.long  # the regression model above checks the same layout in a fifth of the time
def test_hmm_model_to_arviz_is_az_from_numpyro():
    rng = np.random.default_rng(0)
    rolls = jnp.asarray(rng.integers(0, 3, size=(4, 20)))
    kwargs = dict(num_states=2, num_emissions=3)
    # the layout only (NumPyro's draws and ours part at rounding level through the HMM's gradient, and NUTS
    # amplifies that over the iterations): the fewest iterations that exercise every group
    sizes = dict(num_warmup=5, num_samples=10, num_chains=1)
    fit = fit_nuts(hmm_model, rolls, rng_key=1, progress=False, prior_draws=10, **kwargs, **sizes)
    ours = fit.to_arviz()
    # the package's names for hmm_model, given to az.from_numpyro as dims= (it would invent *_dim_0 names)
    assert fit.dims["emission_probs"] == ["state", "symbol"]
    assert fit.dims["observations"] == ["sequence", "step"]

    mcmc = MCMC(NUTS(hmm_model, init_strategy=init_to_median), progress_bar=False, **sizes)
    mcmc.run(jax.random.PRNGKey(1), rolls, extra_fields=EXTRA, **kwargs)
    # NumPyro's Predictive draws one sequence from hmm_model's DiscreteHMM (batch shape (), broadcast over
    # the (B, T) observations in log_prob), so the peer is given our predictive draws in its flat layout:
    # what is compared is the conversion, the draws' shapes being ours
    post_pred = {k: v.reshape((-1,) + v.shape[2:]) for k, v in fit.posterior_predictive.items()}
    prior = {k: v.reshape((-1,) + v.shape[2:]) for k, v in {**fit.prior, **fit.prior_predictive}.items()}
    theirs = az.from_numpyro(mcmc, prior=prior, posterior_predictive=post_pred, log_likelihood=True,
                             dims=fit.dims)
    assert_same_layout(ours, theirs)
    assert ours["posterior_predictive"]["observations"].shape == (1, 10, 4, 20)
    assert ours["log_likelihood"]["observations"].dims == ("chain", "draw", "sequence")


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_fit_svi_records_log_p_and_log_q_for_loo_approximate_posterior(data):
    x, y = data
    fit = fit_svi(regression, jnp.asarray(x), jnp.asarray(y), guide="normal", num_steps=1500, num_samples=400,
                  rng_key=0, progress=False)
    ours = fit.to_arviz()
    assert {"log_p", "log_q"} <= set(ours["sample_stats"].data_vars)
    slope, sigma = fit.samples["slope"][0], fit.samples["sigma"][0]
    # log_p: the model's log joint at each draw, on the constrained scale (what log_q's draws live on)
    log_p = (stats.norm(0, 5).logpdf(slope) + stats.halfnorm(scale=2).logpdf(sigma)
             + stats.norm(slope[:, None] * x, sigma[:, None]).logpdf(y).sum(-1))
    np.testing.assert_allclose(fit.sample_stats["log_p"][0], log_p, rtol=1e-9)
    # log_q: AutoNormal is a normal on (slope, log sigma); sigma's density carries the Jacobian 1/sigma
    p = fit.extra["svi_params"]
    log_q = (stats.norm(p["slope_auto_loc"], p["slope_auto_scale"]).logpdf(slope)
             + stats.norm(p["sigma_auto_loc"], p["sigma_auto_scale"]).logpdf(np.log(sigma)) - np.log(sigma))
    np.testing.assert_allclose(fit.sample_stats["log_q"][0], log_q, rtol=1e-9)
    stats_ = ours["sample_stats"]
    loo = az.loo_approximate_posterior(ours, stats_["log_p"], stats_["log_q"])
    assert np.isfinite(loo.elpd) and np.size(loo.pareto_k) == 15
    # the same as FitResult.loo(), and close to the exact posterior's PSIS-LOO (NUTS)
    assert fit.loo().elpd == pytest.approx(loo.elpd, rel=1e-12)
    nuts = fit_nuts(regression, jnp.asarray(x), jnp.asarray(y), rng_key=0, progress=False, num_warmup=200,
                    num_samples=400, num_chains=1)
    exact = az.loo(nuts.to_arviz())
    assert abs(loo.elpd - exact.elpd) < max(1.0, exact.se / 2)
