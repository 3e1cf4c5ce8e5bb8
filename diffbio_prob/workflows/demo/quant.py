"""The demo's quantification part: salmon's sample equivalence classes with the true counts, quantified by
:func:`~diffbio_prob.workflows.quant.quantify` (EM; gradient through unrolled EM) and
:func:`~diffbio_prob.workflows.quant.posterior` (SVI, NUTS)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from diffbio_prob.workflows.demo.data import DemoSizes, load_quant_sample
from diffbio_prob.workflows.demo.outputs import Outputs, Part, Progress, loss_figure, max_rhat, summary_table


#: Why this part has no posterior predictive check (issue 13 asked for one per model). Measured: the
#: class probabilities sum_t alpha_t w_ct / l_t normalised over the classes put 3,130 of the 10,000
#: fragments in the class that has 4,881 and miss 27 of the 28 classes' counts.
NO_PPC = (
    "No posterior predictive check here, on purpose. `em_model` scores the classes with salmon's likelihood "
    "`n_c log sum_t alpha_t w_ct / l_t`, a `numpyro.factor`: it is the probability of which transcript each "
    "fragment of a class came from, given the classes. salmon normalises each class's weights to sum to 1, so "
    "the probability that a fragment of transcript t lands in class c is not in the data, and the model "
    "predicts no class counts to check against the observed ones. The intervals against the true counts above "
    "are this model's check."
)


def run_quant_part(sizes: DemoSizes, seed: int, out: Outputs, progress: Progress) -> Part:
    """salmon's sample eq classes: EM, gradient through unrolled EM, SVI, NUTS; vs the truth."""
    from diffbio_prob.plots import counts_vs_truth_plot, mard, posterior_plot, trace_plot
    from diffbio_prob.workflows.de_bayes import hdi
    from diffbio_prob.workflows.quant import log_likelihood, posterior, quantify, to_eq_classes

    sample = load_quant_sample()
    eq_table, eff = sample.table, sample.effective_lengths
    eqc = to_eq_classes(eq_table)
    n_tx, n_classes = eqc.n_transcripts, eqc.n_classes
    names = list(sample.names)
    truth = sample.true_counts

    with progress.step(f"Quant: EM to convergence ({n_tx} transcripts, {n_classes} classes)"):
        start = time.perf_counter()
        em = quantify(eq_table, eff, lengths=sample.lengths, algorithm="em")  # salmon --useEM
        em_counts = em.num_reads
        em_time = time.perf_counter() - start

    with progress.step(f"Quant: gradient through 10 unrolled EM steps ({sizes.gradient_steps} Adam steps)"):
        # The operator's learnable start (softmax logits) is trained so that 10 EM iterations from it
        # reach the highest likelihood: gradients flow through the unrolled EM.
        grad_q = quantify(eq_table, eff, algorithm="gradient", num_steps=sizes.gradient_steps, unrolled_steps=10,
                          learning_rate=0.05, progress=progress.bars)
        grad, grad_counts = grad_q.fit, grad_q.num_reads

    with progress.step(f"Quant: SVI on em_model ({sizes.svi_steps} steps)"):
        svi = posterior(eq_table, eff, "svi", num_steps=sizes.svi_steps, num_samples=sizes.svi_draws, seed=seed,
                        progress=progress.bars).fit
    with progress.step(
        f"Quant: NUTS on em_model ({sizes.nuts_chains} chain(s) x {sizes.nuts_warmup}+{sizes.nuts_draws} draws)"
    ):
        nuts = posterior(eq_table, eff, "nuts", num_warmup=sizes.nuts_warmup, num_samples=sizes.nuts_draws,
                         num_chains=sizes.nuts_chains, seed=seed + 1, progress=progress.bars).fit

    with progress.step("Quant: tables and figures"):
        def loglik(counts):
            return log_likelihood(eqc, eff, counts)

        ests = {
            "salmon 1.10.1 (VBEM, shipped)": (sample.salmon_num_reads, None, np.nan),
            "EM (to salmon's convergence rule)": (em_counts, None, em_time),
            "gradient (NNX + optax through EM)": (grad_counts, None, grad.elapsed_s),
            "SVI (mean-field normal)": (None, svi, svi.elapsed_s),
            "NUTS": (None, nuts, nuts.elapsed_s),
        }
        rows, intervals = {}, {}
        for label, (counts, fit, elapsed) in ests.items():
            row = {"time (s)": elapsed}
            if fit is not None:
                draws = fit.flat_samples()["estimated_counts"]
                counts = draws.mean(0)
                lo, hi = hdi(draws, 0.94)
                intervals[label] = (lo, hi)
                row["94% HDI covers truth"] = f"{int(np.sum((lo <= truth) & (truth <= hi)))} of {n_tx}"
            else:
                row["94% HDI covers truth"] = ""
            row.update({
                "Spearman vs truth": float(pd.Series(counts).corr(pd.Series(truth), method="spearman")),
                "MARD vs truth": mard(counts, truth),
                "log-likelihood": loglik(counts),
            })
            rows[label] = row
            ests[label] = (counts, fit, elapsed)
        comparison = pd.DataFrame.from_dict(rows, orient="index")
        comparison.index.name = "fit"

        lo, hi = intervals["NUTS"]
        table = pd.DataFrame(
            {
                "Length": sample.lengths,
                "EffectiveLength": sample.effective_lengths,
                "true_count": truth,
                "salmon_vbem": sample.salmon_num_reads,
                "em": em_counts,
                "gradient": grad_counts,
                "svi_mean": ests["SVI (mean-field normal)"][0],
                "nuts_mean": ests["NUTS"][0],
                "nuts_sd": nuts.flat_samples()["estimated_counts"].std(0, ddof=1),
                "nuts_hdi94_lower": lo,
                "nuts_hdi94_upper": hi,
            },
            index=pd.Index(names, name="Name"),
        )
        out.record(em.write(out.path("quant/quant.sf")), "Quant: quant.sf of the EM fit (salmon's format)")
        out.csv("quant/posterior_counts.csv", table, "Quant: counts per transcript by every path, NUTS intervals")
        out.csv("quant/fit_comparison.csv", comparison, "Quant: the fit paths compared")
        dims = {"abundances": ["transcript"], "estimated_counts": ["transcript"], "tpm": ["transcript"],
                "class_counts": ["eq_class"]}
        coords = {"transcript": names}
        dt = out.netcdf("quant/posterior_nuts.nc", nuts, "Quant posterior draws (NUTS), ArviZ netCDF", coords, dims)
        out.netcdf("quant/posterior_svi.nc", svi, "Quant posterior draws (SVI), ArviZ netCDF", coords, dims)
        summary = summary_table(dt, ["estimated_counts"])
        out.csv("quant/summary_nuts.csv", summary, "Quant: ArviZ summary of the NUTS posterior counts")

        fig_truth = out.png(
            "quant/counts_vs_truth.png",
            counts_vs_truth_plot(pd.Series(ests["NUTS"][0], index=names), truth, lo, hi, label_top=3,
                                 title="NUTS posterior mean and 94% HDI vs true counts"),
            "Quant: estimated vs true counts",
        )
        fig_trace = out.png("quant/trace.png", trace_plot(dt, ["abundances"]), "Quant: trace plot")
        fig_post = out.png(
            "quant/posterior.png",
            posterior_plot(dt, ["estimated_counts"], kind="forest", ref_values={"estimated_counts": truth},
                           max_elements=n_tx),
            "Quant: posterior counts with the truth",
        )
        fig_loss = out.png(
            "quant/loss.png",
            loss_figure(
                [("gradient: EM operator + Adam", grad.loss_history, "−log-likelihood"),
                 ("SVI: em_model", svi.loss_history, "−ELBO")],
                "Optimiser fits of the quantifier",
            ),
            "Quant: loss curves",
        )

    n_draws = nuts.num_chains * nuts.num_draws
    rho = comparison.loc["NUTS", "Spearman vs truth"]
    blocks = [
        ("Fit paths compared", "table", comparison,
         "Estimated counts (NumReads) against the simulated truth; SVI and NUTS: posterior mean, and how many "
         "transcripts' true count lies in the 94% HDI. Log-likelihood of the equivalence classes at each "
         "estimate. salmon's own VBEM run is shipped with the data (no time)."),
        ("Fit paths compared", "figure", fig_loss,
         "Loss curves of the two optimiser fits (the y axis zooms on the last 80% of steps)."),
        ("Results", "figure", fig_truth,
         "Posterior mean counts with 94% HDIs (NUTS) against the true counts, log-log (count + 1)."),
        ("Results", "table", table[["true_count", "salmon_vbem", "em", "nuts_mean", "nuts_hdi94_lower",
                                    "nuts_hdi94_upper"]],
         "Counts per transcript: truth, salmon, our EM and the NUTS posterior."),
        ("Posterior predictive check", "text", NO_PPC, ""),
        ("Posterior (NUTS)", "summary", (summary, nuts.num_divergences, n_draws),
         "ArviZ summary of the posterior counts per transcript."),
        ("Posterior (NUTS)", "figure", fig_post, "Posterior counts (50% and 94% HDIs) with the true counts in red."),
        ("Posterior (NUTS)", "figure", fig_trace, "Trace and marginal posterior of the read fractions."),
    ]
    return Part(
        title="Transcript quantification: EM",
        intro=(
            "salmon's sample data, shipped with the package: 15 RefSeq transcripts, 10,000 simulated read pairs "
            f"collapsed into {n_classes} weighted equivalence classes, and the true number of fragments per "
            "transcript. The likelihood of the classes (`cores/em.py`) is shared by the NNX operator "
            "`DifferentiableEMQuantifier` and the NumPyro model `em_model` (flat Dirichlet prior on the read "
            "fractions). The point estimates are the workflow `quantify` (the `diffbio-prob quant` command's), "
            "the posteriors `posterior`.\n\n"
            "- **EM** (`quantify(algorithm=\"em\")`): EM run to salmon's convergence rule (`--useEM`).\n"
            "- **gradient** (`quantify(algorithm=\"gradient\")`): the operator's starting abundances trained by "
            "Adam so that 10 unrolled EM steps reach the highest likelihood (gradients through EM).\n"
            "- **SVI** (`posterior(method=\"svi\")`): mean-field normal guide on the Dirichlet's unconstrained "
            "space.\n"
            "- **NUTS** (`posterior(method=\"nuts\")`): the posterior of the read fractions, started at the EM "
            "estimate."
        ),
        facts={
            "transcripts / classes / fragments": f"{n_tx} / {n_classes} / {int(np.sum(eqc.counts)):,}",
            "NUTS": f"{nuts.num_chains} chain(s) × ({sizes.nuts_warmup} warm-up + {nuts.num_draws} draws)",
            "Spearman (NUTS posterior mean vs truth)": f"{rho:.3f}",
        },
        blocks=blocks,
        headline={
            "model": "EM (quant)",
            "data": f"{n_tx} transcripts",
            "gradient (s)": grad.elapsed_s,
            "SVI (s)": svi.elapsed_s,
            "NUTS (s)": nuts.elapsed_s,
            "divergences": nuts.num_divergences,
            "max R-hat": max_rhat(summary),
            "recovered": f"Spearman {rho:.3f}",
        },
    )


