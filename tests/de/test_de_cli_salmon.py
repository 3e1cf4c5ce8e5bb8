"""``diffbio-prob tximport`` and ``diffbio-prob de --salmon``: salmon folders to R's tximport tables and to R's
DESeq2-on-tximport results (``tests/reference/data/quant2de_ref``: salmon 1.10.1, tximport 1.26.1, DESeq2 1.38.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbio_prob import cli

Q = Path(__file__).resolve().parents[1] / "reference" / "data" / "quant2de_ref"
SAMPLES = ["A1", "A2", "B1", "B2"]
DIRS = [Q / "salmon" / s for s in SAMPLES]
TX2GENE = Q / "truth" / "tx2gene.csv.gz"


def _ref(*parts):
    return pd.read_csv(Q.joinpath(*parts), index_col=0, na_values=["NA"])


def _max_rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN masks differ"
    ok = ~np.isnan(b)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300)))


@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    p = tmp_path_factory.mktemp("meta") / "meta.csv"
    pd.DataFrame({"condition": ["A", "A", "B", "B"]}, index=pd.Index(SAMPLES, name="sample")).to_csv(p)
    return p


def test_tximport_command_writes_rs_tables(tmp_path):
    rc = cli.main(["tximport", "--salmon", *map(str, DIRS), "--tx2gene", str(TX2GENE), "--out-dir",
                   str(tmp_path / "txi"), "--quiet"])
    assert rc == 0
    for name in ("counts", "abundance", "length"):
        ours = pd.read_csv(tmp_path / "txi" / f"{name}.csv", index_col=0)
        ref = _ref("reference", "tximport", f"gene_{name}.csv.gz")
        assert list(ours.index) == list(ref.index) and list(ours.columns) == SAMPLES
        assert _max_rel(ours.to_numpy().ravel(), ref.to_numpy().ravel()) < 1e-12, name


def test_tximport_command_sample_names_from_a_file(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("sample\nw\nx\ny\nz\n")
    rc = cli.main(["tximport", "--salmon", *map(str, DIRS), "--tx-out", "--samples", str(names), "--out-dir",
                   str(tmp_path / "tx"), "--quiet"])
    assert rc == 0
    ours = pd.read_csv(tmp_path / "tx" / "counts.csv", index_col=0)
    ref = _ref("reference", "tximport", "tx_counts.csv.gz")
    assert list(ours.columns) == ["w", "x", "y", "z"]
    assert _max_rel(ours.to_numpy().ravel(), ref.to_numpy().ravel()) < 1e-12


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out-dir", "OUT"], "--tx2gene: required to summarise to genes"),
        (["--tx2gene", str(TX2GENE), "--samples", "NAMES", "--out-dir", "OUT"], "--samples: 2 names for 4"),
    ],
)
def test_tximport_command_bad_input_one_line_no_output(tmp_path, capsys, args, message):
    (tmp_path / "names.txt").write_text("a\nb\n")
    args = [a.replace("OUT", str(tmp_path / "out")).replace("NAMES", str(tmp_path / "names.txt")) for a in args]
    rc = cli.main(["tximport", "--salmon", *map(str, DIRS), *args])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()


def test_de_on_salmon_folders_matches_r_deseq2_from_tximport(tmp_path, meta):
    out = tmp_path / "res.csv"
    rc = cli.main(["de", "--salmon", *map(str, DIRS), "--tx2gene", str(TX2GENE), "--metadata", str(meta),
                   "--design", "~condition", "--contrast", "condition", "B", "A", "--out", str(out), "--quiet"])
    assert rc == 0
    ours = pd.read_csv(out, index_col=0)
    ref = _ref("reference", "deseq2", "r_results.csv.gz")
    assert list(ours.index) == list(ref.index)
    for col in ref.columns:
        assert _max_rel(ours[col], ref[col]) < 1e-6, col  # measured <= 5e-10


def test_fit_deseq2_takes_a_tximport_result():
    from diffbio_prob.io.tximport import tximport
    from diffbio_prob.workflows.deseq2 import fit_deseq2

    txi = tximport(DIRS, type="salmon", tx2gene=TX2GENE)
    meta = pd.DataFrame({"condition": ["A", "A", "B", "B"]}, index=SAMPLES)
    fit = fit_deseq2(txi, meta, "~condition")
    nf = _ref("reference", "deseq2", "normalization_factors.csv.gz")
    assert _max_rel(fit.normalization_factors.ravel(), nf.loc[fit.genes, SAMPLES].to_numpy().ravel()) < 1e-12
    with pytest.raises(ValueError, match="normalization_factors: a tximport result brings its own"):
        fit_deseq2(txi, meta, "~condition", normalization_factors=np.ones(txi.counts.shape))
    with pytest.raises(ValueError, match="size_factors: with a tximport result"):
        fit_deseq2(txi, meta, "~condition", size_factors="iterate")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--counts", "C", "--salmon", "S"], "--counts / --salmon: give one of them"),
        (["--counts", "C", "--tx2gene", "T"], "--tx2gene: only used with --salmon"),
        (["--salmon", "S", "--layer", "counts"], "--layer: only used with an .h5ad"),
    ],
)
def test_de_salmon_flag_errors(tmp_path, capsys, meta, args, message):
    rc = cli.main(["de", *args, "--metadata", str(meta), "--design", "~condition", "--out", str(tmp_path / "o.csv")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("level, ref_name", [("transcript", "swish_tx.csv.gz"), ("gene", "swish_gene.csv.gz")])
def test_de_method_swish_gives_fishponds_table(tmp_path, meta, level, ref_name):
    out = tmp_path / "swish.csv"
    extra = ["--tx2gene", str(TX2GENE)] if level == "gene" else []
    rc = cli.main(["de", "--salmon", *map(str, DIRS), *extra, "--metadata", str(meta), "--design", "~condition",
                   "--contrast", "condition", "B", "A", "--method", "swish", "--level", level, "--seed", "1",
                   "--out", str(out), "--quiet"])
    assert rc == 0
    ours = pd.read_csv(out, index_col=0)
    ref = _ref("reference", "swish", ref_name)
    kept = ref["keep"].astype(bool)
    assert (ours["keep"].astype(bool).reindex(ref.index) == kept).all()
    for col, ref_col in (("stat", "stat"), ("log2FoldChange", "log2FC"), ("pvalue", "pvalue"), ("padj", "qvalue")):
        assert _max_rel(ours.loc[kept[kept].index, col], ref.loc[kept, ref_col]) < 1e-9, col


@pytest.mark.parametrize(
    "args, message",
    [
        (["--counts", "C", "--method", "swish"], "--method swish: needs --salmon"),
        (["--salmon", "S", "--method", "swish", "--shrink", "normal"], "--shrink: not available with --method swish"),
        (["--salmon", "S", "--level", "gene"], "--level gene: needs --tx2gene"),
        (["--counts", "C", "--level", "gene"], "--level: only used with --salmon"),
    ],
)
def test_de_method_and_level_errors(tmp_path, capsys, meta, args, message):
    rc = cli.main(["de", *args, "--metadata", str(meta), "--design", "~condition", "--out", str(tmp_path / "o.csv")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o.csv").exists()


def test_de_method_bayes_at_gene_level_finds_the_simulated_changes(tmp_path, meta):
    """2 vs 2 with known truth: at Bayesian q < 0.1 at least DESeq2-on-tximport's 142 true DE genes are found,
    with a false discovery proportion under 0.25 (measured 175 TP, FDP 0.134; bench/quant_de_accuracy.py)."""
    out = tmp_path / "bayes.csv"
    rc = cli.main(["de", "--salmon", *map(str, DIRS), "--tx2gene", str(TX2GENE), "--metadata", str(meta),
                   "--design", "~condition", "--contrast", "condition", "B", "A", "--method", "bayes",
                   "--out", str(out), "--quiet"])
    assert rc == 0
    res = pd.read_csv(out, index_col=0)
    truth = pd.read_csv(Q / "truth" / "truth_genes.csv.gz", index_col=0)
    called = res.index[res["padj"] < 0.1]
    de = truth["DE"].astype(str).str.upper().isin(["TRUE", "1"])
    tp = int(de.reindex(called).fillna(False).sum())
    assert tp >= 142 and (len(called) - tp) / len(called) < 0.25
    assert {"log2FoldChange", "lfcSD", "hdi_low", "hdi_high", "stat", "pvalue", "padj"} <= set(res.columns)
