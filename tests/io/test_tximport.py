"""diffbio_prob.io.tximport against R tximport 1.26.1, and run_tximport.

Reference: ``tests/reference/data/quant2de_ref`` (a trimmed copy of ``../shared/quant2de_ref``: salmon 1.10.1
on 4 simulated samples with 20 bootstraps, sample A1 also with 20 Gibbs draws; ``reference/tximport`` from
its ``make_reference.R``, ``extra/`` from ``make_extra_reference.R`` there). Every comparison is exact
(measured: 0 differing values in every file); the asserted bound is 1e-10 relative.
"""

from __future__ import annotations

import gzip
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.io.base import FormatError
from diffbio_prob.io.salmon import read_salmon_bootstraps
from diffbio_prob.io.tximport import TximportResult, read_tx2gene, tximport
from diffbio_prob.workflows.tximport_run import TXIMPORT_OUTPUTS, run_tximport

REF = Path(__file__).resolve().parents[1] / "reference" / "data" / "quant2de_ref"
SAMPLES = ["A1", "A2", "B1", "B2"]
DIRS = [REF / "salmon" / s for s in SAMPLES]
TX2GENE = REF / "truth" / "tx2gene.csv.gz"
TOL = 1e-10


def _r(name: str) -> pd.DataFrame:
    folder = "extra" if name.startswith("extra/") else "reference/tximport"
    return pd.read_csv(REF / folder / f"{name.removeprefix('extra/')}.csv.gz", index_col=0, na_values=["NA"])


def _assert_matches(got: pd.DataFrame, ref: pd.DataFrame, tol: float = TOL) -> None:
    assert list(map(str, got.index)) == list(map(str, ref.index))
    assert list(got.columns) == list(ref.columns)
    a, b = got.to_numpy(float), ref.to_numpy(float)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(b)
    rel = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300)
    assert rel.max(initial=0.0) <= tol, float(rel.max())


@pytest.fixture(scope="module")
def t2g() -> pd.DataFrame:
    return pd.read_csv(TX2GENE)


@pytest.fixture(scope="module")
def gene(t2g) -> TximportResult:
    return tximport(DIRS, tx2gene=t2g)


@pytest.fixture(scope="module")
def tx() -> TximportResult:
    return tximport(DIRS, tx_out=True, drop_inf_reps=False)


@pytest.fixture(scope="module")
def gene_reps(t2g) -> TximportResult:
    return tximport(DIRS, tx2gene=t2g, drop_inf_reps=False)


def _copy_samples(tmp_path: Path, samples=SAMPLES) -> list[Path]:
    out = []
    for s in samples:
        dst = tmp_path / s
        shutil.copytree(REF / "salmon" / s, dst)
        out.append(dst)
    return out


# --- R's numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["counts", "abundance", "length"])
def test_gene_level_matches_r(gene, what):
    assert gene.level == "gene" and gene.counts_from_abundance == "no"
    assert gene.inf_reps is None and gene.variance is None   # drop_inf_reps defaults to True here
    _assert_matches(getattr(gene, what), _r(f"gene_{what}"))
    assert getattr(gene, what).index.name == "gene"


@pytest.mark.parametrize("cfa", ["scaledTPM", "lengthScaledTPM"])
def test_gene_counts_from_abundance_match_r(t2g, cfa):
    txi = tximport(DIRS, tx2gene=t2g, counts_from_abundance=cfa)
    assert txi.counts_from_abundance == cfa
    _assert_matches(txi.counts, _r(f"gene_counts_{cfa}"))
    _assert_matches(txi.length, _r("gene_length"))


@pytest.mark.parametrize("what", ["counts", "abundance", "length"])
def test_transcript_level_matches_r(tx, what):
    assert tx.level == "transcript"
    _assert_matches(getattr(tx, what), _r(f"tx_{what}"))


