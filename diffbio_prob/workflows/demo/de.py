"""The demo's differential-expression part: simulated counts with known fold changes, DESeq2's pipeline
(:func:`~diffbio_prob.workflows.deseq2.fit_deseq2`) and the NB-GLM by gradient, SVI and NUTS
(:func:`~diffbio_prob.workflows.de_bayes.bayesian_lfc`)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from diffbio_prob.workflows.demo.data import DemoSizes, simulate_de_counts
from diffbio_prob.workflows.demo.outputs import Outputs, Part, Progress, loss_figure, max_rhat, ppc_draws, summary_table


def _lfc_truth_figure(truth: pd.DataFrame, bayes: pd.DataFrame, deseq: pd.DataFrame):
    """Posterior LFC (mean and 94% HDI) against the true LFC, DESeq2's MLE behind it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.add_subplot()
    t = truth.loc[bayes.index, "log2FoldChange"].to_numpy()
    mle = deseq.loc[bayes.index, "log2FoldChange"].to_numpy()
    jitter = np.random.default_rng(0).normal(0, 0.03, t.size) * (t == 0)  # spread the null genes a little
    ax.scatter(t + jitter, mle, s=6, color="#9a9a9a", linewidths=0, label="DESeq2 MLE", zorder=1)
    de = truth.loc[bayes.index, "is_de"].to_numpy()
    for mask, color, label in ((~de, "#56B4E9", "null genes"), (de, "#D55E00", "DE genes")):
        m = bayes["log2FoldChange"].to_numpy()[mask]
        lo, hi = bayes["hdi_lower"].to_numpy()[mask], bayes["hdi_upper"].to_numpy()[mask]
        # The mean of a skewed posterior can sit just outside its HDI: clip the bar lengths at 0.
        yerr = [np.maximum(m - lo, 0.0), np.maximum(hi - m, 0.0)]
        ax.errorbar(t[mask] + jitter[mask], m, yerr=yerr, fmt="o", ms=2.5, color=color, ecolor=color,
                    elinewidth=0.6, alpha=0.6, label=f"posterior mean, 94% HDI ({label})", zorder=2)
    lim = np.nanmax(np.abs(np.concatenate([t, bayes["hdi_lower"], bayes["hdi_upper"]]))) * 1.05
    lim = min(lim, 8.0)
    ax.plot([-lim, lim], [-lim, lim], color="#333333", lw=0.8, zorder=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("true log2 fold change")
    ax.set_ylabel("estimated log2 fold change")
    inside = np.mean((bayes["hdi_lower"].to_numpy() <= t) & (t <= bayes["hdi_upper"].to_numpy()))
    ax.set_title(f"Posterior LFC vs truth: 94% HDIs cover the truth for {inside:.1%} of genes", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


CALL_PROB = 0.9
PPC_QUANTILES = (0.25, 0.5, 0.75, 0.9, 0.95, 0.99)  # (the 10% quantile is 0 in every draw)
PPC_LABELS = [f"q{round(q * 100)}" for q in PPC_QUANTILES] + ["zeros"]


def _ppc_statistics(counts: np.ndarray) -> np.ndarray:
    """(n, samples, genes) counts -> (n, 8): quantiles of all counts pooled, and how many are zero."""
    flat = counts.reshape(counts.shape[0], -1)
    quantiles = np.quantile(flat, PPC_QUANTILES, axis=1).T
    return np.concatenate([quantiles, (flat == 0).sum(1)[:, None]], 1)


def _calls(table: pd.DataFrame) -> np.ndarray:
    """A Bayesian call: a more than 2-fold change with posterior probability above ``CALL_PROB``.

    "The 94% HDI excludes 0" would be the obvious rule, but it is a per-gene 6% error rate with no
    multiplicity control: with hundreds of unchanged genes it calls dozens of them.
    """
    return table["prob_abs_lfc_gt"].to_numpy() > CALL_PROB


def _de_metrics(est: np.ndarray, true: np.ndarray, called: np.ndarray | None, is_de: np.ndarray) -> dict:
    ok = np.isfinite(est)
    row = {
        "RMSE vs truth": float(np.sqrt(np.mean((est[ok] - true[ok]) ** 2))),
        "r vs truth": float(np.corrcoef(est[ok], true[ok])[0, 1]),
    }
    if called is None:
        row.update({"calls": None, "false calls": None, "wrong sign": None, "DE genes found": ""})
    else:
        row.update({
            "calls": int(called.sum()),
            "false calls": int((called & ~is_de).sum()),
            "wrong sign": int((called & is_de & (np.sign(est) != np.sign(true))).sum()),
            "DE genes found": f"{int((called & is_de).sum())} of {int(is_de.sum())}",
        })
    return row


def run_de_part(sizes: DemoSizes, seed: int, out: Outputs, progress: Progress) -> Part:
    """Simulated counts: DESeq2 (frequentist), then the Bayesian NB-GLM by gradient, SVI and NUTS."""
    from diffbio_prob.io.counts import write_results
    from diffbio_prob.plots import ma_plot, trace_plot, volcano_plot
    from diffbio_prob.plots.diagnostics import ppc_interval_plot, ppc_intervals
    from diffbio_prob.workflows.de_bayes import bayesian_lfc
    from diffbio_prob.workflows.deseq2 import fit_deseq2

    counts, samples, truth = simulate_de_counts(sizes.de_genes, sizes.de_samples, seed)
    contrast = ["condition", "B", "A"]
    with progress.step(f"DE: DESeq2 pipeline on {counts.shape[0]:,} genes x {counts.shape[1]} samples"):
        start = time.perf_counter()
        dfit = fit_deseq2(counts, samples[["condition"]], "~ condition")
        deseq = dfit.results(contrast)
        deseq_time = time.perf_counter() - start
    keep = ~np.asarray(dfit.gene["allZero"], bool)
    genes = counts.index[keep]
    is_de = truth.loc[genes, "is_de"].to_numpy()
    true_lfc = truth.loc[genes, "log2FoldChange"].to_numpy()

    # log2-scale prior sd 2 on the fold change; the intercept gets nb_glm_model's wide default
    common = dict(prior="normal", prior_scale=2.0, num_steps=sizes.svi_steps, num_warmup=sizes.de_nuts_warmup,
                  num_chains=sizes.nuts_chains, rng_key=seed, progress=progress.bars)
    with progress.step(f"DE: gradient fit of the NNX NB-GLM ({sizes.gradient_steps} Adam steps)"):
        grad_table, grad = bayesian_lfc(dfit, contrast, method="gradient",
                                        **{**common, "num_steps": sizes.gradient_steps})
        grad_lfc = grad_table["log2FoldChange"].to_numpy()

    fits = {}
    for method, label in (("svi", f"{sizes.svi_steps} steps"), ("nuts",
                          f"{sizes.nuts_chains} chain(s) x {sizes.de_nuts_warmup}+{sizes.de_nuts_draws} draws")):
        with progress.step(f"DE: {method.upper()} on nb_glm_model, every gene ({label})"):
            fits[method] = bayesian_lfc(
                dfit, contrast, method=method,
                num_samples=sizes.svi_draws if method == "svi" else sizes.de_nuts_draws, **common,
            )
    bayes, nuts = fits["nuts"]
    svi_table, svi = fits["svi"]

    with progress.step("DE: tables and figures"):
        gene_list = list(genes)
        order = deseq.loc[genes].sort_values("padj", na_position="last").index
        rows = {
            "truth": {"time (s)": np.nan, **_de_metrics(true_lfc, true_lfc, is_de, is_de)},
            "DESeq2 (IRLS + Wald test)": {
                "time (s)": deseq_time,
                **_de_metrics(deseq.loc[genes, "log2FoldChange"].to_numpy(), true_lfc,
                              (deseq.loc[genes, "padj"] < 0.1).to_numpy(), is_de),
            },
            "gradient (NNX + optax, MLE)": {"time (s)": grad.elapsed_s,
                                            **_de_metrics(grad_lfc, true_lfc, None, is_de)},
        }
        for label, (table, fit) in (("SVI (mean-field normal)", fits["svi"]), ("NUTS", fits["nuts"])):
            rows[label] = {
                "time (s)": fit.elapsed_s,
                **_de_metrics(table["log2FoldChange"].to_numpy(), true_lfc,
                              _calls(table), is_de),
            }
        comparison = pd.DataFrame.from_dict(rows, orient="index")
        comparison.index.name = "fit"
        comparison.loc["truth", ["RMSE vs truth", "r vs truth"]] = np.nan
        comparison = comparison.astype({"calls": "Int64", "false calls": "Int64", "wrong sign": "Int64"})

        per_gene = pd.DataFrame(
            {
                "baseMean": deseq.loc[genes, "baseMean"],
                "true_log2FoldChange": true_lfc,
                "is_de": is_de,
                "deseq2_log2FoldChange": deseq.loc[genes, "log2FoldChange"],
                "deseq2_lfcSE": deseq.loc[genes, "lfcSE"],
                "deseq2_padj": deseq.loc[genes, "padj"],
                "gradient_log2FoldChange": grad_lfc,
                "svi_mean": svi_table["log2FoldChange"],
                "svi_sd": svi_table["lfcSE"],
                "nuts_mean": bayes["log2FoldChange"],
                "nuts_sd": bayes["lfcSE"],
                "nuts_hdi94_lower": bayes["hdi_lower"],
                "nuts_hdi94_upper": bayes["hdi_upper"],
                "nuts_prob_abs_lfc_gt_1": bayes["prob_abs_lfc_gt"],
            },
            index=genes,
        )
        out.csv("de/counts.csv", counts, "DE: simulated counts (genes x samples)")
        out.csv("de/samples.csv", samples, "DE: sample table (condition, true size factor)")
        out.csv("de/truth.csv", truth, "DE: true log2 fold change, intercept and dispersion per gene")
        out.record(write_results(deseq, out.path("de/deseq2_results.csv")), "DE: DESeq2 results table")
        out.csv("de/posterior_lfc.csv", per_gene, "DE: per-gene LFC by every path, NUTS posterior summary")
        out.csv("de/fit_comparison.csv", comparison, "DE: the fit paths compared")

        # netCDF with named dimensions; the log2 fold change itself is added as a variable.
        dims = {"beta": ["coefficient", "gene"], "alpha": ["gene"], "log2_fold_change": ["gene"],
                "counts": ["sample_name", "gene"]}
        coords = {"gene": gene_list, "coefficient": list(dfit.coef_names), "sample_name": list(counts.columns)}
        trees = {}
        for method, fit in (("nuts", nuts), ("svi", svi)):
            fit.samples["log2_fold_change"] = fit.samples["beta"][:, :, 1, :] / np.log(2.0)
            trees[method] = out.netcdf(f"de/posterior_{method}.nc", fit,
                                       f"DE posterior draws ({method.upper()}), ArviZ netCDF", coords, dims)
        dt = trees["nuts"]
        labels = [f"log2_fold_change[{g}]" for g in order]
        summary = summary_table(dt, ["log2_fold_change"], order=labels)
        out.csv("de/summary_nuts.csv", summary, "DE: ArviZ summary of the NUTS posterior LFCs")

        shown = deseq.loc[genes].copy()
        shown["log2FoldChange"] = bayes["log2FoldChange"]
        fig_ma = out.png(
            "de/ma_plot.png", ma_plot(shown, lfc_sd=bayes["lfcSE"], title="MA plot: posterior LFC ± 1 sd"),
            "DE: MA plot (posterior LFC)",
        )
        fig_volcano = out.png(
            "de/volcano_plot.png",
            volcano_plot(shown, lfc_sd=bayes["lfcSE"], label_top=5, title="Volcano plot: posterior LFC ± 1 sd"),
            "DE: volcano plot (posterior LFC)",
        )
        fig_truth = out.png("de/lfc_vs_truth.png", _lfc_truth_figure(truth, bayes, deseq), "DE: LFC vs truth")
        top = list(order[:4])
        fig_trace = out.png(
            "de/trace.png", trace_plot(dt, ["log2_fold_change"], coords={"gene": top}),
            "DE: trace plot of the top genes",
        )
        # Quantiles of all counts pooled test the NB's spread (a Poisson model misses the upper ones), the
        # number of zeros its lower tail.
        ppc_args = (dt, "counts", _ppc_statistics)
        ppc = ppc_intervals(*ppc_args, labels=PPC_LABELS)
        out.csv("de/ppc.csv", ppc, "DE: posterior predictive check (observed statistic vs predictive quantiles)")
        fig_ppc = out.png(
            "de/ppc.png",
            ppc_interval_plot(*ppc_args, labels=PPC_LABELS, relative=True,
                              xlabel="quantile of all counts pooled (q25 ... q99), number of zero counts",
                              ylabel="value / predictive median", title="Counts table"),
            "DE: posterior predictive check",
        )
        fig_loss = out.png(
            "de/loss.png",
            loss_figure(
                [("gradient: NNX NB-GLM + Adam", grad.loss_history, "−log-likelihood"),
                 ("SVI: nb_glm_model", svi.loss_history, "−ELBO")],
                "Optimiser fits of the NB-GLM",
            ),
            "DE: loss curves",
        )
        top_table = per_gene.loc[order[:12], ["baseMean", "true_log2FoldChange", "deseq2_log2FoldChange",
                                              "deseq2_padj", "nuts_mean", "nuts_hdi94_lower", "nuts_hdi94_upper"]]

    n_draws = nuts.num_chains * nuts.num_draws
    sig = int((deseq["padj"] < 0.1).sum())
    called = _calls(bayes)
    deseq_row = comparison.loc["DESeq2 (IRLS + Wald test)"]
    blocks = [
        ("Fit paths compared", "table", comparison,
         "Each path's log2 fold changes against the simulated truth. Calls: DESeq2 padj < 0.1 (a test of "
         f"LFC ≠ 0); SVI and NUTS posterior P(|LFC| > 1) > {CALL_PROB:g} (a more than 2-fold change, the size "
         "of every simulated change); the gradient fit is a point estimate (no calls). Times include JIT "
         "compilation."),
        ("Fit paths compared", "figure", fig_loss,
         "Loss curves of the two optimiser fits (the y axis zooms on the last 80% of steps)."),
        ("Results", "figure", fig_ma,
         "MA plot: the NUTS posterior mean of each gene's log2 fold change with ±1 posterior sd, against "
         "DESeq2's mean of normalised counts; coloured: DESeq2 padj < 0.1. Low counts give wide posteriors."),
        ("Results", "figure", fig_volcano,
         "Volcano plot: posterior mean LFC ± 1 posterior sd (NUTS) against DESeq2's Wald p-value; "
         "coloured: padj < 0.1."),
        ("Results", "figure", fig_truth,
         "Estimated against true log2 fold changes: posterior means with 94% HDIs (colour), DESeq2's maximum-"
         "likelihood estimates (grey). The prior pulls noisy low-count genes towards 0."),
        ("Results", "table", top_table, "The 12 genes with the smallest DESeq2 padj: truth, DESeq2 and NUTS."),
        ("Posterior predictive check", "figure", fig_ppc,
         f"Posterior predictive check: counts tables simulated from {ppc_draws(dt)} NUTS draws of every gene's "
         "coefficients and dispersion against the observed table. Quantiles of all counts pooled and the number "
         "of zeros, each divided by its predictive median (1: the median simulated table); "
         f"**{int(ppc['inside'].sum())} of {len(ppc)}** observed values lie in their 94% predictive "
         "interval."),
        ("Posterior (NUTS)", "summary", (summary, nuts.num_divergences, n_draws),
         "ArviZ summary of the posterior log2 fold changes, genes ordered by DESeq2's padj (badges count "
         "every gene)."),
        ("Posterior (NUTS)", "figure", fig_trace, "Trace and marginal posterior of the four top genes' LFCs."),
    ]
    return Part(
        title="Differential expression: NB-GLM",
        intro=(
            "A counts table simulated by DESeq2's `makeExampleDESeqDataSet` recipe (log2 intercepts N(4, 2), "
            "dispersion 4/mean + 0.1, two groups), except that 10% of the genes get a true log2 fold change "
            "of ±1 to ±3 and the size factors vary. "
            "**DESeq2's pipeline** (size factors, Cox-Reid dispersions, trend, MAP, IRLS, Wald test, "
            "independent filtering, BH) gives the frequentist answer. The **Bayesian NB-GLM** "
            "(`nb_glm_model`: N(0, 2²) prior on each log2 fold change, log-normal dispersion prior around "
            "DESeq2's trend with DESeq2's width) gives the whole posterior of every gene's log fold change. "
            "DESeq2 is the workflow `fit_deseq2` "
            "(the `diffbio-prob de` command's); the three NB-GLM fits are `bayesian_lfc(method=...)`.\n\n"
            "- **gradient** (`\"gradient\"`): the NNX operator `DifferentiableNBGLM` (maximum likelihood, Adam).\n"
            "- **SVI** (`\"svi\"`): mean-field normal guide, started at DESeq2's estimates.\n"
            "- **NUTS** (`\"nuts\"`): every gene's coefficients and dispersion, started at DESeq2's estimates."
        ),
        facts={
            "genes × samples": f"{counts.shape[0]:,} × {counts.shape[1]} (seed {seed}); "
                               f"{int(truth['is_de'].sum())} truly DE",
            "DESeq2 calls (padj < 0.1)": f"{sig}, {deseq_row['false calls']} false, {deseq_row['wrong sign']} "
                                          "with the wrong sign",
            f"NUTS calls (P(|LFC| > 1) > {CALL_PROB:g})": f"{int(called.sum())}, "
                                                          f"{int((called & ~is_de).sum())} false",
            "NUTS": f"{nuts.num_chains} chain(s) × ({sizes.de_nuts_warmup} warm-up + {nuts.num_draws} draws), "
                    f"{3 * len(genes):,} parameters",
        },
        blocks=blocks,
        headline={
            "model": "NB-GLM (DE)",
            "data": f"{counts.shape[0]:,} × {counts.shape[1]} counts",
            "gradient (s)": grad.elapsed_s,
            "SVI (s)": svi.elapsed_s,
            "NUTS (s)": nuts.elapsed_s,
            "divergences": nuts.num_divergences,
            "max R-hat": max_rhat(summary),
            "recovered": f"LFC RMSE {comparison.loc['NUTS', 'RMSE vs truth']:.2f} "
                         f"(DESeq2 {deseq_row['RMSE vs truth']:.2f})",
        },
    )


