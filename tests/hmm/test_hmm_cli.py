"""`diffbio-prob hmm`, the HMM workflow and the sequence reader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.cli import build_parser, main
from diffbio_prob.io.sequences import read_sequences

# hmmlearn 0.3.3 sets ndarray.shape, deprecated in NumPy 2.5
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:hmmlearn")

CASINO_A = np.array([[0.95, 0.05], [0.10, 0.90]])
CASINO_B = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])


def _casino_rolls(n_seq=3, n=200, seed=0):
    from hmmlearn.hmm import CategoricalHMM

    g = CategoricalHMM(2, n_features=6, init_params="")
    g.startprob_, g.transmat_, g.emissionprob_ = np.array([0.5, 0.5]), CASINO_A, CASINO_B
    return [g.sample(n, random_state=seed + i)[0][:, 0] for i in range(n_seq)]


# ------------------------------------------------------------------------------------------------
# reader
# ------------------------------------------------------------------------------------------------
def test_read_fasta_multiline_case_and_missing(tmp_path):
    p = tmp_path / "x.fa"
    p.write_text(">chr1 some description\nACgt\nNNAC\n\n>chr2\nTTTT\n")
    s = read_sequences(p, "ACGT", missing="N")
    assert s.names == ["chr1", "chr2"] and s.alphabet == list("ACGT")
    assert s.sequences[0].tolist() == [0, 1, 2, 3, -1, -1, 0, 1] and s.sequences[1].tolist() == [3] * 4
    y, n = s.padded()
    assert y.shape == (2, 8) and n.tolist() == [8, 4] and (y[1, 4:] == -1).all()


def test_read_plain_text_chars_and_ints(tmp_path):
    p = tmp_path / "rolls.txt"
    p.write_text("# dice\n123456\n\n6616\n")
    s = read_sequences(p)
    assert s.alphabet == list("123456") and s.sequences[1].tolist() == [5, 5, 0, 5]
    q = tmp_path / "ints.txt"
    q.write_text("0 3 2 -1\n1\n2 2\n")
    s = read_sequences(q, num_symbols=5)
    assert s.alphabet == ["0", "1", "2", "3", "4"] and s.sequences[0].tolist() == [0, 3, 2, -1]
    assert s.sequences[1].tolist() == [1]


@pytest.mark.parametrize(
    "text,kwargs,match",
    [
        (">a\nACGT\nAXGT\n", {"alphabet": "ACGT"}, r"x\.fa:3: symbol 'X' at sequence 'a' position 6 is not in the alphabet ACGT"),
        (">a\nACGN\n", {"alphabet": "ACGT"}, r"use missing='N'"),
        (">a\n>b\nAC\n", {}, r"x\.fa:1: sequence 'a' is empty"),
        ("AC\n>b\nAC\n", {}, r"x\.fa:2: FASTA header in a plain-text file"),
        ("ACGT\n0 1 2\n", {}, r"x\.fa:1: mixes character and whitespace-separated integer"),
        ("0 1 x\n", {}, r"x\.fa:1: 'x' is not an integer"),
        ("0 1 -2\n", {}, r"x\.fa:1: symbol -2 < -1"),
        ("0 1 5\n", {"num_symbols": 3}, r"x\.fa:1: symbol 5 >= num_symbols"),
        ("\n# only a comment\n", {}, r"x\.fa: no sequences found"),
        (">a\nAC\n", {"alphabet": "AAC"}, r"alphabet: repeated symbols"),
        ("0 1\n", {"alphabet": "AC"}, r"alphabet: applies to character sequences"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path, text, kwargs, match):
    p = tmp_path / "x.fa"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_sequences(p, **kwargs)


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_sequences(tmp_path / "nope.fa")


# ------------------------------------------------------------------------------------------------
# workflow + CLI
# ------------------------------------------------------------------------------------------------
def test_cli_hmm_em_writes_consistent_tables(tmp_path, capsys):
    rolls = _casino_rolls()
    inp = tmp_path / "rolls.txt"
    inp.write_text("".join("".join(str(v + 1) for v in r) + "\n" for r in rolls))
    out = tmp_path / "out"
    assert main(["hmm", "--input", str(inp), "--states", "2", "--out", str(out), "--quiet", "--iters", "60",
                 "--restarts", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["parameters.json", "posteriors.tsv", "viterbi.tsv"]
    post = pd.read_csv(out / "posteriors.tsv", sep="\t")
    paths = pd.read_csv(out / "viterbi.tsv", sep="\t")
    params = json.loads((out / "parameters.json").read_text())
    assert len(post) == sum(len(r) for r in rolls)
    np.testing.assert_allclose(post[["p_state0", "p_state1"]].sum(axis=1), 1.0, atol=1e-5)
    assert post["symbol"].astype(str).tolist()[:5] == [str(v + 1) for v in rolls[0][:5]]
    for key in ("initial_probs", "transition_probs", "emission_probs"):
        np.testing.assert_allclose(np.sum(params[key], axis=-1), 1.0, atol=1e-9)
    # canonical order: state 1 is the one more likely to roll a six (the loaded die)
    e = np.array(params["emission_probs"])
    assert e[1, 5] > e[0, 5]
    # the tables agree with hmmlearn run on the fitted parameters
    from hmmlearn.hmm import CategoricalHMM

    h = CategoricalHMM(2, n_features=6, init_params="")
    h.startprob_, h.transmat_, h.emissionprob_ = (np.array(params[k]) for k in ("initial_probs", "transition_probs", "emission_probs"))
    lpi, la, lb = (np.log(np.array(params[k])) for k in ("initial_probs", "transition_probs", "emission_probs"))
    for i, r in enumerate(rolls):
        lp, ref_post = h.score_samples(r[:, None])
        vlp, _ = h.decode(r[:, None])
        assert paths["log_likelihood"][i] == pytest.approx(lp, rel=1e-5)
        assert paths["viterbi_log_prob"][i] == pytest.approx(vlp, rel=1e-5)
        # our path attains hmmlearn's optimum (compared by value: fitted models can have exact ties)
        z = np.array(paths["viterbi_path"][i].split(","), dtype=int)
        joint = lpi[z[0]] + la[z[:-1], z[1:]].sum() + lb[z, r].sum()
        assert joint == pytest.approx(vlp, rel=1e-9)
        rows = post[post["sequence"] == f"seq{i + 1}"]
        np.testing.assert_allclose(rows[["p_state0", "p_state1"]].to_numpy(), ref_post, atol=1e-5)
        np.testing.assert_array_equal(rows["viterbi_state"].to_numpy(), z)
    # the EM fit beats the generating parameters' likelihood (it is the maximiser)
    h.startprob_, h.transmat_, h.emissionprob_ = np.array([0.5, 0.5]), CASINO_A, CASINO_B
    truth = sum(h.score(r[:, None]) for r in rolls)
    assert params["log_likelihood"] >= truth - 1e-6


def test_cli_fasta_csv_with_missing(tmp_path):
    inp = tmp_path / "g.fa"
    inp.write_text(">s1\nACGTNACGGGCGCGATATATAT\n>s2\nGGGCCCNNATAT\n")
    out = tmp_path / "o"
    assert main(["hmm", "--input", str(inp), "--states", "2", "--alphabet", "ACGT", "--missing", "N",
                 "--format", "csv", "--out", str(out), "--quiet", "--iters", "20", "--restarts", "1"]) == 0
    post = pd.read_csv(out / "posteriors.csv")
    assert len(post) == 34 and set(post["sequence"]) == {"s1", "s2"}
    assert (post["symbol"] == "?").sum() == 3  # the three Ns, marginalised
    assert np.isfinite(post[["p_state0", "p_state1"]].to_numpy()).all()


@pytest.mark.parametrize(
    "content,args,match",
    [
        (">a\nACGX\n", ["--alphabet", "ACGT"], "in.fa:2: symbol 'X'"),
        (">a\nACGT\n", ["--states", "0"], "--states: expected a positive integer"),
        (None, [], "no such file"),
    ],
)
def test_cli_errors_one_line_exit_2_no_output(tmp_path, capsys, content, args, match):
    inp = tmp_path / "in.fa"
    if content is not None:
        inp.write_text(content)
    out = tmp_path / "out"
    argv = ["hmm", "--input", str(inp), "--out", str(out), "--quiet"]
    if "--states" not in args:
        argv += ["--states", "2"]
    assert main(argv + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffbio-prob hmm: error: ") and match in err[0]
    assert not out.exists()


def test_cli_help_has_examples():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["hmm"].format_help()
    assert "examples:" in text and "diffbio-prob hmm --input" in text and "--fit {em,gradient,svi,nuts}" in text


def test_workflow_gradient_improves_likelihood():
    from diffbio_prob.workflows.hmm import decode_hmm, fit_hmm

    rolls = _casino_rolls(2, 150)
    fit = fit_hmm(rolls, 2, 6, "gradient", num_steps=60, learning_rate=0.05, seed=4)
    # history is the loss (-log-likelihood) per step: the first entry is the random start's
    assert fit.history.shape == (60,) and fit.log_likelihood > -fit.history[0] + 1.0
    assert fit.history[-1] < fit.history[0]
    posteriors, paths = decode_hmm(fit.params, rolls)
    assert len(paths) == 2 and len(posteriors) == 300
    with pytest.raises(ValueError, match="method"):
        fit_hmm(rolls, 2, 6, "magic")


@pytest.mark.parametrize("text", [">a\nA\n", ">a\nA\n>b\nCA\n", "1\n"])
def test_cli_one_symbol_sequences_decode_cleanly(tmp_path, capsys, text):
    """A one-letter FASTA (or a length-1 sequence among others) is valid input: exit 0, one row per position."""
    inp = tmp_path / "one.fa"
    inp.write_text(text)
    out = tmp_path / "o"
    assert main(["hmm", "--input", str(inp), "--states", "2", "--out", str(out), "--quiet", "--iters", "5",
                 "--restarts", "1"]) == 0
    assert capsys.readouterr().err == ""
    post = pd.read_csv(out / "posteriors.tsv", sep="\t")
    paths = pd.read_csv(out / "viterbi.tsv", sep="\t", dtype={"viterbi_path": str})
    n = sum(len(line) for line in text.splitlines() if not line.startswith(">"))
    assert len(post) == n and np.isfinite(post[["p_state0", "p_state1"]].to_numpy()).all()
    assert np.isfinite(paths["log_likelihood"]).all() and np.isfinite(paths["viterbi_log_prob"]).all()
    assert len(paths["viterbi_path"][0].split(",")) == 1


def test_cli_out_checked_before_the_fit(tmp_path, capsys):
    inp = tmp_path / "in.fa"
    inp.write_text(">a\nACGT\n")
    (tmp_path / "file").write_text("x\n")
    for out, match in ((tmp_path / "file", "exists and is not a folder"), (tmp_path / "file" / "sub", "is a file")):
        assert main(["hmm", "--input", str(inp), "--states", "2", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("diffbio-prob hmm: error: --out: ") and match in err[0]
    assert (tmp_path / "file").read_text() == "x\n"


def test_read_gzipped_fasta_and_bad_gzip(tmp_path):
    import gzip

    data = gzip.compress(b">a\nACGT\n>b\nGG\n" * 20)
    (tmp_path / "x.fa.gz").write_bytes(data)
    s = read_sequences(tmp_path / "x.fa.gz", "ACGT")
    assert s.names[:2] == ["a", "b"] and s.sequences[0].tolist() == [0, 1, 2, 3]
    (tmp_path / "t.fa.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.fa\.gz: the gzip stream ends early; the file is truncated"):
        read_sequences(tmp_path / "t.fa.gz")
    (tmp_path / "b.fa").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match=r"b\.fa: not UTF-8 text .*; expected FASTA"):
        read_sequences(tmp_path / "b.fa")


@pytest.mark.slow
def test_cli_hmm_svi_writes_the_guides_draws(tmp_path):
    import arviz as az

    rolls = _casino_rolls(n_seq=1, n=400)
    inp = tmp_path / "rolls.txt"
    inp.write_text("".join(str(v + 1) for v in rolls[0]) + "\n")
    out = tmp_path / "out"
    assert main(["hmm", "--input", str(inp), "--states", "2", "--fit", "svi", "--num-samples", "40",
                 "--out", str(out), "--quiet"]) == 0
    assert {"posterior.nc", "posterior_summary.tsv", "parameters.json"} <= {p.name for p in out.iterdir()}
    post = az.from_netcdf(out / "posterior.nc")["posterior"].to_dataset()
    assert post.sizes["draw"] == 40
    e = np.array(json.loads((out / "parameters.json").read_text())["emission_probs"])
    np.testing.assert_allclose(e.sum(-1), 1.0, atol=1e-6)
    assert e[1, 5] > e[0, 5]  # canonical order: the loaded die second
