"""A queue of XLA compilations started ahead of their first call, run by one background thread and by any
thread that would otherwise wait for one of them.

XLA compiles a program on one core. A pipeline that knows its shapes up front queues its programs in the
order it will need them (:func:`diffbio_prob.parallel.precompile`); one worker thread compiles them one
after another while the pipeline does its host work on the other core. When the pipeline reaches a call
whose program is still compiling, :func:`wait` does not idle: the waiting thread takes the next program
nobody has started and compiles it itself, then looks again (work stealing, as in Blumofe & Leiserson,
"Scheduling multithreaded computations by work stealing", J. ACM 1999). No core is oversubscribed, and
no program is compiled twice: every task runs once, by whichever thread pops it first.

The standard library only.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable, Hashable

__all__ = ["submit", "wait"]

_LOCK = threading.Lock()
_QUEUE: collections.deque = collections.deque()  # (future, fn) not started yet, in submission order
_BY_KEY: dict[Hashable, concurrent.futures.Future] = {}  # every task ever submitted, by its key
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _run_next() -> bool:
    """Pop the oldest task nobody has started and run it here; ``False`` when there is none."""
    with _LOCK:
        if not _QUEUE:
            return False
        fut, fn = _QUEUE.popleft()
    if fut.set_running_or_notify_cancel():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - kept on the future; a failed precompile only costs time
            fut.set_exception(exc)
        else:
            fut.set_result(None)
    return True


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
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffbio-compile")
    _POOL.submit(_run_next)
    return fut


def wait(match: Callable[[Hashable], bool]) -> None:
    """Return once every task whose key satisfies ``match`` has finished, compiling queued tasks meanwhile.

    A task's failure is not raised here: the caller's own call then compiles (and raises) as it would have.
    """
    with _LOCK:
        futs = [f for k, f in _BY_KEY.items() if match(k) and not f.done()]
    for fut in futs:
        while not fut.done():
            if not _run_next():
                concurrent.futures.wait([fut])
