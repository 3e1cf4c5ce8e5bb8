"""Programs compiled ahead of their first call (``parallel.precompile``, the DESeq2 warm-up) are the ones
the calls run: once the background compilation has finished, the call compiles nothing."""

from __future__ import annotations

import contextlib
import threading

import jax
import numpy as np
import pandas as pd
import pytest

from diffbio_prob import compile_queue, parallel
from diffbio_prob.parallel import kernel, precompile, run_batched
from diffbio_prob.workflows.deseq2 import fit_deseq2, kernels, warmup
from diffbio_prob.workflows.deseq2.options import DESeq2Options

_COMPILED: list[str] | None = None
_LOCK = threading.Lock()


def _on_event(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration" and _COMPILED is not None:
        with _LOCK:
            _COMPILED.append(kwargs.get("fun_name", ""))


jax.monitoring.register_event_duration_secs_listener(_on_event)


@contextlib.contextmanager
def compiled():
    """The names of the programs XLA compiles inside the block (any thread)."""
    global _COMPILED
    _COMPILED = []
    try:
        yield _COMPILED
    finally:
        _COMPILED = None


@kernel("k")
def k_toy(a, b, w, *, k):
    return a * w + b.sum(-1) + k


def test_precompiled_program_is_the_one_the_call_runs():
    rng = np.random.default_rng(0)
    a, b, w = rng.normal(size=300), rng.normal(size=(300, 3)), 0.5
    precompile(k_toy, (jax.ShapeDtypeStruct(a.shape, a.dtype), jax.ShapeDtypeStruct(b.shape, b.dtype)), (w,),
               k=2.0).result()
    with compiled() as names:
        out = run_batched(k_toy, (a, b), (w,), k=2.0)
    assert not [n for n in names if "k_toy" in n], names
    np.testing.assert_allclose(out, a * w + b.sum(-1) + 2.0, rtol=1e-14)
    # another static value is another program: the call compiles it itself
    with compiled() as names:
        out = run_batched(k_toy, (a, b), (w,), k=3.0)
    assert [n for n in names if "k_toy" in n]
    np.testing.assert_allclose(out, a * w + b.sum(-1) + 3.0, rtol=1e-14)


@kernel("k", masks_rows=True)
def k_masked(a, active, *, k):
    return a * k + active


def test_a_call_waits_for_its_program_queued_a_moment_before(monkeypatch):
    # run_batched adds the row mask of a masks_rows kernel; the program precompile queued (mask included) is
    # the one the call waits for, and the padding rows come out inactive
    a = np.arange(300.0)
    waited = []
    wait = parallel._wait_pending
    monkeypatch.setattr(parallel, "_wait_pending", lambda key: (waited.append(key), wait(key)))
    with compiled() as names:
        precompile(k_masked, (jax.ShapeDtypeStruct(a.shape, a.dtype),), k=7.0)
        out = run_batched(k_masked, (a,), k=7.0)
    assert sum("k_masked" in n for n in names) == 1, names
    assert [k for k in compile_queue._BY_KEY if k[:3] == waited[0]], (waited, list(compile_queue._BY_KEY))
    np.testing.assert_array_equal(out, a * 7.0 + 1.0)
    with compiled() as names:
        out = run_batched(k_masked, (a[:5],), min_rows=300, k=7.0)  # a few rows in the same program
    assert not [n for n in names if "k_masked" in n], names
    np.testing.assert_array_equal(out, a[:5] * 7.0 + 1.0)


def test_deseq2_warmup_compiles_what_the_fit_runs():
    rng = np.random.default_rng(3)
    g, n = 300, 8
    mu = 2.0 ** rng.normal(5.0, 1.5, g)[:, None] * np.where(np.arange(n) < n // 2, 1.0, 2.0)
    counts = pd.DataFrame(rng.negative_binomial(5.0, 5.0 / (5.0 + mu)), index=[f"g{i}" for i in range(g)],
                          columns=[f"s{j}" for j in range(n)])
    meta = pd.DataFrame({"condition": ["A"] * (n // 2) + ["B"] * (n // 2)}, index=counts.columns)
    x = np.stack([np.ones(n), (meta.condition == "B").to_numpy(float)], 1)
    # a variant the rest of the suite does not compile (max_iter), so the warm-up's work is seen here
    opts = DESeq2Options(disp_maxit=99)
    warmup.start(counts.to_numpy(float), x, opts, test="wald", shard=True)
    compile_queue.wait(lambda key: True)
    with compiled() as names:
        fit = fit_deseq2(counts, meta, "~condition", options=opts)
    ours = {kernels.k_line_search.__name__, kernels.k_irls.__name__}
    assert not [nm for nm in names if any(k in nm for k in ours)], names
    res = fit.results()
    assert np.isfinite(res["pvalue"]).all()


def test_compile_queue_runs_each_task_once_and_the_waiting_thread_compiles_only_what_it_waits_for():
    gate = threading.Event()
    started = [threading.Event() for _ in range(compile_queue.WORKERS)]
    ran: list[tuple[str, str]] = []

    def task(name, block=None):
        def fn():
            if block is not None:
                started[block].set()
                gate.wait(10.0)
            ran.append((name, threading.current_thread().name))
            if name == "bad":
                raise RuntimeError("a failed compile only costs time")
        return fn

    tag = ("test-queue", id(gate))
    try:
        slow = [compile_queue.submit(tag + ("slow", i), task(f"slow{i}", block=i)) for i in range(len(started))]
        assert all(ev.wait(10.0) for ev in started)  # every worker holds a blocking task
        compile_queue.submit(tag + ("a",), task("a"))
        compile_queue.submit(tag + ("bad",), task("bad"))
        later = compile_queue.submit(tag + ("later",), task("later"))
        again = compile_queue.submit(tag + ("a",), task("a-again"))  # same key: not queued twice
        compile_queue.wait(lambda k: k[:2] == tag and k[2] in ("a", "bad"))  # returns, though "bad" failed
        me = threading.current_thread().name
        # nobody had started them, so this (waiting) thread compiled them; it left "later" to the workers
        # and did not wait for the blocked ones
        assert sorted(ran) == [("a", me), ("bad", me)], ran
        assert not gate.is_set() and not later.done() and not any(f.done() for f in slow)
    finally:
        gate.set()
    compile_queue.wait(lambda k: k[:2] == tag)
    assert sorted(n for n, _ in ran) == ["a", "bad", "later"] + [f"slow{i}" for i in range(len(started))], ran
    assert {t for n, t in ran if n == "later"} != {threading.current_thread().name}
    assert again is compile_queue.submit(tag + ("a",), task("a-third"))


def _two_groups_with_outliers(seed: int, g: int, n: int, *, log2_sd: float):
    """NB counts of two groups of n/2 samples, with one outlier count (x40) in each of 40 genes."""
    rng = np.random.default_rng(seed)
    mu = 2.0 ** rng.normal(5.0, log2_sd, g)[:, None] * np.where(np.arange(n) < n // 2, 1.0, 1.5)
    counts = rng.negative_binomial(8.0, 8.0 / (8.0 + mu))
    out = rng.choice(g, 40, replace=False)
    counts[out, rng.integers(0, n, 40)] *= 40
    counts = pd.DataFrame(counts, index=[f"g{i}" for i in range(g)], columns=[f"s{j}" for j in range(n)])
    return counts, pd.DataFrame({"condition": ["A"] * (n // 2) + ["B"] * (n // 2)}, index=counts.columns)


@pytest.mark.slow
def test_cooks_refit_of_a_large_table_runs_in_the_main_fit_programs(monkeypatch):
    # From kernels.QUEUE_ROWS genes on (tables up to kernels.SHARE_MAX_ENTRIES), the genes refitted after
    # outlier replacement run through the main fit's line search and IRLS (their rows active, the rest
    # skipped) instead of programs of their own; the answers are those of the refit in its own programs.
    counts, meta = _two_groups_with_outliers(11, kernels.QUEUE_ROWS + 104, 14, log2_sd=1.5)
    opts = DESeq2Options(disp_maxit=98, beta_maxit=99)  # programs no other test compiles
    with compiled() as names:
        shared = fit_deseq2(counts, meta, "~condition", options=opts)
    assert shared.gene["replace"].sum() >= 20
    for k in (kernels.k_line_search, kernels.k_irls):
        assert sum(k.__name__ in nm for nm in names) == 1, names  # the main fit's program, and no other
    monkeypatch.setattr(kernels, "QUEUE_ROWS", 10**9)  # the refit in programs of its own
    with compiled() as names:
        own = fit_deseq2(counts, meta, "~condition", options=opts)
    assert any(kernels.k_line_search.__name__ in nm for nm in names)
    a, b = shared.results(), own.results()
    assert np.array_equal(a.isna().to_numpy(), b.isna().to_numpy())
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-10, atol=1e-300)


@pytest.mark.slow
def test_line_search_over_count_tails_in_its_own_program_and_the_refit_follows(monkeypatch):
    # From kernels.TAIL_MIN_SAMPLES samples on, the genes of small integer counts (at most
    # kernels.TAIL_WIDTH) sum their count-only terms over their count tails, in a program of their own;
    # the others keep the program over samples; the Cook's refit runs in those same two programs. The
    # answers are those of the fit without tails, to rounding (the line search's rounding-decided steps).
    counts, meta = _two_groups_with_outliers(12, kernels.QUEUE_ROWS + 104, kernels.TAIL_MIN_SAMPLES + 16, log2_sd=2.0)
    big = (counts.to_numpy() > kernels.TAIL_WIDTH).any(axis=1)
    assert 50 < big.sum() < len(big) - 1000  # both programs have genes
    opts = DESeq2Options(disp_maxit=97, beta_maxit=99)  # programs no other test compiles
    with compiled() as names:
        tails = fit_deseq2(counts, meta, "~condition", options=opts)
    assert tails.gene["replace"].sum() >= 20
    for k in (kernels.k_line_search_tail, kernels.k_line_search):
        assert names.count(f"jit({k.__name__})") == 1, names  # the main fit and the refit share it
    monkeypatch.setattr(kernels, "TAIL_MIN_SAMPLES", 10**9)
    with compiled() as names:
        plain = fit_deseq2(counts, meta, "~condition", options=opts)
    assert f"jit({kernels.k_line_search_tail.__name__})" not in names, names
    np.testing.assert_allclose(tails.gene["dispersion"], plain.gene["dispersion"], rtol=1e-6)
    a, b = tails.results(), plain.results()
    assert np.array_equal(a.isna().to_numpy(), b.isna().to_numpy())
    np.testing.assert_allclose(a["log2FoldChange"], b["log2FoldChange"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a["pvalue"], b["pvalue"], rtol=1e-4, atol=1e-300)
