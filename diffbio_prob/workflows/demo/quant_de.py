"""The demo's quantification -> differential expression part: simulated samples quantified by our EM with
bootstrap replicates, all samples in one compiled program (:func:`~diffbio_prob.workflows.quant.quantify_many`,
:func:`~diffbio_prob.workflows.quant.bootstrap_counts_many`), written as salmon output folders, read back by
:func:`~diffbio_prob.io.tximport.tximport`, then the Bayesian model of the quantification uncertainty
(:func:`~diffbio_prob.workflows.bayes_de_from_quant.bayes_de_from_quant`, ``de --method bayes``) at
transcript and gene level, and DESeq2 on the tximport gene counts (``fit_deseq2(txi, ...)``), each scored
against the simulation's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from diffbio_prob.workflows.demo.data import DemoSizes, simulate_quant_de
from diffbio_prob.workflows.demo.outputs import Outputs, Part, Progress

#: The calls of every method: ``padj < ALPHA`` (DESeq2: BH; Bayes: the Bayesian q-value).
ALPHA = 0.1
CONTRAST = ["condition", "B", "A"]


def score_calls(padj, estimate, lower, upper, true_lfc, changed) -> dict:
    """One method's calls (``padj < ALPHA``) against the truth, scored as ``quant2de_ref/evaluate.py``
    scores the peers: FDR = false calls / calls, sensitivity = true calls / every truly changed feature
    (tested or not); and how often the intervals cover the true log2 fold change."""
    padj, est = np.asarray(padj, float), np.asarray(estimate, float)
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    true_lfc, changed = np.asarray(true_lfc, float), np.asarray(changed, bool)
    tested = np.isfinite(padj)
    called = tested & (padj < ALPHA)
    false = called & ~changed
    ok = tested & np.isfinite(lo) & np.isfinite(hi)
    covered = ok & (lo <= true_lfc) & (true_lfc <= hi)
    rmse = np.sqrt(np.mean((est[tested & changed] - true_lfc[tested & changed]) ** 2)) if (tested & changed).any() \
        else np.nan
    return {
        "features": int(changed.size),
        "truly changed": int(changed.sum()),
        "tested": int(tested.sum()),
        "calls": int(called.sum()),
        "true calls": int((called & changed).sum()),
        "false calls": int(false.sum()),
        "wrong sign": int((called & changed & (np.sign(est) != np.sign(true_lfc))).sum()),
        "FDR": float(false.sum() / called.sum()) if called.any() else 0.0,
        "sensitivity": float((called & changed).sum() / changed.sum()) if changed.any() else np.nan,
        "interval covers truth (changed)": float(covered[ok & changed].mean()) if (ok & changed).any() else np.nan,
        "interval covers truth (unchanged)": float(covered[ok & ~changed].mean()) if (ok & ~changed).any() else np.nan,
        "RMSE (changed)": float(rmse),
    }


def _calls_by_kind(kinds: pd.Series, padj: pd.Series) -> dict:
    called = (padj.reindex(kinds.index) < ALPHA).to_numpy()
    return {kind: f"{int(called[(kinds == kind).to_numpy()].sum())} of {int((kinds == kind).sum())}"
            for kind in ("DE", "DTU", "null")}


def run_quant_de_part(sizes: DemoSizes, seed: int, out: Outputs, progress: Progress) -> Part:
    """Simulated samples -> EM + bootstraps -> salmon folders -> tximport -> Bayesian DE and DESeq2, vs truth."""
    from scipy.stats import norm

    from diffbio_prob.io.counts import write_results, write_table
    from diffbio_prob.io.salmon import write_salmon_dir, write_salmon_eq_classes
    from diffbio_prob.io.tximport import tximport
    from diffbio_prob.plots import counts_vs_truth_plot, mard
    from diffbio_prob.plots.quant import lfc_vs_truth_plot
    from diffbio_prob.workflows.bayes_de_from_quant import bayes_de_from_quant
    from diffbio_prob.workflows.de_bayes import hdi
    from diffbio_prob.workflows.deseq2 import fit_deseq2
    from diffbio_prob.workflows.quant import bootstrap_counts_many, quantify_many

    sim = simulate_quant_de(sizes.qde_genes, sizes.qde_per_group, seed)
    samples = list(sim.tables)
    eff, n_tx, n_genes = sim.effective_lengths, len(sim.transcripts), len(sim.genes)
    n_boot = sizes.qde_bootstraps
    folders = {}
    with progress.step(f"Quant → DE: EM + {n_boot} bootstraps for {len(samples)} simulated samples in one "
                       f"program ({n_tx} transcripts)"):
        tables = [sim.tables[s] for s in samples]
        # salmon's default VBEM; sample k resamples with seed + k, as bootstrap_counts(seed=seed + k) would
        quants = dict(zip(samples, quantify_many(tables, eff, lengths=sim.lengths, algorithm="vbem")))
        boots = dict(zip(samples, bootstrap_counts_many(tables, eff, n_draws=n_boot, seed=seed)))
        for j, s in enumerate(samples):
            q, table = quants[s], sim.tables[s]
            folder = out.root / "quant_de" / "salmon" / s
            write_salmon_dir(folder, q.names, q.lengths, q.effective_lengths, q.num_reads, tpm=q.tpm, draws=boots[s],
                             samp_type="bootstrap", opt_type="vb", num_eq_classes=table.n_classes,
                             cmd_info={"numBootstraps": str(n_boot), "seed": str(seed + j),
                                       "eqclasses": "aux_info/eq_classes.txt.gz"})
            # the classes beside the output, so that `diffbio-prob quant` can redo this sample
            write_salmon_eq_classes(folder / "aux_info" / "eq_classes.txt.gz", table, eff)
            out.record(folder / "quant.sf", f"Quant → DE: {s}'s salmon output folder (quant.sf, cmd_info.json, "
                       f"aux_info/: meta_info.json, eq_classes.txt.gz, {n_boot} bootstraps)")
            folders[s] = folder

    with progress.step(f"Quant → DE: Bayesian DE at transcript level (SVI, {sizes.qde_svi_steps} steps)"):
        txi_tx = tximport(folders, tx_out=True, drop_inf_reps=False)
        bayes_tx, fit_tx = bayes_de_from_quant(txi_tx, sim.samples, level="transcript", reference="A",
                                               num_steps=sizes.qde_svi_steps, num_samples=sizes.qde_draws,
                                               seed=seed, progress=progress.bars)
    with progress.step(f"Quant → DE: Bayesian DE at gene level (SVI, {sizes.qde_svi_steps} steps)"):
        txi_gene = tximport(folders, tx2gene=sim.tx2gene, drop_inf_reps=False)
        bayes_gene, fit_gene = bayes_de_from_quant(txi_gene, sim.samples, level="gene", reference="A",
                                                   num_steps=sizes.qde_svi_steps, num_samples=sizes.qde_draws,
                                                   seed=seed, progress=progress.bars)
    with progress.step(f"Quant → DE: DESeq2 on the tximport gene counts ({n_genes} genes)"):
        deseq = fit_deseq2(txi_gene, sim.samples[["condition"]], "~ condition").results(CONTRAST)

    with progress.step("Quant → DE: tables and figures"):
        tx_truth, gene_truth = sim.transcripts, sim.genes
        bt = bayes_tx.reindex(tx_truth.index)
        bg = bayes_gene.reindex(gene_truth.index)
        dg = deseq.reindex(gene_truth.index)
        # DESeq2 has no posterior: its Wald 94% interval (MLE ± z * lfcSE) stands in for the HDI
        z94 = float(norm.ppf(0.97))
        rows = {
            "Bayes, transcript level": score_calls(bt["padj"], bt["log2FoldChange"], bt["hdi_low"], bt["hdi_high"],
                                                   tx_truth["log2FoldChange"], tx_truth["changed"]),
            "Bayes, gene level": score_calls(bg["padj"], bg["log2FoldChange"], bg["hdi_low"], bg["hdi_high"],
                                             gene_truth["log2FoldChange"], gene_truth["is_de"]),
            "DESeq2 on tximport, gene level": score_calls(
                dg["padj"], dg["log2FoldChange"], dg["log2FoldChange"] - z94 * dg["lfcSE"],
                dg["log2FoldChange"] + z94 * dg["lfcSE"], gene_truth["log2FoldChange"], gene_truth["is_de"]),
        }
        calls = pd.DataFrame.from_dict(rows, orient="index")
        calls.index.name = "method"
        by_kind = pd.DataFrame.from_dict({
            "Bayes, transcript level": _calls_by_kind(tx_truth["kind"], bt["padj"]),
            "Bayes, gene level": _calls_by_kind(gene_truth["kind"], bg["padj"]),
            "DESeq2 on tximport, gene level": _calls_by_kind(gene_truth["kind"], dg["padj"]),
        }, orient="index")
        by_kind.index.name = "method"
        by_kind.columns = ["in DE genes", "in DTU genes", "in unchanged genes"]

        lfc_tx = pd.DataFrame({
            "gene": tx_truth["gene"], "kind": tx_truth["kind"], "true_log2FoldChange": tx_truth["log2FoldChange"],
            "changed": tx_truth["changed"], "baseMean": bt["baseMean"], "bayes_mean": bt["log2FoldChange"],
            "bayes_sd": bt["lfcSD"], "bayes_hdi94_lower": bt["hdi_low"], "bayes_hdi94_upper": bt["hdi_high"],
            "bayes_lfsr": bt["pvalue"], "bayes_qvalue": bt["padj"], "called": (bt["padj"] < ALPHA).to_numpy(),
        }, index=tx_truth.index)
        lfc_gene = pd.DataFrame({
            "kind": gene_truth["kind"], "n_isoforms": gene_truth["n_isoforms"],
            "true_log2FoldChange": gene_truth["log2FoldChange"], "is_de": gene_truth["is_de"],
            "bayes_mean": bg["log2FoldChange"], "bayes_sd": bg["lfcSD"], "bayes_hdi94_lower": bg["hdi_low"],
            "bayes_hdi94_upper": bg["hdi_high"], "bayes_qvalue": bg["padj"],
            "deseq2_log2FoldChange": dg["log2FoldChange"], "deseq2_lfcSE": dg["lfcSE"], "deseq2_padj": dg["padj"],
        }, index=gene_truth.index)

        acc = {}
        for s in samples:
            truth_s = sim.true_counts[s].to_numpy(float)
            lo, hi = hdi(boots[s], 0.94)
            acc[s] = {
                "fragments simulated": int(truth_s.sum()),
                "NumReads summed": float(quants[s].num_reads.sum()),
                "Spearman vs truth": float(pd.Series(quants[s].num_reads).corr(pd.Series(truth_s), method="spearman")),
                "MARD vs truth": mard(quants[s].num_reads, truth_s),
                "bootstrap 94% interval covers truth": float(np.mean((lo <= truth_s) & (truth_s <= hi))),
            }
        accuracy = pd.DataFrame.from_dict(acc, orient="index")
        accuracy.index.name = "sample"

        out.csv("quant_de/samples.csv", sim.samples, "Quant → DE: sample table (condition, true size factor)")
        out.csv("quant_de/tx2gene.csv", sim.tx2gene, "Quant → DE: transcript -> gene table", index=False)
        out.csv("quant_de/true_counts.csv", sim.true_counts, "Quant → DE: fragments simulated per transcript and sample")
        out.csv("quant_de/truth_transcripts.csv", tx_truth, "Quant → DE: true log2 fold change per transcript")
        out.csv("quant_de/truth_genes.csv", gene_truth, "Quant → DE: true log2 fold change per gene")
        out.record(write_table(bayes_tx.rename_axis("transcript"), out.path("quant_de/bayes_transcripts.csv")),
                   "Quant → DE: Bayesian DE results, transcript level (de --method bayes)")
        out.record(write_table(bayes_gene.rename_axis("gene"), out.path("quant_de/bayes_genes.csv")),
                   "Quant → DE: Bayesian DE results, gene level")
        out.record(write_results(deseq, out.path("quant_de/deseq2_tximport_genes.csv")),
                   "Quant → DE: DESeq2 on tximport results, gene level")
        out.csv("quant_de/lfc_transcripts.csv", lfc_tx, "Quant → DE: per transcript, truth and posterior LFC")
        out.csv("quant_de/lfc_genes.csv", lfc_gene, "Quant → DE: per gene, truth, posterior LFC and DESeq2")
        out.csv("quant_de/calls_vs_truth.csv", calls, "Quant → DE: every method's calls scored against the truth")
        out.csv("quant_de/quant_accuracy.csv", accuracy, "Quant → DE: quantification of each sample vs the truth")

        fig_tx = out.png(
            "quant_de/lfc_vs_truth_transcripts.png",
            lfc_vs_truth_plot(bt["log2FoldChange"], tx_truth["log2FoldChange"], bt["hdi_low"], bt["hdi_high"],
                              changed=tx_truth["changed"], called=(bt["padj"] < ALPHA).to_numpy()),
            "Quant → DE: posterior LFC vs truth, transcripts",
        )
        fig_gene = out.png(
            "quant_de/lfc_vs_truth_genes.png",
            lfc_vs_truth_plot(bg["log2FoldChange"], gene_truth["log2FoldChange"], bg["hdi_low"], bg["hdi_high"],
                              changed=gene_truth["is_de"], called=(bg["padj"] < ALPHA).to_numpy(),
                              reference=dg["log2FoldChange"], reference_label="DESeq2 on tximport (MLE)"),
            "Quant → DE: posterior LFC vs truth, genes",
        )
        first = samples[0]
        lo, hi = hdi(boots[first], 0.94)
        fig_counts = out.png(
            f"quant_de/counts_vs_truth_{first}.png",
            counts_vs_truth_plot(pd.Series(quants[first].num_reads, index=quants[first].names),
                                 sim.true_counts[first].to_numpy(float), lo, hi,
                                 title=f"{first}: EM counts and bootstrap 94% intervals vs true counts"),
            f"Quant → DE: {first}'s counts vs truth",
        )

    tx_row, gene_row, d_row = (rows[k] for k in rows)
    n_dtu_genes = int((gene_truth["kind"] == "DTU").sum())
    blocks = [
        ("Calls against the truth", "table", calls,
         f"Calls at padj < {ALPHA:g} (the Bayesian q-value for Bayes, BH for DESeq2) against the simulated truth: "
         "FDR = false calls / calls, sensitivity = true calls / every truly changed feature. Intervals: the 94% "
         "HDI of the posterior (Bayes), the Wald interval MLE ± 1.88 lfcSE (DESeq2). A transcript is changed "
         "when its molecules change (its gene DE, or its share moved by DTU); a gene when its molecules change "
         "(DE; a DTU gene keeps its total)."),
        ("Calls against the truth", "table", by_kind,
         "Calls by the kind of gene the feature belongs to. DTU is visible only at transcript level: a gene-level "
         "call of a DTU gene is a false call (tximport's average-length offsets absorb the change of isoform mix)."),
        ("Fold-change posteriors", "figure", fig_tx,
         "Transcripts: posterior mean and 94% HDI of each log2 fold change against the true one; ringed: "
         f"called (q < {ALPHA:g})."),
        ("Fold-change posteriors", "figure", fig_gene,
         "Genes: the same at gene level, with DESeq2-on-tximport's maximum-likelihood estimates in grey."),
        ("Fold-change posteriors", "table",
         lfc_tx.loc[lfc_tx["changed"], ["gene", "kind", "true_log2FoldChange", "bayes_mean", "bayes_hdi94_lower",
                                        "bayes_hdi94_upper", "bayes_qvalue"]],
         "The truly changed transcripts: true and posterior log2 fold change (first 30 rows; all in "
         "`quant_de/lfc_transcripts.csv`)."),
        ("Quantification of the samples", "table", accuracy,
         "Each sample's EM counts (VBEM, salmon's default) against the fragments simulated per transcript; the "
         "bootstrap intervals are what the Bayesian model takes as each sample's measurement error."),
        ("Quantification of the samples", "figure", fig_counts,
         f"{first}: EM counts with bootstrap 94% intervals against the true counts."),
    ]
    return Part(
        title="Quantification → differential expression",
        intro=(
            f"A small transcriptome simulated down to each fragment's equivalence class (`simulate_quant_de`): "
            f"{n_genes} genes with 1-3 isoforms by exon skipping ({n_tx} transcripts), {sizes.qde_per_group} vs "
            f"{sizes.qde_per_group} samples, negative-binomial biological variation; "
            f"{int((gene_truth['kind'] == 'DE').sum())} genes change expression (±1 to ±2.5 log2), "
            f"{n_dtu_genes} change isoform usage (DTU: the two main isoforms swap shares, the gene's total "
            "unchanged). No reads and no aligner: a fragment's start is drawn on its transcript and the exons it "
            "covers decide which transcripts it is compatible with.\n\n"
            "- **Quantification**: every sample by `quantify_many` (VBEM) and `bootstrap_counts_many` (salmon's "
            "bootstrap), in one compiled program, each written as a salmon output folder (`write_salmon_dir`, what `diffbio-prob quant --out-dir` writes).\n"
            "- **Import**: `tximport` reads the folders back with their bootstrap replicates, at transcript and at "
            "gene level, as R's tximport does.\n"
            "- **Bayesian DE** (`bayes_de_from_quant`, `diffbio-prob de --method bayes`): each sample's "
            "replicate variance as a measurement error, log-normal biological variation, an adaptive-shrinkage "
            "prior on the log fold change; SVI. Calls: Bayesian q-value < 0.1.\n"
            "- **DESeq2 on tximport** (`fit_deseq2(txi, ...)`, R's `DESeqDataSetFromTximport` + `DESeq`): the "
            "frequentist comparison at gene level."
        ),
        facts={
            "samples × transcripts / genes": f"{len(samples)} × {n_tx} / {n_genes} (seed {seed})",
            "fragments per sample": f"{int(sim.true_counts.sum().min()):,} to {int(sim.true_counts.sum().max()):,}",
            "truly changed": f"{int(tx_truth['changed'].sum())} transcripts, {int(gene_truth['is_de'].sum())} genes",
            "Bayes, transcripts (q < 0.1)": f"{tx_row['calls']} calls, {tx_row['false calls']} false "
                                           f"(FDR {tx_row['FDR']:.2f}), sensitivity {tx_row['sensitivity']:.2f}",
            "Bayes, genes (q < 0.1)": f"{gene_row['calls']} calls, {gene_row['false calls']} false "
                                      f"(FDR {gene_row['FDR']:.2f}), sensitivity {gene_row['sensitivity']:.2f}",
            "DESeq2 on tximport, genes (padj < 0.1)": f"{d_row['calls']} calls, {d_row['false calls']} false "
                                                      f"(FDR {d_row['FDR']:.2f}), sensitivity "
                                                      f"{d_row['sensitivity']:.2f}",
        },
        blocks=blocks,
        headline={
            "model": "EM → Bayesian DE (quant → DE)",
            "data": f"{len(samples)} samples × {n_tx} transcripts",
            "SVI (s)": float(fit_tx.elapsed_s + fit_gene.elapsed_s),
            "recovered": f"transcripts: FDR {tx_row['FDR']:.2f}, sensitivity {tx_row['sensitivity']:.2f}",
        },
    )
