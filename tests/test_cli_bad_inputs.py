"""Every bad input to ``diffbio-prob de | quant | hmm``: exit code 2, exactly one line on stderr naming the
argument or file, no fit started, and no output created or changed.

The commands run in-process (``cli.main``); the fitting functions are replaced by ones that fail the test,
so every case must be rejected before any fitting starts.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from diffbio_prob import cli

SALMON = "{s}/vbem_eqweights"
EQ = f"{SALMON}/aux_info/eq_classes.txt.gz"
SF = f"{SALMON}/quant.sf"

DE = ["de", "--counts", "{t}/counts.csv", "--metadata", "{t}/meta.csv", "--design", "~condition"]
QUANT = ["quant", "--eq-classes", EQ, "--lengths", SF]
HMM = ["hmm", "--input", "{t}/in.fa", "--states", "2"]
BG = ["hmm", "--emission", "poisson", "--states", "2", "--out", "{t}/h"]
CHMM = ["hmm", "--emission", "bernoulli", "--states", "2", "--out", "{t}/h"]

# (id, argv, fragment the one stderr line must contain). {t}: the test's folder; {s}: salmon's outputs.
CASES = [
    # --- de: output paths, checked before anything is read
    ("de-out-is-folder", DE + ["--out", "{t}/adir"], "--out: '{t}/adir' is an existing folder"),
    ("de-out-under-file", DE + ["--out", "{t}/afile/x.csv"], "'{t}/afile' is a file, not a folder"),
    ("de-out-empty", DE + ["--out", ""], "--out: expected a file path"),
    ("de-out-trailing-slash", DE + ["--out", "{t}/new/"], "--out: '{t}/new/' ends with a path separator"),
    ("de-out-device", DE + ["--out", "/dev/null"], "--out: '/dev/null' exists and is not a regular file"),
    ("de-out-is-the-counts", DE + ["--out", "{t}/counts.csv"], "--out: '{t}/counts.csv' is the input file of --counts"),
    ("de-out-is-the-metadata", DE + ["--out", "{t}/./meta.csv"], "is the input file of --metadata"),
    ("de-plots-is-file", DE + ["--out", "{t}/o.csv", "--plots", "{t}/afile"], "--plots: '{t}/afile' exists and is not a folder"),
    ("de-plots-ma-is-folder", DE + ["--out", "{t}/o.csv", "--plots", "{t}/figs"], "--plots: '{t}/figs/ma.png' is an existing folder"),
    ("de-plots-same-as-out", DE + ["--out", "{t}/o", "--plots", "{t}/o"], "--plots: names the same path as --out"),
    ("de-existing-out-kept", DE + ["--out", "{t}/previous.csv", "--alpha", "2"], "--alpha"),
    # --- de: numeric options
    ("de-alpha-0", DE + ["--out", "{t}/o.csv", "--alpha", "0"], "--alpha: expected a number in (0, 1), got 0"),
    ("de-alpha-nan", DE + ["--out", "{t}/o.csv", "--alpha", "nan"], "--alpha: expected a number in (0, 1), got nan"),
    ("de-alpha-inf", DE + ["--out", "{t}/o.csv", "--alpha", "inf"], "--alpha: expected a number in (0, 1), got inf"),
    ("de-alpha-text", DE + ["--out", "{t}/o.csv", "--alpha", "high"], "argument --alpha: invalid float value: 'high'"),
    ("de-minrep-negative", DE + ["--out", "{t}/o.csv", "--min-replicates-for-replace", "-1"],
     "--min-replicates-for-replace: expected a number >= 3"),
    ("de-minrep-2", DE + ["--out", "{t}/o.csv", "--min-replicates-for-replace", "2"], "--min-replicates-for-replace"),
    ("de-minrep-nan", DE + ["--out", "{t}/o.csv", "--min-replicates-for-replace", "nan"], "got nan"),
    ("de-seed-negative", DE + ["--out", "{t}/o.csv", "--seed", "-1"], "--seed: expected an integer in [0, 2^32)"),
    ("de-contrast-vector-nan", DE + ["--out", "{t}/o.csv", "--contrast-vector", "0,nan"],
     "--contrast-vector: expected finite numbers"),
    ("de-contrast-vector-text", DE + ["--out", "{t}/o.csv", "--contrast-vector", "0,x"],
     "--contrast-vector: expected comma-separated numbers"),
    ("de-contrast-vector-length", DE + ["--out", "{t}/o.csv", "--contrast-vector", "1,2,3"],
     "contrast: a numeric contrast needs 2 values"),
    ("de-contrast-and-vector", DE + ["--out", "{t}/o.csv", "--contrast", "condition_B_vs_A", "--contrast-vector", "0,1"],
     "--contrast and --contrast-vector: give one of them"),
    ("de-contrast-two-terms", DE + ["--out", "{t}/o.csv", "--contrast", "condition", "B"], "--contrast: expected FACTOR"),
    ("de-contrast-level", DE + ["--out", "{t}/o.csv", "--contrast", "condition", "B", "Z"], "'Z' is not a level of 'condition'"),
    ("de-contrast-factor", DE + ["--out", "{t}/o.csv", "--contrast", "group", "X", "Y"],
     "contrast: 'group' is not a variable of the design"),
    ("de-contrast-coef", DE + ["--out", "{t}/o.csv", "--contrast", "nope"], "contrast: 'nope' is not a coefficient"),
    ("de-design-parse", DE[:-1] + ["~ condition +", "--out", "{t}/o.csv"], "design: cannot parse '~ condition +'"),
    ("de-design-variable", DE[:-1] + ["~ batch", "--out", "{t}/o.csv"], "design: variable(s) ['batch']"),
    ("de-design-two-sided", DE[:-1] + ["y ~ condition", "--out", "{t}/o.csv"], "design: expected a one-sided formula"),
    ("de-lrt-no-reduced", DE + ["--out", "{t}/o.csv", "--test", "lrt"], "--reduced: required with --test lrt"),
    ("de-reduced-with-wald", DE + ["--out", "{t}/o.csv", "--reduced", "~1"], "--reduced: only used with --test lrt"),
    ("de-reduced-not-smaller", DE[:-1] + ["~ condition", "--out", "{t}/o.csv", "--test", "lrt", "--reduced", "~ condition"],
     "reduced: '~ condition' has 2 coefficients"),
    ("de-reduced-other-variable", DE + ["--out", "{t}/o.csv", "--test", "lrt", "--reduced", "~ group"],
     "reduced: variables ['group'] are not in the full design"),
    ("de-test-choice", DE + ["--out", "{t}/o.csv", "--test", "t"], "argument --test: invalid choice: 't'"),
    ("de-unknown-option", DE + ["--out", "{t}/o.csv", "--shrinkage"], "unrecognized arguments: --shrinkage"),
    # --- de: input files
    ("de-counts-missing", ["de", "--counts", "{t}/nope.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "counts file '{t}/nope.csv' does not exist"),
    ("de-counts-folder", ["de", "--counts", "{t}/adir"] + DE[3:] + ["--out", "{t}/o.csv"], "counts file '{t}/adir' is a directory"),
    ("de-counts-truncated-gz", ["de", "--counts", "{t}/trunc.csv.gz"] + DE[3:] + ["--out", "{t}/o.csv"],
     "counts file '{t}/trunc.csv.gz': the gzip stream ends early; the file is truncated"),
    ("de-counts-corrupt-gz", ["de", "--counts", "{t}/corrupt.csv.gz"] + DE[3:] + ["--out", "{t}/o.csv"],
     "counts file '{t}/corrupt.csv.gz': corrupt gzip data"),
    ("de-counts-binary", ["de", "--counts", "{t}/binary.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "counts file '{t}/binary.csv': not UTF-8 text"),
    ("de-counts-empty", ["de", "--counts", "{t}/empty.csv"] + DE[3:] + ["--out", "{t}/o.csv"], "counts file '{t}/empty.csv' is empty"),
    ("de-counts-header-only", ["de", "--counts", "{t}/header.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "counts file '{t}/header.csv' has no data"),
    ("de-counts-duplicate-column", ["de", "--counts", "{t}/dupcol.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "duplicated column name 'sample1'"),
    ("de-counts-duplicate-gene", ["de", "--counts", "{t}/dupgene.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "duplicated row name 'gene1'"),
    ("de-counts-trailing-delimiter", ["de", "--counts", "{t}/trailing.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "stray delimiter ','"),
    ("de-counts-negative", ["de", "--counts", "{t}/negative.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "expected non-negative counts, found -3.0"),
    ("de-counts-na", ["de", "--counts", "{t}/na.csv"] + DE[3:] + ["--out", "{t}/o.csv"], "expected finite counts, found nan"),
    ("de-counts-fraction", ["de", "--counts", "{t}/fraction.csv"] + DE[3:] + ["--out", "{t}/o.csv"], "expected integer counts"),
    ("de-counts-text", ["de", "--counts", "{t}/meta.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "counts file '{t}/meta.csv': non-numeric entry 'A' in column 'condition'"),
    ("de-counts-too-large", ["de", "--counts", "{t}/huge.csv"] + DE[3:] + ["--out", "{t}/o.csv"],
     "expected counts <= 2147483647"),
    ("de-design-infinite-covariate", DE[:3] + ["--metadata", "{t}/meta_inf.csv", "--design", "~ dose", "--out", "{t}/o.csv"],
     "design: numeric variable 'dose' has a non-finite value (inf)"),
    ("de-metadata-samples", DE[:3] + ["--metadata", "{t}/meta_renamed.csv"] + DE[5:] + ["--out", "{t}/o.csv"],
     "do not match the index of metadata"),
    # --- quant
    ("quant-out-is-folder", QUANT + ["--out", "{t}/adir"], "--out: '{t}/adir' is an existing folder"),
    ("quant-out-under-file", QUANT + ["--out", "{t}/afile/q.sf"], "'{t}/afile' is a file, not a folder"),
    ("quant-out-is-the-lengths", ["quant", "--eq-classes", EQ, "--lengths", "{t}/previous.csv", "--out", "{t}/previous.csv"],
     "--out: '{t}/previous.csv' is the input file of --lengths"),
    ("quant-posterior-out-is-input", ["quant", "--eq-classes", EQ, "--lengths", "{t}/previous.csv", "--out", "{t}/q.sf",
                                      "--posterior", "bootstrap", "--posterior-out", "{t}/previous.csv"],
     "--posterior-out: '{t}/previous.csv' is the input file of --lengths"),
    ("quant-posterior-out-folder", QUANT + ["--out", "{t}/q.sf", "--posterior", "bootstrap", "--posterior-out", "{t}/adir"],
     "--posterior-out: '{t}/adir' is an existing folder"),
    ("quant-posterior-default-folder", QUANT + ["--out", "{t}/q.sf", "--posterior", "bootstrap"],
     "--posterior-out: '{t}/q.posterior.tsv' is an existing folder"),
    ("quant-posterior-out-same", QUANT + ["--out", "{t}/q.sf", "--posterior", "bootstrap", "--posterior-out", "{t}/q.sf"],
     "--posterior-out: names the same file as --out"),
    ("quant-posterior-out-alone", QUANT + ["--out", "{t}/q.sf", "--posterior-out", "{t}/p.tsv"],
     "--posterior-out: only used with --posterior"),
    ("quant-existing-out-kept", QUANT + ["--out", "{t}/previous.csv", "--prior", "inf"], "--prior"),
    ("quant-prior-inf", QUANT + ["--out", "{t}/q.sf", "--prior", "inf"], "--prior: expected a number > 0, got inf"),
    ("quant-prior-nan", QUANT + ["--out", "{t}/q.sf", "--prior", "nan"], "--prior: expected a number > 0, got nan"),
    ("quant-prior-zero", QUANT + ["--out", "{t}/q.sf", "--prior", "0"], "--prior: expected a number > 0, got 0"),
    ("quant-prior-negative", QUANT + ["--out", "{t}/q.sf", "--prior", "-1"], "--prior: expected a number > 0"),
    ("quant-prior-overflow", QUANT + ["--out", "{t}/q.sf", "--prior", "1e300"], "--prior: 1e+300 overflows float32"),
    ("quant-prior-with-em", QUANT + ["--out", "{t}/q.sf", "--prior", "0.1", "--algorithm", "em"],
     "--prior: only used with --algorithm vbem"),
    ("quant-min-iter", QUANT + ["--out", "{t}/q.sf", "--min-iter", "-1"], "--min-iter: expected an integer >= 0, got -1"),
    ("quant-num-samples-0", QUANT + ["--out", "{t}/q.sf", "--posterior", "bootstrap", "--num-samples", "0"],
     "--num-samples: expected a positive integer, got 0"),
    ("quant-min-iter-huge", QUANT + ["--out", "{t}/q.sf", "--min-iter", "20000"], "--min-iter: expected at most 10000"),
    ("quant-num-samples-huge", QUANT + ["--out", "{t}/q.sf", "--posterior", "bootstrap", "--num-samples", str(10**20)],
     "--num-samples: expected at most 2147483647"),
    ("quant-num-samples-alone", QUANT + ["--out", "{t}/q.sf", "--num-samples", "10"], "--num-samples: only used with --posterior"),
    ("quant-seed-huge", QUANT + ["--out", "{t}/q.sf", "--seed", str(2**32)], "--seed: expected an integer in [0, 2^32)"),
    ("quant-eq-missing", ["quant", "--eq-classes", "{t}/nope.txt", "--lengths", SF, "--out", "{t}/q.sf"], "{t}/nope.txt"),
    ("quant-eq-truncated", ["quant", "--eq-classes", "{t}/trunc.csv.gz", "--lengths", SF, "--out", "{t}/q.sf"],
     "{t}/trunc.csv.gz"),
    # --- hmm
    ("hmm-out-is-file", HMM + ["--out", "{t}/afile"], "--out: '{t}/afile' exists and is not a folder"),
    ("hmm-out-under-file", HMM + ["--out", "{t}/afile/sub"], "'{t}/afile' is a file, not a folder"),
    ("hmm-out-holds-the-input", ["hmm", "--input", "{t}/hmm_in/viterbi.tsv", "--states", "2", "--out", "{t}/hmm_in"],
     "--out: '{t}/hmm_in/viterbi.tsv' is the input file of --input"),
    ("hmm-out-table-is-folder", HMM + ["--out", "{t}/hmm_out"], "--out: '{t}/hmm_out/posteriors.tsv' is an existing folder"),
    ("hmm-states-0", HMM[:-1] + ["0", "--out", "{t}/h"], "--states: expected a positive integer, got 0"),
    ("hmm-states-text", HMM[:-1] + ["two", "--out", "{t}/h"], "argument --states: invalid int value: 'two'"),
    ("hmm-states-huge", HMM[:-1] + ["100000", "--out", "{t}/h"], "--states: expected at most 10000 (the K x K transition"),
    ("hmm-iters-huge", HMM + ["--out", "{t}/h", "--iters", str(2**40)], "--iters: expected at most 2147483647"),
    ("hmm-iters-0", HMM + ["--out", "{t}/h", "--iters", "0"], "--iters: expected a positive integer, got 0"),
    ("hmm-restarts-0", HMM + ["--out", "{t}/h", "--restarts", "0"], "--restarts: expected a positive integer"),
    ("hmm-chains-0", HMM + ["--out", "{t}/h", "--chains", "0"], "--chains: expected a positive integer"),
    ("hmm-warmup-negative", HMM + ["--out", "{t}/h", "--num-warmup", "-1"], "--num-warmup: expected an integer >= 0"),
    ("hmm-alphabet-empty", HMM + ["--out", "{t}/h", "--alphabet", ""], "--alphabet: expected the symbols in order"),
    ("hmm-alphabet-symbol", HMM + ["--out", "{t}/h", "--alphabet", "AC"], "{t}/in.fa:2: symbol 'G'"),
    ("hmm-input-missing", ["hmm", "--input", "{t}/nope.fa", "--states", "2", "--out", "{t}/h"], "{t}/nope.fa: no such file"),
    ("hmm-input-binary", ["hmm", "--input", "{t}/binary.csv", "--states", "2", "--out", "{t}/h"], "{t}/binary.csv"),
    ("hmm-input-truncated-gz", ["hmm", "--input", "{t}/trunc.fa.gz", "--states", "2", "--out", "{t}/h"],
     "{t}/trunc.fa.gz: the gzip stream ends early"),
    ("hmm-seed-negative", HMM + ["--out", "{t}/h", "--seed", "-5"], "--seed: expected an integer in [0, 2^32)"),
    # --- hmm on genome tracks: bedGraph (poisson | negative-binomial | gaussian), ChromHMM binarized (bernoulli)
    ("hmm-bg-negative", BG + ["--input", "{t}/bg_neg.bedgraph"], "{t}/bg_neg.bedgraph:3: negative value -4"),
    ("hmm-bg-fraction-nb", BG[:2] + ["negative-binomial"] + BG[3:] + ["--input", "{t}/bg_frac.bedgraph"],
     "{t}/bg_frac.bedgraph:1: expected a whole-number read count, got '2.5'"),
    ("hmm-bg-unsorted", BG + ["--input", "{t}/bg_unsorted.bedgraph"], "{t}/bg_unsorted.bedgraph:4: chromosome 'chr1' appears again"),
    ("hmm-bg-overlap", BG + ["--input", "{t}/bg_overlap.bedgraph"], "{t}/bg_overlap.bedgraph:3: interval chr1:50-150 overlaps"),
    ("hmm-bg-malformed", BG + ["--input", "{t}/bg_bad.bedgraph"], "{t}/bg_bad.bedgraph:3: expected 4 fields"),
    ("hmm-bg-widths", BG + ["--input", "{t}/bg_widths.bedgraph"],
     "{t}/bg_widths.bedgraph:3: interval of 150 bp is not a multiple of the track's 100 bp bins"),
    ("hmm-bg-as-bernoulli", CHMM + ["--input", "{t}/bg_neg.bedgraph"], "'{t}/bg_neg.bedgraph' looks like a bedGraph track"),
    ("hmm-bg-as-categorical", ["hmm", "--input", "{t}/bg_neg.bedgraph", "--states", "2", "--out", "{t}/h"],
     "use --emission poisson | negative-binomial | gaussian"),
    ("hmm-fasta-as-poisson", BG + ["--input", "{t}/in.fa"], "'{t}/in.fa' looks like a FASTA file; use --emission categorical"),
    ("hmm-chromhmm-as-poisson", BG + ["--input", "{t}/chmm/c_chr1_binary.txt"], "looks like a ChromHMM binarized file"),
    ("hmm-bg-two-inputs", BG + ["--input", "{t}/bg_neg.bedgraph", "{t}/in.fa"], "--input: --emission poisson reads one file, got 2"),
    ("hmm-bg-bin-size", BG + ["--input", "{t}/bg_neg.bedgraph", "--bin-size", "100"], "--bin-size: only used with --emission bernoulli"),
    ("hmm-bg-fit-nuts", BG + ["--input", "{t}/bg_neg.bedgraph", "--fit", "nuts"], "--fit: --emission poisson is fitted by Baum-Welch only"),
    ("hmm-bg-alphabet", BG + ["--input", "{t}/bg_neg.bedgraph", "--alphabet", "AC"], "--alphabet: only used with --emission categorical"),
    ("hmm-chmm-bin-size-0", CHMM + ["--input", "{t}/chmm", "--bin-size", "0"], "--bin-size: expected a positive integer, got 0"),
    ("hmm-chmm-value", CHMM + ["--input", "{t}/chmm_bad"], "{t}/chmm_bad/c_chr1_binary.txt:4: mark 'm2': expected 0, 1 or 2 (missing), got '3'"),
    ("hmm-chmm-marks", CHMM + ["--input", "{t}/chmm", "{t}/chmm_marks/c_chr3_binary.txt"],
     "{t}/chmm_marks/c_chr3_binary.txt:2: marks ['m2', 'm1'] differ from ['m1', 'm2']"),
    ("hmm-chmm-header", CHMM + ["--input", "{t}/chmm_header_binary.txt"], "{t}/chmm_header_binary.txt:1: expected 'cell<TAB>chrom'"),
    ("hmm-chmm-empty-folder", CHMM + ["--input", "{t}/adir"], "{t}/adir: no files whose name contains '_binary'"),
    ("hmm-chmm-out-segments-folder", CHMM + ["--input", "{t}/chmm", "--out", "{t}/chmm_out"],
     "'{t}/chmm_out/c_2_segments.bed' is an existing folder"),
]


@pytest.fixture()
def folder(tmp_path, deseq2_ref):
    import pandas as pd

    t = tmp_path
    shutil.copy(deseq2_ref / "synthetic" / "test_counts.csv", t / "counts.csv")
    shutil.copy(deseq2_ref / "synthetic" / "test_metadata.csv", t / "meta.csv")
    counts = pd.read_csv(t / "counts.csv", index_col=0)
    (t / "adir").mkdir()
    (t / "afile").write_text("a file\n")
    (t / "figs" / "ma.png").mkdir(parents=True)
    (t / "hmm_out" / "posteriors.tsv").mkdir(parents=True)
    (t / "q.posterior.tsv").mkdir()
    (t / "previous.csv").write_text("previous\n")
    (t / "in.fa").write_text(">a\nACGTTGCA\n")
    (t / "hmm_in").mkdir()
    (t / "hmm_in" / "viterbi.tsv").write_text("ACGT\n")
    data = gzip.compress((t / "counts.csv").read_bytes())
    (t / "trunc.csv.gz").write_bytes(data[: len(data) // 2])
    (t / "corrupt.csv.gz").write_bytes(data[:10] + b"\x00" * 64 + data[74:])
    (t / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    (t / "empty.csv").write_text("")
    (t / "header.csv").write_text(",sample1,sample2\n")
    text = (t / "counts.csv").read_text().splitlines()
    (t / "dupcol.csv").write_text("\n".join([text[0] + ',"sample1"'] + [ln + ",1" for ln in text[1:]]) + "\n")
    (t / "dupgene.csv").write_text("\n".join(text + [text[1]]) + "\n")
    (t / "trailing.csv").write_text("\n".join([text[0]] + [ln + "," for ln in text[1:]]) + "\n")
    for name, value in (("negative", -3), ("na", None), ("fraction", 1.5)):
        bad = counts.astype(object)
        bad.iloc[1, 2] = value
        bad.to_csv(t / f"{name}.csv")
    meta = pd.read_csv(t / "meta.csv", index_col=0)
    meta.rename(index={"sample7": "sampleX"}).to_csv(t / "meta_renamed.csv")
    meta.assign(dose=[float("inf")] + [1.0] * (len(meta) - 1)).to_csv(t / "meta_inf.csv")
    huge = counts.copy()
    huge.iloc[0, 0] = 3 * 10**9
    huge.to_csv(t / "huge.csv")
    bg = "track type=bedGraph\nchr1\t0\t100\t3\n"
    (t / "bg_neg.bedgraph").write_text(bg + "chr1\t100\t200\t-4\n")
    (t / "bg_frac.bedgraph").write_text("chr1\t0\t100\t2.5\n")
    (t / "bg_unsorted.bedgraph").write_text(bg + "chr2\t0\t100\t1\nchr1\t100\t200\t1\n")
    (t / "bg_overlap.bedgraph").write_text(bg + "chr1\t50\t150\t1\n")
    (t / "bg_bad.bedgraph").write_text(bg + "chr1\t100\t200\n")
    (t / "bg_widths.bedgraph").write_text(bg + "chr1\t100\t250\t1\nchr1\t250\t350\t1\nchr1\t350\t450\t1\n")
    for name, body in (("chmm/c_chr1_binary.txt", "c\tchr1\nm1\tm2\n0\t1\n1\t1\n"),
                       ("chmm/c_chr2_binary.txt", "c\tchr2\nm1\tm2\n0\t0\n2\t1\n"),
                       ("chmm_bad/c_chr1_binary.txt", "c\tchr1\nm1\tm2\n0\t1\n1\t3\n"),
                       ("chmm_marks/c_chr3_binary.txt", "c\tchr3\nm2\tm1\n0\t1\n"),
                       ("chmm_header_binary.txt", "c chr1\nm1\tm2\n0\t1\n")):
        (t / name).parent.mkdir(exist_ok=True)
        (t / name).write_text(body)
    (t / "chmm_out" / "c_2_segments.bed").mkdir(parents=True)
    fasta = gzip.compress(b">a\nACGTTGCA\n" * 50)
    (t / "trunc.fa.gz").write_bytes(fasta[: len(fasta) // 2])
    return t


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.join(dirpath, d)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[p] = hashlib.sha1(Path(p).read_bytes()).hexdigest()
    return out


@pytest.fixture()
def no_fit(monkeypatch):
    """Make every fitting entry point fail the test: bad input must be rejected before any of them runs."""
    import diffbio_prob.workflows.deseq2.api as deseq2
    import diffbio_prob.workflows.hmm as hmm
    import diffbio_prob.workflows.quant as quant

    def started(*args, **kwargs):
        raise AssertionError("a fit started on bad input")

    monkeypatch.setattr(deseq2, "fit_deseq2", started)
    monkeypatch.setattr(quant, "quantify", started)
    monkeypatch.setattr(quant, "posterior", started)
    monkeypatch.setattr(hmm, "fit_hmm", started)
    monkeypatch.setattr(hmm, "fit_emission_hmm", started)


def run_cli(argv):
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_written(folder, em_ref, capsys, no_fit, argv, fragment):
    sub = {"t": str(folder), "s": str(em_ref / "salmon_1.10.1")}
    argv = [a.format(**sub) for a in argv] + ["--quiet"]
    before = _snapshot(folder)
    code = run_cli(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"diffbio-prob {argv[0]}: error: "), lines[0]
    assert fragment.format(**sub) in lines[0], lines[0]
    assert captured.out == ""
    assert _snapshot(folder) == before  # nothing created (not even a hidden temporary), nothing changed


def test_help_is_not_an_error(capsys):
    assert run_cli(["de", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: diffbio-prob de")


# ------------------------------------------------------------------------------------------------
# main()'s error mapping: user errors are one line + exit 2, never a traceback
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "exc, code",
    [
        (ValueError("counts: bad\nsecond line"), 2),
        (TypeError("contrast: expected strings"), 2),
        (FileNotFoundError("x.csv: no such file"), 2),
        (PermissionError(13, "Permission denied", "/ro/x.csv"), 2),
        (IsADirectoryError("out: is a directory"), 2),
        (NotADirectoryError("out: not a directory"), 2),
        (FileExistsError("out: exists"), 2),
        (OSError(28, "No space left on device", "/full/x.csv"), 1),
        (FloatingPointError("quantify: EM produced non-finite counts"), 1),
        (MemoryError("Unable to allocate 80 GiB"), 1),
    ],
)
def test_main_maps_errors_to_one_line(monkeypatch, capsys, exc, code):
    def run(args):
        raise exc

    monkeypatch.setattr(cli, "_run_quant", run)
    assert cli.main(["quant", "--eq-classes", "e", "--out", "o"]) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffbio-prob quant: error: ")
    assert " ".join(str(exc).split()) in lines[0]


def test_main_lets_a_bug_show_its_traceback(monkeypatch):
    def run(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_run_quant", run)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["quant", "--eq-classes", "e", "--out", "o"])


# ------------------------------------------------------------------------------------------------
# Ctrl-C is never swallowed
# ------------------------------------------------------------------------------------------------
def test_swallowed_interrupt_keeps_outputs_and_exits_130(monkeypatch, tmp_path, capsys):
    """A KeyboardInterrupt raised where Python ignores it (a __del__ or gc callback) still stops the run:
    the atomic writer refuses to replace the output and main exits 130 with one line."""
    import gc
    import signal
    import time

    from diffbio_prob.io.atomic import atomic_write

    out = tmp_path / "quant.sf"
    out.write_text("previous\n")
    seen = {}

    class Swallowed:
        def __del__(self):
            raise KeyboardInterrupt  # printed as "Exception ignored in ..." without main's hook

    def run(args):
        Swallowed()
        gc.collect()
        seen["handler"] = signal.getsignal(signal.SIGINT)
        with atomic_write(out) as fh:
            fh.write("new\n")
        return 0

    monkeypatch.setattr(cli, "_run_quant", run)
    start = time.perf_counter()
    assert cli.main(["quant", "--eq-classes", "e", "--out", str(out)]) == 130
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["diffbio-prob quant: interrupted"]
    assert out.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == ["quant.sf"]
    assert seen["handler"] is not signal.default_int_handler  # main's handler was installed ...
    assert signal.getsignal(signal.SIGINT) is not seen["handler"]  # ... and removed afterwards
    with atomic_write(out) as fh:  # and the interrupt, answered, does not block later writes in this process
        fh.write("later\n")
    assert out.read_text() == "later\n"


def test_swallowed_interrupt_is_delivered_again(monkeypatch, capsys):
    """The run does not go on until its first write: the swallowed Ctrl-C is raised again within ~0.1 s."""
    import time

    class Swallowed:
        def __del__(self):
            raise KeyboardInterrupt

    def run(args):
        Swallowed()
        deadline = time.perf_counter() + 5
        while time.perf_counter() < deadline:  # a long fit, in Python steps
            time.sleep(0.005)
        raise AssertionError("the interrupt was not delivered again")

    monkeypatch.setattr(cli, "_run_hmm", run)
    assert cli.main(["hmm", "--input", "x", "--states", "2", "--out", "o"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["diffbio-prob hmm: interrupted"]


@pytest.mark.slow  # three processes, ~2-4 s each
def test_sigint_early_in_a_real_run_exits_130_and_keeps_the_output(tmp_path, deseq2_ref):
    import signal
    import subprocess
    import sys
    import time

    shutil.copy(deseq2_ref / "synthetic" / "test_counts.csv", tmp_path / "counts.csv")
    shutil.copy(deseq2_ref / "synthetic" / "test_metadata.csv", tmp_path / "meta.csv")
    out = tmp_path / "res.csv"
    # no compilation cache: every run compiles, so it is still running at the last signal (a whole run is
    # ~2.4 s here, ~1.8 s from the cache)
    env = os.environ | {"JAX_PLATFORMS": "cpu", "DIFFBIO_PROB_JAX_CACHE": "0"}
    cmd = [sys.executable, "-m", "diffbio_prob", "de", "--counts", str(tmp_path / "counts.csv"), "--metadata",
           str(tmp_path / "meta.csv"), "--design", "~condition", "--out", str(out), "--quiet"]
    for delay in (0.4, 1.0, 1.8):  # imports, JAX's start-up (its gc callbacks), compilation
        out.write_text("previous\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert out.read_text() == "previous\n", (delay, stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.csv", "meta.csv", "res.csv"]
        lines = stderr.strip().splitlines()
        if proc.returncode == -signal.SIGINT or (lines and lines[-1].startswith("KeyboardInterrupt")):
            # the signal came before main() installed its handler (Python still importing the module)
            assert delay < 1.0, (delay, stderr)
            continue
        assert proc.returncode == 130, (delay, stderr)
        assert lines == ["diffbio-prob de: interrupted"], (delay, stderr)


# ------------------------------------------------------------------------------------------------
# check_output_path itself
# ------------------------------------------------------------------------------------------------
def test_check_output_path(tmp_path, monkeypatch):
    from diffbio_prob.io import atomic
    from diffbio_prob.io.atomic import check_output_path

    assert check_output_path(tmp_path / "new" / "deeper" / "x.csv", "--out") == tmp_path / "new" / "deeper" / "x.csv"
    assert not (tmp_path / "new").exists()  # nothing is created
    (tmp_path / "f").write_text("x")
    assert check_output_path(tmp_path / "f", "--out") == tmp_path / "f"  # an existing file may be replaced
    assert check_output_path(tmp_path, "--out", "dir") == tmp_path
    with pytest.raises(ValueError, match="--plots: .* exists and is not a folder"):
        check_output_path(tmp_path / "f", "--plots", "dir")
    with pytest.raises(ValueError, match="kind"):
        check_output_path(tmp_path / "f", "--out", "folder")
    with pytest.raises(TypeError, match="--out: expected a path, got int"):
        check_output_path(3, "--out")
    monkeypatch.setattr(atomic.os, "access", lambda *a, **k: False)
    with pytest.raises(PermissionError, match=r"--out: cannot write .* is not writable \(permission denied\)"):
        check_output_path(tmp_path / "x.csv", "--out")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_is_refused_before_the_fit(tmp_path, capsys, no_fit):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code = run_cli(["hmm", "--input", "in.fa", "--states", "2", "--out", str(ro / "h")])
    finally:
        ro.chmod(0o755)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--out: cannot write" in lines[0] and "not writable" in lines[0]
