"""`diffbio-prob hmm --emission ...` on genome tracks: copy-number segments of a bedGraph read-depth track
(against the simulation's known segments), and chromatin states of ChromHMM binarized files (against
ChromHMM 1.27's own LearnModel output on the same files, tests/reference/data/chromhmm_ref, and the
simulation's emission matrix)."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from diffbio_prob.cli import main
from diffbio_prob.io.chromhmm import read_table

REF = Path(__file__).resolve().parents[1] / "reference" / "data" / "chromhmm_ref"
RATES = np.array([4.0, 20.0, 45.0])  # depth of copy number 0.4x, 2x, 4.5x of a 10x baseline, say
# (chrom, [(state, bins), ...]): the true segments
TRUTH = [("chr1", [(1, 90), (0, 35), (1, 60), (2, 25), (1, 40)]), ("chr2", [(1, 50), (2, 45), (1, 55)])]
BIN = 1000


def _write_track(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    states = {}
    with open(path, "w") as fh:
        fh.write("track type=bedGraph name=depth\n")
        for chrom, segs in TRUTH:
            z = np.concatenate([np.full(n, k) for k, n in segs])
            for i, y in enumerate(rng.poisson(RATES[z])):
                fh.write(f"{chrom}\t{i * BIN}\t{(i + 1) * BIN}\t{y}\n")
            states[chrom] = z
    return states


def _bed_rows(path: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in path.read_text().splitlines() if not ln.startswith(("#", "track"))]


@pytest.mark.parametrize("emission", ["poisson", "negative-binomial", "gaussian"])
def test_bedgraph_segments_recover_breakpoints_and_states(tmp_path, emission, capsys):
    states = _write_track(tmp_path / "depth.bedgraph")
    out = tmp_path / "cn"
    assert main(["hmm", "--emission", emission, "--input", str(tmp_path / "depth.bedgraph"), "--states", "3",
                 "--out", str(out), "--quiet", "--x64"]) == 0
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in out.iterdir()) == ["parameters.json", "posteriors.tsv", "segments.bed"]
    lines = (out / "segments.bed").read_text().splitlines()
    assert lines[0].startswith("track ") and lines[1] == (
        "#chrom\tstart\tend\tname\tscore\tstrand\tbins\tmean_posterior\tmean_value")
    rows = _bed_rows(out / "segments.bed")
    for chrom, segs in TRUTH:
        got = [r for r in rows if r[0] == chrom]
        assert [r[3] for r in got] == [f"state{k}" for k, _ in segs]  # the states, in order, and no extra segment
        true_ends = np.cumsum([n for _, n in segs]) * BIN
        assert np.abs(np.array([int(r[2]) for r in got]) - true_ends).max() <= 2 * BIN  # within two bins
        assert int(got[0][1]) == 0 and all(int(a[2]) == int(b[1]) for a, b in zip(got, got[1:]))
        for r in got:  # the columns say what they are
            n, p = int(r[6]), float(r[7])
            assert n == (int(r[2]) - int(r[1])) // BIN and 0.5 < p <= 1 and int(r[4]) == round(1000 * p)
            assert r[5] == "."
    import pandas as pd

    bins = pd.read_csv(out / "posteriors.tsv", sep="\t")
    assert list(bins.columns) == ["chrom", "start", "end", "value", "viterbi_state", "p_state0", "p_state1", "p_state2"]
    p = bins[["p_state0", "p_state1", "p_state2"]].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    truth = np.concatenate([states[c] for c, _ in TRUTH])
    assert (bins["viterbi_state"].to_numpy() == truth).mean() > 0.97
    assert (p.argmax(1) == truth).mean() > 0.97
    meta = json.loads((out / "parameters.json").read_text())
    level = meta["emission_params"]["rates" if emission == "poisson" else "means"]
    np.testing.assert_allclose(np.ravel(level), RATES, rtol=0.15)  # ascending: state0 the lowest depth
    assert meta["chromosomes"] == ["chr1", "chr2"] and np.isfinite(meta["log_likelihood"])


def _chromhmm_fit(tmp_path, *extra) -> Path:
    out = tmp_path / "chromhmm"
    assert main(["hmm", "--emission", "bernoulli", "--input", str(REF / "binary"), "--states", "3", "--out", str(out),
                 "--quiet", *extra]) == 0
    return out


def _match(ours: np.ndarray, theirs: np.ndarray) -> tuple[int, ...]:
    """The permutation of our states that best matches theirs: ``ours[perm[k]]`` ~ ``theirs[k]``."""
    return min(itertools.permutations(range(len(ours))), key=lambda p: np.abs(ours[list(p)] - theirs).max())


def test_chromhmm_files_match_chromhmm_and_the_truth(tmp_path):
    out = _chromhmm_fit(tmp_path, "--x64")
    assert sorted(p.name for p in out.iterdir()) == [
        "emissions_3.txt", "parameters.json", "sim_3_segments.bed", "transitions_3.txt"]
    # ChromHMM's layout: the same header lines, row labels and columns as ChromHMM's own files
    for name in ("emissions_3.txt", "transitions_3.txt"):
        ours, theirs = (p.read_text().splitlines() for p in (out / name, REF / "model" / name))
        assert ours[0] == theirs[0] and [ln.split("\t")[0] for ln in ours] == [ln.split("\t")[0] for ln in theirs]
    _, marks, _, emis = read_table(out / "emissions_3.txt")
    _, _, _, ref_emis = read_table(REF / "model" / "emissions_3.txt")
    _, _, _, trans = read_table(out / "transitions_3.txt")
    _, _, _, ref_trans = read_table(REF / "model" / "transitions_3.txt")
    perm = list(_match(emis, ref_emis))
    # the same maximum-likelihood fit as ChromHMM: emissions, transitions, log-likelihood
    # (measured: 9e-8, 2e-7 and 5e-6; both stop on a log-likelihood change, ChromHMM's at 1e-3)
    np.testing.assert_allclose(emis[perm], ref_emis, atol=1e-5)
    np.testing.assert_allclose(trans[np.ix_(perm, perm)], ref_trans, atol=1e-5)
    ll = json.loads((out / "parameters.json").read_text())["log_likelihood"]
    assert abs(ll - -5413.328385031616) < 1e-3  # ChromHMM's final estimated log-likelihood (model_3.txt)
    # our order is ChromHMM's Emission order or its reverse (a tie ChromHMM breaks by its start's labels)
    assert perm in ([0, 1, 2], [2, 1, 0])
    # the segmentation: ChromHMM's max-posterior states, bin for bin, after the same relabelling
    def per_bin(path, relabel=None):
        labels = {}
        for chrom, start, end, label in (ln.split("\t") for ln in Path(path).read_text().splitlines()):
            k = int(label[1:]) - 1
            labels.setdefault(chrom, []).extend([k if relabel is None else relabel[k]] * ((int(end) - int(start)) // 200))
        return labels

    back = {ours: theirs for theirs, ours in enumerate(perm)}
    ours, theirs = per_bin(out / "sim_3_segments.bed", back), per_bin(REF / "model" / "sim_3_segments.bed")
    assert {c: len(v) for c, v in ours.items()} == {"chr1": 2500, "chr2": 2000}
    agree = np.mean([a == b for c in ("chr1", "chr2") for a, b in zip(ours[c], theirs[c])])
    assert agree > 0.999  # measured: identical
    # and against the simulation: the true emission matrix and states (simulate.py)
    true_b = np.array([[0.90, 0.80, 0.05, 0.02], [0.03, 0.05, 0.85, 0.04], [0.02, 0.02, 0.03, 0.70]])
    tperm = list(_match(emis, true_b))
    assert np.abs(emis[tperm] - true_b).max() < 0.05
    truth = {c: np.loadtxt(gzip.open(REF / f"sim_{c}_states.txt.gz"), dtype=int) for c in ("chr1", "chr2")}
    to_true = {ours_k: true_k for true_k, ours_k in enumerate(tperm)}
    raw = per_bin(out / "sim_3_segments.bed")
    acc = np.mean(np.concatenate([np.array([to_true[k] for k in raw[c]]) == truth[c] for c in truth]))
    assert acc > 0.95


@pytest.mark.float32
def test_chromhmm_float32_and_bin_size(tmp_path):
    """The default float32 run gives the same tables to 1e-3; --bin-size scales the coordinates."""
    out = _chromhmm_fit(tmp_path, "--bin-size", "100")
    _, _, _, emis = read_table(out / "emissions_3.txt")
    _, _, _, ref_emis = read_table(REF / "model" / "emissions_3.txt")
    np.testing.assert_allclose(emis[list(_match(emis, ref_emis))], ref_emis, atol=1e-3)
    last = {}
    for chrom, start, end, label in (ln.split("\t") for ln in (out / "sim_3_segments.bed").read_text().splitlines()):
        assert int(start) % 100 == 0 and label in ("E1", "E2", "E3")
        last[chrom] = int(end)
    assert last == {"chr1": 2500 * 100, "chr2": 2000 * 100}
    assert json.loads((out / "parameters.json").read_text())["bin_size"] == 100


@pytest.mark.float32
def test_bedgraph_float32(tmp_path):
    """The CLI's default float32: the same segments as the simulation's."""
    _write_track(tmp_path / "depth.bedgraph", seed=1)
    out = tmp_path / "cn"
    assert main(["hmm", "--emission", "poisson", "--input", str(tmp_path / "depth.bedgraph"), "--states", "3",
                 "--out", str(out), "--quiet", "--restarts", "1"]) == 0
    rows = _bed_rows(out / "segments.bed")
    assert [r[3] for r in rows] == [f"state{k}" for _, segs in TRUTH for k, _ in segs]


def test_api_argument_errors(tmp_path):
    from diffbio_prob.workflows.hmm import check_hmm_input, fit_emission_hmm, run_hmm

    y = [np.array([1, 2, 3, 40, 50, 60])]
    with pytest.raises(ValueError, match="emission: expected one of"):
        fit_emission_hmm(y, 2, "categorical")
    with pytest.raises(ValueError, match="restarts: expected an integer >= 1, got 0"):
        fit_emission_hmm(y, 2, "poisson", restarts=0)
    with pytest.raises(ValueError, match="observations: expected a non-empty list"):
        fit_emission_hmm([], 2, "poisson")
    with pytest.raises(ValueError, match=r"observations\[0\]: negative value -3"):
        fit_emission_hmm([np.array([1, -3])], 2, "poisson")
    with pytest.raises(ValueError, match="every step is missing"):
        fit_emission_hmm([np.array([-1, -1])], 2, "poisson")
    _write_track(tmp_path / "d.bedgraph")
    with pytest.raises(ValueError, match="bin_size: only used with emission 'bernoulli'"):
        run_hmm(tmp_path / "d.bedgraph", 2, tmp_path / "o", emission="poisson", bin_size=100)
    with pytest.raises(ValueError, match="fit: the gaussian emission is fitted by Baum-Welch only"):
        run_hmm(tmp_path / "d.bedgraph", 2, tmp_path / "o", emission="gaussian", fit="nuts")
    with pytest.raises(ValueError, match="looks like a bedGraph track"):
        check_hmm_input([tmp_path / "d.bedgraph"], "bernoulli")
    check_hmm_input([REF / "binary"], "bernoulli")  # a folder of binarized files is what bernoulli reads
    check_hmm_input([tmp_path / "d.bedgraph"], "negative-binomial")
    assert not (tmp_path / "o").exists()
