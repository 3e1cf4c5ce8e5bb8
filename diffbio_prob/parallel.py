"""One batch axis over all devices of all processes: padding to shape buckets, a one-axis mesh, two builds.

A per-gene (or per-sequence) kernel takes arrays whose first axis is the batch. :func:`run_batched` pads that
axis to a bucket (so nearby sizes share one compiled program), places it on a ``("batch",)`` mesh over
``jax.devices()`` when there are several (``jax.sharding.NamedSharding``; XLA then runs each device's share
and results do not change), calls the kernel and cuts the padding off every output. Padding repeats the
first row, a real problem that converges like the others, so no masked-out row can produce a NaN.

Several processes (after :func:`diffbio_prob.distributed.initialize`): ``jax.devices()`` then lists every
process's devices, so the same mesh spans them. Every process holds the whole input and runs the same
calls; :func:`place` builds the global arrays from it (each process fills its own devices' blocks) and
:func:`gather` brings every output back to every process
(``jax.experimental.multihost_utils.process_allgather``), so the code after a sharded call is the same
on one process or many (https://docs.jax.dev/en/latest/multi_process.html).

:class:`Padding` pads the sample and coefficient axes of small problems to one shape, masked out inside
the cores, so every design up to 104 samples shares one program per even number of coefficients (a
program for 2 coefficients, the two-group design, compiles in half the time of one for 6). :func:`kernel` builds
each jitted function twice: XLA optimisation level 1 for large problems (as fast as the default level there,
and ~20% quicker to compile), and level 0 for small ones, which compiles faster still and runs ~2x slower (a
win below a few thousand rows, where compilation is most of the time); the numbers agree to rounding.

Imports jax and numpy only; the workflows, the HMM operator and model and ``fit_nuts``'s chains use it, the
cores do not.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from diffbio_prob import compile_queue

__all__ = [
    "Padding", "Kernel", "kernel", "batch_mesh", "padded_size", "run_batched", "precompile", "place", "gather",
    "constrain_batch", "constrain_shared", "constrain_gathered", "device_mesh",
]

BUCKET = 256
SMALL_BATCH = 2048
MIN_SAMPLES = 104
MIN_COEFS = 2
AXIS = "batch"


def batch_mesh(shard: bool = True):
    """A one-axis mesh over all devices (every process's), or ``None`` with one device or ``shard=False``."""
    if not shard:
        return None
    if jax.device_count() < 2:
        return None
    return device_mesh(AXIS)


def _batch_sharding(mesh, ndim: int):
    """``mesh``'s sharding of an array with ``ndim`` axes split along its first (batch) axis over the mesh's
    axis (``"batch"``, or e.g. ``fit_nuts``'s ``"chain"``)."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names[0], *([None] * (ndim - 1))))


def place(mesh, tree, *, batched: bool = True):
    """Every array leaf of ``tree`` as a global array on ``mesh``, split along its first axis (``batched``)
    or replicated; ``mesh=None``: ``tree`` as it is. Every process must pass the same values."""
    if mesh is None:
        return tree
    local = all(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def put(x):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            return x
        sharding = (_batch_sharding(mesh, x.ndim) if batched and x.ndim
                    else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        if local:
            return jax.device_put(x, sharding)
        x = np.asarray(x)  # a process-local jax.Array cannot be resharded onto other processes' devices
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(put, tree)


def gather(tree):
    """Every array leaf of ``tree`` as a numpy array, gathered from all processes where it spans several."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree_util.tree_map(get, tree)


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
    """A jitted function in two builds, ``large`` (XLA CPU optimisation level 1) and ``small`` (level 0).

    ``masks_rows``: the function takes, after its batch arguments, a boolean row mask ``active``, which
    :func:`run_batched` makes (false on the padding rows) and the function honours by not iterating
    those rows; a small batch can then run in a larger batch's program at the cost of its own rows.
    """

    def __init__(self, fn, static_argnames=(), masks_rows=False):
        self.__name__ = fn.__name__
        self.masks_rows = masks_rows
        # level 1: ~20% less compile time than the default on the DESeq2 kernels, the same run time
        self.large = jax.jit(
            fn, static_argnames=static_argnames, compiler_options={"xla_backend_optimization_level": 1}
        )
        self.small = jax.jit(
            fn, static_argnames=static_argnames, compiler_options={"xla_backend_optimization_level": 0}
        )


def kernel(*static_argnames, masks_rows: bool = False):
    """Decorator: ``@kernel("tol")`` turns a function into a :class:`Kernel`."""
    return lambda fn: Kernel(fn, static_argnames, masks_rows)


def _place_shared(mesh, shared_args) -> list:
    return [place(mesh, a, batched=False) if isinstance(a, (np.ndarray, jax.Array)) else a for a in shared_args]


def _build(kern: Kernel, rows: int, n_dev: int, batch_shapes):
    small = rows <= SMALL_BATCH * n_dev
    return (kern.small if small else kern.large), (id(kern), small, tuple(batch_shapes))


def precompile(kern: Kernel, batch_specs: tuple, shared_args: tuple = (), *, shard: bool = True, **static):
    """Compile ``kern`` for the call :func:`run_batched` will make with arguments of these shapes, in a
    background thread, and return its ``concurrent.futures.Future``.

    XLA compiles one program on one core; a pipeline that knows its shapes up front (the DESeq2 workflow
    does, once the counts are read) compiles its programs side by side while it does its host-side work,
    instead of one after another at their first calls. ``batch_specs`` are the batch arguments' shapes and
    dtypes before padding (anything with ``.shape`` and ``.dtype``); ``shared_args`` and ``static`` are
    the call's own. The compiled program lands in JAX's in-memory caches (and its persistent cache when
    that is on), where the later call finds it; that call waits for this one. A mismatched spec only costs
    the background work: the call then compiles its own program as usual. Runs under the calling thread's
    ``jax_enable_x64`` setting (JAX's configuration contexts are per thread). The programs are compiled in
    the order they were asked for (:mod:`diffbio_prob.compile_queue`: worker threads, and a thread waiting
    for one of them, which also lowers the programs queued after it); the same program asked for twice is
    compiled once.
    """
    g = int(batch_specs[0].shape[0])
    mesh = batch_mesh(shard)
    n_dev = 1 if mesh is None else mesh.size
    size = padded_size(g, n_dev)
    specs = list(batch_specs) + ([np.zeros((), bool)] if kern.masks_rows else [])  # + run_batched's row mask
    shapes = [(size,) + tuple(a.shape[1:]) for a in specs]
    fn, key = _build(kern, size, n_dev, shapes)
    x64 = jax.dtypes.canonicalize_dtype(np.float64) == np.float64

    def spec(a, shape):
        if mesh is None:
            return np.broadcast_to(np.zeros((), a.dtype), shape)  # a zero-stride view: no memory
        return jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(a.dtype),
                                    sharding=_batch_sharding(mesh, len(shape)))

    batch = [spec(a, shape) for a, shape in zip(specs, shapes)]
    shared = _place_shared(mesh, shared_args)

    def lower():
        with jax.enable_x64(x64):
            return fn.lower(*batch, *shared, **static)

    def compile_(lowered):
        with jax.enable_x64(x64):
            lowered.compile()

    shared_key = tuple((np.shape(a), np.result_type(a).str) if hasattr(a, "shape") else type(a).__name__
                       for a in shared_args)
    full_key = key + (tuple(a.dtype.str for a in batch), shared_key, tuple(sorted(static.items())), x64, n_dev)
    return compile_queue.submit(full_key, compile_, prepare=lower)


