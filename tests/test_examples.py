"""Every script in ``examples/`` runs (small sizes) and its result says what the script claims.

Each example is imported by path and its ``main(small=True)`` called; the assertions check the numbers
against the simulated truth, a closed form or a property, not against the example's own printout.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import kstest, spearmanr

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.slow


def load(name: str) -> dict:
    script = EXAMPLES / name
    assert script.is_file(), script
    return runpy.run_path(str(script), run_name="example")  # not "__main__": no argparse


def run(name: str, **kwargs):
    return load(name)["main"](small=True, **kwargs)


def test_every_example_is_tested_and_has_a_small_mode():
    scripts = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    tested = {"01_bayesian_hmm_loo.py", "02_de_posterior_lfc.py", "03_quant_posterior_intervals.py",
              "04_gradient_then_nuts.py", "05_operator_in_nnx_model.py", "06_hierarchical_poisson_hmm.py",
              "07_modeller_checks.py"}
    assert set(scripts) == tested
    for name in scripts:
        text = (EXAMPLES / name).read_text()
        assert "def main(small: bool = False, seed: int = 0" in text and '"--small"' in text, name
        assert '"--seed"' in text, name


def test_01_loo_prefers_no_extra_state():
    out = run("01_bayesian_hmm_loo.py")
    loo2, loo3 = out["loo"][2], out["loo"][3]
    sessions = out["fits"][2].log_likelihood["observations"].shape[-1]
    assert np.size(loo2.pareto_k) == sessions == 12  # one LOO point per session
    cmp = out["compare"]
    # the third state buys no predictive accuracy: any gain is below 4 (the LOO FAQ's "small") and two
    # standard errors of the difference
    dse = float(cmp["dse"].max())
    assert loo3.elpd - loo2.elpd < max(4.0, 2 * dse)
    fit2 = out["fits"][2]
    assert fit2.num_divergences == 0
    six = fit2.samples["emission_probs"][..., 1, 5].ravel()  # relabelled: state 1 is the loaded die
    assert np.quantile(six, 0.05) < 0.5 < np.quantile(six, 0.95)
    fair = fit2.samples["emission_probs"][..., 0, :].reshape(-1, 6).mean(0)
    np.testing.assert_allclose(fair, 1 / 6, atol=0.05)


def test_02_posterior_lfc_covers_the_truth():
    table = run("02_de_posterior_lfc.py")
    inside = (table["hdi94_lower"] <= table["true_lfc"]) & (table["true_lfc"] <= table["hdi94_upper"])
    assert inside.mean() > 0.85
    confident = table[table["prob_abs_lfc_gt_1"] > 0.95]
    assert len(confident) >= 5
    assert (confident["true_lfc"] != 0).mean() >= 0.8
    real = confident[confident["true_lfc"] != 0]
    assert (np.sign(real["posterior_mean"]) == np.sign(real["true_lfc"])).all()
    de = table["true_lfc"] != 0
    assert np.corrcoef(table.loc[de, "posterior_mean"], table.loc[de, "true_lfc"])[0, 1] > 0.8
    assert (table["posterior_sd"] > 0).all()


def test_03_quant_intervals_contain_the_truth():
    table = run("03_quant_posterior_intervals.py")
    assert len(table) == 15
    assert spearmanr(table["posterior_mean"], table["true"]).statistic > 0.95
    inside = (table["hdi94_lower"] <= table["true"]) & (table["true"] <= table["hdi94_upper"])
    assert inside.sum() >= 13
    # the posterior mean of the counts keeps the total: every fragment goes somewhere
    assert table["posterior_mean"].sum() == pytest.approx(10_000, rel=1e-3)
    # with a flat prior the EM estimate (the posterior mode) lies inside the 94% HDI of well-covered transcripts
    big = table["true"] > 100
    assert ((table.loc[big, "hdi94_lower"] <= table.loc[big, "em"]) & (table.loc[big, "em"] <= table.loc[big, "hdi94_upper"])).all()


def test_04_nuts_starts_where_the_gradient_fit_ended():
    out = run("04_gradient_then_nuts.py")
    grad, nuts = out["gradient"], out["nuts"]
    assert grad.loss_history[-1] < grad.loss_history[0]
    # both chains start at the gradient fit, so they sample the same label-switching mode
    assert (out["summary"]["r_hat"] < 1.1).all()
    g = np.asarray(grad.params["emission_probs"])[:, 5]
    n = nuts.posterior_mean()["emission_probs"][:, 5]
    assert np.argmax(g) == np.argmax(n) == out["loaded_state"]
    np.testing.assert_allclose(n, g, atol=0.12)
    # to_operator loaded the posterior mean into the operator
    loaded = out["operator"].to_model_params()
    for site in ("initial_probs", "transition_probs", "emission_probs"):
        np.testing.assert_allclose(loaded[site], nuts.posterior_mean()[site], atol=1e-5)
    assert out["viterbi_accuracy"] > 0.75


def test_05_network_learns_the_emission_curve_end_to_end():
    out = run("05_operator_in_nnx_model.py")
    truth = 0.1 + 0.8 * out["grid"]
    assert np.max(np.abs(out["p_six_loaded"] - truth)) < 0.12
    assert spearmanr(out["grid"], out["p_six_loaded"]).statistic > 0.95
    losses = out["losses"]
    assert losses[-1] < losses[0] - 0.02
    # the covariate-aware model predicts new sessions better than a plain HMM fitted by Baum-Welch
    assert out["held_out"] > out["plain_held_out"]
    np.testing.assert_allclose(np.diag(out["transition"]), [0.95, 0.90], atol=0.08)
    # the operator's emission logits are frozen (the network replaces them): still their initial values
    from flax import nnx

    fresh = type(out["model"])(rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(out["model"].hmm.log_emission_params[...], fresh.hmm.log_emission_params[...])
    assert not np.allclose(out["model"].hmm.log_transition_params[...], fresh.hmm.log_transition_params[...])


def test_06_hierarchical_poisson_hmm_recovers_gain_depths_and_states():
    out = run("06_hierarchical_poisson_hmm.py")
    truth, fit = out["truth"], out["fit"]
    gain = out["gain"]
    assert np.quantile(gain, 0.02) < 2.0 < np.quantile(gain, 0.98)  # the simulated gain
    depth = fit.posterior_mean()["depth"]
    np.testing.assert_allclose(depth, truth["depth"], rtol=0.15)
    assert fit.num_divergences == 0
    assert out["viterbi_accuracy"] > 0.9
    post = out["posterior_marginals"]
    np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-5)
    assert np.mean(np.argmax(post, -1) == truth["states"]) > 0.9


def test_07_modeller_runs_arvizs_checks_on_its_own_hmms(tmp_path):
    out = run("07_modeller_checks.py", out_dir=tmp_path)
    poisson, dt = out["fits"]["poisson"], out["trees"]["poisson"]
    assert poisson.num_divergences == 0
    # the simulated rates lie inside the 94% central interval, in the ordered states
    rates = poisson.flat_samples()["rates"]
    lower, upper = np.quantile(rates, [0.03, 0.97], axis=0)
    truth = np.array([10.0, 25.0])
    assert np.all((lower < truth) & (truth < upper)), (lower, upper)
    # the record az.from_numpyro gives, with the names passed as dims=/coords=
    assert {"posterior", "prior", "posterior_predictive", "prior_predictive", "log_likelihood", "observed_data",
            "sample_stats"} <= set(dt.children)
    b, t = out["truth"]["counts"].shape
    assert dt["posterior"]["rates"].dims == dt["prior"]["rates"].dims == ("chain", "draw", "state")
    assert list(dt["posterior"]["state"].values) == ["s0", "s1"]
    assert dt["posterior_predictive"]["counts"].dims == ("chain", "draw", "sequence", "bin")
    assert dt["prior_predictive"]["counts"].shape[2:] == (b, t)
    assert dt["observed_data"]["counts"].dims == ("sequence", "bin")
    np.testing.assert_array_equal(dt["observed_data"]["counts"].values, out["truth"]["counts"])
    assert dt["log_likelihood"]["counts"].dims == ("chain", "draw", "sequence")
    # the prior is wider than the posterior (the data moved the rates)
    assert float(dt["prior"]["rates"].std()) > 3 * float(dt["posterior"]["rates"].std())
    # LOO-PIT of each sequence's total count: in [0, 1] and not far from uniform
    pit = np.asarray(out["loo_pit"])
    assert pit.shape == (b,) and np.all((pit >= 0) & (pit <= 1))
    assert kstest(pit, "uniform").pvalue > 0.01
    # the true (Poisson) model is first, or within two standard errors of the difference of the first
    cmp = out["compare"]
    assert set(cmp.index) == {"poisson", "gaussian"}
    assert cmp.loc["poisson", "rank"] == 0 or cmp.loc["poisson", "elpd_diff"] > -2 * cmp.loc["poisson", "dse"] - 1e-9
    assert np.size(out["loo"]["poisson"].pareto_k) == b  # one LOO point per sequence
    # SVI: log_p / log_q recorded, az.loo_approximate_posterior near NUTS's elpd, means near NUTS's
    svi = out["svi"]
    assert {"log_p", "log_q"} <= set(svi.sample_stats)
    assert abs(out["svi_loo"].elpd - out["loo"]["poisson"].elpd) < 2 * out["loo"]["poisson"].se
    np.testing.assert_allclose(svi.posterior_mean()["rates"], poisson.posterior_mean()["rates"], rtol=0.05)
    for path in out["figures"].values():
        assert path.parent == tmp_path and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------
# Seeds 0..4: every NUTS example's starting point has a finite log density and gradient (the failure of
# example 01 on a fresh install, in float32: without interior_params seeds 0-2 of its 3-state start fail). Built as the example builds it, without sampling; sampling every example
# for five seeds is bench/examples_seeds.py. Example 02 starts at the prior median of every coefficient (no
# data-built start) and 03's start and data do not depend on the seed, so neither is repeated here.

def _start_01(seed):
    ex = load("01_bayesian_hmm_loo.py")
    from diffbio_prob.models import hmm_model

    rolls = ex["simulate"](12, 100, seed)  # main(small=True)'s sizes
    return [(hmm_model, (jnp.asarray(rolls),), {"num_states": k, "num_emissions": 6}, ex["start_params"](rolls, k, seed))
            for k in (2, 3)]


def _start_06(seed):
    ex = load("06_hierarchical_poisson_hmm.py")
    data = ex["simulate"](4, 60, seed)
    return [(ex["model"], (jnp.asarray(data["counts"]),), {}, None)]


def _start_07(seed):
    ex = load("07_modeller_checks.py")
    counts = jnp.asarray(ex["simulate"](6, 50, seed)["counts"])
    return [(ex["model"], (counts,), {"num_states": 2, "emission": e}, None) for e in ("poisson", "gaussian")]


@pytest.mark.float32  # as on a fresh install: a Baum-Welch zero (1e-43 in float64) is 0 in float32
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("example", ["01", pytest.param("06", marks=pytest.mark.long),
                                     pytest.param("07", marks=pytest.mark.long)])  # 01 is the start that failed
def test_nuts_starts_are_finite_for_seeds_0_to_4(example, seed):
    from numpyro.infer import init_to_median, init_to_value
    from numpyro.infer.util import initialize_model

    from diffbio_prob.inference._numpyro_compat import bind_submodules

    bind_submodules()  # the examples import ArviZ before NumPyro (fit_nuts does this itself)
    for model, args, kwargs, start in {"01": _start_01, "06": _start_06, "07": _start_07}[example](seed):
        # fit_nuts's own rule: init_params -> init_to_value, else init_to_median
        strategy = init_to_value(values=start) if start else init_to_median
        info = initialize_model(jax.random.PRNGKey(seed), model, init_strategy=strategy, model_args=args,
                                model_kwargs=kwargs).param_info
        assert np.isfinite(float(info.potential_energy)), (example, seed)
        grads = jax.tree_util.tree_leaves(info.z_grad)
        assert grads and all(np.all(np.isfinite(np.asarray(g))) for g in grads), (example, seed)
        if start:  # the start NUTS begins from is the example's (init_to_value did not replace it)
            values = initialize_model(jax.random.PRNGKey(seed), model, init_strategy=strategy, model_args=args,
                                      model_kwargs=kwargs).postprocess_fn(info.z)
            for site, value in start.items():
                np.testing.assert_allclose(values[site], value, rtol=1e-4, atol=1e-6)
