"""``diffbio-prob quant`` end to end on salmon's files and on the same classes in kallisto's format."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from diffbio_prob.cli import main
from diffbio_prob.io.kallisto import write_kallisto_ec, write_pseudoalignments_tsv
from diffbio_prob.io.salmon import read_quant_sf, read_salmon_eq_classes, write_salmon_eq_classes


def run(capsys, *argv):
    code = main(["quant", *map(str, argv)])
    return code, capsys.readouterr().err


@pytest.fixture
def salmon(em_ref):
    return em_ref / "salmon_1.10.1"


@pytest.mark.float32  # the command's default precision
@pytest.mark.parametrize("dump,algorithm,ref", [("em", "em", "em"), ("vbem_eqweights", "vbem", "vbem_eqweights")])
def test_quant_matches_salmon(tmp_path, capsys, salmon, dump, algorithm, ref):
    out = tmp_path / "res" / "quant.sf"
    code, err = run(capsys, "--eq-classes", salmon / dump / "aux_info" / "eq_classes.txt.gz",
                    "--lengths", salmon / dump / "quant.sf", "--algorithm", algorithm, "--out", out)
    assert code == 0, err
    assert "converged after 100 iterations" in err
    ours, theirs = read_quant_sf(out), read_quant_sf(salmon / ref / "quant.sf")
    assert ours.names == theirs.names
    np.testing.assert_array_equal(ours.lengths, theirs.lengths)
    np.testing.assert_array_equal(ours.effective_lengths, theirs.effective_lengths)
    assert np.abs(ours.num_reads - theirs.num_reads).max() < 0.05  # float32 by default
    np.testing.assert_allclose(ours.tpm, theirs.tpm, rtol=1e-3, atol=0.05)


def test_kallisto_format_gives_the_same_numbers(tmp_path, capsys, salmon):
    """The unweighted dump written as kallisto files, with a name<TAB>efflen table, quantifies the same."""
    table = read_salmon_eq_classes(salmon / "vbem" / "aux_info" / "eq_classes.txt.gz")
    quant = read_quant_sf(salmon / "vbem" / "quant.sf")
    ec = write_kallisto_ec(tmp_path / "pseudoalignments.ec", table)
    tsv = write_pseudoalignments_tsv(tmp_path / "pseudoalignments.tsv", table)
    (tmp_path / "transcripts.txt").write_text("\n".join(table.names) + "\n")
    (tmp_path / "eff.tsv").write_text("".join(f"{n}\t{e}\n" for n, e in zip(quant.names, quant.effective_lengths)))
    code, err = run(capsys, "--eq-classes", ec, "--ec-counts", tsv, "--transcripts", tmp_path / "transcripts.txt",
                    "--lengths", tmp_path / "eff.tsv", "--out", tmp_path / "k.sf", "--x64")
    assert code == 0, err
    code, err = run(capsys, "--eq-classes", salmon / "vbem" / "aux_info" / "eq_classes.txt.gz", "--lengths",
                    salmon / "vbem" / "quant.sf", "--out", tmp_path / "s.sf", "--x64")
    assert code == 0, err
    k, s = read_quant_sf(tmp_path / "k.sf"), read_quant_sf(tmp_path / "s.sf")
    assert k.names == s.names
    np.testing.assert_array_equal(k.num_reads, s.num_reads)


def test_lengths_from_transcript_lengths_and_fld(tmp_path, capsys, salmon):
    quant = read_quant_sf(salmon / "em" / "quant.sf")
    (tmp_path / "len.tsv").write_text("".join(f"{n}\t{int(L)}\n" for n, L in zip(quant.names, quant.lengths)))
    code, err = run(capsys, "--eq-classes", salmon / "em" / "aux_info" / "eq_classes.txt.gz", "--lengths",
                    tmp_path / "len.tsv", "--fld", salmon / "em" / "libParams" / "flenDist.txt", "--algorithm", "em",
                    "--out", tmp_path / "q.sf", "--quiet")
    assert code == 0 and err == ""
    ours = read_quant_sf(tmp_path / "q.sf")
    np.testing.assert_allclose(ours.effective_lengths, quant.effective_lengths, atol=0.05)
    np.testing.assert_array_equal(ours.lengths, quant.lengths)
    # the weighted dump's weights carry 1/l already: the few-hundredths change in l leaves the counts
    assert np.abs(ours.num_reads - quant.num_reads).max() < 0.05


def test_eqclasses_file_with_trailing_lengths_needs_no_lengths_option(tmp_path, capsys, salmon):
    """salmon's ``--eqclasses`` input form: weights plus ``name efflen`` lines (as in eqclass_mode_em)."""
    table = read_salmon_eq_classes(salmon / "em" / "aux_info" / "eq_classes.txt.gz")
    quant = read_quant_sf(salmon / "em" / "quant.sf")
    path = write_salmon_eq_classes(tmp_path / "eq.txt", table, effective_lengths=quant.effective_lengths)
    code, err = run(capsys, "--eq-classes", path, "--algorithm", "em", "--squarem", "--min-iter", "0",
                    "--out", tmp_path / "q.sf")
    assert code == 0, err
    ours = read_quant_sf(tmp_path / "q.sf")
    ref = read_quant_sf(salmon / "eqclass_mode_em" / "quant.sf")
    np.testing.assert_array_equal(ours.lengths, ref.lengths)  # floor(efflen), as salmon's eqclass mode writes
    assert np.abs(ours.num_reads - ref.num_reads).max() < 0.2  # SQUAREM stops nearer the true maximum


