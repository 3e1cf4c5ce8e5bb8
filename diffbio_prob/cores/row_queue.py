"""Iterate independent rows to their own convergence: one batch, or a work queue of a fixed number of rows.

The per-gene fits of the DESeq2 pipeline (the dispersion line search, the IRLS) iterate every gene until
its own stopping rule fires, as R does gene by gene. Vectorised over genes, one ``lax.while_loop`` over the
whole batch runs until the slowest gene is done, stepping (and masking) the finished ones meanwhile. The
work queue takes, at every pass, the first ``chunk`` unfinished rows, gathers their data and state, steps
them and scatters them back, so the cost follows each row's own iteration count (the classic
stream-compaction form of a data-parallel loop: Billeter, Olsson & Assarsson, "Efficient stream compaction
on wide SIMD many-core architectures", HPG 2009). A row that starts done (an inactive row: padding, or a
gene another call owns) is never stepped.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

__all__ = ["masked_loop"]


def masked_loop(step, data, state, *, done_index: int, max_steps: int, compact: int | None):
    """Run ``state = step(data, state)`` until every row is done, optionally as a work queue.

    Args:
        step: ``(data, state) -> state`` on any number of rows; it must leave done rows unchanged and mark
            a row done by ``max_steps`` of its own steps at the latest.
        data: tuple of arrays with the rows on their first axis (read only).
        state: tuple of arrays with the rows on their first axis; ``state[done_index]`` is the boolean
            done flag.
        max_steps: bound on the passes of the one-batch loop.
        compact: ``chunk`` to step ``chunk`` unfinished rows at a time (XLA then compiles one copy of
            ``step``, for ``chunk`` rows); ``None`` for the whole batch at every pass.

    Returns:
        The final state.
    """
    if compact is None:
        def body(carry):
            t, s = carry
            return t + 1, step(data, s)

        def cond(carry):
            t, s = carry
            return (t < max_steps) & ~jnp.all(s[done_index])

        return lax.while_loop(cond, body, (0, state))[1]
    g = state[done_index].shape[0]
    chunk = int(min(compact, g))

    def queue_body(st):
        (idx,) = jnp.nonzero(~st[done_index], size=chunk, fill_value=g)
        valid = idx < g
        idx_c = jnp.minimum(idx, g - 1)
        sub = tuple(x[idx_c] for x in st)
        # empty slots read row g-1 marked done (step leaves it unchanged) and are dropped from the scatter
        sub = tuple(jnp.where(valid, x, True) if i == done_index else x for i, x in enumerate(sub))
        sub = step(tuple(x[idx_c] for x in data), sub)
        tgt = jnp.where(valid, idx, g)
        return tuple(x.at[tgt].set(y, mode="drop") for x, y in zip(st, sub))

    # every row's own step count is bounded (``step`` marks it done at max_steps), so the queue empties
    return lax.while_loop(lambda st: ~jnp.all(st[done_index]), queue_body, state)
