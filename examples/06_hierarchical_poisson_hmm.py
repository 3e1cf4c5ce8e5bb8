"""A hierarchical Poisson HMM: per-sequence emissions, shared transitions, fitted by NUTS.

Read depth along several genomic segments, each a sequence of bins with two hidden copy-number states
(normal, gained). Every sequence has its own sequencing depth (a per-sequence Poisson rate, drawn from a
population distribution); the gain factor and the transition matrix are shared. `DiscreteHMM` takes the
emission as a NumPyro distribution with batch shape (B, S), Pyro's convention, inside `numpyro.plate`
over sequences; its `log_prob` is the package's forward pass, so NUTS sees the hidden states
marginalised. The gain is modelled as `exp(log_gain)` with `log_gain > 0`, which orders the states and
removes label switching. After sampling, the posterior mean decodes every sequence with
`DiscreteHMM.viterbi`.

Run:  python examples/06_hierarchical_poisson_hmm.py [--small]
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from diffbio_prob.inference import fit_nuts
from diffbio_prob.models import DiscreteHMM

STICKY = np.array([[0.95, 0.05], [0.1, 0.9]])
GAIN = 2.0  # rate of the gained state relative to the normal one


def simulate(num_sequences: int, num_steps: int, seed: int = 0) -> dict:
    """Counts (B, T), states (B, T) and per-sequence depths (B,) from the model below."""
    rng = np.random.default_rng(seed)
    depth = np.exp(rng.normal(np.log(20.0), 0.4, num_sequences))
    states = np.zeros((num_sequences, num_steps), dtype=int)
    for b in range(num_sequences):
        states[b, 0] = rng.integers(2)
        for t in range(1, num_steps):
            states[b, t] = rng.choice(2, p=STICKY[states[b, t - 1]])
    rates = depth[:, None] * np.where(states == 1, GAIN, 1.0)
    return {"counts": rng.poisson(rates), "states": states, "depth": depth}


def model(counts=None, num_sequences: int | None = None, num_steps: int | None = None):
    """Shared initial / transition probabilities and gain; per-sequence depth ~ LogNormal(mu, sigma)."""
    b, t = counts.shape if counts is not None else (num_sequences, num_steps)
    initial = numpyro.sample("initial_probs", dist.Dirichlet(jnp.ones(2)))
    transition = numpyro.sample("transition_probs", dist.Dirichlet(jnp.ones((2, 2)) + 4.0 * jnp.eye(2)).to_event(1))
    log_gain = numpyro.sample("log_gain", dist.HalfNormal(1.0))
    mu = numpyro.sample("depth_mu", dist.Normal(jnp.log(10.0), 1.5))
    sigma = numpyro.sample("depth_sigma", dist.HalfNormal(1.0))
    with numpyro.plate("sequences", b):
        depth = numpyro.sample("depth", dist.LogNormal(mu, sigma))
        rates = depth[:, None] * jnp.stack([jnp.ones(()), jnp.exp(log_gain)])  # (B, S)
        numpyro.sample("observations", DiscreteHMM(initial, transition, observation_dist=dist.Poisson(rates),
                                                   num_steps=t), obs=counts)


def main(small: bool = False, seed: int = 0) -> dict:
    """Simulate, fit by NUTS, decode; returns the fit, the truth and the decoded states."""
    b, t = (4, 60) if small else (12, 200)
    warmup, draws, chains = (150, 150, 2) if small else (500, 1000, 4)
    data = simulate(b, t, seed)
    counts = jnp.asarray(data["counts"])
    fit = fit_nuts(model, counts, num_warmup=warmup, num_samples=draws, num_chains=chains, rng_key=seed,
                   progress=False)
    print(fit.summary(["log_gain", "depth_mu", "depth_sigma", "transition_probs"])[["mean", "sd", "r_hat"]].round(3))
    print(f"NUTS: {chains} chains x {draws} draws, {fit.num_divergences} divergences ({fit.elapsed_s:.1f} s)")
    post = fit.posterior_mean()
    gain = np.exp(fit.samples["log_gain"]).ravel()
    print(f"gain: {gain.mean():.2f} (90% interval {np.quantile(gain, 0.05):.2f}-{np.quantile(gain, 0.95):.2f}; "
          f"truth {GAIN})")
    rates = post["depth"][:, None] * np.array([1.0, np.exp(post["log_gain"])])
    hmm = DiscreteHMM(post["initial_probs"], post["transition_probs"], observation_dist=dist.Poisson(jnp.asarray(rates)),
                      num_steps=t)
    path, _ = hmm.viterbi(counts)
    accuracy = float(np.mean(np.asarray(path) == data["states"]))
    print(f"Viterbi with the posterior mean: {accuracy:.1%} of bins in the right state")
    print("depth per sequence (posterior mean vs truth):",
          np.round(post["depth"], 1).tolist(), np.round(data["depth"], 1).tolist())
    return {"fit": fit, "truth": data, "gain": gain, "viterbi_accuracy": accuracy,
            "posterior_marginals": np.asarray(hmm.posterior_marginals(counts))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small sizes (seconds, for tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(small=args.small, seed=args.seed)
