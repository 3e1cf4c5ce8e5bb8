"""One batch axis over all local devices: padding to shape buckets, a one-axis mesh, and two builds.

A per-gene (or per-sequence) kernel takes arrays whose first axis is the batch. :func:`run_batched` pads that
axis to a bucket (so nearby sizes share one compiled program), places it on a ``("batch",)`` mesh over the
local devices when there are several (``jax.sharding.NamedSharding``; XLA then runs each device's share
and results do not change), calls the kernel and cuts the padding off every output. Padding repeats the
first row, a real problem that converges like the others, so no masked-out row can produce a NaN.

:class:`Padding` pads the sample and coefficient axes of small problems to one shape, masked out inside
the cores, so every design up to 104 samples and 6 coefficients shares one program. :func:`kernel` builds
each jitted function twice: XLA's full optimisation for large problems, and optimisation level 0 for small
ones, which compiles ~3x faster and runs ~2x slower (a win below a few thousand rows, where compilation is
most of the time); the numbers agree to rounding.

Imports jax and numpy only; the workflows use it, the cores do not.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

__all__ = ["Padding", "Kernel", "kernel", "batch_mesh", "padded_size", "run_batched"]

BUCKET = 256
SMALL_BATCH = 2048
MIN_SAMPLES = 104
MIN_COEFS = 6
AXIS = "batch"


def batch_mesh(shard: bool = True):
    """A one-axis mesh over the local devices, or ``None`` with one device or ``shard=False``."""
    if not shard:
        return None
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.array(devices), (AXIS,))


def padded_size(n: int, n_dev: int) -> int:
    """The batch size ``n`` rounded up to a multiple of ``BUCKET * n_dev`` (at least one bucket)."""
    unit = BUCKET * n_dev
    return max(unit, int(math.ceil(n / unit)) * unit)


@dataclasses.dataclass(frozen=True)
class Padding:
    """Padding of the sample and coefficient axes of a ``(N, P)`` design (masked out inside the cores)."""

    n: int
    p: int
    n_pad: int
    p_pad: int

    @classmethod
    def of(cls, design: np.ndarray, n_rows: int) -> "Padding":
        n, p = design.shape
        if n_rows > SMALL_BATCH:
            return cls(n, p, n, p)
        n_pad = max(MIN_SAMPLES, int(math.ceil(n / 8)) * 8)
        p_pad = max(MIN_COEFS, p + (p % 2))
        return cls(n, p, n_pad, p_pad)

    def samples(self, a, fill: float) -> np.ndarray:
        a = np.asarray(a, dtype=float)
        if self.n_pad == self.n:
            return a
        pad = np.full(a.shape[:-1] + (self.n_pad - self.n,), fill)
        return np.concatenate([a, pad], axis=-1)

    def coefs(self, a) -> np.ndarray:
        a = np.asarray(a, dtype=float)
        if self.p_pad == self.p:
            return a
        return np.concatenate([a, np.zeros(a.shape[:-1] + (self.p_pad - self.p,))], axis=-1)

    def design(self, x) -> np.ndarray:
        out = np.zeros((self.n_pad, self.p_pad))
        out[: self.n, : self.p] = x
        return out

    @property
    def sample_mask(self) -> np.ndarray:
        return (np.arange(self.n_pad) < self.n).astype(float)

    @property
    def coef_mask(self) -> np.ndarray:
        return (np.arange(self.p_pad) < self.p).astype(float)


class Kernel:
    """A jitted function in two builds, ``large`` (full XLA optimisation) and ``small`` (level 0)."""

    def __init__(self, fn, static_argnames=()):
        self.__name__ = fn.__name__
        self.large = jax.jit(fn, static_argnames=static_argnames)
        self.small = jax.jit(
            fn, static_argnames=static_argnames, compiler_options={"xla_backend_optimization_level": 0}
        )


def kernel(*static_argnames):
    """Decorator: ``@kernel("tol")`` turns a function into a :class:`Kernel`."""
    return lambda fn: Kernel(fn, static_argnames)


def run_batched(kern: Kernel, batch_args: tuple, shared_args: tuple = (), *, shard: bool = True, **static):
    """``kern(*batch_args, *shared_args, **static)`` with the batch axis padded and sharded.

    Args:
        kern: a :class:`Kernel`.
        batch_args: arrays whose first axis is the batch (genes).
        shared_args: arguments every row shares (replicated on every device).
        shard: use all local devices when there are several.
        static: static keyword arguments of the kernel.

    Returns:
        The kernel's outputs (a pytree) as numpy arrays, each cut back to the batch size.
    """
    g = int(batch_args[0].shape[0])
    mesh = batch_mesh(shard)
    n_dev = 1 if mesh is None else mesh.size
    size = padded_size(g, n_dev)
    padded = []
    for a in batch_args:
        a = np.asarray(a)
        if size > g:
            a = np.concatenate([a, np.repeat(a[:1], size - g, axis=0)], axis=0)
        if mesh is not None:
            spec = jax.sharding.PartitionSpec(AXIS, *([None] * (a.ndim - 1)))
            a = jax.device_put(a, jax.sharding.NamedSharding(mesh, spec))
        padded.append(a)
    shared = []
    for a in shared_args:
        if mesh is not None and isinstance(a, np.ndarray):
            a = jax.device_put(a, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        shared.append(a)
    fn = kern.small if size <= SMALL_BATCH * n_dev else kern.large
    out = fn(*padded, *shared, **static)
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[:g], out)