def test_gene_level_variance_of_summed_replicates_matches_r(t2g, gene_reps):
    txi = tximport(DIRS, tx2gene=t2g, drop_inf_reps=False, var_reduce=True)
    assert txi.inf_reps is None
    _assert_matches(txi.variance, _r("gene_infRepsVar"))
    # the same variance from the summed replicates themselves (tximport's rowVars, n - 1)
    for s in SAMPLES:
        reps = gene_reps.inf_reps[s]
        assert reps.shape == (2958, 20) and list(reps.columns) == [f"infRep{k}" for k in range(1, 21)]
        np.testing.assert_allclose(reps.var(axis=1, ddof=1), txi.variance[s], rtol=1e-12, atol=1e-12)


def test_transcript_level_variance_matches_r():
    txi = tximport(DIRS, tx_out=True, drop_inf_reps=False, var_reduce=True)
    assert txi.inf_reps is None
    _assert_matches(txi.variance, _r("tx_infRepsVar"))


def test_transcript_replicates_are_the_bootstrap_file_transposed(tx, gene_reps, gene):
    names, draws = read_salmon_bootstraps(REF / "salmon" / "B2" / "aux_info")
    assert names == list(tx.counts.index)
    np.testing.assert_array_equal(tx.inf_reps["B2"].to_numpy(), draws.T)
    # gene-level replicates are the per-gene sums of the transcript-level ones; the counts are not touched
    pd.testing.assert_frame_equal(gene_reps.counts, gene.counts)


def test_gibbs_replicates_match_r_exactly():
    txi = tximport({"A1": REF / "salmon_gibbs" / "A1" / "quant.sf.gz"}, tx_out=True, drop_inf_reps=False)
    ref = _r("gibbs_A1_infReps_every5th")
    got = txi.inf_reps["A1"]
    assert got.shape == (10072, 20)
    sub = got.loc[ref.index]
    assert list(sub.columns) == list(ref.columns)
    np.testing.assert_array_equal(sub.to_numpy(), ref.to_numpy())


def test_dtu_scaled_tpm_matches_r(t2g):
    txi = tximport(DIRS, tx_out=True, tx2gene=t2g, counts_from_abundance="dtuScaledTPM")
    assert txi.counts_from_abundance == "dtuScaledTPM" and txi.level == "transcript"
    _assert_matches(txi.counts, _r("extra/tx_counts_dtuScaledTPM"))


def test_transcript_length_scaled_tpm_matches_r():
    txi = tximport(DIRS, tx_out=True, counts_from_abundance="lengthScaledTPM")
    _assert_matches(txi.counts, _r("extra/tx_counts_lengthScaledTPM"))


