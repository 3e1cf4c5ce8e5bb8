"""fit_nuts, fit_svi and fit_gradient: one compiled program each, composed from NumPyro's public API.

The draws must be NumPyro's (``numpyro.infer.MCMC``, ``SVI.run``) to floating-point rounding: the programs
are compiled differently from NumPyro's, so they are compared at a stated tolerance (float64, rtol 1e-10),
never bit for bit. A fit with and without a progress bar is the same program and is compared exactly.
They must also fail as loudly as NumPyro does, run a model that needs concrete data, and leave no tracer in
a user's guide.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flax import nnx
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, init_to_median
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import optax_to_numpyro

from diffbio_prob.inference import fit_gradient, fit_nuts, fit_svi
from diffbio_prob.inference.chains import chain_map, chain_map_names, register_chain_map
from diffbio_prob.inference.progress import Progress, step_counter
from diffbio_prob.operators.base import OperatorConfig, OperatorModule

STATS = ("diverging", "energy", "num_steps", "accept_prob")
#: Two differently compiled float64 programs (ours and NumPyro's) agree to this (draws are O(1), so the
#: absolute tolerance covers draws near zero).
RTOL = 1e-10
ATOL = 1e-10


def scale_model(y):
    """Unknown mean and scale: a constrained (positive) site, so the transforms are exercised."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    numpyro.deterministic("precision", sigma**-2)
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def counted_model(y):
    """Needs a concrete value of its data (a Python int from it): it cannot be traced with y an input."""
    n = int(np.asarray(y).shape[0] + np.asarray(y).min() * 0)
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("obs", n):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.fixture(scope="module")
def y():
    # float64 data (a NumPy array: module fixtures are made before the autouse float64 switch)
    return np.random.default_rng(3).normal(1.0, 2.0, size=25)


def numpyro_mcmc(model, y, *, num_warmup, num_samples, num_chains, rng_key, chain_method="sequential"):
    mcmc = MCMC(NUTS(model, init_strategy=init_to_median), num_warmup=num_warmup, num_samples=num_samples,
                num_chains=num_chains, chain_method=chain_method, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(rng_key), y, extra_fields=STATS)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    stats = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    return samples, stats


NUTS_SIZES = dict(num_warmup=60, num_samples=40, num_chains=2, rng_key=5)


@pytest.fixture(scope="module")
def ours(y):
    with jax.enable_x64(True):
        return fit_nuts(scale_model, y, progress=False, **NUTS_SIZES)


