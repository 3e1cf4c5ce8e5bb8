"""Normalisation-factor matrices against R, the AnnData write-back, and the CLI on the count formats biologists have.

R reference: ``tests/reference/data/deseq2_nf/`` (``make_reference.R`` there: marioni's first 1500 genes, 3 vs 3,
``normalizationFactors(dds) <- nf``, R DESeq2 1.38.3).
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from diffbio_prob import cli
from diffbio_prob.workflows.deseq2 import fit_deseq2

NF = Path(__file__).resolve().parents[1] / "reference" / "data" / "deseq2_nf"
COLS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]


def _read_r(name):
    return pd.read_csv(NF / name, index_col=0, skipinitialspace=True, na_values=["NA"]).astype(float)


@pytest.fixture(scope="module")
def nf_case():
    counts = pd.read_csv(NF / "counts.csv.gz", index_col=0)
    meta = pd.read_csv(NF / "metadata.csv", index_col=0)
    nf = pd.read_csv(NF / "normalization_factors.csv.gz", index_col=0)
    return counts, meta, nf


def _max_rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN masks differ"
    ok = ~np.isnan(b)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300)))


def test_normalization_factor_matrix_matches_r(nf_case):
    counts, meta, nf = nf_case
    fit = fit_deseq2(counts, meta, "~condition", normalization_factors=nf)
    res = fit.results(["condition", "B", "A"])
    ref = _read_r("r_results.csv.gz")
    assert list(res.index) == list(ref.index)
    for col in COLS:
        assert _max_rel(res[col], ref[col]) < 1e-6, col  # measured 2.3e-9
    disp = _read_r("r_dispersions.csv.gz")
    assert _max_rel(fit.gene["dispersion"], disp["dispersion"]) < 1e-6  # measured 1.0e-10
    assert fit.size_factors is None and fit.normalization_factors.shape == counts.shape


def test_normalization_factors_equal_to_size_factors_give_the_size_factor_fit(nf_case):
    counts, meta, _ = nf_case
    a = fit_deseq2(counts, meta, "~condition")
    nf = np.broadcast_to(a.size_factors, counts.shape)
    b = fit_deseq2(counts, meta, "~condition", normalization_factors=nf)
    ra, rb = a.results(), b.results()
    for col in COLS:
        assert _max_rel(rb[col], ra[col]) < 1e-10, col


def test_normalization_factors_matched_by_name_and_checked(nf_case):
    counts, meta, nf = nf_case
    shuffled = nf.sample(frac=1.0, random_state=0)[list(reversed(nf.columns))]
    a = fit_deseq2(counts, meta, "~condition", normalization_factors=nf).results()
    b = fit_deseq2(counts, meta, "~condition", normalization_factors=shuffled.T).results()  # samples x genes
    assert _max_rel(b["pvalue"], a["pvalue"]) < 1e-12
    bad = nf.copy()
    bad.iloc[3, 2] = 0.0
    with pytest.raises(ValueError, match="normalization_factors: expected finite positive values"):
        fit_deseq2(counts, meta, "~condition", normalization_factors=bad)
    with pytest.raises(ValueError, match=r"normalization_factors: expected shape \(1500, 6\)"):
        fit_deseq2(counts, meta, "~condition", normalization_factors=np.ones((3, 6)))
    with pytest.raises(ValueError, match="normalization_factors: .*missing genes"):
        fit_deseq2(counts, meta, "~condition", normalization_factors=nf.iloc[:10])
    with pytest.raises(ValueError, match="give either size_factors or normalization_factors"):
        fit_deseq2(counts, meta, "~condition", normalization_factors=nf, size_factors="poscounts")


def test_anndata_gets_pydeseq2s_layout(nf_case):
    counts, meta, _ = nf_case
    counts = counts.iloc[:400]
    adata = ad.AnnData(X=counts.T.to_numpy(dtype=float), obs=meta.loc[counts.columns],
                       var=pd.DataFrame(index=counts.index))
    fit = fit_deseq2(adata, design="~condition")
    ref = fit_deseq2(counts, meta, "~condition")
    norm = counts.to_numpy() / ref.size_factors
    np.testing.assert_allclose(adata.layers["normed_counts"], norm.T, rtol=1e-12)
    np.testing.assert_allclose(np.ravel(adata.obsm["size_factors"]), ref.size_factors, rtol=1e-12)
    np.testing.assert_allclose(adata.obs["size_factors"], ref.size_factors, rtol=1e-12)
    np.testing.assert_allclose(adata.var["dispersion"], ref.gene["dispersion"], rtol=1e-12)
    np.testing.assert_allclose(adata.varm["LFC"]["condition_B_vs_A"], ref.beta[:, 1] / np.log(2), rtol=1e-12)
    assert adata.uns["deseq2"]["fitType"] == fit.trend.kind
    assert adata.uns["disp_function_type"] == fit.trend.kind
    assert adata.var["dispOutlier"].dtype == bool
    untouched = ad.AnnData(X=counts.T.to_numpy(dtype=float), obs=meta.loc[counts.columns],
                           var=pd.DataFrame(index=counts.index))
    fit_deseq2(untouched, design="~condition", inplace=False)
    assert "normed_counts" not in untouched.layers and "deseq2" not in untouched.uns


def test_deseq2_on_anndata_writes_the_results_table(nf_case):
    from diffbio_prob.workflows.deseq2 import deseq2

    counts, meta, _ = nf_case
    counts = counts.iloc[:300]
    adata = ad.AnnData(X=counts.T.to_numpy(dtype=float), obs=meta.loc[counts.columns],
                       var=pd.DataFrame(index=counts.index))
    res = deseq2(adata, design="~condition")
    got = adata.varm["results"]
    assert list(got.columns) == COLS
    assert _max_rel(got["pvalue"], res["pvalue"]) == 0.0
    assert adata.uns["deseq2"]["contrast"] == res.attrs["contrast"]


# ---------------------------------------------------------------------------------------------------
# The CLI on featureCounts, htseq-count and .h5ad: the same numbers as from a CSV table.
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(nf_case):
    counts, meta, _ = nf_case
    return counts.iloc[:300], meta


def _run(args):
    return cli.main(["de", *map(str, args), "--design", "~condition", "--quiet"])


@pytest.fixture(scope="module")
def csv_result(small, tmp_path_factory):
    counts, meta = small
    d = tmp_path_factory.mktemp("csv")
    counts.to_csv(d / "c.csv")
    meta.to_csv(d / "m.csv")
    assert _run(["--counts", d / "c.csv", "--metadata", d / "m.csv", "--out", d / "r.csv"]) == 0
    return pd.read_csv(d / "r.csv", index_col=0), d / "m.csv"


def _same(path, ref):
    res = pd.read_csv(path, index_col=0)
    assert list(res.index) == list(ref.index)
    for col in COLS:
        a, b = res[col].to_numpy(float), ref[col].to_numpy(float)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-12)


def test_cli_reads_featurecounts(small, csv_result, tmp_path):
    counts, _ = small
    ref, meta = csv_result
    lines = ['# Program:featureCounts v2.0.3; Command:"featureCounts" "-a" "genes.gtf" "-o" "fc.txt"']
    lines.append("\t".join(["Geneid", "Chr", "Start", "End", "Strand", "Length"]
                           + [f"/data/bam/{s}.bam" for s in counts.columns]))
    for g, row in counts.iterrows():
        lines.append("\t".join([g, "chr1", "100", "900", "+", "800"] + [str(int(v)) for v in row]))
    (tmp_path / "fc.txt").write_text("\n".join(lines) + "\n")
    assert _run(["--counts", tmp_path / "fc.txt", "--metadata", meta, "--out", tmp_path / "r.csv"]) == 0
    _same(tmp_path / "r.csv", ref)


def test_cli_reads_one_htseq_file_per_sample(small, csv_result, tmp_path):
    counts, _ = small
    ref, meta = csv_result
    paths = []
    for s in counts.columns:
        body = "".join(f"{g}\t{int(v)}\n" for g, v in counts[s].items())
        body += "__no_feature\t12\n__ambiguous\t3\n__too_low_aQual\t0\n__not_aligned\t5\n__alignment_not_unique\t7\n"
        p = tmp_path / f"{s}.htseq.txt"
        p.write_text(body)
        paths.append(p)
    assert _run(["--counts", *paths, "--metadata", meta, "--out", tmp_path / "r.csv"]) == 0
    _same(tmp_path / "r.csv", ref)


def test_cli_reads_h5ad_with_a_layer_and_its_obs(small, csv_result, tmp_path):
    counts, meta_df = small
    ref, _ = csv_result
    adata = ad.AnnData(X=np.zeros((counts.shape[1], counts.shape[0])), obs=meta_df.loc[counts.columns],
                       var=pd.DataFrame(index=counts.index))
    adata.layers["counts"] = counts.T.to_numpy(dtype=float)
    adata.write_h5ad(tmp_path / "data.h5ad")
    assert _run(["--counts", tmp_path / "data.h5ad", "--layer", "counts", "--out", tmp_path / "r.csv"]) == 0
    _same(tmp_path / "r.csv", ref)


def test_cli_de_has_no_x64_flag_and_says_why(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["de", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    options = out[out.index("options:"):]
    assert "--x64" not in options and "always computes in float64" in " ".join(out.split())
    with pytest.raises(SystemExit) as exc:
        cli.main(["de", "--counts", "c.csv", "--metadata", "m.csv", "--design", "~condition", "--out", "o.csv",
                  "--x64"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --x64" in capsys.readouterr().err


def test_cli_shrink_needs_a_wald_test(small, tmp_path, capsys):
    counts, meta = small
    counts.to_csv(tmp_path / "c.csv")
    meta.to_csv(tmp_path / "m.csv")
    rc = _run(["--counts", tmp_path / "c.csv", "--metadata", tmp_path / "m.csv", "--out", tmp_path / "o.csv",
               "--test", "lrt", "--reduced", "~1", "--shrink", "normal"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shrink" in err[0] and "wald" in err[0]
    assert not (tmp_path / "o.csv").exists()
