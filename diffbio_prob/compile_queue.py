"""A queue of XLA compilations started ahead of their first call, run by one background thread per core
and by a thread that waits for one of them nobody has started.

XLA compiles a program on one core. A pipeline that knows its shapes up front queues its programs in the
order it will need them (:func:`diffbio_prob.parallel.precompile`); one worker thread per usable core but
the pipeline's own compiles them, oldest first, while the pipeline does its host work and runs the
programs already built. When the pipeline reaches a call whose
program nobody has started yet, :func:`wait` takes that program out of the queue and compiles it itself;
a program already compiling it waits for. A waiting thread never takes some other program: an earlier
version took the next one in the queue (work stealing), and at 100 x 10,000 the DESeq2 fit sat 0.6 s
compiling the Wald test's program while the line search it had waited for was already built. No program
is compiled twice: every task runs once, by whichever thread pops it first.

The standard library only.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
from collections.abc import Callable, Hashable

__all__ = ["submit", "wait", "abandon", "WORKERS"]

#: background compiling threads: one per core this process may run on, less the one the pipeline runs on
#: (XLA runs a CPU program on the calling thread's core)
WORKERS = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)) - 1)

_LOCK = threading.Lock()
_QUEUE: collections.deque = collections.deque()  # (future, fn) not started yet, in submission order
_BY_KEY: dict[Hashable, concurrent.futures.Future] = {}  # every task ever submitted, by its key
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _run(fut: concurrent.futures.Future, fn: Callable[[], None]) -> None:
    if fut.set_running_or_notify_cancel():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - kept on the future; a failed precompile only costs time
            fut.set_exception(exc)
        else:
            fut.set_result(None)


def _run_next() -> None:
    """Pop the oldest task nobody has started and run it here (a worker's job)."""
    with _LOCK:
        if not _QUEUE:
            return
        fut, fn = _QUEUE.popleft()
    _run(fut, fn)


def _take(fut: concurrent.futures.Future):
    """``fut``'s task out of the queue when nobody has started it, else ``None``."""
    with _LOCK:
        for i, (f, fn) in enumerate(_QUEUE):
            if f is fut:
                del _QUEUE[i]
                return fn
    return None


def submit(key: Hashable, fn: Callable[[], None]) -> concurrent.futures.Future:
    """Queue ``fn`` (a compilation) under ``key``; a key already queued or done is not queued again."""
    global _POOL
    with _LOCK:
        if key in _BY_KEY:
            return _BY_KEY[key]
        fut: concurrent.futures.Future = concurrent.futures.Future()
        _BY_KEY[key] = fut
        _QUEUE.append((fut, fn))
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="diffbio-compile")
    _POOL.submit(_run_next)
    return fut


def wait(match: Callable[[Hashable], bool]) -> None:
    """Return once every task whose key satisfies ``match`` has finished, compiling here those of them that
    nobody has started.

    A task's failure is not raised here: the caller's own call then compiles (and raises) as it would have.
    """
    with _LOCK:
        futs = [f for k, f in _BY_KEY.items() if match(k) and not f.done()]
    for fut in futs:
        fn = _take(fut)
        if fn is not None:
            _run(fut, fn)
        concurrent.futures.wait([fut])


def abandon() -> None:
    """Drop the tasks nobody has started and wait for those running (before the process exits at once).

    A program queued but never called was not needed by this run; compiling it at exit only delays the
    exit. One being compiled is waited for, so its persistent-cache entry is not left half written.
    """
    with _LOCK:
        dropped = list(_QUEUE)
        _QUEUE.clear()
        running = [f for f in _BY_KEY.values() if f.running()]
    for fut, _ in dropped:
        fut.cancel()
    concurrent.futures.wait(running)