def test_posterior_bootstrap_table(tmp_path, capsys, salmon):
    code, err = run(capsys, "--eq-classes", salmon / "vbem_eqweights" / "aux_info" / "eq_classes.txt.gz",
                    "--lengths", salmon / "vbem_eqweights" / "quant.sf", "--posterior", "bootstrap",
                    "--num-samples", "20", "--out", tmp_path / "quant.sf", "--seed", "4")
    assert code == 0, err
    import pandas as pd

    post = pd.read_csv(tmp_path / "quant.posterior.tsv", sep="\t", index_col=0)
    assert list(post.columns) == ["mean", "sd", "q2.5", "q97.5"] and len(post) == 15
    point = read_quant_sf(tmp_path / "quant.sf")
    unique = post.index.get_indexer(["NM_022658", "NM_006897"])
    # uniquely mapped transcripts: bootstrap sd ~ sqrt(n)
    ratio = post["sd"].to_numpy()[unique] / np.sqrt(point.num_reads[unique])
    assert np.all((ratio > 0.4) & (ratio < 1.8)), ratio
    assert np.all(post["q2.5"] <= point.num_reads + 1e-6) and np.all(point.num_reads <= post["q97.5"] + 1e-6)


@pytest.mark.parametrize(
    "make_args,match",
    [
        (lambda p, s: ["--eq-classes", p / "missing.txt", "--lengths", s / "em" / "quant.sf"], "missing.txt: no such"),
        (lambda p, s: ["--eq-classes", p / "bad.txt", "--lengths", s / "em" / "quant.sf"], "bad.txt, line 6:"),
        (lambda p, s: ["--eq-classes", s / "em" / "aux_info" / "eq_classes.txt.gz", "--lengths", p / "few.tsv"],
         "no length for 14 transcript"),
        (lambda p, s: ["--eq-classes", s / "em" / "aux_info" / "eq_classes.txt.gz"], "carries no effective lengths"),
        (lambda p, s: ["--eq-classes", p / "k.ec", "--lengths", s / "em" / "quant.sf"], "give its pseudoalignments"),
        (lambda p, s: ["--eq-classes", s / "em" / "aux_info" / "eq_classes.txt.gz", "--lengths",
                       s / "em" / "quant.sf", "--min-iter", "-1"], "--min-iter"),
    ],
)
def test_bad_input_one_line_exit_2_no_output(tmp_path, capsys, salmon, make_args, match):
    (tmp_path / "bad.txt").write_text("2\n2\ntA\ntB\n1\t0\t5\n2\t0\t9\t7\n")
    (tmp_path / "few.tsv").write_text("NM_001168316\t2000\n")
    (tmp_path / "k.ec").write_text("0\t0\n")
    out = tmp_path / "out" / "quant.sf"
    code, err = run(capsys, *make_args(tmp_path, salmon), "--out", out)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffbio-prob quant: error: ")
    assert __import__("re").search(match, lines[0]), lines[0]
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_existing_output_survives_a_failure(tmp_path, capsys, salmon):
    out = tmp_path / "quant.sf"
    out.write_text("previous\n")
    (tmp_path / "bad.tsv").write_text("NM_001168316\t-5\n")
    code, _ = run(capsys, "--eq-classes", salmon / "em" / "aux_info" / "eq_classes.txt.gz", "--lengths",
                  tmp_path / "bad.tsv", "--out", out)
    assert code == 2 and out.read_text() == "previous\n"


def test_help_through_the_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "diffbio_prob", "quant", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert "--eq-classes FILE" in proc.stdout and "examples:" in proc.stdout and "--posterior" in proc.stdout


# --- several samples: one program, --out-dir/<sample>/ ------------------------------------------------------
MANY = ("em", "em_hardfilter", "vbem")  # different classes on one transcriptome, weighted and plain


def _many_args(salmon, dumps=MANY):
    return ["--eq-classes", *(salmon / d / "aux_info" / "eq_classes.txt.gz" for d in dumps),
            "--lengths", *(salmon / d / "quant.sf" for d in dumps)]


