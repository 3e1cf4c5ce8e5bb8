"""fishpond 2.4.1 swish (``diffbio_prob.workflows.swish``) against R.

References (``tests/reference/data/quant2de_ref/reference/swish``):

* ``swish_tx.csv.gz``, ``swish_gene.csv.gz``, ``tx_meanScaled.csv.gz``: ``make_reference.R`` of
  ``shared/quant2de_ref`` (``scaleInfReps(y, saveMeanScaled = TRUE)``, ``labelKeep(y)``, ``set.seed(1)``,
  ``swish(y, x = "condition")``) on the four salmon samples with 20 bootstraps, 2 vs 2 (24 permutations).
* ``swish_tx_makeInfReps.csv.gz``: ``makeInfReps`` (R's ``rnbinom``) then swish; compared in distribution.
* ``swish_tx_estPi0.csv.gz``: ``make_swish_estPi0.R``, the same with ``estPi0 = TRUE``.
* ``swish_synth6.csv.gz``, ``swish_synth8.csv.gz``: ``make_swish_synth.R`` on :func:`synth` below, with
  ``set.seed(3); swish(y, x = "condition", nperms = 50)``: the two other branches of ``getPerms``
  (``sample(720, 50)`` and ``replicate(50, sample(8))``).

With ``rng="R"`` the module replays R's generator, so ``stat``, ``pvalue`` and ``qvalue`` are R's exactly;
``locfdr`` (R's ``density`` + ``smooth.spline``, re-implemented) to 1e-10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.io.tximport import tximport
from diffbio_prob.workflows import swish as S

REF = Path(__file__).resolve().parents[1] / "reference" / "data" / "quant2de_ref"
SW = REF / "reference" / "swish"
SAMPLES = ["A1", "A2", "B1", "B2"]
COND = ["A", "A", "B", "B"]


def _rel(a, b) -> float:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def synth(n_s: int, n_f: int = 40, n_r: int = 6):
    """Small deterministic data: (counts, length, replicates) for ``n_s`` samples, half per group."""
    i = np.arange(n_f)[:, None, None]
    j = np.arange(n_s)[None, :, None]
    k = np.arange(n_r)[None, None, :]
    grp = j >= n_s // 2
    base = 5 + ((i * 37) % 23) * 3.0 + (i % 4 == 0) * grp * 40.0
    reps = base + ((i * 7 + j * 13 + k * 3) % 17) - (i % 7 == 3) * (j % 2) * 6
    reps = np.maximum(reps, 0.0)
    reps[5] = 0
    reps[6, :2] = 0
    counts = reps.mean(axis=2)
    length = 500 + ((i[:, :, 0] * 11 + j[:, :, 0] * 5) % 29) * 20.0
    return counts, length, reps


@pytest.fixture(scope="module")
def dirs():
    return {s: str(REF / "salmon" / s) for s in SAMPLES}


@pytest.fixture(scope="module")
def tx(dirs):
    txi = tximport(dirs, type="salmon", tx_out=True, drop_inf_reps=False)
    y = S.label_keep(S.scale_inf_reps(S.swish_data_from_tximport(txi), save_mean_scaled=True))
    return y, S.swish(y, COND)


@pytest.fixture(scope="module")
def gene(dirs):
    txi = tximport(dirs, type="salmon", tx2gene=REF / "truth" / "tx2gene.csv.gz", drop_inf_reps=False)
    y = S.label_keep(S.scale_inf_reps(S.swish_data_from_tximport(txi)))
    return y, S.swish(y, COND)


def _ref(name):
    return pd.read_csv(SW / name, index_col=0)


def test_r_random_generator():
    # R: set.seed(1); runif(3) / set.seed(5); runif(2) / set.seed(42); sample(7) / set.seed(1); sample(120, 100)
    np.testing.assert_array_equal(S.RRandom(1).runif(3),
                                  [0.26550866314209998, 0.37212389963679016, 0.57285336335189641])
    np.testing.assert_array_equal(S.RRandom(5).runif(2), [0.20021445257589221, 0.68521859566681087])
    np.testing.assert_array_equal(S.RRandom(42).sample(7), [1, 5, 7, 6, 2, 3, 4])
    x = S.RRandom(1).sample(120, 100)
    np.testing.assert_array_equal(x[:10], [68, 39, 1, 34, 87, 43, 14, 82, 59, 51])
    assert x[99] == 112 and len(set(x)) == 100


@pytest.mark.parametrize("level", ["tx", "gene"])
def test_swish_matches_r(level, tx, gene):
    _, res = tx if level == "tx" else gene
    ref = _ref(f"swish_{level}.csv.gz")
    assert list(res.index) == list(ref.index)
    np.testing.assert_array_equal(res["keep"].to_numpy(), ref["keep"].to_numpy())
    k = ref["keep"].to_numpy()
    assert k.sum() == (2397 if level == "tx" else 1802)
    assert np.isnan(res.loc[~k, ["stat", "log2FC", "pvalue", "qvalue"]].to_numpy()).all()
    assert _rel(res["log10mean"][k], ref["log10mean"][k]) < 1e-12
    assert _rel(res["log2FC"][k], ref["log2FC"][k]) < 1e-10
    # the jitter is R's set.seed(1) runif: ranks, statistics, null statistics and p-values are R's exactly
    np.testing.assert_array_equal(res["stat"][k], ref["stat"][k])
    np.testing.assert_array_equal(res["pvalue"][k], ref["pvalue"][k])
    assert _rel(res["qvalue"][k], ref["qvalue"][k]) < 1e-14
    assert len(np.unique(res["pvalue"][k])) == 41           # the 24-permutation null (README)
    assert _rel(res["locfdr"][k], ref["locfdr"][k]) < 1e-10
    np.testing.assert_array_equal(res["qvalue"] < 0.1, ref["qvalue"] < 0.1)
    assert res.attrs["nperms"] == 24 and res.attrs["levels"] == ["A", "B"]


def test_est_pi0_matches_r(tx):
    """swish(estPi0 = TRUE): qvalue::pi0est (smoother, smooth.spline df = 3) then qvalue / lfdr with it."""
    y, _ = tx
    res = S.swish(y, COND, est_pi0=True)
    ref = pd.read_csv(SW / "swish_tx_estPi0.csv.gz", index_col=0)
    assert abs(res.attrs["pi0"] - 0.6696733) < 1e-7
    got = res.loc[ref.index]
    np.testing.assert_array_equal(got["pvalue"], ref["pvalue"])
    assert _rel(got["qvalue"], ref["qvalue"]) < 1e-10
    assert _rel(got["locfdr"], ref["locfdr"]) < 1e-10


def test_mean_scaled_matches_r(tx):
    y, _ = tx
    ref = _ref("tx_meanScaled.csv.gz")
    got = y.mean_scaled
    assert list(got.index) == list(ref.index) and list(got.columns) == SAMPLES
    a, b = got.to_numpy(), ref[SAMPLES].to_numpy()
    assert np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)) < 1e-10


@pytest.mark.parametrize("n", [6, 8])
def test_permutation_branches_match_r(n):
    counts, length, reps = synth(n)
    y = S.label_keep(S.scale_inf_reps(counts, length, reps))
    res = S.swish(y, ["ctl"] * (n // 2) + ["trt"] * (n // 2), nperms=50, seed=3)
    ref = pd.read_csv(SW / f"swish_synth{n}.csv.gz")
    k = ref["keep"].to_numpy()
    np.testing.assert_array_equal(res["keep"].to_numpy(), k)
    assert _rel(res["log10mean"], ref["log10mean"]) < 1e-12
    assert _rel(res["log2FC"][k], ref["log2FC"][k]) < 1e-10
    np.testing.assert_array_equal(res["stat"][k], ref["stat"][k])
    np.testing.assert_array_equal(res["pvalue"][k], ref["pvalue"][k])
    assert _rel(res["qvalue"][k], ref["qvalue"][k]) < 1e-14
    assert _rel(res["locfdr"][k], ref["locfdr"][k]) < 1e-10
    assert res.attrs["nperms"] == 50


def test_numpy_generator_gives_r_like_calls(tx):
    """Another generator changes the ranks of values within the 0.1 jitter of each other, not the calls.

    R itself with set.seed(2), (3), (4) differs from its set.seed(1) run by the same amounts: max |stat
    difference| 0.35-0.55, p-value ECDFs 0.034-0.039 apart, the same 227 calls."""
    y, _ = tx
    ref = _ref("swish_tx.csv.gz")
    k = ref["keep"].to_numpy()
    res = S.swish(y, COND, rng="numpy", seed=11)
    assert np.corrcoef(res["stat"][k], ref["stat"][k])[0, 1] > 0.995
    assert np.max(np.abs(res["stat"][k] - ref["stat"][k])) <= 0.75
    ours, theirs = set(res.index[res["qvalue"] < 0.1]), set(ref.index[ref["qvalue"] < 0.1])
    assert abs(len(ours) - len(theirs)) <= 5
    assert len(ours & theirs) >= 0.95 * len(theirs)
    # p-value distribution (41 discrete values): the two empirical CDFs differ by < 0.06 everywhere
    a, b = np.sort(res["pvalue"][k]), np.sort(ref["pvalue"][k])
    grid = np.union1d(a, b)
    ks = np.max(np.abs(np.searchsorted(a, grid, side="right") - np.searchsorted(b, grid, side="right"))) / k.sum()
    assert ks < 0.06
    np.testing.assert_array_equal(res["log2FC"], S.swish(y, COND)["log2FC"])   # no randomness in log2FC


def test_make_inf_reps_like_r(dirs):
    """makeInfReps from the bootstrap mean / variance: numpy's NB draws are not R's rnbinom, so compare the
    swish results in distribution (R: 212 calls; numpy seeds 0-3 give 218-226, 190-194 shared)."""
    txi = tximport(dirs, type="salmon", tx_out=True, drop_inf_reps=False)
    mean = pd.DataFrame({s: txi.inf_reps[s].to_numpy().mean(axis=1) for s in SAMPLES}, index=txi.counts.index)
    var = pd.DataFrame({s: txi.inf_reps[s].to_numpy().var(axis=1, ddof=1) for s in SAMPLES}, index=txi.counts.index)
    reps = S.make_inf_reps(mean, var, 20, seed=0)
    assert reps.shape == (len(mean), 4, 20) and np.all(reps == np.round(reps))
    res = S.swish(S.label_keep(S.scale_inf_reps(txi.counts, txi.length, reps)), COND)
    ref = _ref("swish_tx_makeInfReps.csv.gz")
    k = ref["keep"].to_numpy()
    np.testing.assert_array_equal(res["keep"].to_numpy(), k)
    assert np.corrcoef(res["stat"][k], ref["stat"][k])[0, 1] > 0.95
    assert np.corrcoef(res["log2FC"][k], ref["log2FC"][k])[0, 1] > 0.97
    ours, theirs = set(res.index[res["qvalue"] < 0.1]), set(ref.index[ref["qvalue"] < 0.1])
    assert len(theirs) == 212 and abs(len(ours) - len(theirs)) <= 25
    assert len(ours & theirs) >= 0.85 * len(theirs)
    with pytest.raises(ValueError, match=r"^num_reps:"):
        S.make_inf_reps(mean, var, 1)
    with pytest.raises(ValueError, match=r"^variance:"):
        S.make_inf_reps(mean, var.iloc[:10], 5)


def test_emp_pvals_and_qvalue_small():
    stat = np.array([3.0, 1.0, 2.0, 2.0])
    nulls = np.array([[0.0, 2.0], [1.0, 3.0], [2.5, 0.5], [1.0, 1.0]])
    # R: qvalue::empPvals(stat, nulls) = c(0.125, 0.375, 0.25, 0.25) (nulls strictly above each statistic)
    np.testing.assert_allclose(S.emp_pvals(stat, nulls), [0.125, 0.375, 0.25, 0.25])
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # R: qvalue::qvalue(p, pi0 = 1)$qvalues
    np.testing.assert_allclose(S.qvalue(p), [0.04, 0.16 / 3, 0.16 / 3, 0.5])   # R: 0.04 0.05333 0.05333 0.5


def test_run_swish_writes_table(dirs, tmp_path, gene):
    meta = pd.read_csv(REF / "truth" / "samples.csv", index_col=0)
    out = tmp_path / "swish_gene.tsv"
    table = S.run_swish(dirs, meta, out, level="gene", tx2gene=REF / "truth" / "tx2gene.csv.gz", quiet=True)
    assert tuple(table.columns) == S.RUN_SWISH_COLUMNS and table.index.name == "gene"
    back = pd.read_csv(out, sep="\t", index_col=0)
    assert list(back.columns) == list(S.RUN_SWISH_COLUMNS)
    ref = _ref("swish_gene.csv.gz")
    k = ref["keep"].to_numpy()
    np.testing.assert_array_equal(back["stat"][k], ref["stat"][k])
    np.testing.assert_array_equal(back["padj"][k], ref["qvalue"][k])
    assert _rel(back["log2FoldChange"][k], ref["log2FC"][k]) < 1e-10
    assert back.loc[~k, "padj"].isna().all()
    assert not list(tmp_path.glob(".*tmp*")) and len(list(tmp_path.iterdir())) == 1   # atomic, no leftovers


def test_run_swish_transcript_metadata_file(dirs, tmp_path):
    out = tmp_path / "tx.csv"
    table = S.run_swish(dirs, REF / "truth" / "samples.csv", out, quiet=True)
    ref = _ref("swish_tx.csv.gz")
    k = ref["keep"].to_numpy()
    np.testing.assert_array_equal(table["stat"][k], ref["stat"][k])
    assert table.index.name == "transcript" and out.exists()
    # another sample order draws other jitter (R would too): the calls stay
    order = ["B1", "A1", "A2", "B2"]
    other = S.run_swish([dirs[s] for s in order], REF / "truth" / "samples.csv", out, quiet=True,
                        sample_names=order)
    assert other.attrs["pi0"] == 1.0
    assert other.attrs["levels"] == ["A", "B"]
    ours, theirs = set(other.index[other["padj"] < 0.1]), set(ref.index[ref["qvalue"] < 0.1])
    assert abs(len(ours) - len(theirs)) <= 5 and len(ours & theirs) >= 0.95 * len(theirs)
    assert np.max(np.abs(other["stat"][k] - ref["stat"][k])) <= 0.75


@pytest.mark.parametrize("kwargs, name", [
    ({"level": "exon"}, "level"),
    ({"level": "gene"}, "tx2gene"),
    ({"tx2gene": "x.csv"}, "tx2gene"),
    ({"condition": "batch"}, "condition"),
    ({"condition": ""}, "condition"),
    ({"nperms": 0}, "nperms"),
    ({"nperms": 2.5}, "nperms"),
    ({"rng": "mt"}, "rng"),
    ({"seed": "1"}, "seed"),
    ({"pc": -1}, "pc"),
    ({"min_count": float("nan")}, "min_count"),
    ({"min_n": -1}, "min_n"),
    ({"levels": ["A", "C"]}, "levels"),
])
def test_run_swish_bad_arguments(dirs, tmp_path, kwargs, name):
    meta = pd.read_csv(REF / "truth" / "samples.csv", index_col=0)
    out = tmp_path / "res.csv"
    with pytest.raises(ValueError, match=rf"^{name}:"):
        S.run_swish(dirs, meta, out, quiet=True, **kwargs)
    assert not out.exists()


def test_run_swish_bad_inputs(dirs, tmp_path):
    meta = pd.read_csv(REF / "truth" / "samples.csv", index_col=0)
    out = tmp_path / "res.csv"
    with pytest.raises(ValueError, match=r"^metadata:"):      # a sample without salmon folder
        S.run_swish({s: dirs[s] for s in SAMPLES[:3]}, meta, out, quiet=True)
    with pytest.raises(ValueError, match=r"^metadata:"):      # a salmon sample not in the metadata
        S.run_swish(dirs, meta.iloc[:3], out, quiet=True)
    three = meta.assign(condition=["A", "B", "C", "C"])
    with pytest.raises(ValueError, match=r"^condition:.*2 levels"):
        S.run_swish(dirs, three, out, quiet=True)
    with pytest.raises(ValueError, match=r"^metadata:"):
        S.run_swish(dirs, None, out, quiet=True)
    with pytest.raises(ValueError, match=r"^out:"):
        S.run_swish(dirs, meta, tmp_path, quiet=True)           # a folder where the file should go
    with pytest.raises(ValueError, match=r"^salmon_dirs:"):
        S.run_swish([], meta, out, quiet=True)
    with pytest.raises(TypeError, match=r"^est_pi0:"):
        S.run_swish(dirs, meta, out, quiet=True, est_pi0="yes")
    assert not out.exists()


def test_swish_bad_inputs():
    counts, length, reps = synth(6)
    y = S.scale_inf_reps(counts, length, reps)
    cond = ["a"] * 3 + ["b"] * 3
    with pytest.raises(ValueError, match=r"^condition:"):
        S.swish(y, cond[:5])
    with pytest.raises(ValueError, match=r"^condition:"):
        S.swish(y, ["a"] * 5 + ["b"])                         # second level has one sample
    with pytest.raises(TypeError, match=r"^condition:"):
        S.swish(y, "condition")
    with pytest.raises(TypeError, match=r"^y:"):
        S.swish(reps, cond)
    with pytest.raises(ValueError, match=r"^nperms:"):
        S.swish(y, cond, nperms=0)
    with pytest.raises(TypeError, match=r"^est_pi0:"):
        S.swish(y, cond, est_pi0="yes")
    with pytest.raises(ValueError, match=r"^y:"):
        S.scale_inf_reps(y)                                   # already scaled
    with pytest.raises(ValueError, match=r"^y:.*keep"):
        S.swish(S.label_keep(y, min_count=1e9), cond)
    with pytest.raises(ValueError, match=r"^inf_reps:"):
        S.swish_data(counts, length, None)
    with pytest.raises(ValueError, match=r"^inf_reps:"):
        S.swish_data(counts, length, reps[:, :4])
    with pytest.raises(ValueError, match=r"^length:"):
        S.swish_data(counts, np.zeros_like(length), reps)
    with pytest.raises(ValueError, match=r"^counts:"):
        S.swish_data(-counts, length, reps)
    with pytest.raises(ValueError, match=r"^sf_fun:"):
        S.scale_inf_reps(counts, length, reps, sf_fun=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"^mean_depth:"):
        S.scale_inf_reps(counts, length, reps, mean_depth=0)


def test_label_keep_forms():
    counts, _, _ = synth(6)
    keep = S.label_keep(counts)
    assert keep.dtype == bool and keep.name == "keep"
    assert not keep.iloc[5] and keep.iloc[6]                  # all-zero; zero in 2 of 6 samples
    by_group = S.label_keep(counts, condition=["a"] * 3 + ["b"] * 3)   # minN = smallest group = 3
    np.testing.assert_array_equal(by_group, S.label_keep(counts, min_n=3))
