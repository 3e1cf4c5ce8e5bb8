"""The demo's quantification -> DE part: the simulator against brute force and its own recipe, then the part
run once (module-scoped, float32 as the demo runs) and its outputs reopened and checked against the truth.

Oracles: a brute-force enumeration of every fragment on genome coordinates (the eq classes), the simulator's
recipe over many samples (the true fold changes), the simulated fragment counts (NumReads, bootstraps), and
the truth itself (calls, intervals)."""

from __future__ import annotations

import dataclasses
import gzip
import html.parser

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.workflows.demo.data import QUICK, _fragment_classes, _gene_structure, simulate_quant_de

SIZES = dataclasses.replace(QUICK, qde_genes=60, qde_bootstraps=12, qde_svi_steps=800, qde_draws=300)
SEED = 2


def _brute_force_classes(exon_len, isoforms, frag_len):
    """Every start position of every isoform, on genome coordinates (introns of 1000 bases between exons):
    a fragment is compatible with each isoform whose coordinates hold the fragment's as one contiguous run."""
    starts = np.r_[0, np.cumsum(exon_len[:-1] + 1000)]
    coords = [np.concatenate([np.arange(starts[e], starts[e] + exon_len[e]) for e in iso]) for iso in isoforms]
    where = [{int(c): i for i, c in enumerate(cs)} for cs in coords]
    out = []
    for cs in coords:
        classes = {}
        for a in range(cs.size - frag_len + 1):
            frag = cs[a:a + frag_len]
            key = tuple(u for u, cu in enumerate(coords)
                        if int(frag[0]) in where[u] and np.array_equal(cu[where[u][int(frag[0])]:][:frag_len], frag))
            classes[key] = classes.get(key, 0) + 1
        total = sum(classes.values())
        out.append({k: v / total for k, v in classes.items()})
    return out


@pytest.mark.parametrize("n_iso,seed", [(1, 0), (2, 1), (3, 2), (3, 5)])
def test_fragment_classes_equal_a_brute_force_enumeration(n_iso, seed):
    frag_len = 60  # short fragments and exons: the enumeration stays small
    exon_len, isoforms = _gene_structure(np.random.default_rng(seed), n_iso, frag_len)
    ours = _fragment_classes(exon_len, isoforms, frag_len)
    brute = _brute_force_classes(exon_len, isoforms, frag_len)
    assert len(ours) == n_iso
    for (keys, frac), expected in zip(ours, brute):
        got = {}
        for k, f in zip(keys, frac):
            got[k] = got.get(k, 0.0) + f
        assert got.keys() == expected.keys()
        for k in got:
            assert got[k] == pytest.approx(expected[k], abs=1e-12)
    if n_iso > 1:
        # the isoform with every exon has no fragment of its own only if every junction is shared: exon
        # skipping gives each skipped isoform a junction nobody else has
        assert all(any(k == (t,) for k in ours[t][0]) for t in range(1, n_iso))


def test_simulated_truth_follows_the_recipe_over_many_samples():
    sim = simulate_quant_de(16, 150, seed=3)
    counts = sim.true_counts
    a = counts.loc[:, sim.samples["condition"] == "A"].to_numpy(float)
    b = counts.loc[:, sim.samples["condition"] == "B"].to_numpy(float)
    sf = sim.samples["size_factor"].to_numpy()
    sf_ratio = sf[sim.samples["condition"] == "B"].mean() / sf[sim.samples["condition"] == "A"].mean()
    observed = np.log2(b.mean(1) / a.mean(1) / sf_ratio)
    truth = sim.transcripts["log2FoldChange"].to_numpy()
    enough = a.mean(1) > 30
    np.testing.assert_allclose(observed[enough], truth[enough], atol=0.12)
    # molecules per gene = sum over its transcripts of fragments / effective length: DTU keeps the total
    eff = sim.effective_lengths[:, None]
    genes = sim.transcripts["gene"].to_numpy()
    mol_a = pd.Series((a / eff).mean(1)).groupby(genes).sum()
    mol_b = pd.Series((b / eff).mean(1)).groupby(genes).sum()
    gene_obs = np.log2(mol_b / mol_a / sf_ratio)
    np.testing.assert_allclose(gene_obs.loc[sim.genes.index], sim.genes["log2FoldChange"], atol=0.12)
    dtu = sim.transcripts["kind"] == "DTU"
    assert sim.transcripts.loc[dtu, "changed"].sum() >= 2 and (sim.genes.loc[sim.genes["kind"] == "DTU",
                                                                               "log2FoldChange"] == 0).all()
    # every class lies inside one gene, and the classes of a sample hold exactly its fragments
    for s, table in sim.tables.items():
        assert table.counts.sum() == counts[s].sum()
        owner = genes[table.transcript_ids]
        assert (pd.Series(owner).groupby(table.class_ids).nunique() == 1).all()