def test_several_files_write_one_salmon_folder_each_equal_to_one_file_runs(tmp_path, capsys, salmon):
    code, err = run(capsys, *_many_args(salmon), "--num-bootstraps", "3", "--seed", "7", "--x64",
                    "--out-dir", tmp_path / "out")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(MANY)
    assert "3 samples quantified in one program" in err
    from diffbio_prob.io.salmon import read_salmon_dir

    k = 2  # the last sample draws with seed 7 + 2
    code, err = run(capsys, "--eq-classes", salmon / MANY[k] / "aux_info" / "eq_classes.txt.gz", "--lengths",
                    salmon / MANY[k] / "quant.sf", "--num-bootstraps", "3", "--seed", "9", "--x64", "--quiet",
                    "--out-dir", tmp_path / "alone")
    assert code == 0, err
    many, alone = read_salmon_dir(tmp_path / "out" / MANY[k]), read_salmon_dir(tmp_path / "alone")
    assert many.names == alone.names
    np.testing.assert_array_equal(many.num_reads, alone.num_reads)
    np.testing.assert_allclose(many.draws, alone.draws, rtol=1e-10)
    first = read_salmon_dir(tmp_path / "out" / "em")
    assert first.meta_info["num_bootstraps"] == 3 and first.cmd_info["seed"] == "7"


def test_samples_file_names_the_folders(tmp_path, capsys, salmon):
    (tmp_path / "names.txt").write_text("sample\nA1\nB1\n")
    code, err = run(capsys, *_many_args(salmon, MANY[:2]), "--samples", tmp_path / "names.txt", "--quiet",
                    "--out-dir", tmp_path / "out")
    assert code == 0 and err == ""
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["A1", "B1"]
    ref = read_quant_sf(salmon / "em_hardfilter" / "quant.sf")
    assert read_quant_sf(tmp_path / "out" / "B1" / "quant.sf").names == ref.names


@pytest.mark.parametrize(
    "extra,match",
    [
        (lambda p, s: ["--out", p / "out" / "q.sf"], r"--out: writes one quant\.sf; with 2 --eq-classes files"),
        (lambda p, s: ["--out-dir", p / "out", "--samples", p / "dup.txt"], "--samples: sample name 'A' given twice"),
        (lambda p, s: ["--out-dir", p / "out", "--samples", p / "one.txt"], "--samples: 1 names for 2"),
        (lambda p, s: ["--out-dir", p / "out", "--posterior-out", p / "t.tsv"], "--posterior-out: one table"),
        (lambda p, s: [], "--out-dir: required with 2 --eq-classes files"),
        (lambda p, s: ["--out-dir", p / "out", "--fld", p / "a", p / "b", p / "c"],
         r"--fld: expected 1 file for all samples or 2"),
    ],
)
def test_several_files_bad_flags(tmp_path, capsys, salmon, extra, match):
    (tmp_path / "dup.txt").write_text("A\nA\n")
    (tmp_path / "one.txt").write_text("A\n")
    code, err = run(capsys, *_many_args(salmon, MANY[:2]), *extra(tmp_path, salmon))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("diffbio-prob quant: error: ")
    assert __import__("re").search(match, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_several_files_other_transcriptome_or_same_name_nothing_written(tmp_path, capsys, salmon):
    table = read_salmon_eq_classes(salmon / "em" / "aux_info" / "eq_classes.txt.gz")
    table.names = ["OTHER", *table.names[1:]]
    other = write_salmon_eq_classes(tmp_path / "X.txt.gz", table)
    code, err = run(capsys, "--eq-classes", salmon / "em" / "aux_info" / "eq_classes.txt.gz", other, "--lengths",
                    salmon / "em" / "quant.sf", "--out-dir", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "X.txt.gz: not the first sample's transcriptome" in err
    assert not (tmp_path / "out").exists()
    same = salmon / "em" / "aux_info" / "eq_classes.txt.gz"
    code, err = run(capsys, "--eq-classes", same, same, "--lengths", salmon / "em" / "quant.sf",
                    "--out-dir", tmp_path / "out")
    assert code == 2 and "--eq-classes: sample name 'em' given twice" in err and "--samples FILE" in err
    assert not (tmp_path / "out").exists()


def test_one_file_form_rejects_sample_flags(tmp_path, capsys, salmon):
    (tmp_path / "n.txt").write_text("A\n")
    code, err = run(capsys, "--eq-classes", salmon / "em" / "aux_info" / "eq_classes.txt.gz", "--lengths",
                    salmon / "em" / "quant.sf", salmon / "vbem" / "quant.sf", "--out", tmp_path / "q.sf")
    assert code == 2 and "--lengths: 2 files for one --eq-classes file" in err
    code, err = run(capsys, "--eq-classes", salmon / "em" / "aux_info" / "eq_classes.txt.gz", "--lengths",
                    salmon / "em" / "quant.sf", "--samples", tmp_path / "n.txt", "--out", tmp_path / "q.sf")
    assert code == 2 and "--samples: only used with several --eq-classes files" in err
    assert not (tmp_path / "q.sf").exists()
