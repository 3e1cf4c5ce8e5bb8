"""The demo's HMM part: the dishonest casino fitted four ways by :func:`~diffbio_prob.workflows.hmm.fit_hmm`
(Baum-Welch, gradient, SVI, NUTS) and decoded by :func:`~diffbio_prob.workflows.hmm.decode_hmm`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from diffbio_prob.workflows.demo.data import CASINO, CASINO_STATES, STICKY, DemoSizes, simulate_casino, stream_rng
from diffbio_prob.workflows.demo.outputs import (Outputs, Part, Progress, loss_figure, max_rhat, mean_sd, ppc_draws,
                                                 summary_table)

SITES = ("initial_probs", "transition_probs", "emission_probs")
PPC_LABELS = [f"face {f}" for f in range(1, 7)] + ["6 then 6"]


def _ppc_statistics(rolls: np.ndarray) -> np.ndarray:
    """(n, T) rolls (0..5) -> (n, 7): how often each face shows, and how many consecutive pairs of sixes."""
    faces = np.stack([(rolls == f).sum(-1) for f in range(6)], -1)
    pairs = ((rolls[:, 1:] == 5) & (rolls[:, :-1] == 5)).sum(-1)
    return np.concatenate([faces, pairs[:, None]], -1)


def run_hmm_part(sizes: DemoSizes, seed: int, out: Outputs, progress: Progress) -> Part:
    """The dishonest casino fitted four ways (Baum-Welch, gradient, SVI, NUTS), decoded, written out."""
    from diffbio_prob.plots import posterior_plot, posterior_track_plot, trace_plot
    from diffbio_prob.plots.diagnostics import ppc_interval_plot, ppc_intervals
    from diffbio_prob.workflows.hmm import decode_hmm, fit_hmm, hmm_log_likelihood

    data = simulate_casino(sizes.casino_steps, seed)
    obs_np, truth = data["observations"], data["states"]
    kw = {"num_states": 2, "num_emissions": 6, "progress": progress.bars}  # states ordered by P(six)
    # EM and the gradient fit start from sticky transitions and random emission rows.
    start = {"initial_probs": np.full(2, 0.5), "transition_probs": STICKY,
             "emission_probs": stream_rng(seed, 3).dirichlet(np.full(6, 5.0), size=2)}

    with progress.step(f"HMM: Baum-Welch EM on {obs_np.size:,} rolls"):
        bw = fit_hmm(obs_np, method="em", init=start, num_iters=200, tol=1e-6, **kw)
    with progress.step(f"HMM: gradient fit of the NNX operator ({sizes.gradient_steps} Adam steps)"):
        grad = fit_hmm(obs_np, method="gradient", init=start, num_steps=sizes.gradient_steps, seed=seed, **kw)
    # Both samplers start at the gradient fit: every chain then explores the same one of the two
    # label-symmetric modes, and the relabelling only has to fix a draw that crosses over.
    with progress.step(f"HMM: SVI on hmm_model ({sizes.svi_steps} steps, mean-field normal guide)"):
        svi = fit_hmm(obs_np, method="svi", init=grad.params, num_steps=sizes.svi_steps, num_samples=sizes.svi_draws,
                      seed=seed, **kw)
    with progress.step(
        f"HMM: NUTS on hmm_model ({sizes.nuts_chains} chain(s) x {sizes.nuts_warmup}+{sizes.nuts_draws} draws)"
    ):
        nuts = fit_hmm(obs_np, method="nuts", init=grad.params, num_warmup=sizes.nuts_warmup,
                       num_samples=sizes.nuts_draws, num_chains=sizes.nuts_chains, seed=seed + 1, **kw)

    with progress.step("HMM: decoding (posterior state track, Viterbi), tables and figures"):
        # The posterior state track averaged over posterior draws (parameter uncertainty included),
        # not the plug-in track of one point estimate; Viterbi at the posterior mean.
        flat = nuts.result.flat_samples()
        posteriors, _ = decode_hmm(nuts.params, obs_np, draws=flat, max_draws=sizes.track_draws)
        track = posteriors[["p_state0", "p_state1"]].to_numpy()
        path = posteriors["viterbi_state"].to_numpy()
        n_track = min(sizes.track_draws, flat["emission_probs"].shape[0])
        viterbi_acc = float(np.mean(path == truth))
        track_acc = float(np.mean(track.argmax(1) == truth))

        point = {
            "Baum-Welch EM": (bw, None),
            "gradient (NNX + optax)": (grad, None),
            "SVI (mean-field normal)": (svi, svi.result.flat_samples()),
            "NUTS": (nuts, flat),
        }
        picks = {
            "P(fair→fair)": ("transition_probs", (0, 0)),
            "P(loaded→loaded)": ("transition_probs", (1, 1)),
            "P(six | fair)": ("emission_probs", (0, 5)),
            "P(six | loaded)": ("emission_probs", (1, 5)),
        }
        rows = {"truth": {k: f"{CASINO[s][i]:.3f}" for k, (s, i) in picks.items()}}
        rows["truth"].update({"log-likelihood": hmm_log_likelihood(CASINO, obs_np), "time (s)": np.nan})
        for label, (fit, draws) in point.items():
            row = {
                k: mean_sd(draws[s][(slice(None),) + i]) if draws is not None else f"{float(fit.params[s][i]):.3f}"
                for k, (s, i) in picks.items()
            }
            # the log-likelihood at the estimate (SVI, NUTS: the posterior mean)
            rows[label] = {**row, "log-likelihood": hmm_log_likelihood(fit.params, obs_np), "time (s)": fit.elapsed_s}
        comparison = pd.DataFrame.from_dict(rows, orient="index")
        comparison.index.name = "fit"
        comparison = comparison.astype({"log-likelihood": float, "time (s)": float})

        dims = {"initial_probs": ["state"], "transition_probs": ["from_state", "to_state"],
                "emission_probs": ["state", "face"], "observations": []}
        coords = {"state": list(CASINO_STATES), "from_state": list(CASINO_STATES),
                  "to_state": list(CASINO_STATES), "face": [str(f) for f in range(1, 7)]}
        dt = out.netcdf("hmm/posterior_nuts.nc", nuts.result, "HMM posterior draws (NUTS), ArviZ netCDF", coords, dims)
        out.netcdf("hmm/posterior_svi.nc", svi.result, "HMM posterior draws (SVI), ArviZ netCDF", coords, dims)
        summary = summary_table(dt, list(SITES))
        out.csv("hmm/summary_nuts.csv", summary, "HMM: ArviZ summary of the NUTS posterior")
        out.csv("hmm/fit_comparison.csv", comparison, "HMM: the fit paths compared")
        out.csv(
            "hmm/decoding.csv",
            pd.DataFrame(
                {"roll": obs_np + 1, "true_state": np.asarray(CASINO_STATES)[truth],
                 "viterbi": np.asarray(CASINO_STATES)[path], "p_loaded": track[:, 1]},
                index=pd.RangeIndex(1, obs_np.size + 1, name="t"),
            ),
            "HMM: rolls, true states, Viterbi path, posterior P(loaded)",
        )

        shown = min(obs_np.size, 400)
        fig_track = out.png(
            "hmm/posterior_track.png",
            posterior_track_plot(
                track[:shown], truth[:shown], path[:shown], obs_np[:shown] + 1, state_names=list(CASINO_STATES),
                title=f"First {shown} of {obs_np.size:,} rolls",
            ),
            "HMM: posterior state track vs true states and Viterbi",
        )
        fig_trace = out.png("hmm/trace.png", trace_plot(dt, ["transition_probs", "emission_probs"]), "HMM: trace plot")
        fig_post = out.png(
            "hmm/posterior.png",
            posterior_plot(
                dt, ["transition_probs", "emission_probs"],
                ref_values={k: CASINO[k] for k in ("transition_probs", "emission_probs")},
            ),
            "HMM: posteriors with the true values",
        )
        # Face counts test the emissions; pairs of consecutive sixes test the hidden chain (a one-state
        # model with the same face frequencies predicts about half as many).
        ppc_args = (dt, "observations", _ppc_statistics)
        ppc_kw = {"labels": PPC_LABELS}
        ppc = ppc_intervals(*ppc_args, **ppc_kw)
        out.csv("hmm/ppc.csv", ppc, "HMM: posterior predictive check (observed statistic vs predictive quantiles)")
        fig_ppc = out.png(
            "hmm/ppc.png",
            ppc_interval_plot(*ppc_args, **ppc_kw, xlabel="statistic of the rolls", ylabel="count",
                              title="Casino rolls"),
            "HMM: posterior predictive check",
        )
        fig_loss = out.png(
            "hmm/loss.png",
            loss_figure(
                [("gradient: NNX operator + Adam", grad.history, "−log-likelihood"),
                 ("SVI: hmm_model", svi.history, "−ELBO")],
                "Optimiser fits of the casino HMM",
            ),
            "HMM: loss curves",
        )

    nres = nuts.result
    total_draws = nres.num_chains * nres.num_draws
    blocks = [
        ("Fit paths compared", "table", comparison,
         "Estimates of each fit path (SVI and NUTS: posterior mean ± sd), the log-likelihood of the rolls at the "
         "estimate (posterior mean for SVI and NUTS), and wall time including JIT compilation."),
        ("Fit paths compared", "figure", fig_loss,
         "Loss curves of the two optimiser fits (the y axis zooms on the last 80% of steps)."),
        ("Posterior (NUTS)", "summary", (summary, nres.num_divergences, total_draws),
         "ArviZ summary of the NUTS posterior: mean, sd, 94% HDI, bulk and tail ESS, R-hat."),
        ("Posterior (NUTS)", "figure", fig_trace,
         "Trace and marginal posterior of the transition and emission probabilities; chains overlaid, "
         "divergent transitions (if any) marked."),
        ("Posterior (NUTS)", "figure", fig_post, "Posterior means with 50% and 94% HDIs; the true values in red."),
        ("Posterior predictive check", "figure", fig_ppc,
         f"Posterior predictive check: rolls simulated from {ppc_draws(dt)} NUTS draws of the parameters "
         "(each a new hidden chain and new rolls) against the observed ones. Six face counts and the number of "
         f"consecutive pairs of sixes; **{int(ppc['inside'].sum())} of {len(ppc)}** observed values lie in "
         "their 94% predictive interval."),
        ("Decoding", "figure", fig_track,
         f"Posterior probability of each state along the first {shown} rolls (averaged over {n_track} NUTS "
         "draws, so parameter uncertainty is included), with the true states and the Viterbi path of the "
         f"posterior mean below. Over all {obs_np.size:,} rolls the Viterbi path agrees with the truth at "
         f"**{viterbi_acc:.1%}** of positions, the posterior argmax at **{track_acc:.1%}**."),
    ]
    return Part(
        title="Hidden Markov model: the dishonest casino",
        intro=(
            "A casino switches between a **fair** die and a **loaded** one that shows a six half of the time "
            "(Durbin et al. 1998). We simulate the rolls, hide the dice, and fit a 2-state categorical HMM. "
            "The hidden states are marginalised by one forward pass (`cores/hmm.py`) that both the NNX operator "
            "`DifferentiableHMM` and the NumPyro model `hmm_model` (Dirichlet(1) priors on every probability "
            "row) call. Every fit is one call of the workflow `fit_hmm` (the `diffbio-prob hmm` command's), "
            "the decoding one call of `decode_hmm`.\n\n"
            "- **Baum-Welch EM** (`method=\"em\"`): closed-form M-step, the classical maximum-likelihood fit.\n"
            "- **gradient** (`\"gradient\"`): the operator's logits trained by Adam on −log-likelihood.\n"
            "- **SVI** (`\"svi\"`): a mean-field normal guide on `hmm_model`.\n"
            "- **NUTS** (`\"nuts\"`): the posterior, every chain started at the gradient fit.\n\n"
            "EM and gradient ascent start from sticky transitions (0.9 on the diagonal) and random emission "
            "rows; from a symmetric random start both often stop at a worse local maximum. Swapping the two "
            "states' names does not change the likelihood (label switching); every draw is relabelled "
            "so that the state with the smaller P(six) is `fair`."
        ),
        facts={
            "rolls": f"{obs_np.size:,} (seed {seed})",
            "time spent with the loaded die": f"{np.mean(truth == 1):.1%}",
            "NUTS": f"{nres.num_chains} chain(s) × ({sizes.nuts_warmup} warm-up + {nres.num_draws} draws)",
            "SVI": f"{sizes.svi_steps:,} steps, {svi.result.num_draws:,} draws from the guide",
            "Viterbi agreement with the true states": f"{viterbi_acc:.1%}",
        },
        blocks=blocks,
        headline={
            "model": "HMM (casino)",
            "data": f"{obs_np.size:,} rolls",
            "gradient (s)": grad.elapsed_s,
            "SVI (s)": svi.elapsed_s,
            "NUTS (s)": nuts.elapsed_s,
            "divergences": nres.num_divergences,
            "max R-hat": max_rhat(summary),
            "recovered": f"Viterbi {viterbi_acc:.1%} right",
        },
    )