def test_simulator_checks_its_arguments():
    for kwargs, match in (({"n_genes": 2}, "n_genes"), ({"n_per_group": 1}, "n_per_group"),
                          ({"de_fraction": 0.0}, "de_fraction"), ({"dispersion": 0.0}, "dispersion"),
                          ({"mean_range": (10.0, 1.0)}, "mean_range"), ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=match):
            simulate_quant_de(**kwargs)
    a, b = simulate_quant_de(10, 2, seed=4), simulate_quant_de(10, 2, seed=4)
    pd.testing.assert_frame_equal(a.true_counts, b.true_counts)
    assert not a.true_counts.equals(simulate_quant_de(10, 2, seed=5).true_counts)


@pytest.fixture(scope="module")
def part(tmp_path_factory):
    import jax

    from diffbio_prob.workflows.demo.outputs import Outputs, Progress
    from diffbio_prob.workflows.demo.runner import run_part

    root = tmp_path_factory.mktemp("quant_de")
    out = Outputs(root)
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)  # as the demo command runs
    try:
        result = run_part("quant_de", SIZES, SEED, out, Progress(5, quiet=True))
    finally:
        jax.config.update("jax_enable_x64", previous)
    return result, out


def _sim():
    return simulate_quant_de(SIZES.qde_genes, SIZES.qde_per_group, SEED)


@pytest.mark.slow
def test_salmon_folders_hold_the_simulated_fragments(part):
    from diffbio_prob.io.eqclasses import read_eq_classes
    from diffbio_prob.io.salmon import read_quant_sf
    from diffbio_prob.io.tximport import tximport

    _, out = part
    sim = _sim()
    folders = {s: out.root / "quant_de" / "salmon" / s for s in sim.tables}
    txi = tximport(folders, tx_out=True, drop_inf_reps=False)
    for s, folder in folders.items():
        fragments = float(sim.true_counts[s].sum())
        quant = read_quant_sf(folder / "quant.sf")
        assert quant.names == list(sim.transcripts.index)
        assert quant.num_reads.sum() == pytest.approx(fragments, rel=1e-5)
        np.testing.assert_array_equal(quant.effective_lengths, sim.effective_lengths)
        reps = txi.inf_reps[s].to_numpy()
        assert reps.shape == (len(sim.transcripts), SIZES.qde_bootstraps)
        np.testing.assert_allclose(reps.sum(0), fragments, rtol=1e-4)  # every bootstrap keeps the fragments
        assert reps.std(1).max() > 0
        # the classes written beside the output are the simulator's, with the effective lengths
        table = read_eq_classes(folder / "aux_info" / "eq_classes.txt.gz")
        np.testing.assert_array_equal(table.counts, sim.tables[s].counts)
        np.testing.assert_array_equal(table.transcript_ids, sim.tables[s].transcript_ids)
        np.testing.assert_allclose(table.lengths, sim.effective_lengths)
    written = pd.read_csv(out.root / "quant_de" / "true_counts.csv", index_col=0)
    np.testing.assert_array_equal(written.to_numpy(), sim.true_counts.to_numpy())
    acc = pd.read_csv(out.root / "quant_de" / "quant_accuracy.csv", index_col=0)
    assert (acc["Spearman vs truth"] > 0.95).all() and (acc["MARD vs truth"] < 0.15).all()


