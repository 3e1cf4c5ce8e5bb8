"""A queue of XLA compilations started ahead of their first call, run by one background thread per core
but the pipeline's, with the short first stage of each (tracing and lowering) also done by a waiting thread.

A pipeline that knows its shapes up front queues its programs in the order it will need them
(:func:`diffbio_prob.parallel.precompile`); one worker thread per usable core but the pipeline's own
compiles them, oldest first, while the pipeline does its host work and runs the programs already built. A task has two stages: ``prepare`` (JAX tracing and lowering: ~0.2 s of Python)
and ``fn`` (the XLA compilation, seconds, off the interpreter lock).

When the pipeline reaches a call whose program is not built yet, :func:`wait` does not idle: it takes
that program out of the queue and compiles it itself when nobody has started it, and, while it waits for
one already compiling, it runs the ``prepare`` stage of the programs queued after it, so the worker then
goes straight to their compilation. A waiting thread never compiles some other program: an earlier version
took the next one in the queue (work stealing), and at 100 x 10,000 the DESeq2 fit sat 0.6 s compiling
the Wald test's program while the line search it had waited for was already built. No stage runs twice.

The standard library only.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["submit", "wait", "abandon", "WORKERS"]

#: background compiling threads: one per core this process may run on, less the one the pipeline runs on
#: (XLA runs a CPU program on the calling thread's core). XLA's own compilation already uses a second core
#: part of the time (1.84 s of CPU in 1.06 s for the line search at 10,240 x 100): on 2 cores two workers
#: made a 100 x 10,000 fit slower (5.6 against 5.3 s).
WORKERS = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)) - 1)


class _Task:
    def __init__(self, fut: concurrent.futures.Future, fn: Callable[..., None], prepare: Callable[[], Any] | None):
        self.fut, self.fn, self.prepare = fut, fn, prepare
        self.lock = threading.Lock()  # held while the prepare stage runs
        self.prepared = prepare is None
        self.state: Any = None
        self.error: BaseException | None = None

    def run_prepare(self) -> None:
        with self.lock:
            if self.prepared:
                return
            try:
                self.state = self.prepare()
            except BaseException as exc:  # noqa: BLE001 - kept for the task; a failed precompile only costs time
                self.error = exc
            self.prepared = True

    def run(self) -> None:
        if not self.fut.set_running_or_notify_cancel():
            return
        self.run_prepare()
        try:
            if self.error is not None:
                raise self.error
            if self.prepare is None:
                self.fn()
            else:
                self.fn(self.state)
        except BaseException as exc:  # noqa: BLE001 - kept on the future; a failed precompile only costs time
            self.fut.set_exception(exc)
        else:
            self.fut.set_result(None)
        self.state = None


_LOCK = threading.Lock()
_QUEUE: collections.deque = collections.deque()  # tasks not started yet, in submission order
_BY_KEY: dict[Hashable, concurrent.futures.Future] = {}  # every task ever submitted, by its key
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _run_next() -> None:
    """Pop the oldest task nobody has started and run it here (a worker's job)."""
    with _LOCK:
        if not _QUEUE:
            return
        task = _QUEUE.popleft()
    task.run()


def _take(fut: concurrent.futures.Future) -> _Task | None:
    """``fut``'s task out of the queue when nobody has started it, else ``None``."""
    with _LOCK:
        for i, task in enumerate(_QUEUE):
            if task.fut is fut:
                del _QUEUE[i]
                return task
    return None


def _next_unprepared() -> _Task | None:
    with _LOCK:
        return next((t for t in _QUEUE if not t.prepared and not t.lock.locked()), None)


def submit(key: Hashable, fn: Callable[..., None], *, prepare: Callable[[], Any] | None = None
           ) -> concurrent.futures.Future:
    """Queue ``fn`` (a compilation) under ``key``; a key already queued or done is not queued again.

    ``prepare``: a short first stage whose result ``fn`` takes (``fn(prepare())``); a thread waiting for
    another task may run it ahead of the worker.
    """
    global _POOL
    with _LOCK:
        if key in _BY_KEY:
            return _BY_KEY[key]
        fut: concurrent.futures.Future = concurrent.futures.Future()
        _BY_KEY[key] = fut
        _QUEUE.append(_Task(fut, fn, prepare))
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="diffbio-compile")
    _POOL.submit(_run_next)
    return fut


def wait(match: Callable[[Hashable], bool]) -> None:
    """Return once every task whose key satisfies ``match`` has finished: compiling here those of them that
    nobody has started, and preparing queued tasks while one is compiling elsewhere.

    A task's failure is not raised here: the caller's own call then compiles (and raises) as it would have.
    """
    with _LOCK:
        futs = [f for k, f in _BY_KEY.items() if match(k) and not f.done()]
    for fut in futs:
        task = _take(fut)
        if task is not None:
            task.run()
        while not fut.done():
            other = _next_unprepared()
            if other is None:
                concurrent.futures.wait([fut])
            else:
                other.run_prepare()


def abandon() -> None:
    """Drop the tasks nobody has started and wait for those running (before the process exits at once).

    A program queued but never called was not needed by this run; compiling it at exit only delays the
    exit. One being compiled is waited for, so its persistent-cache entry is not left half written.
    """
    with _LOCK:
        dropped = list(_QUEUE)
        _QUEUE.clear()
        running = [f for f in _BY_KEY.values() if f.running()]
    for task in dropped:
        task.fut.cancel()
    concurrent.futures.wait(running)