def _wait_pending(key) -> None:
    # the programs queued for this kernel, build and shapes (whatever their other settings) are done first
    compile_queue.wait(lambda k: k[:3] == key)


def run_batched(kern: Kernel, batch_args: tuple, shared_args: tuple = (), *, shard: bool = True,
                min_rows: int = 0, **static):
    """``kern(*batch_args, *shared_args, **static)`` with the batch axis padded and sharded.

    Args:
        kern: a :class:`Kernel`.
        batch_args: arrays whose first axis is the batch (genes).
        shared_args: arguments every row shares (replicated on every device).
        shard: use all devices (of all processes) when there are several.
        min_rows: pad the batch to at least this many rows, so that a few rows run in the program a
            larger call of the same kernel compiled (a kernel that ``masks_rows`` then spends nothing on
            the padding; others compute it).
        static: static keyword arguments of the kernel.

    Returns:
        The kernel's outputs (a pytree) as numpy arrays, each cut back to the batch size.
    """
    g = int(batch_args[0].shape[0])
    mesh = batch_mesh(shard)
    n_dev = 1 if mesh is None else mesh.size
    size = padded_size(max(g, int(min_rows)), n_dev)
    padded = []
    for a in batch_args:
        a = np.asarray(a)
        if size > g:
            a = np.concatenate([a, np.repeat(a[:1], size - g, axis=0)], axis=0)
        padded.append(a)
    if kern.masks_rows:
        padded.append(np.arange(size) < g)
    # on the device(s) now, so the host's padded copies are freed before the call, not after it
    padded = place(mesh, padded) if mesh is not None else [jax.device_put(a) for a in padded]
    shared = _place_shared(mesh, shared_args)
    fn, key = _build(kern, size, n_dev, [a.shape for a in padded])
    _wait_pending(key)
    out = fn(*padded, *shared, **static)
    return jax.tree_util.tree_map(lambda x: x[:g], gather(out))