@pytest.mark.slow
def test_calls_and_intervals_against_the_truth(part):
    _, out = part
    folder = out.root / "quant_de"
    truth_tx = pd.read_csv(folder / "truth_transcripts.csv", index_col=0)
    truth_gene = pd.read_csv(folder / "truth_genes.csv", index_col=0)
    bayes_tx = pd.read_csv(folder / "bayes_transcripts.csv", index_col=0).reindex(truth_tx.index)
    bayes_gene = pd.read_csv(folder / "bayes_genes.csv", index_col=0).reindex(truth_gene.index)
    deseq = pd.read_csv(folder / "deseq2_tximport_genes.csv", index_col=0).reindex(truth_gene.index)
    calls = pd.read_csv(folder / "calls_vs_truth.csv", index_col=0)

    # the table's numbers are the results files' numbers scored against the truth files
    for label, res, truth in (("Bayes, transcript level", bayes_tx, truth_tx["changed"]),
                              ("Bayes, gene level", bayes_gene, truth_gene["is_de"]),
                              ("DESeq2 on tximport, gene level", deseq, truth_gene["is_de"])):
        called = (res["padj"] < 0.1).to_numpy()
        t = truth.to_numpy(bool)
        assert calls.loc[label, "calls"] == called.sum()
        assert calls.loc[label, "false calls"] == (called & ~t).sum()
        assert calls.loc[label, "sensitivity"] == pytest.approx((called & t).sum() / t.sum())

    # the posteriors cover the true fold changes of most truly changed features
    for res, truth, col in ((bayes_tx, truth_tx, "changed"), (bayes_gene, truth_gene, "is_de")):
        ch = truth[col].to_numpy(bool) & res["tested"].to_numpy(bool)
        t = truth["log2FoldChange"].to_numpy()
        inside = (res["hdi_low"].to_numpy() <= t) & (t <= res["hdi_high"].to_numpy())
        assert inside[ch].mean() >= 0.75, inside[ch].mean()
        assert inside[~truth[col].to_numpy(bool)].mean() >= 0.85
        r = np.corrcoef(res["log2FoldChange"].to_numpy()[ch], t[ch])[0, 1]
        assert r > 0.8, r
    # sane calls: few false ones, most changes found, none with the wrong sign among the true ones
    for label in calls.index:
        assert calls.loc[label, "FDR"] <= 0.3, label
        assert calls.loc[label, "sensitivity"] >= 0.5, label
        assert calls.loc[label, "wrong sign"] == 0, label
    # a DTU gene keeps its molecules: DESeq2's average-length offsets must not call most of them
    dtu = (truth_gene["kind"] == "DTU").to_numpy()
    assert ((deseq["padj"] < 0.1).to_numpy()[dtu]).mean() <= 1 / 3
    # while at transcript level the model sees the swapped isoforms
    dtu_tx = (truth_tx["kind"] == "DTU").to_numpy() & truth_tx["changed"].to_numpy(bool)
    assert ((bayes_tx["padj"] < 0.1).to_numpy()[dtu_tx]).mean() >= 0.5


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings, self.images, self._in = [], 0, False

    def handle_starttag(self, tag, attrs):
        self.images += tag == "img"
        self._in = self._in or tag in ("h2", "h3")

    def handle_data(self, data):
        if self._in:
            self.headings.append(data)

    def handle_endtag(self, tag):
        if tag in ("h2", "h3"):
            self._in = False


@pytest.mark.slow
def test_report_section_and_files(part):
    from diffbio_prob.workflows.demo.report import build_report

    result, out = part
    report = build_report([result], out, seed=SEED, quick=True, elapsed=1.0)
    page = _Page()
    page.feed(report.to_html())
    text = " ".join(page.headings)
    for title in ("Quantification → differential expression", "Calls against the truth", "Fold-change posteriors",
                  "Quantification of the samples"):
        assert title in text, title
    pngs = sorted((out.root / "quant_de").glob("*.png"))
    assert len(pngs) == 3 and page.images == 3
    for p, _ in out.files:
        assert p.is_file() and p.stat().st_size > 0, p
    assert not [p for p in out.root.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    with gzip.open(out.root / "quant_de" / "salmon" / "A1" / "aux_info" / "bootstrap" / "names.tsv.gz", "rt") as fh:
        assert fh.read().split() == list(_sim().transcripts.index)
