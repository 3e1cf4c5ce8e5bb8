"""A modeller's own Poisson- and Gaussian-emission HMMs, fitted by NUTS and SVI and checked with ArviZ.

Read depth along several genomic segments, each a sequence of bins in one of two copy-number states. The
modeller writes the HMM inside their own NumPyro model: `DiscreteHMM(initial, transition,
observation_dist=dist.Poisson(rates), num_steps=T)` (Pyro's convention: the emission distribution's batch
shape ends in the number of states), under `numpyro.plate` over the sequences; swapping the emission for
`dist.Normal(means, scales)` gives the Gaussian model. The states are ordered by their rate (mean), which
removes label switching.

`fit_nuts(..., prior_draws=N, dims=..., coords=...)` and `fit_svi` return results whose `.to_arviz()` has
`az.from_numpyro`'s layout (posterior, prior, posterior and prior predictive, log-likelihood, observed
data, sample statistics), so ArviZ's checks run on them as they are:

- `az.plot_ppc_dist`: do the posterior predictive counts look like the observed ones?
- `az.plot_prior_posterior`: how much did the data move each rate away from its prior?
- `az.loo` and `az.compare`: leave-one-sequence-out predictive accuracy of Poisson vs Gaussian emissions
  on the same counts (the Gaussian density at an integer approximates the probability
  of the unit bin around it, so the two elpds are on one scale);
- `az.loo_pit`: leave-one-sequence-out PIT of each sequence's total count (uniform if calibrated);
- `FitResult.loo()` of an SVI fit: `az.loo_approximate_posterior`, corrected by the draws' `log_p`/`log_q`.

Run:  python examples/07_modeller_checks.py [--small] [--seed S] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures go to files, never to a window

import arviz as az  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import xarray as xr  # noqa: E402

from diffbio_prob.inference import fit_nuts, fit_svi  # noqa: E402
from diffbio_prob.models import DiscreteHMM  # noqa: E402

RATES = np.array([10.0, 25.0])  # read depth of the normal and the gained state
STICKY = np.array([[0.9, 0.1], [0.15, 0.85]])


def simulate(num_sequences: int, num_steps: int, seed: int = 0) -> dict:
    """Counts (B, T) and states (B, T) of a 2-state Poisson HMM."""
    rng = np.random.default_rng(seed)
    states = np.zeros((num_sequences, num_steps), dtype=int)
    for b in range(num_sequences):
        states[b, 0] = rng.integers(2)
        for t in range(1, num_steps):
            states[b, t] = rng.choice(2, p=STICKY[states[b, t - 1]])
    return {"counts": rng.poisson(RATES[states]), "states": states}


def ordered(name: str, num_states: int, loc: float, scale: float) -> jnp.ndarray:
    """``num_states`` increasing positive values: a log-normal first one, then each the previous one times
    ``exp(gap)`` with ``gap > 0`` (half-normal), so two states cannot swap labels."""
    first = numpyro.sample(f"{name}_first", dist.LogNormal(loc, scale))
    if num_states == 1:
        values = first[None]
    else:
        gaps = numpyro.sample(f"{name}_log_gaps", dist.HalfNormal(1.0).expand([num_states - 1]).to_event(1))
        values = first * jnp.exp(jnp.concatenate([jnp.zeros(1), jnp.cumsum(gaps)]))
    return numpyro.deterministic(name, values)


def model(counts, num_states: int = 2, emission: str = "poisson"):
    """The modeller's HMM: sticky Dirichlet transitions, ordered state rates (Poisson) or means with
    per-state scales (Gaussian), the hidden states marginalised by ``DiscreteHMM``."""
    b, t = counts.shape
    s = num_states
    initial = numpyro.sample("initial_probs", dist.Dirichlet(jnp.ones(s)))
    transition = numpyro.sample("transition_probs", dist.Dirichlet(jnp.ones((s, s)) + 4.0 * jnp.eye(s)).to_event(1))
    if emission == "poisson":
        observation = dist.Poisson(ordered("rates", s, jnp.log(10.0), 1.0))
    elif emission == "gaussian":
        means = ordered("means", s, jnp.log(10.0), 1.0)
        scales = numpyro.sample("scales", dist.HalfNormal(10.0).expand([s]).to_event(1))
        observation = dist.Normal(means, scales)
    else:
        raise ValueError(f"emission: expected 'poisson' or 'gaussian', got {emission!r}")
    with numpyro.plate("sequences", b):
        numpyro.sample("counts", DiscreteHMM(initial, transition, observation_dist=observation, num_steps=t),
                       obs=counts)


def dims_and_coords(counts: np.ndarray, num_states: int) -> tuple[dict, dict]:
    """ArviZ names: every state-indexed site on ``state``, the counts on ``sequence`` x ``bin``."""
    b, t = counts.shape
    dims = {"initial_probs": ["state"], "transition_probs": ["state", "next_state"], "rates": ["state"],
            "means": ["state"], "scales": ["state"], "rates_log_gaps": ["gap"], "means_log_gaps": ["gap"],
            "counts": ["sequence", "bin"]}
    states = [f"s{k}" for k in range(num_states)]
    coords = {"state": states, "next_state": states, "sequence": [f"seg{i}" for i in range(b)],
              "bin": np.arange(t)}
    return dims, coords


def sequence_totals(dt: xr.DataTree) -> xr.DataTree:
    """The tree with the observed and predictive counts replaced by each sequence's total count, the test
    statistic of ``az.loo_pit``: the log-likelihood is one value per sequence (its states marginalised over
    the whole sequence), so leave-one-out leaves a sequence out and its PIT needs a per-sequence quantity."""
    groups = {name: dt[name].to_dataset() for name in ("posterior", "log_likelihood")}
    groups["observed_data"] = dt["observed_data"].to_dataset()[["counts"]].sum("bin")
    groups["posterior_predictive"] = dt["posterior_predictive"].to_dataset()[["counts"]].sum("bin")
    return xr.DataTree.from_dict(groups)


def main(small: bool = False, seed: int = 0, out_dir: str | Path | None = None) -> dict:
    """Simulate; fit by NUTS (Poisson, Gaussian) and SVI (Poisson); run ArviZ's checks. Returns the fits,
    the trees, the checks and the figure paths."""
    b, t = (6, 50) if small else (12, 200)
    warmup, draws, chains = (150, 150, 2) if small else (500, 1000, 4)
    svi_steps = 1000 if small else 4000
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="diffbio_07_"))
    out.mkdir(parents=True, exist_ok=True)
    data = simulate(b, t, seed)
    counts = jnp.asarray(data["counts"])
    nuts_args = dict(num_warmup=warmup, num_samples=draws, num_chains=chains, rng_key=seed, progress=False)

    # NUTS, both emissions; the prior and the posterior predictive draws of the Poisson model feed the
    # plots (the Gaussian model's are not needed: it is only compared by LOO)
    fits, trees = {}, {}
    for name, emission in (("poisson", "poisson"), ("gaussian", "gaussian")):
        dims, coords = dims_and_coords(data["counts"], 2)
        first = name == "poisson"
        fits[name] = fit_nuts(model, counts, num_states=2, emission=emission, dims=dims, coords=coords,
                              prior_draws=draws if first else 0, posterior_predictive=first, **nuts_args)
        trees[name] = fits[name].to_arviz()
        print(f"NUTS {name}: {chains} chains x {draws} draws, {fits[name].num_divergences} divergences "
              f"({fits[name].elapsed_s:.1f} s)")
    dt = trees["poisson"]
    print(az.summary(dt, var_names=["rates", "transition_probs"], round_to=3)[["mean", "sd", "r_hat"]])

    with warnings.catch_warnings():  # few sequences: high Pareto k is printed below, not warned about
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        loo = {name: az.loo(tree) for name, tree in trees.items()}
        comparison = az.compare(trees)
        pit = az.loo_pit(sequence_totals(dt))["counts"].values
    for name, result in loo.items():
        print(f"{name}: elpd_loo = {result.elpd:.1f} ± {result.se:.1f}, max Pareto k = {np.max(result.pareto_k):.2f}")
    print(comparison[["rank", "elpd", "elpd_diff", "dse"]])
    print("LOO-PIT of each sequence's total count:", np.round(pit, 2).tolist())

    # SVI on the Poisson model; loo() is az.loo_approximate_posterior, PSIS corrected by log_p - log_q
    dims, coords = dims_and_coords(data["counts"], 2)
    svi = fit_svi(model, counts, num_states=2, guide="normal", num_steps=svi_steps, num_samples=draws * chains,
                  rng_key=seed, progress=False, posterior_predictive=False, dims=dims, coords=coords)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        svi_loo = svi.loo()
    print(f"SVI: rates {np.round(svi.posterior_mean()['rates'], 2).tolist()}, elpd_loo (approximate posterior) = "
          f"{svi_loo.elpd:.1f} ± {svi_loo.se:.1f} ({svi.elapsed_s:.1f} s)")

    figures = {}
    with warnings.catch_warnings():  # ArviZ suggests its discrete-data variants; a histogram suits counts
        warnings.filterwarnings("ignore", message="Variables counts in")
        pc = az.plot_ppc_dist(dt, var_names=["counts"], kind="hist", num_samples=50, backend="matplotlib")
    figures["ppc"] = out / "ppc_counts.png"
    pc.viz["figure"].item().savefig(figures["ppc"], dpi=80)
    pc = az.plot_prior_posterior(dt, var_names=["rates"], backend="matplotlib")
    figures["prior_posterior"] = out / "prior_posterior_rates.png"
    pc.viz["figure"].item().savefig(figures["prior_posterior"], dpi=80)
    plt.close("all")
    print("figures:", ", ".join(str(p) for p in figures.values()))
    return {"truth": data, "fits": fits, "trees": trees, "loo": loo, "compare": comparison, "loo_pit": pit,
            "svi": svi, "svi_loo": svi_loo, "figures": figures}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small sizes (seconds, for tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for the figures (default: a new temporary one)")
    args = parser.parse_args()
    main(small=args.small, seed=args.seed, out_dir=args.out)