def test_transcripts_missing_from_tx2gene_and_duplicated_rows_as_r(t2g):
    keep = np.arange(1, len(t2g) + 1) % 7 != 0
    dup = pd.DataFrame({"TXNAME": t2g.TXNAME.to_numpy()[1:3], "GENEID": ["GX", "GX"]})
    table = pd.concat([t2g[keep], dup], ignore_index=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        txi = tximport(DIRS, tx2gene=table, counts_from_abundance="lengthScaledTPM")
    messages = [str(w.message) for w in caught]
    assert "removing duplicated transcript rows from tx2gene" in messages
    assert "transcripts missing from tx2gene: 1438" in messages
    assert "GX" not in txi.counts.index   # the first row of a duplicated transcript wins
    _assert_matches(txi.counts, _r("extra/missing_gene_counts_lengthScaledTPM"))
    _assert_matches(txi.length, _r("extra/missing_gene_length"))


def test_integer_gene_ids_sort_as_numbers_as_r(t2g):
    table = pd.DataFrame({"tx": t2g.TXNAME, "gene": t2g.GENEID.str[1:].astype(int) % 1500})
    txi = tximport(DIRS, tx2gene=table)
    _assert_matches(txi.counts, _r("extra/intgene_gene_counts"))
    assert list(txi.counts.index[:3]) == ["0", "1", "2"]


# --- inputs ----------------------------------------------------------------------------------------


def test_tx2gene_forms_agree(t2g, gene, tmp_path):
    tsv = tmp_path / "t2g.tsv"
    t2g.to_csv(tsv, sep="\t", index=False)
    series = pd.Series(t2g.GENEID.to_numpy(), index=t2g.TXNAME.to_numpy())
    for form in (TX2GENE, str(tsv), series, dict(zip(t2g.TXNAME, t2g.GENEID))):
        pd.testing.assert_frame_equal(tximport(DIRS, tx2gene=form).counts, gene.counts)
    back = read_tx2gene(TX2GENE)
    assert list(back.columns) == ["tx", "gene"] and len(back) == 10072


def test_paths_as_quant_files_folders_and_mapping(gene, t2g):
    files = [d / "quant.sf.gz" for d in DIRS]
    by_file = tximport([str(f) for f in files], tx2gene=t2g)
    assert by_file.samples == SAMPLES
    pd.testing.assert_frame_equal(by_file.counts, gene.counts)
    named = tximport(dict(zip(["a", "b", "c", "d"], DIRS)), tx2gene=t2g)
    assert named.samples == ["a", "b", "c", "d"]
    renamed = tximport(DIRS, tx2gene=t2g, sample_names=["w", "x", "y", "z"])
    np.testing.assert_array_equal(renamed.counts.to_numpy(), gene.counts.to_numpy())
    single = tximport(DIRS[0], tx_out=True)
    assert single.samples == ["A1"] and single.counts.shape == (10072, 1)


def test_ignore_tx_version_and_after_bar(tmp_path, gene, t2g):
    def renamed(suffix):
        out = []
        for s in SAMPLES[:2]:
            d = tmp_path / suffix.strip(".|") / s
            d.mkdir(parents=True)
            lines = gzip.decompress((REF / "salmon" / s / "quant.sf.gz").read_bytes()).decode().splitlines()
            body = [ln.split("\t", 1) for ln in lines[1:]]
            (d / "quant.sf").write_text("\n".join([lines[0]] + [f"{n}{suffix}\t{r}" for n, r in body]) + "\n")
            out.append(d)
        return out

    ref = tximport(DIRS[:2], tx2gene=t2g)
    versioned = renamed(".3")
    with pytest.raises(ValueError, match="none of the transcripts"):
        tximport(versioned, tx2gene=t2g)
    np.testing.assert_array_equal(tximport(versioned, tx2gene=t2g, ignore_tx_version=True).counts, ref.counts)
    barred = renamed("|ENSG|extra")
    np.testing.assert_array_equal(tximport(barred, tx2gene=t2g, ignore_after_bar=True).counts, ref.counts)
    txo = tximport(barred, tx_out=True, ignore_after_bar=True)
    assert txo.counts.index[0] == "T000001_G00000_1"   # R strips after the bar at transcript level too
    txv = tximport(versioned, tx_out=True, ignore_tx_version=True)
    assert txv.counts.index[0] == "T000001_G00000_1.3"  # ... but keeps the version


def test_replicates_follow_the_first_sample(tmp_path):
    dirs = _copy_samples(tmp_path / "first", SAMPLES[:2])
    (dirs[0] / "cmd_info.json").unlink()
    assert tximport(dirs, tx_out=True, drop_inf_reps=False).inf_reps is None
    dirs = _copy_samples(tmp_path / "second", SAMPLES[:2])
    (dirs[1] / "cmd_info.json").unlink()
    with pytest.raises(ValueError, match="no inferential replicates"):
        tximport(dirs, tx_out=True, drop_inf_reps=False)


def test_aux_dir_from_cmd_info_and_zero_bootstraps(tmp_path, tx):
    (d,) = _copy_samples(tmp_path, ["A2"])
    (d / "aux_info").rename(d / "aux_elsewhere")
    assert tximport(d, tx_out=True, drop_inf_reps=False).inf_reps is None   # auxDir missing -> none
    cmd = json.loads((d / "cmd_info.json").read_text())
    cmd["auxDir"] = "aux_elsewhere"
    (d / "cmd_info.json").write_text(json.dumps(cmd))
    got = tximport(d, tx_out=True, drop_inf_reps=False)
    np.testing.assert_array_equal(got.inf_reps["A2"].to_numpy(), tx.inf_reps["A2"].to_numpy())
    meta_path = d / "aux_elsewhere" / "meta_info.json"
    meta = json.loads(meta_path.read_text())
    meta["num_bootstraps"] = 0
    meta_path.write_text(json.dumps(meta))
    assert tximport(d, tx_out=True, drop_inf_reps=False).inf_reps is None


def test_bootstrap_file_checks_and_int32_fallback(tmp_path, tx):
    (d,) = _copy_samples(tmp_path, ["A1"])
    meta_path = d / "aux_info" / "meta_info.json"
    meta = json.loads(meta_path.read_text())
    assert "num_targets" not in meta and meta["num_valid_targets"] == 10072
    bad = dict(meta, num_valid_targets=10071)
    meta_path.write_text(json.dumps(bad))
    with pytest.raises(FormatError, match="num_valid_targets is 10071"):
        tximport(d, tx_out=True, drop_inf_reps=False)
    meta_path.write_text(json.dumps(dict(meta, num_bootstraps=19)))
    with pytest.raises(FormatError, match="declares 19 draws"):
        tximport(d, tx_out=True, drop_inf_reps=False)
    meta_path.write_text(json.dumps(dict(meta, salmon_version="0.7.2")))
    with pytest.raises(FormatError, match="older than 0.8.0"):
        tximport(d, tx_out=True, drop_inf_reps=False)
    # tximport re-reads a file that is not T * R doubles as 4-byte integers
    meta_path.write_text(json.dumps(meta))
    ints = np.rint(tx.inf_reps["A1"].to_numpy().T).astype("<i4")
    (d / "aux_info" / "bootstrap" / "bootstraps.gz").write_bytes(gzip.compress(ints.tobytes()))
    got = tximport(d, tx_out=True, drop_inf_reps=False).inf_reps["A1"]
    np.testing.assert_array_equal(got.to_numpy(), ints.T.astype(float))


def test_to_anndata(gene_reps, gene):
    adata = gene_reps.to_anndata()
    assert adata.shape == (4, 2958) and list(adata.obs_names) == SAMPLES
    np.testing.assert_array_equal(adata.X, gene.counts.to_numpy().T)
    np.testing.assert_array_equal(adata.layers["length"], gene.length.to_numpy().T)
    np.testing.assert_array_equal(adata.layers["infRep20"][1], gene_reps.inf_reps["A2"]["infRep20"].to_numpy())
    assert adata.uns["tximport"] == {"counts_from_abundance": "no", "level": "gene"}


# --- errors ----------------------------------------------------------------------------------------


def test_argument_errors(t2g, tmp_path):
    with pytest.raises(FileNotFoundError, match="paths: .*no such file"):
        tximport([tmp_path / "nope"], tx_out=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="has no quant.sf"):
        tximport([empty], tx_out=True)
    with pytest.raises(ValueError, match="paths: no salmon"):
        tximport([], tx_out=True)
    with pytest.raises(TypeError, match="paths"):
        tximport(3, tx_out=True)
    with pytest.raises(TypeError, match="paths: item 1"):
        tximport([DIRS[0], 5], tx_out=True)
    with pytest.raises(ValueError, match="tx2gene: summarizing to the gene level"):
        tximport(DIRS)
    with pytest.raises(ValueError, match="counts_from_abundance: expected one of"):
        tximport(DIRS, tx2gene=t2g, counts_from_abundance="scaled")
    with pytest.raises(TypeError, match="counts_from_abundance"):
        tximport(DIRS, tx2gene=t2g, counts_from_abundance=None)
    with pytest.raises(ValueError, match="counts_from_abundance: 'dtuScaledTPM' .*tx_out=True"):
        tximport(DIRS, tx2gene=t2g, counts_from_abundance="dtuScaledTPM")
    with pytest.raises(ValueError, match="tx2gene: 'dtuScaledTPM' requires 'tx2gene' input"):
        tximport(DIRS, tx_out=True, counts_from_abundance="dtuScaledTPM")
    with pytest.raises(ValueError, match="tx2gene: 'dtuScaledTPM' needs every transcript"):
        tximport(DIRS, tx_out=True, tx2gene=t2g.iloc[:-5], counts_from_abundance="dtuScaledTPM")
    with pytest.raises(ValueError, match="var_reduce: .*drop_inf_reps=False"):
        tximport(DIRS, tx_out=True, var_reduce=True)
    with pytest.raises(TypeError, match="tx_out"):
        tximport(DIRS, tx_out="yes")
    with pytest.raises(ValueError, match="type: only salmon"):
        tximport(DIRS, type="kallisto", tx_out=True)
    with pytest.raises(ValueError, match="sample_names: 2 names for 4 paths"):
        tximport(DIRS, tx_out=True, sample_names=["a", "b"])
    with pytest.raises(ValueError, match="duplicate sample name 'a'"):
        tximport(DIRS[:2], tx_out=True, sample_names=["a", "a"])
    with pytest.raises(ValueError, match="duplicate sample name 'A1'.*sample_names="):
        tximport([DIRS[0], DIRS[0]], tx_out=True)


def test_tx2gene_errors(t2g, tmp_path):
    with pytest.raises(ValueError, match="tx2gene: none of the transcripts"):
        tximport(DIRS[:1], tx2gene=pd.DataFrame({"tx": ["x1", "x2"], "gene": ["g", "g"]}))
    with pytest.raises(ValueError, match="exactly 2 columns"):
        tximport(DIRS[:1], tx2gene=t2g.assign(extra=1))
    with pytest.raises(ValueError, match="row 3 has a missing gene id"):
        tximport(DIRS[:1], tx2gene=t2g.assign(GENEID=t2g.GENEID.where(t2g.index != 2)))
    with pytest.raises(TypeError, match="tx2gene: expected a DataFrame"):
        tximport(DIRS[:1], tx2gene=42)
    with pytest.raises(FileNotFoundError, match="tx2gene"):
        tximport(DIRS[:1], tx2gene=tmp_path / "missing.csv")


def test_mismatched_transcripts_across_samples(tmp_path):
    a, b = _copy_samples(tmp_path, SAMPLES[:2])
    lines = gzip.decompress((b / "quant.sf.gz").read_bytes()).decode().splitlines()
    (b / "quant.sf.gz").unlink()
    (b / "quant.sf").write_text("\n".join([lines[0], lines[2], lines[1]] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match="paths: .*row 1 is 'T000002_G00000_2' vs 'T000001_G00000_1'"):
        tximport([a, b], tx_out=True)
    (b / "quant.sf").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="10071 transcripts vs 10072"):
        tximport([a, b], tx_out=True)


# --- run_tximport ------------------------------------------------------------------------------------


def test_run_tximport_writes_r_tables(tmp_path, capsys):
    out = tmp_path / "txi"
    txi = run_tximport(DIRS, out, tx2gene=TX2GENE)
    assert sorted(p.name for p in out.iterdir()) == sorted(TXIMPORT_OUTPUTS)
    for what in ("counts", "abundance", "length"):
        back = pd.read_csv(out / f"{what}.csv", index_col=0)
        assert back.index.name == "gene"
        _assert_matches(back, _r(f"gene_{what}"), tol=0.0)   # written at full precision
    assert "tximport: 2958 genes x 4 samples" in capsys.readouterr().err
    assert txi.level == "gene"
    run_tximport(DIRS[:2], tmp_path / "tx", tx_out=True, samples=["x", "y"], quiet=True)
    assert capsys.readouterr().err == ""
    assert list(pd.read_csv(tmp_path / "tx" / "counts.csv", index_col=0).columns) == ["x", "y"]


def test_run_tximport_checks_everything_before_writing(tmp_path):
    out = tmp_path / "txi"
    for kwargs, err in (
        ({"counts_from_abundance": "bogus", "tx2gene": TX2GENE}, ValueError),
        ({}, ValueError),                                            # no tx2gene at gene level
        ({"tx2gene": tmp_path / "none.csv"}, FileNotFoundError),
        ({"tx2gene": TX2GENE, "quiet": "no"}, TypeError),
        ({"tx2gene": TX2GENE, "tx_out": 1}, TypeError),
    ):
        with pytest.raises(err):
            run_tximport(DIRS[:2], out, **kwargs)
        assert not out.exists()
    with pytest.raises(FileNotFoundError):
        run_tximport([DIRS[0], tmp_path / "nope"], out, tx2gene=TX2GENE)
    assert not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        run_tximport(DIRS[:2], blocker, tx2gene=TX2GENE)
    # an earlier output stays as it was when a later run fails
    run_tximport(DIRS[:2], out, tx_out=True, quiet=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError):
        run_tximport(DIRS[:2], out, tx_out=True, counts_from_abundance="dtuScaledTPM", quiet=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bootstraps_without_names_file_and_damaged_draws(tmp_path, tx):
    (d,) = _copy_samples(tmp_path, ["B1"])
    boot = d / "aux_info" / "bootstrap"
    (boot / "names.tsv.gz").unlink()   # tximport does not need it
    got = tximport(d, tx_out=True, drop_inf_reps=False).inf_reps["B1"]
    np.testing.assert_array_equal(got.to_numpy(), tx.inf_reps["B1"].to_numpy())
    draws = tx.inf_reps["B1"].to_numpy().T.copy()
    draws[3, 7] = np.nan
    (boot / "bootstraps.gz").write_bytes(gzip.compress(draws.astype("<f8").tobytes()))
    with pytest.raises(FormatError, match="draw 3 of transcript 8 is nan"):
        tximport(d, tx_out=True, drop_inf_reps=False)
    (boot / "bootstraps.gz").write_bytes(gzip.compress(draws[:, :-1].astype("<f8").tobytes()))
    with pytest.raises(FormatError, match="declares 20 draws of 10072 transcripts"):
        tximport(d, tx_out=True, drop_inf_reps=False)
    names = [f"T{i}" for i in range(10072)]
    (boot / "names.tsv.gz").write_bytes(gzip.compress(("\t".join(names) + "\n").encode()))
    (boot / "bootstraps.gz").write_bytes(gzip.compress(tx.inf_reps["B1"].to_numpy().T.astype("<f8").tobytes()))
    with pytest.raises(FormatError, match="transcript names differ from quant.sf's"):
        tximport(d, tx_out=True, drop_inf_reps=False)


def test_reads_the_salmon_folders_this_package_writes(tmp_path, tx):
    from diffbio_prob.io.salmon import read_quant_sf, write_salmon_dir

    q = read_quant_sf(REF / "salmon" / "A2" / "quant.sf.gz")
    draws = tx.inf_reps["A2"].to_numpy().T
    out = tmp_path / "A2"
    write_salmon_dir(out, q.names, q.lengths, q.effective_lengths, q.num_reads, tpm=q.tpm, draws=draws,
                     samp_type="gibbs", aux_dir="aux_x")
    got = tximport(out, tx_out=True, drop_inf_reps=False)
    for what in ("counts", "abundance", "length"):
        np.testing.assert_array_equal(getattr(got, what)["A2"], getattr(tx, what)["A2"])
    np.testing.assert_array_equal(got.inf_reps["A2"].to_numpy(), tx.inf_reps["A2"].to_numpy())