def test_fit_nuts_draws_are_numpyros_mcmc(y, ours):
    samples, stats = numpyro_mcmc(scale_model, y, **NUTS_SIZES)
    assert set(ours.samples) == set(samples) == {"mu", "sigma", "precision"}
    for name in samples:
        assert ours.samples[name].shape == (2, 40)
        np.testing.assert_allclose(ours.samples[name], samples[name], rtol=RTOL, atol=ATOL)
    # sample_stats under az.from_numpyro's names (energy, acceptance_rate, n_steps: NumPyro's energy,
    # accept_prob, num_steps)
    for name, theirs in (("energy", "energy"), ("acceptance_rate", "accept_prob")):
        np.testing.assert_allclose(ours.sample_stats[name], stats[theirs], rtol=RTOL, atol=ATOL)
    for name, theirs in (("diverging", "diverging"), ("n_steps", "num_steps")):  # integer decisions
        np.testing.assert_array_equal(ours.sample_stats[name], stats[theirs])
    # the chains differ (one key each) and the pointwise log-likelihood is the closed form at every draw
    assert not np.allclose(ours.samples["mu"][0], ours.samples["mu"][1])
    mu, sigma = ours.samples["mu"][..., None], ours.samples["sigma"][..., None]
    expected = -0.5 * ((np.asarray(y) - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(ours.log_likelihood["y"], expected, rtol=1e-10)
    np.testing.assert_allclose(ours.samples["precision"], ours.samples["sigma"] ** -2, rtol=1e-12)


def test_a_progress_bar_does_not_change_the_draws(y, ours, capsys):
    # The bar is driven from inside the same program: the same program, so the same numbers exactly.
    shown = fit_nuts(scale_model, y, progress=True, **NUTS_SIZES)
    for name in ours.samples:
        np.testing.assert_array_equal(shown.samples[name], ours.samples[name])
    for name in ours.sample_stats:
        np.testing.assert_array_equal(shown.sample_stats[name], ours.sample_stats[name])
    err = capsys.readouterr().err
    assert "chain 0" in err and "chain 1" in err


@pytest.mark.parametrize("method, rtol", [("lax_map", RTOL), ("vectorized", 1e-6)])
def test_chain_maps_give_the_same_chains(y, ours, method, rtol):
    # vmap batches NUTS's while loops (masked steps): the arithmetic is rounded differently, and NUTS
    # amplifies rounding over 100 iterations (~1e-8 seen here), so that comparison is looser.
    other = fit_nuts(scale_model, y, progress=False, chain_method=method, **NUTS_SIZES)
    assert other.extra["chain_method"] == method
    for name in ours.samples:
        np.testing.assert_allclose(other.samples[name], ours.samples[name], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(other.log_likelihood["y"], ours.log_likelihood["y"], rtol=rtol)


def test_one_chain_uses_the_key_itself(y):
    res = fit_nuts(scale_model, y, num_warmup=30, num_samples=20, num_chains=1, rng_key=7, progress=False)
    samples, _ = numpyro_mcmc(scale_model, y, num_warmup=30, num_samples=20, num_chains=1, rng_key=7)
    np.testing.assert_allclose(res.samples["mu"], samples["mu"], rtol=RTOL, atol=ATOL)
    # a typed key is the same key
    typed = fit_nuts(scale_model, y, num_warmup=30, num_samples=20, num_chains=1,
                     rng_key=jax.random.wrap_key_data(jax.random.PRNGKey(7)), progress=False)
    np.testing.assert_array_equal(typed.samples["mu"], res.samples["mu"])


PARALLEL = textwrap.dedent(
    """
    import jax, numpy as np, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    jax.config.update("jax_enable_x64", True)
    from diffbio_prob.inference import fit_nuts
    from diffbio_prob.inference.chains import chain_map
    assert jax.device_count() == 2, jax.devices()

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    # every chain runs on its own device
    where = chain_map("parallel")(lambda key, i, x: jax.lax.axis_index("chain") + 0 * i, jnp.zeros((2, 2), jnp.uint32), ())
    assert np.asarray(where).tolist() == [0, 1], where
    y = jnp.linspace(-1.0, 3.0, 10)
    kw = dict(num_warmup=20, num_samples=10, num_chains=2, rng_key=1, progress=False)
    a = fit_nuts(model, y, chain_method="parallel", **kw).samples["mu"]
    b = fit_nuts(model, y, chain_method="sequential", **kw).samples["mu"]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert a.shape == (2, 10) and not np.allclose(a[0], a[1])
    print("OK")
    """
)


def test_parallel_chains_run_on_two_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", PARALLEL], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


def test_chain_map_registry():
    assert {"sequential", "lax_map", "vectorized", "parallel"} <= set(chain_map_names())
    with pytest.raises(ValueError, match="chain_method: expected one of"):
        chain_map("threads")

    def reversed_map(chain, keys, inputs):  # a custom map: chains in reverse order, then restacked
        outs = [jax.jit(chain)(keys[i], jnp.int32(i), inputs) for i in reversed(range(keys.shape[0]))]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs[::-1]), *outs)

    register_chain_map("test_reversed", reversed_map)
    out = chain_map("test_reversed")(lambda key, i, x: x * (i + 1), jnp.zeros((3, 2), jnp.uint32), jnp.float64(2.0))
    np.testing.assert_array_equal(np.asarray(out), [2.0, 4.0, 6.0])
    with pytest.raises(TypeError, match="fn"):
        register_chain_map("bad", 3)


def positive_mean_model(y):
    """Zero density for mu <= 0."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.factor("mu_positive", jnp.where(mu > 0, 0.0, -jnp.inf))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
def test_nuts_refuses_a_start_of_zero_density(y, chain_method):
    # NumPyro's MCMC raises when its (eager) search finds no valid start; the compiled chain must too,
    # not return draws from NaN.
    with pytest.raises(RuntimeError, match="valid initial parameters"):
        fit_nuts(positive_mean_model, y, num_warmup=5, num_samples=5, num_chains=2, init_params={"mu": -1.0},
                 chain_method=chain_method, progress=False)


def test_nuts_runs_a_model_that_needs_concrete_data(y):
    # The same chain program, compiled with the data as constants: NumPyro's draws still.
    res = fit_nuts(counted_model, y, num_warmup=40, num_samples=30, num_chains=2, rng_key=3, progress=False)
    assert res.extra["concrete_data"] is True
    samples, _ = numpyro_mcmc(counted_model, y, num_warmup=40, num_samples=30, num_chains=2, rng_key=3)
    np.testing.assert_allclose(res.samples["mu"], samples["mu"], rtol=RTOL, atol=ATOL)
    assert abs(res.samples["mu"].mean() - float(jnp.mean(y))) < 0.6
    assert fit_nuts(scale_model, y, num_warmup=5, num_samples=5, num_chains=1,
                    progress=False).extra["concrete_data"] is False


# ------------------------------------------------------------------------------------------ SVI
SVI_SIZES = dict(num_steps=400, num_samples=300, rng_key=2)


def test_fit_svi_is_numpyros_svi_run(y):
    ours = fit_svi(scale_model, y, progress=False, optimizer=optax.adam(0.05), **SVI_SIZES)
    key_fit, key_draw, _ = jax.random.split(jax.random.PRNGKey(2), 3)
    guide = AutoNormal(scale_model, init_loc_fn=init_to_median)
    svi = SVI(scale_model, guide, optax_to_numpyro(optax.adam(0.05)), Trace_ELBO())
    run = svi.run(key_fit, 400, y, progress_bar=False)
    np.testing.assert_allclose(ours.loss_history, np.asarray(run.losses), rtol=1e-9)
    median = guide.median(run.params)
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(ours.params[name], median[name], rtol=1e-9)
    draws = Predictive(guide, params=run.params, num_samples=300)(key_draw, y)
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(ours.samples[name][0], draws[name], rtol=1e-9)
    np.testing.assert_allclose(ours.samples["precision"], ours.samples["sigma"] ** -2, rtol=1e-12)
    assert ours.log_likelihood["y"].shape == (1, 300, 25)
    # The fit is sensible: mean and scale of the data.
    assert abs(ours.params["mu"] - float(jnp.mean(y))) < 0.3
    assert abs(ours.params["sigma"] - float(jnp.std(y))) < 0.4
    # and a progress bar does not change it (the same program)
    shown = fit_svi(scale_model, y, progress=True, optimizer=optax.adam(0.05), **SVI_SIZES)
    np.testing.assert_array_equal(shown.loss_history, ours.loss_history)
    np.testing.assert_array_equal(shown.samples["mu"], ours.samples["mu"])


def test_fit_svi_leaves_a_users_guide_usable(y):
    guide = AutoNormal(scale_model)
    res = fit_svi(scale_model, y, guide=guide, num_steps=200, num_samples=10, progress=False)
    assert res.extra["guide"] is guide
    # No tracer of the compiled fit is left in the guide: NumPyro can use it eagerly with the fitted
    # parameters, and its draws have the fit's median.
    draws = Predictive(guide, params=res.extra["svi_params"], num_samples=2000)(jax.random.key(0), y)
    assert abs(np.median(draws["mu"]) - res.params["mu"]) < 0.05
    assert abs(np.median(draws["sigma"]) - res.params["sigma"]) < 0.05
    # NumPyro set that guide up inside Predictive's transformation: it holds tracers, and neither NumPyro's
    # SVI nor fit_svi can fit it again; fit_svi says so.
    with pytest.raises(ValueError, match="guide: this AutoGuide holds tracers"):
        fit_svi(scale_model, y, guide=guide, num_steps=200, num_samples=10, progress=False)


def test_fit_svi_can_reuse_a_guide(y):
    guide = AutoNormal(scale_model)
    first = fit_svi(scale_model, y, guide=guide, num_steps=100, num_samples=10, progress=False)
    again = fit_svi(scale_model, y, guide=guide, num_steps=100, num_samples=10, progress=False)
    np.testing.assert_array_equal(again.loss_history, first.loss_history)  # the same program twice
    # a guide the user set up eagerly (by NumPyro's own SVI) can be fitted too
    SVI(scale_model, guide, optax_to_numpyro(optax.adam(0.01)), Trace_ELBO()).run(
        jax.random.PRNGKey(0), 5, y, progress_bar=False)
    third = fit_svi(scale_model, y, guide=guide, num_steps=300, num_samples=10, optimizer=optax.adam(0.05),
                    progress=False)
    assert np.all(np.isfinite(third.loss_history))
    assert abs(third.params["mu"] - float(np.mean(y))) < 0.5


def test_svi_runs_a_model_that_needs_concrete_data(y):
    res = fit_svi(counted_model, y, num_steps=300, num_samples=20, optimizer=optax.adam(0.1), progress=False)
    assert res.extra["concrete_data"] is True
    assert abs(res.params["mu"] - float(jnp.mean(y))) < 0.2
    assert res.samples["mu"].shape == (1, 20)


def test_svi_raises_on_a_non_finite_elbo(y):
    with pytest.raises(FloatingPointError, match="ELBO became non-finite"):
        fit_svi(scale_model, y, num_steps=30, num_samples=5, optimizer=optax.sgd(1e300), progress=False)


# ------------------------------------------------------------------------------ bad rng_key inputs
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


@pytest.mark.parametrize("bad", [1.5, True, "0", jnp.zeros((2, 2), jnp.uint32), jnp.zeros(3)])
def test_a_bad_rng_key_is_a_type_error_naming_it(y, bad):
    with pytest.raises(TypeError, match="rng_key"):
        fit_nuts(scale_model, y, num_warmup=2, num_samples=2, rng_key=bad, progress=False)
    with pytest.raises(TypeError, match="rng_key"):
        fit_svi(scale_model, y, num_steps=2, num_samples=2, rng_key=bad, progress=False)
    with pytest.raises(TypeError, match="rng_key"):  # fit_gradient has no key: Python names the argument
        fit_gradient(Mean(MeanConfig()), {"y": y}, num_steps=2, rng_key=bad)


# ---------------------------------------------------------------------------------- gradient fits
def test_gradient_fit_with_and_without_a_bar_is_the_same_program(y, capsys):
    a, b = Mean(MeanConfig()), Mean(MeanConfig())
    ra = fit_gradient(a, {"y": y}, optimizer=optax.adam(0.1), num_steps=150, progress=False)
    rb = fit_gradient(b, {"y": y}, optimizer=optax.adam(0.1), num_steps=150, progress=True)
    np.testing.assert_array_equal(ra.loss_history, rb.loss_history)
    assert float(a.mu[...]) == float(b.mu[...])
    assert "gradient" in capsys.readouterr().err
    # the closed form: the loss is 0.5 * sum((y - mu)^2), minimised at the mean
    assert float(a.mu[...]) == pytest.approx(float(jnp.mean(y)), abs=1e-3)
    assert ra.loss_history[0] == pytest.approx(0.5 * float(jnp.sum(y**2)))


@pytest.mark.parametrize("progress", [False, True])
def test_gradient_failure_leaves_the_operator_as_it_was(y, progress):
    op = Mean(MeanConfig())
    op.mu[...] = jnp.asarray(0.25)
    with pytest.raises(FloatingPointError, match="loss became .* at step"):
        fit_gradient(op, {"y": y}, optimizer=optax.sgd(1e300), num_steps=20, progress=progress)
    assert float(op.mu[...]) == 0.25


def test_gradient_validates_the_data_before_compiling():
    with pytest.raises(ValueError, match=r"data\['y'\]: missing"):
        fit_gradient(Mean(MeanConfig()), {"x": jnp.ones(3)}, num_steps=5, progress=False)


# ------------------------------------------------------------------------------- the progress bars
def test_progress_reports_from_inside_the_program():
    seen = []

    class Recording(Progress):
        def _update(self, bar, step, info):
            seen.append((int(bar), int(step), sorted(info)))
            super()._update(bar, step, info)

    bar = Recording(True, 45, lambda b, s: f"bar {b}", bars=2)
    assert bar.rate == 2

    def chain(key, index, x):
        def body(carry, _):
            total, count = carry
            count = count + 1
            bar.tick(index, count, value=total)
            return (total + x, count), None

        return jax.lax.scan(body, (jnp.float64(0.0), step_counter()), None, length=45)[0][0]

    with bar:
        out = chain_map("vectorized")(chain, jnp.zeros((2, 2), jnp.uint32), jnp.float64(1.0))
    np.testing.assert_array_equal(np.asarray(out), [45.0, 45.0])
    for b in (0, 1):
        steps = [s for bb, s, _ in seen if bb == b]
        assert steps == list(range(2, 46, 2)) + [45]
    assert all(info == ["value"] for *_, info in seen)


def test_no_numpyro_internals_in_the_inference_layer():
    root = Path(__file__).resolve().parents[2] / "diffbio_prob" / "inference"
    for path in root.glob("*.py"):
        if path.name == "_numpyro_compat.py":
            continue
        text = path.read_text()
        for needle in ("find_valid_initial_params", "jax._src", "numpyro.infer.util", "numpyro.infer.mcmc"):
            assert needle not in text, f"{path.name} uses {needle}"
