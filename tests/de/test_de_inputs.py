"""Inputs of the DE workflow: orientation, AnnData, designs, contrasts and every bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.io.counts import align_counts, read_counts, read_metadata, read_table, validate_counts, write_results
from diffbio_prob.workflows.deseq2 import fit_deseq2
from diffbio_prob.workflows.deseq2.design import build_design, resolve_contrast


@pytest.fixture(scope="module")
def synthetic(deseq2_ref):
    counts = pd.read_csv(deseq2_ref / "synthetic" / "test_counts.csv", index_col=0)
    meta = pd.read_csv(deseq2_ref / "synthetic" / "test_metadata.csv", index_col=0)
    return counts, meta


@pytest.fixture(scope="module")
def reference(synthetic):
    counts, meta = synthetic
    return fit_deseq2(counts, meta, "~condition").results(["condition", "B", "A"])


def test_orientation_sample_order_and_anndata_give_the_same_results(synthetic, reference):
    import anndata

    counts, meta = synthetic
    # samples x genes, samples shuffled relative to the metadata
    shuffled = counts.T.sample(frac=1.0, random_state=0)
    res_t = fit_deseq2(shuffled, meta, "~condition").results(["condition", "B", "A"])
    pd.testing.assert_frame_equal(res_t, reference, rtol=1e-12)
    adata = anndata.AnnData(X=counts.T.to_numpy(), obs=meta.copy(), var=pd.DataFrame(index=counts.index))
    res_a = fit_deseq2(adata, design="~condition").results(["condition", "B", "A"])
    pd.testing.assert_frame_equal(res_a, reference, rtol=1e-12)


def test_orientation_errors(synthetic):
    counts, meta = synthetic
    with pytest.raises(ValueError, match="do not match the index of metadata"):
        align_counts(counts.drop(columns="sample3"), meta)
    square = pd.DataFrame(np.ones((3, 3)), index=["a", "b", "c"], columns=["a", "b", "c"])
    with pytest.raises(ValueError, match="cannot tell genes from samples"):
        align_counts(square, pd.DataFrame({"condition": list("xyx")}, index=["a", "b", "c"]))
    with pytest.raises(TypeError, match="counts: a bare array"):
        fit_deseq2(counts.to_numpy(), meta)
    with pytest.raises(ValueError, match="metadata: a sample table"):
        fit_deseq2(counts)


@pytest.mark.parametrize(
    "value, match",
    [(-1, "non-negative"), (2.5, "integer counts"), (np.nan, "finite counts"), (np.inf, "finite counts")],
)
def test_bad_count_values(synthetic, value, match):
    counts, meta = synthetic
    bad = counts.astype(float).copy()
    bad.iloc[2, 5] = value
    with pytest.raises(ValueError, match=match):
        fit_deseq2(bad, meta)
    with pytest.raises(TypeError, match="non-numeric"):
        validate_counts(np.array([["a", "b"]], dtype=object))


def test_design_errors(synthetic):
    counts, meta = synthetic
    with pytest.raises(ValueError, match=r"variable\(s\) \['foo'\]"):
        build_design("~ foo", meta)
    with pytest.raises(ValueError, match="one-sided formula"):
        build_design("condition", meta)
    one_level = meta.assign(single="x")
    with pytest.raises(ValueError, match="single level"):
        build_design("~ single", one_level)
    dup = meta.assign(copy=meta["condition"])
    with pytest.raises(ValueError, match="not of full rank"):
        build_design("~ condition + copy", dup)
    with pytest.raises(ValueError, match="missing values"):
        build_design("~ condition", meta.assign(condition=[None] + list(meta["condition"][1:])))
    with pytest.raises(TypeError, match="design: expected a formula string"):
        build_design(3, meta)


def test_design_names_and_contrasts(synthetic):
    counts, meta = synthetic
    meta = meta.assign(dose=np.linspace(0, 1, len(meta)), condition=pd.Categorical(meta["condition"], ["B", "A"]))
    d = build_design("~ group + condition + dose", meta)
    assert d.names == ["Intercept", "group_Y_vs_X", "condition_A_vs_B", "dose"]  # category order sets the reference
    c = resolve_contrast(["condition", "B", "A"], d)
    np.testing.assert_array_equal(c.vector, [0, 0, -1, 0])
    assert resolve_contrast("dose", d).coefficient == 3
    assert resolve_contrast(None, d).coefficient == 3
    for bad, err, match in [
        (["condition", "B", "C"], ValueError, "not a level"),
        (["condition", "B", "B"], ValueError, "both"),
        (["batch", "B", "A"], ValueError, "not a variable"),
        (["dose", "1", "0"], ValueError, "numeric, not a factor"),
        ([1.0, 2.0], ValueError, "needs 4 values"),
        ([0.0, 0.0, 0.0, 0.0], ValueError, "all zeros"),
        ("nope", ValueError, "not a coefficient"),
        (["condition", "B"], ValueError, "3 elements"),
        (3.0, TypeError, "expected"),
    ]:
        with pytest.raises(err, match=match):
            resolve_contrast(bad, d)


def test_fit_and_results_argument_errors(synthetic):
    counts, meta = synthetic
    with pytest.raises(ValueError, match="test: expected"):
        fit_deseq2(counts, meta, test="t")
    with pytest.raises(ValueError, match="reduced: the likelihood-ratio test needs"):
        fit_deseq2(counts, meta, test="lrt")
    with pytest.raises(ValueError, match="reduced: only used"):
        fit_deseq2(counts, meta, reduced="~1")
    with pytest.raises(ValueError, match="must be smaller"):
        fit_deseq2(counts, meta, "~group + condition", test="lrt", reduced="~condition + group")
    with pytest.raises(ValueError, match="not in the full design"):
        fit_deseq2(counts, meta, "~condition", test="lrt", reduced="~group")
    with pytest.raises(ValueError, match="size_factors: expected 100 values"):
        fit_deseq2(counts, meta, size_factors=np.ones(3))
    with pytest.raises(ValueError, match="size_factors: expected finite positive"):
        fit_deseq2(counts, meta, size_factors=np.r_[0.0, np.ones(99)])
    with pytest.raises(ValueError, match="size_factors: expected 'ratio'"):
        fit_deseq2(counts, meta, size_factors="tmm")
    with pytest.raises(ValueError, match="precision"):
        fit_deseq2(counts, meta, precision="float16")
    with pytest.raises(ValueError, match="no replicates"):
        two = ["sample1", "sample100"]  # one A and one B: as many samples as coefficients
        fit_deseq2(counts[two], meta.loc[two], "~condition")
    zeros = counts * 0
    with pytest.raises(ValueError, match="every gene has only zero counts"):
        fit_deseq2(zeros, meta, size_factors=np.ones(100))


def test_given_size_factors_are_used(synthetic, reference, deseq2_ref):
    counts, meta = synthetic
    sf = pd.read_csv(deseq2_ref / "single_factor" / "r_test_size_factors.csv", index_col=0).iloc[:, 0].to_numpy()
    res = fit_deseq2(counts, meta, size_factors=sf * 1.0).results(["condition", "B", "A"])
    pd.testing.assert_frame_equal(res, reference, rtol=1e-9)


def test_readers_and_atomic_writer(tmp_path, reference):
    bad = tmp_path / "bad.csv"
    bad.write_text("gene,s1,s2\ng1,1,x\n")
    with pytest.raises(ValueError, match="non-numeric entry 'x'"):
        read_counts(bad)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_counts(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        read_metadata(empty)
    dup = tmp_path / "dup.tsv"
    dup.write_text("gene\ts1\ng1\t1\ng1\t2\n")
    with pytest.raises(ValueError, match="duplicated row name 'g1'"):
        read_counts(dup)
    out = tmp_path / "sub" / "res.csv"
    write_results(reference, out)
    back = pd.read_csv(out, index_col=0)
    pd.testing.assert_frame_equal(back, reference, check_names=False, rtol=1e-15)
    with pytest.raises(ValueError, match="missing DESeq2 columns"):
        write_results(reference.drop(columns="padj"), tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["res.csv"]  # no temporary left behind


# ------------------------------------------------------------------------------------------------
# Count tables: the content decides (delimiter, gzip), whatever the file is called
# ------------------------------------------------------------------------------------------------
def _table_text(sep=","):
    return sep.join(["gene", "s1", "s2"]) + "\n" + sep.join(["g1", "1", "2"]) + "\n" + sep.join(["g2", "3", "4"]) + "\n"


@pytest.mark.parametrize(
    "name, data",
    [
        ("tabs.csv", _table_text("\t").encode()),  # a TSV named .csv (was: "has no data")
        ("commas.tsv", _table_text(",").encode()),
        ("semicolons.csv", _table_text(";").encode()),
        ("gzipped.csv", __import__("gzip").compress(_table_text(",").encode(), mtime=0)),  # gzip whatever the suffix
        ("plain.csv.gz", _table_text(",").encode()),  # a .gz name on plain text
        ("tabs.tsv.gz", __import__("gzip").compress(_table_text("\t").encode(), mtime=0)),
        ("bom.csv", b"\xef\xbb\xbf" + _table_text(",").encode()),
        ("rstyle.txt", b"s1\ts2\ng1\t1\t2\ng2\t3\t4\n"),  # R write.table: no header for the row names
        ("spaces.txt", b"gene s1 s2\ng1 1 2\ng2 3 4\n"),
        ("quoted.csv", b'"gene","s1","s2"\n"g1",1,2\n"g2",3,4\n'),
        ("crlf.csv", _table_text(",").replace("\n", "\r\n").encode()),
    ],
)
def test_read_counts_finds_delimiter_and_compression_from_content(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    df = read_counts(path)
    assert list(df.index) == ["g1", "g2"] and list(df.columns) == ["s1", "s2"]
    np.testing.assert_array_equal(df.to_numpy(), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("trunc.csv.gz", "truncated-gzip", r"counts file '.*trunc\.csv\.gz': the gzip stream ends early; the file is truncated"),
        ("corrupt.csv.gz", "corrupt-gzip", r"counts file '.*corrupt\.csv\.gz': corrupt gzip data"),
        ("binary.csv.gz", b"\x00\xff\xfe\x89garbage", r"binary\.csv\.gz': not UTF-8 text .*neither gzip nor UTF-8 text"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\xff", r"binary\.csv': not UTF-8 text"),
        ("empty.csv", b"\n\n", r"empty\.csv' is empty"),
        ("header.csv", b"gene,s1,s2\n", r"header\.csv' has no data"),
        ("dupcol.csv", b"gene,s1,s1\ng1,1,2\n", r"duplicated column name 's1'"),
        ("noname.csv", b"gene,s1,,s3\ng1,1,2,3\n", r"column 3 of the header has no name"),
        ("trailing.csv", b"gene,s1,s2\ng1,1,2,\ng2,3,4,\n", r"stray delimiter ','"),
        ("norow.csv", b"gene,s1,s2\ng1,1,2\n,3,4\n", r"line 3 has no row name"),
        ("dupgene.csv", b"gene,s1,s2\ng1,1,2\ng1,3,4\n", r"duplicated row name 'g1'"),
        ("ragged.csv", b"gene,s1,s2\ng1,1,2\ng2,3,4,5,6\n", r"ragged\.csv' is not a readable CSV/TSV table"),
    ],
)
def test_read_counts_bad_files_name_the_file(tmp_path, name, data, match):
    import gzip

    full = gzip.compress(_table_text().encode() * 50)
    if data == "truncated-gzip":
        data = full[: len(full) // 2]
    elif data == "corrupt-gzip":
        data = full[:12] + b"\x00" * 40 + full[52:]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match):
        read_counts(path)


def test_metadata_with_an_empty_last_column_is_not_a_stray_delimiter(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("sample,condition,notes\ns1,A,\ns2,B,\n")
    meta = read_metadata(path)
    assert list(meta.columns) == ["condition", "notes"] and meta["notes"].isna().all()


# ------------------------------------------------------------------------------------------------
# Option checks run before any fitting
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_replicates_for_replace": -1}, "min_replicates_for_replace: expected a number >= 3"),
        ({"min_replicates_for_replace": 2}, "min_replicates_for_replace"),
        ({"min_replicates_for_replace": float("nan")}, "min_replicates_for_replace"),
        ({"min_replicates_for_replace": "7"}, "min_replicates_for_replace"),
        ({"fit_type": "loess"}, "fit_type: expected 'parametric', 'local' or 'mean'"),
        ({"dispersion_fit": "exact"}, "dispersion_fit: expected 'deseq2' or 'newton'"),
        ({"size_factors": "tmm"}, "size_factors: expected 'ratio'"),
        ({"precision": "float16"}, "precision"),
    ],
)
def test_fit_option_errors_come_before_reading_the_counts(kwargs, match):
    # the counts are not even a table: the option is rejected first
    with pytest.raises(ValueError, match=match):
        fit_deseq2(object(), None, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0}, r"alpha: expected a number in \(0, 1\)"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"lfc_threshold": float("nan")}, "lfc_threshold: expected a finite non-negative number, got nan"),
        ({"lfc_threshold": float("inf")}, "lfc_threshold"),
        ({"lfc_threshold": -0.5}, "lfc_threshold"),
        ({"cooks_cutoff": -1.0}, "cooks_cutoff: expected None/True"),
        ({"cooks_cutoff": float("nan")}, "cooks_cutoff"),
        ({"cooks_cutoff": "big"}, "cooks_cutoff"),
        ({"alt_hypothesis": "two-sided"}, "alt_hypothesis"),
    ],
)
def test_results_option_errors(synthetic, monkeypatch, kwargs, match):
    import diffbio_prob.workflows.deseq2.api as deseq2_mod

    counts, meta = synthetic

    def started(*a, **k):
        raise AssertionError("fit started")

    monkeypatch.setattr(deseq2_mod, "fit_deseq2", started)
    with pytest.raises(ValueError, match=match):
        deseq2_mod.deseq2(counts, meta, "~condition", **kwargs)  # before the fit


def test_results_option_errors_on_a_fit(reference, synthetic):
    counts, meta = synthetic
    fit = fit_deseq2(counts, meta, "~condition")
    with pytest.raises(ValueError, match="lfc_threshold"):
        fit.results(lfc_threshold=float("nan"))
    with pytest.raises(ValueError, match="cooks_cutoff"):
        fit.results(cooks_cutoff=0)
    res = fit.results(["condition", "B", "A"], cooks_cutoff=float("inf"))
    assert np.isfinite(res["pvalue"]).all()


def test_write_results_gzip_and_tsv_by_name(tmp_path, reference):
    import gzip

    for name, sep in (("r.csv.gz", ","), ("r.tsv.gz", "\t"), ("r.txt", "\t")):
        path = write_results(reference, tmp_path / name)
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode()
        assert text.splitlines()[0].split(sep)[1:] == list(reference.columns)
        pd.testing.assert_frame_equal(read_table(path), reference.astype(float),
                                      check_names=False, rtol=1e-15)
