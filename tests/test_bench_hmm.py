"""``bench/hmm.py --batches`` at tiny sizes: the batch-scaling table runs, and what it prints can be trusted.

Two batch sizes, the second past the chunk size (two calls of ours) and past hmmlearn's budget (timed on a
subset, extrapolated); the agreement check against hmmlearn (log-likelihood sum and posteriors) passes.
"""

from __future__ import annotations

import math

import pytest

from tests.bench_scripts import load_bench

pytest.importorskip("hmmlearn")


def _rows(out: str, first_cell: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("|")]
    return [r for r in rows if r[0] == first_cell]


@pytest.mark.float32
def test_batches_quick(capsys):
    argv = ["--batches", "50,200", "--quick", "--repeats", "1", "--chunk", "100",
            "--peer-budget", "0", "--peer-subset", "50"]
    assert load_bench("hmm").main(argv) == 0
    out = capsys.readouterr().out

    # the timing table: B, steps, ours, ..., hmmlearn log / scaling, how it was timed, the two ratios
    (small,) = [r for r in _rows(out, "50") if len(r) == 11]
    (large,) = _rows(out, "200")
    assert small[8] == "measured" and large[8] == "extrapolated from 50"
    for row in (small, large):
        steps, ours_ms = int(row[1]), float(row[2].split()[0])
        assert 18 * int(row[0]) <= steps <= 22 * int(row[0]) and ours_ms > 0
        log_ms, scaling_ms = float(row[6]), float(row[7])
        assert log_ms > 0 and scaling_ms > 0
        for ratio in row[9:11]:
            assert ratio.endswith("x") and math.isfinite(float(ratio[:-1])) and float(ratio[:-1]) > 0
    # extrapolation is linear in total steps
    assert float(large[6]) == pytest.approx(float(small[6]) * int(large[1]) / int(small[1]), rel=0.01)

    # the agreement check on the subset both computed: float32 vs hmmlearn's float64
    (check,) = [r for r in _rows(out, "50") if len(r) == 6]
    assert float(check[1]) == pytest.approx(float(check[2]), rel=1e-4)
    assert float(check[3]) < 1e-4 and float(check[4]) < 1e-4 and check[5] == "yes"
    assert "agreement (rel. log-lik and max posterior diff < 1e-4): ok" in out
    assert "as B grows 50 -> 200:" in out
