"""Sums over samples that XLA CPU compiles to one vectorised loop each.

``row_sum(terms, *operands)`` is ``jnp.sum(terms(*operands), -1)`` computed inside a conditional of its own.
XLA CPU (jax 0.12) fuses a reduction together with the elementwise work that produces its operand into one
vectorised YNNPACK kernel, whose float64 ``log`` costs ~1 ns a value, only when no other reduction in the
program shares that work. Two sums over samples of one gene's terms (a value and a derivative) share
intermediates (``log1p(y / s)``, ``1 / (mu + s)``), and XLA then materialises them as ``(G, N)`` arrays in
loop fusions, where a float64 ``log`` costs ~4 ns; the line search's step took 32 ns per sample that way,
against 8 + 8 ns for its two sums apart (docs/notes/de.md, section 20). A conditional's branch is a
computation of its own, which XLA does not fuse across. Per-gene values (``(G, 1)``) are best computed
before the call and passed in: computed inside, XLA may broadcast them to ``(G, N)`` arrays first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["row_sum"]


def row_sum(terms, *operands):
    """``jnp.sum(terms(*operands), axis=-1)``, as one fused loop (see the module docstring).

    Args:
        terms: ``(*operands) -> Float[Array, "... N"]`` elementwise terms.
        operands: pytrees of arrays (``None`` leaves allowed).

    Returns:
        ``Float[Array, "..."]``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(row_sum(lambda x: x * x, jnp.arange(4.0)))
        14.0
    """
    def total(*ops):
        return jnp.sum(terms(*ops), axis=-1)

    out = jax.eval_shape(total, *operands)
    # a predicate XLA cannot fold, so the conditional (the fusion boundary) stays in the program
    keep = lax.optimization_barrier(jnp.bool_(True))
    return lax.cond(keep, total, lambda *ops: jnp.zeros(out.shape, out.dtype), *operands)
