"""SVI's posterior sd against NUTS's, per model and guide (issue 13: "measure SVI sd against NUTS sd").

Not a test. For each model on the demo's data (``hmm_model`` on the dishonest casino, ``nb_glm_model`` on a
small simulated DE table, ``em_model`` on salmon's sample equivalence classes) NUTS is the reference
posterior, and SVI is fitted with each guide that has a spread: ``"normal"`` (AutoNormal, mean-field),
``"lowrank"`` (AutoLowRankMultivariateNormal) and ``"full"`` (AutoMultivariateNormal); ``"delta"`` is a point
and is skipped. For every scalar parameter (an element of a constrained site) it computes

- ``sd ratio`` = SVI sd / NUTS sd (1 is right; below 1 the guide is over-confident), and
- ``|mean diff| / NUTS sd`` (how far the guide's mean sits from the posterior mean, in posterior sds),
- ``IQR ratio`` = SVI interquartile range / NUTS's (the spread of the bulk: a posterior with a long tail,
  as the casino's transition probabilities have, can have an sd ratio far below 1 and an IQR ratio near 1),

and prints, per model, parameter group and guide, their median and 10% / 90% quantiles over the parameters
as a Markdown table. HMM draws of both methods are relabelled by P(six) (fair state first). Float64.

The NUTS sd itself is a Monte Carlo estimate: with an ESS of a few hundred its relative error is a few
per cent, so ratios within about 0.9-1.1 are indistinguishable from 1.

Run:  .venv/bin/python bench/svi_vs_nuts.py            (full sizes, a few minutes on 2 cores)
      .venv/bin/python bench/svi_vs_nuts.py --small    (tiny sizes, under a minute)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time

import numpy as np
import pandas as pd

GUIDES = ("normal", "lowrank", "full")
MODELS = ("hmm", "nb_glm", "em")


@dataclasses.dataclass(frozen=True)
class Sizes:
    casino_steps: int
    de_genes: int
    de_samples: int
    nuts_warmup: int
    nuts_draws: int
    nuts_chains: int
    svi_steps: int
    svi_draws: int


FULL = Sizes(casino_steps=1000, de_genes=200, de_samples=8, nuts_warmup=500, nuts_draws=500, nuts_chains=2,
             svi_steps=6000, svi_draws=2000)
SMALL = Sizes(casino_steps=200, de_genes=12, de_samples=6, nuts_warmup=200, nuts_draws=300, nuts_chains=1,
              svi_steps=4000, svi_draws=1000)


@dataclasses.dataclass
class Problem:
    """A model with its arguments, where both fits start, and the parameter groups compared."""

    model: object
    args: tuple
    kwargs: dict
    init: dict
    groups: dict  # label -> function(flat draws dict) -> (draws, P) array
    relabel: object = None  # function(flat draws dict) -> dict, applied to both methods' draws


def hmm_problem(sizes: Sizes, seed: int) -> Problem:
    from diffbio_prob.models import hmm_model
    from diffbio_prob.models.hmm import relabel_states
    from diffbio_prob.workflows.demo.data import CASINO, simulate_casino

    rolls = simulate_casino(sizes.casino_steps, seed)["observations"]
    # Both fits start at the truth, so that both explore the same one of the two label-symmetric modes.
    init = {k: np.asarray(v, float) for k, v in CASINO.items()}

    def flat(key):
        return lambda d: d[key].reshape(d[key].shape[0], -1)

    return Problem(
        hmm_model, (rolls,), {"num_states": 2, "num_emissions": 6}, init,
        {"transition_probs": flat("transition_probs"), "emission_probs": flat("emission_probs")},
        relabel=lambda d: relabel_states(d, 5),
    )


def nb_glm_problem(sizes: Sizes, seed: int) -> Problem:
    from diffbio_prob.models import nb_glm_model
    from diffbio_prob.workflows.demo.data import simulate_de_counts

    counts, samples, _ = simulate_de_counts(sizes.de_genes, sizes.de_samples, seed)
    # Genes with a few reads per sample: below that the posterior is the prior, for SVI and NUTS alike.
    counts = counts[counts.mean(axis=1) >= 5].to_numpy(float).T  # (N, G)
    group = (samples["condition"] == "B").to_numpy(float)
    design = np.column_stack([np.ones_like(group), group])
    sf = samples["size_factor"].to_numpy(float)  # the true size factors: this bench is about inference
    norm = counts / sf[:, None]
    a, b = norm[group == 0].mean(0) + 0.5, norm[group == 1].mean(0) + 0.5
    init = {"beta": np.stack([np.log(a), np.log(b / a)]), "alpha": np.full(counts.shape[1], 0.1)}
    return Problem(
        nb_glm_model, (counts, design, sf), {"prior_scale": 2.0}, init,
        {"log2 fold change": lambda d: d["beta"][:, 1, :] / math.log(2.0),
         "intercept": lambda d: d["beta"][:, 0, :], "alpha": lambda d: d["alpha"]},
    )


def em_problem(sizes: Sizes, seed: int) -> Problem:
    from diffbio_prob.models import em_model
    from diffbio_prob.workflows.demo.data import load_quant_sample
    from diffbio_prob.workflows.quant import quantify, to_eq_classes

    sample = load_quant_sample()
    eqc = to_eq_classes(sample.table)
    em = quantify(sample.table, sample.effective_lengths, lengths=sample.lengths, algorithm="em")
    # the EM maximum, nudged off the simplex's boundary (a zero read fraction is -inf unconstrained)
    start = np.asarray(em.num_reads, float) + 1.0
    return Problem(em_model, (eqc, np.asarray(sample.effective_lengths, float)), {},
                   {"abundances": start / start.sum()}, {"abundances": lambda d: d["abundances"]})


PROBLEMS = {"hmm": hmm_problem, "nb_glm": nb_glm_problem, "em": em_problem}


def _q(x: np.ndarray) -> tuple[float, float, float]:
    return float(np.median(x)), float(np.quantile(x, 0.1)), float(np.quantile(x, 0.9))


def compare(name: str, sizes: Sizes, seed: int = 0, guides=GUIDES) -> pd.DataFrame:
    """One model: NUTS, then SVI with each guide; one row per parameter group and guide."""
    from diffbio_prob.inference import fit_nuts, fit_svi

    problem = PROBLEMS[name](sizes, seed)
    common = dict(progress=False, posterior_predictive=False, init_params=problem.init)
    start = time.perf_counter()
    nuts = fit_nuts(problem.model, *problem.args, num_warmup=sizes.nuts_warmup, num_samples=sizes.nuts_draws,
                    num_chains=sizes.nuts_chains, rng_key=seed + 1, **common, **problem.kwargs)
    nuts_s = time.perf_counter() - start
    relabel = problem.relabel or (lambda d: d)
    ref = relabel(nuts.flat_samples())
    rows = []
    for guide in guides:
        start = time.perf_counter()
        svi = fit_svi(problem.model, *problem.args, guide=guide, num_steps=sizes.svi_steps,
                      num_samples=sizes.svi_draws, rng_key=seed + 2, **common, **problem.kwargs)
        svi_s = time.perf_counter() - start
        draws = relabel(svi.flat_samples())
        for label, pick in problem.groups.items():
            r, s = pick(ref), pick(draws)
            sd_nuts = r.std(0, ddof=1)
            ratio = s.std(0, ddof=1) / sd_nuts
            shift = np.abs(s.mean(0) - r.mean(0)) / sd_nuts
            iqr = np.subtract(*np.quantile(s, [0.75, 0.25], axis=0)) / np.subtract(*np.quantile(r, [0.75, 0.25], axis=0))
            rows.append({"model": name, "parameters": label, "guide": guide, "n": int(r.shape[1]),
                         **dict(zip(("sd ratio median", "sd ratio q10", "sd ratio q90"), _q(ratio))),
                         **dict(zip(("|mean diff|/sd median", "|mean diff|/sd q10", "|mean diff|/sd q90"),
                                    _q(shift))),
                         **dict(zip(("IQR ratio median", "IQR ratio q10", "IQR ratio q90"), _q(iqr))),
                         "SVI (s)": svi_s, "NUTS (s)": nuts_s})
    return pd.DataFrame(rows)


def run(small: bool = False, models=MODELS, seed: int = 0, guides=GUIDES) -> pd.DataFrame:
    sizes = SMALL if small else FULL
    return pd.concat([compare(m, sizes, seed, guides) for m in models], ignore_index=True)


def to_markdown(table: pd.DataFrame) -> str:
    head = ("| model | parameters (n) | guide | SVI sd / NUTS sd: median [q10, q90] "
            "| abs(mean diff) / NUTS sd: median [q10, q90] | SVI IQR / NUTS IQR: median [q10, q90] | SVI s | NUTS s |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        sd = [r[f"sd ratio {q}"] for q in ("median", "q10", "q90")]
        mv = [r[f"|mean diff|/sd {q}"] for q in ("median", "q10", "q90")]
        iq = [r[f"IQR ratio {q}"] for q in ("median", "q10", "q90")]
        lines.append(
            f"| {r['model']} | {r['parameters']} ({r['n']}) | {r['guide']} "
            f"| {sd[0]:.2f} [{sd[1]:.2f}, {sd[2]:.2f}] | {mv[0]:.2f} [{mv[1]:.2f}, {mv[2]:.2f}] "
            f"| {iq[0]:.2f} [{iq[1]:.2f}, {iq[2]:.2f}] "
            f"| {r['SVI (s)']:.0f} | {r['NUTS (s)']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes (under a minute)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of hmm,nb_glm,em")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in PROBLEMS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(PROBLEMS)}")
    import jax

    jax.config.update("jax_enable_x64", True)
    sizes = SMALL if args.small else FULL
    print(f"sizes: {sizes}", file=sys.stderr)
    start = time.perf_counter()
    table = run(args.small, models, args.seed)
    print(to_markdown(table))
    print(f"\n{time.perf_counter() - start:.0f} s in all (seed {args.seed}, float64, "
          f"{'--small' if args.small else 'full sizes'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
