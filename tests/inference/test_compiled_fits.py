"""fit_nuts, fit_svi and fit_gradient without a progress bar run each fit as one compiled program.

These paths must give NumPyro's (or the step-by-step loop's) answers: the NUTS draws bit for bit, the
SVI fit and the gradient losses to rounding. They must also fail as loudly as NumPyro does, fall back
to NumPyro's eager code for a model that needs concrete data, and leave no tracer in a user's guide.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flax import nnx
from numpyro.infer import Predictive
from numpyro.infer.autoguide import AutoNormal

from diffbio_prob.inference import fit_gradient, fit_nuts, fit_svi
from diffbio_prob.operators.base import OperatorConfig, OperatorModule


def scale_model(y):
    """Unknown mean and scale: a constrained (positive) site, so the transforms are exercised."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    numpyro.deterministic("precision", sigma**-2)
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def counted_model(y):
    """Needs a concrete value of its data (a Python int from it): it cannot be traced."""
    n = int(np.asarray(y).shape[0] + np.asarray(y).min() * 0)
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("obs", n):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.fixture(scope="module")
def y():
    return jnp.asarray(np.random.default_rng(3).normal(1.0, 2.0, size=25))


def test_compiled_nuts_draws_are_numpyros_bit_for_bit(y):
    kwargs = dict(num_warmup=60, num_samples=40, num_chains=2, rng_key=5)
    ours = fit_nuts(scale_model, y, progress=False, **kwargs)
    assert "mcmc" not in ours.extra  # the compiled path ran
    numpyros = fit_nuts(scale_model, y, progress=True, **kwargs)  # NumPyro's MCMC (with its bar)
    assert "mcmc" in numpyros.extra
    assert set(ours.samples) == set(numpyros.samples) == {"mu", "sigma", "precision"}
    for name in ours.samples:
        assert ours.samples[name].shape == (2, 40)
        np.testing.assert_array_equal(ours.samples[name], numpyros.samples[name])
    for name in ("diverging", "energy", "num_steps", "accept_prob"):
        np.testing.assert_array_equal(ours.sample_stats[name], numpyros.sample_stats[name])
    np.testing.assert_allclose(ours.log_likelihood["y"], numpyros.log_likelihood["y"], rtol=1e-12)
    # and the pointwise log-likelihood is the closed form at every draw
    mu, sigma = ours.samples["mu"][..., None], ours.samples["sigma"][..., None]
    expected = -0.5 * ((np.asarray(y) - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(ours.log_likelihood["y"], expected, rtol=1e-10)


def positive_mean_model(y):
    """Zero density for mu <= 0."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.factor("mu_positive", jnp.where(mu > 0, 0.0, -jnp.inf))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("progress", [False, True])
def test_nuts_refuses_a_start_of_zero_density(y, progress):
    # NumPyro's MCMC (progress=True) raises; the compiled path must too, not sample from NaN.
    with pytest.raises(RuntimeError, match="valid initial parameters"):
        fit_nuts(positive_mean_model, y, num_warmup=5, num_samples=5, num_chains=1, init_params={"mu": -1.0},
                 progress=progress)


def test_nuts_falls_back_to_numpyro_for_a_model_that_needs_concrete_data(y):
    res = fit_nuts(counted_model, y, num_warmup=50, num_samples=50, num_chains=1, progress=False)
    assert "mcmc" in res.extra
    assert res.samples["mu"].shape == (1, 50)
    assert abs(res.samples["mu"].mean() - float(jnp.mean(y))) < 0.6


def test_compiled_svi_is_the_same_fit_as_numpyros_loop(y):
    kwargs = dict(num_steps=400, num_samples=300, rng_key=2, optimizer=optax.adam(0.05))
    ours = fit_svi(scale_model, y, progress=False, **kwargs)
    loop = fit_svi(scale_model, y, progress=True, **kwargs)  # NumPyro's svi.run, guide set up eagerly
    np.testing.assert_allclose(ours.loss_history, loop.loss_history, rtol=1e-9)
    for name in ("mu", "sigma", "precision"):
        np.testing.assert_allclose(ours.samples[name], loop.samples[name], rtol=1e-9)
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(ours.params[name], loop.params[name], rtol=1e-9)
    np.testing.assert_allclose(ours.samples["precision"], ours.samples["sigma"] ** -2, rtol=1e-12)
    # The fit is sensible: mean and scale of the data.
    assert abs(ours.params["mu"] - float(jnp.mean(y))) < 0.3
    assert abs(ours.params["sigma"] - float(jnp.std(y))) < 0.4


def test_compiled_svi_leaves_a_users_guide_usable(y):
    guide = AutoNormal(scale_model)
    res = fit_svi(scale_model, y, guide=guide, num_steps=200, num_samples=10, progress=False)
    assert res.extra["guide"] is guide
    # No tracer of the compiled fit is left in the guide: NumPyro can use it eagerly with the fitted
    # parameters, and its draws have the fit's median.
    draws = Predictive(guide, params=res.extra["svi_params"], num_samples=2000)(jax.random.key(0), y)
    assert abs(np.median(draws["mu"]) - res.params["mu"]) < 0.05
    assert abs(np.median(draws["sigma"]) - res.params["sigma"]) < 0.05


def test_svi_falls_back_to_numpyro_for_a_model_that_needs_concrete_data(y):
    res = fit_svi(counted_model, y, num_steps=300, num_samples=20, optimizer=optax.adam(0.1), progress=False)
    assert abs(res.params["mu"] - float(jnp.mean(y))) < 0.2
    assert res.samples["mu"].shape == (1, 20)


# ---------------------------------------------------------------------- gradient fits
@dataclasses.dataclass(frozen=True)
class MeanConfig(OperatorConfig):
    pass


class Mean(OperatorModule):
    """y ~ N(mu, 1)."""

    def __init__(self, config: MeanConfig, *, rngs=None, name=None):
        super().__init__(config, rngs=rngs, name=name)
        self.mu = nnx.Param(jnp.zeros(()))

    def apply(self, data, state=None, metadata=None, random_params=None, stats=None):
        if "y" not in data:
            raise ValueError("data['y']: missing")
        return {**data, "log_likelihood": -0.5 * (data["y"] - self.mu[...]) ** 2}, state, metadata


def test_compiled_gradient_loop_matches_the_step_by_step_loop(y):
    a, b = Mean(MeanConfig()), Mean(MeanConfig())
    ra = fit_gradient(a, {"y": y}, optimizer=optax.adam(0.1), num_steps=150, progress=False)
    rb = fit_gradient(b, {"y": y}, optimizer=optax.adam(0.1), num_steps=150, progress=True)
    np.testing.assert_allclose(ra.loss_history, rb.loss_history, rtol=1e-12)
    assert float(a.mu[...]) == pytest.approx(float(b.mu[...]), rel=1e-12)
    # the closed form: the loss is 0.5 * sum((y - mu)^2), minimised at the mean
    assert float(a.mu[...]) == pytest.approx(float(jnp.mean(y)), abs=1e-3)
    assert ra.loss_history[0] == pytest.approx(0.5 * float(jnp.sum(y**2)))


def test_compiled_gradient_failure_leaves_the_operator_as_it_was(y):
    op = Mean(MeanConfig())
    op.mu[...] = jnp.asarray(0.25)
    with pytest.raises(FloatingPointError, match="loss became .* at step"):
        fit_gradient(op, {"y": y}, optimizer=optax.sgd(1e300), num_steps=20, progress=False)
    assert float(op.mu[...]) == 0.25


def test_gradient_validates_the_data_before_compiling():
    with pytest.raises(ValueError, match=r"data\['y'\]: missing"):
        fit_gradient(Mean(MeanConfig()), {"x": jnp.ones(3)}, num_steps=5, progress=False)
