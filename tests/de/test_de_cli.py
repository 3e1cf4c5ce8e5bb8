"""``diffbio-prob de``: R's numbers in the output file, plots, and one clear line + exit 2 on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbio_prob import cli

COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]


@pytest.fixture()
def files(tmp_path, deseq2_ref):
    shutil.copy(deseq2_ref / "synthetic" / "test_counts.csv", tmp_path / "counts.csv")
    shutil.copy(deseq2_ref / "synthetic" / "test_metadata.csv", tmp_path / "meta.csv")
    return tmp_path


def _max_rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(b)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok])))


@pytest.mark.slow  # compiles the pipeline when it is the first DE test of a process
def test_wald_with_plots_matches_r(files, deseq2_ref, capsys):
    out = files / "res.csv"
    rc = cli.main(
        [
            "de", "--counts", str(files / "counts.csv"), "--metadata", str(files / "meta.csv"),
            "--design", "~condition", "--contrast", "condition", "B", "A", "--out", str(out),
            "--plots", str(files / "figs"), "--quiet",
        ]
    )
    assert rc == 0
    res = pd.read_csv(out, index_col=0)
    ref = pd.read_csv(deseq2_ref / "single_factor" / "r_test_res.csv", index_col=0)
    assert list(res.columns) == COLUMNS and list(res.index) == list(ref.index)
    assert max(_max_rel(res[c], ref[c]) for c in COLUMNS) < 1e-6
    for name in ("ma.png", "volcano.png"):
        assert (files / "figs" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().err == ""


def test_lrt_tsv_transposed_matches_r(files, capsys):
    counts = pd.read_csv(files / "counts.csv", index_col=0)
    counts.T.to_csv(files / "counts_t.tsv", sep="\t")  # samples x genes, tab-separated
    out = files / "lrt.tsv"
    rc = cli.main(
        [
            "de", "--counts", str(files / "counts_t.tsv"), "--metadata", str(files / "meta.csv"),
            "--design", "~condition", "--test", "lrt", "--reduced", "~1", "--out", str(out),
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "10 genes, 100 samples" in err and "wrote" in err
    res = pd.read_csv(out, sep="\t", index_col=0)
    ref = pd.read_csv(Path(__file__).parent / "data" / "deseq2_lrt" / "single_factor_r_test_res_lrt.csv", index_col=0)
    assert max(_max_rel(res[c], ref[c]) for c in COLUMNS) < 1e-6


@pytest.mark.parametrize(
    "edit, args, message",
    [
        (None, ["--counts", "{d}/nope.csv"], "counts file '{d}/nope.csv' does not exist"),
        (None, ["--design", "~ condition + batch"], "variable(s) ['batch']"),
        (None, ["--contrast", "condition", "B", "Z"], "'Z' is not a level of 'condition'"),
        (None, ["--contrast", "condition", "B"], "--contrast: expected FACTOR NUMERATOR DENOMINATOR"),
        (None, ["--test", "lrt"], "--reduced: required with --test lrt"),
        (None, ["--alpha", "1.5"], "--alpha: expected a number in (0, 1)"),
        ("fraction", [], "expected integer counts"),
        ("text", [], "non-numeric entry 'many'"),
        ("rename", [], "do not match the index of"),
    ],
)
def test_bad_input_one_line_exit_2_no_output(files, capsys, edit, args, message):
    counts = files / "counts.csv"
    if edit is not None:
        df = pd.read_csv(counts, index_col=0).astype(object)
        if edit == "fraction":
            df.iloc[0, 0] = 1.5
        elif edit == "text":
            df.iloc[0, 0] = "many"
        elif edit == "rename":
            df = df.rename(columns={"sample7": "sampleX"})
        df.to_csv(counts)
    base = {
        "--counts": str(counts),
        "--metadata": str(files / "meta.csv"),
        "--design": "~condition",
        "--out": str(files / "out.csv"),
    }
    extra = [a.format(d=files) for a in args]
    for i, a in enumerate(extra):
        if a in base and i + 1 < len(extra):
            base[a] = extra[i + 1]
    rest = [a for i, a in enumerate(extra) if a not in base and (i == 0 or extra[i - 1] not in base)]
    argv = ["de"] + [x for kv in base.items() for x in kv] + rest
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffbio-prob de: error: ")
    assert message.format(d=files) in lines[0]
    assert not (files / "out.csv").exists()
    assert not any(p.name.startswith(".out.csv") for p in files.iterdir())
