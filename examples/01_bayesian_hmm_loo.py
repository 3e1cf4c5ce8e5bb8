"""How many hidden states? A Bayesian HMM with Dirichlet priors, NUTS, and LOO for 2 vs 3 states.

Rolls of the dishonest casino (a fair and a loaded die) are simulated as several independent sessions. `hmm_model` puts Dirichlet priors on every probability
row and marginalises the hidden states with the package's forward pass; NUTS samples the posterior of a
2-state and a 3-state model, each started from a Baum-Welch fit. The model records the log-likelihood of
each session, so ArviZ's PSIS-LOO (`az.loo`) estimates how well each model predicts a held-out session,
and `az.compare` ranks them. The data have 2 states: the third state should buy no predictive accuracy
(an elpd difference below ~4 is "no difference" in the LOO FAQ's terms).

Run:  python examples/01_bayesian_hmm_loo.py [--small]
"""

from __future__ import annotations

import argparse

import warnings

import arviz as az
import jax.numpy as jnp
import numpy as np

from diffbio_prob.inference import fit_nuts
from diffbio_prob.inference.baum_welch import baum_welch
from diffbio_prob.models import hmm_model
from diffbio_prob.models.hmm import interior_params, relabel_states
from diffbio_prob.workflows.demo import simulate_casino


def simulate(num_sessions: int, num_rolls: int, seed: int = 0) -> np.ndarray:
    """``(num_sessions, num_rolls)`` die faces (0..5): independent sessions at the casino."""
    return np.stack([simulate_casino(num_rolls, seed * 10_000 + i)["observations"] for i in range(num_sessions)])


def start_params(rolls: np.ndarray, num_states: int, seed: int = 0) -> dict[str, np.ndarray]:
    """NUTS's starting point: a Baum-Welch fit, nudged off the simplex's boundary."""
    # Baum-Welch from sticky transitions (long runs of one die) and random emission rows: a symmetric
    # random start often ends in a worse local maximum.
    sticky = np.full((num_states, num_states), 0.1 / (num_states - 1)) + np.eye(num_states) * (0.9 - 0.1 / (num_states - 1))
    emission = np.random.default_rng(seed).dirichlet(np.full(6, 5.0), size=num_states)
    init = {"initial_probs": np.full(num_states, 1 / num_states), "transition_probs": sticky, "emission_probs": emission}
    # Baum-Welch drives unused probabilities to exactly 0, a point at infinity in NUTS's unconstrained
    # coordinates (a non-finite log density at the start): nudge it into the simplex's interior.
    return interior_params(baum_welch(rolls, num_states, 6, init=init, num_iters=200).params)


def fit(rolls: np.ndarray, num_states: int, *, warmup: int, draws: int, chains: int, seed: int = 0):
    """NUTS on ``hmm_model`` started at a Baum-Welch fit; draws relabelled by P(six)."""
    start = start_params(rolls, num_states, seed)
    result = fit_nuts(
        hmm_model, jnp.asarray(rolls), num_states=num_states, num_emissions=6, init_params=start,
        num_warmup=warmup, num_samples=draws, num_chains=chains, rng_key=seed, progress=False,
    )
    result.samples = relabel_states(result.samples, symbol=5)
    return result


def main(small: bool = False, seed: int = 0) -> dict:
    """Fit 2 and 3 states, compare by LOO; returns ``{"loo": {...}, "compare": DataFrame, "fits": {...}}``."""
    sessions, rolls_each = (12, 100) if small else (40, 200)
    warmup, draws, chains = (100, 100, 1) if small else (500, 500, 2)
    rolls = simulate(sessions, rolls_each, seed)
    fits, trees, loos = {}, {}, {}
    for k in (2, 3):
        fits[k] = fit(rolls, k, warmup=warmup, draws=draws, chains=chains, seed=seed)
        trees[f"{k} states"] = fits[k].to_arviz()
        with warnings.catch_warnings():  # high Pareto k is reported below, once per model
            warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
            loos[k] = az.loo(trees[f"{k} states"])
        print(f"{k} states: elpd_loo = {loos[k].elpd:.1f} ± {loos[k].se:.1f}, p_loo = {loos[k].p:.1f}, "
              f"divergences = {fits[k].num_divergences}, max Pareto k = {np.max(loos[k].pareto_k):.2f}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        comparison = az.compare(trees)
    print(comparison)
    post = fits[2].samples["emission_probs"][..., 1, 5].ravel()
    print(f"2 states: P(six | loaded) = {post.mean():.3f} (90% interval {np.quantile(post, 0.05):.3f}"
          f"-{np.quantile(post, 0.95):.3f}; truth 0.5)")
    return {"loo": loos, "compare": comparison, "fits": fits}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small sizes (seconds, for tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(small=args.small, seed=args.seed)
