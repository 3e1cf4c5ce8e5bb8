"""The inference layer on models with closed-form answers: a conjugate normal mean (NUTS, SVI) and
least squares (gradient fit of a tiny operator)."""

from __future__ import annotations

import dataclasses

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flax import nnx

from diffbio_prob.inference import FitResult, fit_gradient, fit_nuts, fit_svi, to_operator
from diffbio_prob.operators.base import FrozenParam, OperatorConfig, OperatorModule

PRIOR_SD = 10.0


def normal_mean_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    numpyro.deterministic("mu_twice", 2 * mu)
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def closed_form(y):
    precision = len(y) + 1 / PRIOR_SD**2
    return y.sum() / precision, precision**-0.5


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(1.5, 1.0, size=40)


@pytest.fixture(scope="module")
def nuts_result(data):
    import jax

    with jax.enable_x64(True):
        return fit_nuts(normal_mean_model, jnp.asarray(data), num_warmup=300, num_samples=600, num_chains=2,
                        progress=False)


def test_nuts_matches_conjugate_posterior(nuts_result, data):
    mean, sd = closed_form(data)
    draws = nuts_result.samples["mu"]
    assert draws.shape == (2, 600)
    assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(300)
    assert abs(draws.std() - sd) / sd < 0.15
    np.testing.assert_allclose(nuts_result.samples["mu_twice"], 2 * draws)
    assert nuts_result.num_divergences == 0
    assert nuts_result.sample_stats["diverging"].shape == (2, 600)


def test_nuts_pointwise_log_likelihood_is_exact(nuts_result, data):
    ll = nuts_result.log_likelihood["y"]
    assert ll.shape == (2, 600, len(data))
    mu = nuts_result.samples["mu"][..., None]
    expected = -0.5 * (data - mu) ** 2 - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(ll, expected, rtol=1e-10)


def test_to_arviz_summary_loo_and_netcdf_round_trip(nuts_result, data, tmp_path):
    dt = nuts_result.to_arviz()
    assert {"posterior", "log_likelihood", "sample_stats"} <= set(dt.children)
    summary = nuts_result.summary()
    mean, sd = closed_form(data)
    assert {"mean", "sd", "hdi94_lb", "hdi94_ub", "ess_bulk", "ess_tail", "r_hat"} <= set(summary.columns)
    assert summary.loc["mu", "r_hat"] < 1.01
    assert summary.loc["mu", "hdi94_lb"] < mean < summary.loc["mu", "hdi94_ub"]
    loo = az.loo(dt)
    # LOO elpd of a well-specified normal model is close to the in-sample log-likelihood (p_loo ~ 1).
    assert 0.3 < loo.p < 2.5
    path = nuts_result.save(tmp_path / "post.nc")
    back = FitResult.load(path)
    assert back.method == "nuts"
    for name in nuts_result.samples:
        np.testing.assert_array_equal(back.samples[name], nuts_result.samples[name])
    np.testing.assert_array_equal(back.log_likelihood["y"], nuts_result.log_likelihood["y"])
    np.testing.assert_array_equal(back.sample_stats["diverging"], nuts_result.sample_stats["diverging"])
    assert az.from_netcdf(path)["posterior"]["mu"].shape == (2, 600)
    assert not list(tmp_path.glob(".*tmp*"))


def test_svi_normal_guide_matches_conjugate_posterior(data):
    mean, sd = closed_form(data)
    res = fit_svi(normal_mean_model, jnp.asarray(data), num_steps=3000, num_samples=2000,
                  optimizer=optax.adam(5e-2), progress=False)
    assert res.samples["mu"].shape == (1, 2000)
    assert abs(res.params["mu"] - mean) < 0.05
    assert abs(res.samples["mu"].std() - sd) / sd < 0.2
    assert res.log_likelihood["y"].shape == (1, 2000, len(data))
    assert res.loss_history[-100:].mean() < res.loss_history[:10].mean()


def test_svi_delta_is_map_and_init_params_used(data):
    mean, _ = closed_form(data)
    res = fit_svi(normal_mean_model, jnp.asarray(data), guide="delta", num_steps=1500, num_samples=5,
                  optimizer=optax.adam(5e-2), init_params={"mu": 1.0}, progress=False)
    assert abs(res.params["mu"] - mean) < 1e-3


