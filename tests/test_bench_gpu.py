"""``bench/gpu.py --quick`` on the CPU: every section runs, and the numbers it prints are sane.

The benchmark is meant for an accelerator; here it is the smoke check that it runs at all and that what
it prints can be trusted (the two HMM scans agree, every ratio is a finite positive number, the one-program
quantification equals the loop). NUTS compiles two ~10 s programs, so its check is ``long``.
"""

from __future__ import annotations

import math
import re

import pytest

from diffbio_prob.cores import hmm as core

from tests.bench_scripts import load_bench


def _rows(out: str, *first_cells: str) -> list[list[str]]:
    """The markdown rows whose first cells are ``first_cells``, split into stripped cells."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("|")]
    return [r for r in rows if r[: len(first_cells)] == list(first_cells)]


def _ratios(out: str) -> list[float]:
    cells = [c.strip() for line in out.splitlines() if line.startswith("|") for c in line.strip("|").split("|")]
    return [float(c[:-1]) for c in cells if re.fullmatch(r"\S+x", c) and c != "n/a"]


def _check_ratios(out: str, at_least: int) -> None:
    ratios = _ratios(out)
    assert len(ratios) >= at_least, out
    assert all(math.isfinite(r) and r > 0 for r in ratios), ratios


@pytest.mark.float32
def test_quick_hmm_de_quant(capsys):
    assert load_bench("gpu").main(["--quick", "--repeats", "1", "--skip", "nuts"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"backend \w+, \d+ device\(s\)", out), out
    assert "## nuts: skipped (--skip)" in out

    # HMM: a row per (T, K, quantity) with both timings, auto's pick as the library's rule says
    for t_len in (1000, 4000):
        for quantity in ("log-likelihood", "filter"):
            (row,) = _rows(out, str(t_len), "4", quantity)
            seq_ms, par_ms = float(row[3]), float(row[4])
            assert seq_ms > 0 and par_ms > 0
            assert float(row[5][:-1]) == pytest.approx(seq_ms / par_ms, rel=0.1, abs=0.01)  # of the rounded ms
            assert row[6] == core.resolve_method("auto", t_len)
            assert row[7] in ("yes", "no")
    (smooth,) = _rows(out, "1000", "4", "smoother")
    assert float(smooth[3]) > 0 and float(smooth[4]) > 0
    (skipped,) = _rows(out, "4000", "4", "smoother")
    assert skipped[3].startswith("skipped")
    # the two scans agree: per size and overall, log-likelihood and filtered marginals
    agree = [r for r in (_rows(out, "1000", "4") + _rows(out, "4000", "4")) if len(r) == 6]
    assert len(agree) == 2, out
    for _, _, ll_seq, ll_par, rel, filt in agree:
        assert abs(float(ll_seq) - float(ll_par)) <= 1e-3 * abs(float(ll_seq))
        assert float(rel) < 1e-3 and float(filt) < 1e-3
    worst = re.search(r"HMM max relative log-likelihood difference parallel vs sequential: (\S+) \((\w+)\)", out)
    assert worst and float(worst.group(1)) < 1e-3 and worst.group(2) == "ok", out

    # DE: one row at 10 x 300, the second run repeats the first
    (de,) = _rows(out, "10", "300")
    first_s, second_s, genes_per_s, n_sig, lfc_diff = float(de[2]), float(de[3]), float(de[5]), int(de[6]), float(de[7])
    # the seconds are printed to 0.01 s: at ~0.2 s that is up to 2.5% of the rate
    assert first_s > 0 and second_s > 0 and genes_per_s == pytest.approx(300 / second_s, rel=0.05, abs=1)
    assert 0 < n_sig < 300 and lfc_diff < 1e-8

    # quant: the loop and both one-program ways, same reads
    ways = [r for r in _rows(out) if r and (r[0].startswith("Python loop") or r[0].startswith("quantify_many"))]
    assert len(ways) == 3, out
    for way in ways:
        assert float(way[1]) > 0 and float(way[4]) < 1.0  # reads of 2e4 per sample, float32
    assert re.search(r'batch_size="auto"\)` picks on \w+ with \d+ device\(s\): (vmapped|lax\.map)', out), out

    # the closing summary: a ratio per HMM size, DE and both quant ways, all finite and positive
    assert out.count("| HMM log-likelihood T=") == 2
    assert "| DE 10x300: first run / second run |" in out
    assert out.count("| quant 4 samples: loop / ") == 2
    _check_ratios(out, at_least=4 + 1 + 3)


@pytest.mark.long
@pytest.mark.float32
def test_quick_nuts_chain_methods(capsys):
    assert load_bench("gpu").main(["--quick", "--repeats", "1", "--skip", "hmm,de,quant"]) == 0
    out = capsys.readouterr().out
    for method in ("sequential", "vectorized"):
        (row,) = _rows(out, method)
        wall, compile_s, run, per_chain, accept = (float(row[i]) for i in (2, 3, 4, 5, 8))
        assert wall > 0 and 0 <= compile_s < wall and run > 0
        assert run == pytest.approx(wall - compile_s, abs=0.02) and per_chain == pytest.approx(run / 2, abs=0.01)
        assert 0 < accept <= 1
    assert "chain_method='parallel' not timed" in out or _rows(out, "parallel")
    assert "| NUTS 2 chains, run time: sequential / vectorized |" in out
    _check_ratios(out, at_least=2 + 2 + 1)