def _caller_owns_layout() -> bool:
    # Inside shard_map (manual mesh axes) or under jax.set_mesh a constraint naming the batch mesh is an
    # error or fights the caller's layout: the chains of fit_nuts(chain_method="parallel") already own the
    # devices there.
    return not jax.sharding.get_abstract_mesh().empty


def _off_mesh(x, mesh) -> bool:
    # An array committed to other devices than the mesh's (jax.device_put(x, jax.devices()[0])): a jitted
    # call refuses it beside a constraint naming the mesh ("Received incompatible devices"). A tracer's
    # placement cannot be seen (JAX keeps it private), so tracers are never moved.
    return (isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and x.committed
            and x.sharding.device_set != set(mesh.devices.flat))


def constrain_batch(tree, *, shard: bool = True):
    """Every array leaf of ``tree`` split along its first axis over :func:`batch_mesh`
    (``jax.lax.with_sharding_constraint``), for code that is traced (jit, grad, NumPyro's potential).

    XLA then runs each device's share of the batch (of every process's devices); each row is computed as
    before, so results do not change (sums over the batch may round differently). A leaf is left as it is
    with one device or ``shard=False``, when it has no axis, when its first axis is not a multiple of the
    device count, and inside ``shard_map`` or under ``jax.set_mesh``. Nothing is padded, unlike
    :func:`run_batched`: a padded row inside a log-density or a differentiated function would need a mask
    every caller knows about, so a batch the devices do not divide runs unsplit. Outside a trace the
    leaves are moved onto the mesh (:func:`place`), those committed to other devices too (a user's
    ``jax.device_put(x, jax.devices()[0])``); such a leaf that cannot be split is replicated on the mesh
    (:func:`constrain_shared`), so that the next jitted call does not find two device sets. Inside a trace
    (``jit``, ``jax.grad``) commitment cannot be seen: an argument of the caller's own ``jit`` or
    ``jax.grad`` committed to other devices than the mesh's conflicts with the constraint (place it with
    :func:`place`, or pass it uncommitted). With several processes every process must trace the same call
    with the same values; pair the outputs with :func:`constrain_gathered`.

    Example:
        >>> constrain_batch(np.zeros((8, 3)), shard=False).shape
        (8, 3)
    """
    mesh = batch_mesh(shard)
    if mesh is None or _caller_owns_layout():
        return tree

    def split(x):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            return x
        off = _off_mesh(x, mesh)
        if not x.ndim or x.shape[0] % mesh.size:
            return place(mesh, x, batched=False) if off else x
        if not isinstance(x, jax.core.Tracer):
            return place(mesh, x, batched=True)  # jax.device_put: a committed array moves too
        return jax.lax.with_sharding_constraint(x, _batch_sharding(mesh, x.ndim))

    return jax.tree_util.tree_map(split, tree)