def test_nuts_starts_from_init_params(data):
    res = fit_nuts(normal_mean_model, jnp.asarray(data), num_warmup=0, num_samples=1, num_chains=1,
                   init_params={"mu": 123.0}, progress=False)
    # With no warm-up, the single draw is one NUTS transition away from the start point, nowhere near 0.
    assert res.samples["mu"][0, 0] > 20.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="chain_method"):
        fit_nuts(normal_mean_model, jnp.ones(3), chain_method="threads")
    with pytest.raises(ValueError, match="guide"):
        fit_svi(normal_mean_model, jnp.ones(3), guide="laplace")
    with pytest.raises(ValueError, match="num_steps"):
        fit_svi(normal_mean_model, jnp.ones(3), num_steps=0)


# ---------------------------------------------------------------------- gradient fits on an NNX operator
@dataclasses.dataclass(frozen=True)
class LineConfig(OperatorConfig):
    learnable_intercept: bool = True


class Line(OperatorModule):
    """y ~ N(slope * x + intercept, 1): a minimal operator for the gradient fitter."""

    def __init__(self, config: LineConfig, *, rngs=None, name=None):
        super().__init__(config, rngs=rngs, name=name)
        self.slope = nnx.Param(jnp.zeros(()))
        kind = nnx.Param if config.learnable_intercept else FrozenParam
        self.intercept = kind(jnp.zeros(()))

    def apply(self, data, state, metadata, random_params=None, stats=None):
        if "x" not in data:
            raise ValueError("data['x']: missing")
        mean = self.slope[...] * data["x"] + self.intercept[...]
        ll = -0.5 * (data["y"] - mean) ** 2
        return {**data, "log_likelihood": ll}, state, metadata

    def to_model_params(self):
        return {"slope": self.slope[...], "intercept": self.intercept[...]}

    def load_model_params(self, values):
        self.slope[...] = jnp.asarray(values["slope"])
        self.intercept[...] = jnp.asarray(values["intercept"])


def test_gradient_fit_reaches_least_squares():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = 2.0 * x - 0.7 + 0.1 * rng.normal(size=50)
    op = Line(LineConfig())
    res = fit_gradient(op, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, optimizer=optax.adam(5e-2),
                       num_steps=1500, progress=False)
    slope, intercept = np.polyfit(x, y, 1)
    np.testing.assert_allclose([res.params["slope"], res.params["intercept"]], [slope, intercept], atol=1e-4)
    assert res.loss_history.shape == (1500,)
    assert np.all(np.diff(res.loss_history[-200:]) <= 1e-9)
    assert res.summary().loc["slope", "mean"] == pytest.approx(slope, abs=1e-4)


def test_gradient_fit_leaves_frozen_parameter_alone():
    x = np.linspace(-1, 1, 20)
    op = Line(LineConfig(learnable_intercept=False))
    op.intercept[...] = jnp.asarray(0.3)
    fit_gradient(op, {"x": jnp.asarray(x), "y": jnp.asarray(3 * x + 1)}, num_steps=50, progress=False)
    assert float(op.intercept[...]) == 0.3
    assert float(op.slope[...]) != 0.0


def test_gradient_fit_stops_on_non_finite_loss():
    op = Line(LineConfig())
    with pytest.raises(FloatingPointError, match="loss became"):
        fit_gradient(op, {"x": jnp.ones(3), "y": jnp.ones(3)}, optimizer=optax.sgd(1e30), num_steps=20,
                     progress=False)


def test_posterior_mean_loads_into_operator(nuts_result):
    op = Line(LineConfig())
    res = FitResult(method="nuts", samples={"slope": np.full((2, 3), 1.5), "intercept": np.full((2, 3), -2.0)})
    to_operator(res, op)
    assert float(op.slope[...]) == 1.5 and float(op.intercept[...]) == -2.0


def test_load_names_a_missing_corrupt_or_truncated_file(tmp_path):
    res = FitResult(method="nuts", samples={"mu": np.arange(6.0).reshape(2, 3)},
                    log_likelihood={"y": np.ones((2, 3, 4))}, sample_stats={"diverging": np.zeros((2, 3), bool)})
    good = res.save(tmp_path / "good.nc")
    np.testing.assert_array_equal(FitResult.load(good).samples["mu"], res.samples["mu"])
    missing = tmp_path / "missing.nc"
    with pytest.raises(FileNotFoundError, match="missing.nc"):
        FitResult.load(missing)
    with pytest.raises(IsADirectoryError, match=str(tmp_path.name)):
        FitResult.load(tmp_path)
    data = good.read_bytes()
    for name, content in [("truncated.nc", data[: len(data) // 2]), ("corrupt.nc", b"not a netCDF file" * 20),
                          ("empty.nc", b"")]:
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=f"cannot read .*{name}"):
            FitResult.load(bad)
