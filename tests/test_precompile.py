"""Programs compiled ahead of their first call (``parallel.precompile``, the DESeq2 warm-up) are the ones
the calls run: once the background compilation has finished, the call compiles nothing."""

from __future__ import annotations

import contextlib
import threading

import jax
import numpy as np
import pandas as pd

from diffbio_prob import compile_queue
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


def test_compile_queue_runs_each_task_once_and_the_waiting_thread_helps():
    gate, started = threading.Event(), threading.Event()
    ran: list[tuple[str, str]] = []

    def task(name, block=False):
        def fn():
            if block:
                started.set()
                gate.wait(5.0)
            ran.append((name, threading.current_thread().name))
            if name == "bad":
                raise RuntimeError("a failed compile only costs time")
        return fn

    tag = ("test-queue", id(gate))
    first = compile_queue.submit(tag + ("slow",), task("slow", block=True))
    assert started.wait(5.0)  # the worker has taken "slow" and blocks on it
    compile_queue.submit(tag + ("a",), task("a"))
    compile_queue.submit(tag + ("bad",), task("bad"))
    again = compile_queue.submit(tag + ("a",), task("a-again"))  # same key: not queued twice
    threading.Timer(1.0, gate.set).start()
    compile_queue.wait(lambda k: k[:2] == tag)  # returns, though "bad" failed
    names = [n for n, _ in ran]
    assert sorted(names) == ["a", "bad", "slow"], ran
    assert first.done() and again is compile_queue.submit(tag + ("a",), task("a-third"))
    # while the worker was stuck on "slow", this (waiting) thread compiled the others itself
    me = threading.current_thread().name
    assert {t for n, t in ran if n in ("a", "bad")} == {me}, ran