def constrain_shared(tree, *, shard: bool = True):
    """Every array leaf of ``tree`` committed to other devices than :func:`batch_mesh`'s, replicated on that
    mesh (:func:`place`): the arguments every row shares (parameters) of a call whose batch
    :func:`constrain_batch` splits.

    A jitted program constrained to the mesh refuses an argument committed to other devices (a user's
    ``jax.device_put(x, jax.devices()[0])``: "Received incompatible devices for jitted computation");
    replicated on the mesh, it runs with the split batch and gives the same values. Every other leaf is left
    as it is: tracers (under ``jit`` or ``jax.grad`` commitment cannot be seen), numpy and uncommitted
    arrays (jit puts them where the program runs) and arrays on the mesh's devices; all of them with one
    device or ``shard=False``, and inside ``shard_map`` or under ``jax.set_mesh`` (no constraint there).

    Example:
        >>> constrain_shared(np.zeros(3), shard=False).shape
        (3,)
    """
    mesh = batch_mesh(shard)
    if mesh is None or _caller_owns_layout():
        return tree
    return jax.tree_util.tree_map(lambda x: place(mesh, x, batched=False) if _off_mesh(x, mesh) else x, tree)


def constrain_gathered(tree, *, shard: bool = True):
    """Every array leaf of ``tree`` whole on every device of :func:`batch_mesh` when that mesh spans
    several processes: the in-program :func:`gather` for outputs of a :func:`constrain_batch` call.

    A per-row output split over processes cannot be read by any one of them (``np.asarray`` raises), so it
    is all-gathered inside the program. On one process the leaves stay as they are: a split array is
    readable there, and replicating it would copy it to every device. Also left as they are with
    ``shard=False``, and inside ``shard_map`` or under ``jax.set_mesh``.
    """
    mesh = batch_mesh(shard)
    if mesh is None or _caller_owns_layout() or all(d.process_index == jax.process_index() for d in mesh.devices.flat):
        return tree
    whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def replicate(x):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            return x
        return jax.lax.with_sharding_constraint(x, whole)

    return jax.tree_util.tree_map(replicate, tree)


def device_mesh(axis_name: str = AXIS, size: int | None = None):
    """A one-axis mesh named ``axis_name`` over the first ``size`` devices of ``jax.devices()`` (every
    process's; default all of them), e.g. the ``"chain"`` mesh of ``fit_nuts(chain_method="parallel")``.

    Raises:
        TypeError / ValueError: naming ``axis_name`` (not a non-empty string) or ``size`` (not an integer
            in ``1..jax.device_count()``).
    """
    if not isinstance(axis_name, str):
        raise TypeError(f"axis_name: expected a string, got {type(axis_name).__name__}")
    if not axis_name:
        raise ValueError("axis_name: expected a non-empty string")
    devices = jax.devices()
    if size is None:
        size = len(devices)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size: expected an integer, got {type(size).__name__}")
    if not 1 <= size <= len(devices):
        raise ValueError(f"size: expected 1..{len(devices)} (the device count), got {size}")
    return jax.sharding.Mesh(np.array(devices[: int(size)]), (axis_name,))
