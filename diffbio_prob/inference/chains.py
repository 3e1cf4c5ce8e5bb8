"""Chain maps: how one chain's program is run for every chain.

A chain is a pure function ``chain(key, index, inputs) -> pytree`` (``key`` its PRNG key, ``index`` its
number, for progress bars; ``inputs`` the data, the same for every chain). A chain map runs it for a batch
of keys and returns the outputs stacked on a leading chain axis, compiling what it runs:

- ``"sequential"``: one chain after the other. The chain is compiled once, as one program, and called for
  each key (see :func:`_sequential` for why not a ``lax.map``); the draws are those of ``"lax_map"``.
- ``"lax_map"``: one program, a ``lax.map`` over the keys (sequential chains inside one program).
- ``"vectorized"``: one program, ``vmap`` over the keys (all chains advance in lock step).
- ``"parallel"``: one program sharded over a device mesh (``shard_map``, mesh axis ``"chain"``); each
  device runs its block of chains vectorised. Uses the largest number of devices (of ``jax.devices()``)
  that divides the number of chains (the mesh is :func:`diffbio_prob.parallel.device_mesh`); on a CPU,
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``. In a job of several processes
  (:func:`diffbio_prob.distributed.initialize`) the mesh spans every process's devices and every process
  gets all the draws. Inside it :func:`diffbio_prob.parallel.constrain_batch`
  leaves a model's batch unsplit: the chains hold the devices.

:func:`register_chain_map` adds a map under a new name (e.g. a multi-host one).

``"auto"`` is no map but a rule (:func:`resolve_chain_method`): ``"parallel"`` when the chains can be spread
over two or more devices (of one process or of several), else ``"sequential"``.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffbio_prob import parallel

__all__ = ["AUTO", "ChainMap", "chain_map", "chain_map_names", "chain_method_names", "check_chain_method",
           "register_chain_map", "resolve_chain_method"]

#: The chain method that picks a chain map for the devices at hand (:func:`resolve_chain_method`).
AUTO = "auto"

#: ``chain_map(chain, keys, inputs) -> outputs`` with a leading chain axis.
ChainMap = Callable[[Callable, jax.Array, Any], Any]


def _indices(keys) -> jax.Array:
    return jnp.arange(_num_chains(keys), dtype=jnp.int32)


def _num_chains(keys) -> int:
    return int(jnp.shape(keys)[0])


def _stack(outputs: list) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outputs)


def _sequential(chain: Callable, keys, inputs):
    """One compiled chain program, called once per key.

    Why not one ``lax.map`` program (``"lax_map"``): an earlier measurement found the ``lax.map`` over the
    chains of the HMM NUTS fit compiling ~40% slower than one chain program called twice. Re-measured when
    this module was written (fresh processes, no compilation cache, HMM on 1,500 casino rolls and the EM
    model on salmon's sample data, 2 chains x 150+150 draws, float32; a 2-core machine shared with other
    jobs, so CPU seconds, medians of 3-4 runs): HMM 23.8 s per-chain calls vs 22.5 s ``lax.map``, EM
    9.7 s vs 10.7 s, i.e. no consistent difference. The per-chain program stays the default: it is the
    smaller program (one chain), and the same compiled program runs every chain.
    """
    program = jax.jit(chain)
    return _stack([program(key, jnp.int32(i), inputs) for i, key in enumerate(keys)])


def _lax_map(chain: Callable, keys, inputs):
    """One program: ``lax.map`` of the chain over the keys."""

    @jax.jit
    def program(keys, indices, inputs):
        return jax.lax.map(lambda ki: chain(ki[0], ki[1], inputs), (keys, indices))

    return program(keys, _indices(keys), inputs)


def _vectorized(chain: Callable, keys, inputs):
    """One program: ``vmap`` of the chain over the keys."""
    return jax.jit(jax.vmap(chain, in_axes=(0, 0, None)))(keys, _indices(keys), inputs)


def _parallel_size(num_chains: int) -> int:
    """How many devices ``"parallel"`` runs ``num_chains`` chains on: the most that divide them evenly."""
    return max(d for d in range(1, min(num_chains, jax.device_count()) + 1) if num_chains % d == 0)


def _parallel(chain: Callable, keys, inputs):
    """One program sharded over a 1-d device mesh (axis ``"chain"``), each device's chains vectorised.

    With several processes the mesh spans their devices (``jax.devices()`` lists them all): the keys go
    on it split by chain and the inputs whole on every device (:func:`diffbio_prob.parallel.place`; every
    process passes the same values, as every process runs the same fit), and the draws come back to every
    process (:func:`diffbio_prob.parallel.gather`), so the caller's code is the same on one process or many.
    """
    from jax.sharding import PartitionSpec

    mesh = parallel.device_mesh("chain", _parallel_size(_num_chains(keys)))
    specs = dict(mesh=mesh, in_specs=(PartitionSpec("chain"), PartitionSpec("chain"), PartitionSpec()),
                 out_specs=PartitionSpec("chain"), check_vma=False)
    block = jax.vmap(chain, in_axes=(0, 0, None))
    if all(d.process_index == jax.process_index() for d in mesh.devices.flat):
        return jax.jit(jax.shard_map(block, **specs))(keys, _indices(keys), inputs)
    indices = _indices(keys)
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        # a process-spanning array is built from numpy blocks: the key data travel, the keys are rebuilt
        impl, inner = jax.random.key_impl(keys), block
        block = lambda data, index, inputs: inner(jax.random.wrap_key_data(data, impl=impl), index, inputs)  # noqa: E731
        keys = jax.random.key_data(keys)
    keys, indices = parallel.place(mesh, (np.asarray(keys), np.asarray(indices)), batched=True)
    out = jax.jit(jax.shard_map(block, **specs))(keys, indices, parallel.place(mesh, inputs, batched=False))
    return parallel.gather(out)


_CHAIN_MAPS: dict[str, ChainMap] = {
    "sequential": _sequential,
    "lax_map": _lax_map,
    "vectorized": _vectorized,
    "parallel": _parallel,
}


def chain_map_names() -> tuple[str, ...]:
    """The registered chain maps' names."""
    return tuple(_CHAIN_MAPS)


def chain_map(name: str) -> ChainMap:
    """The chain map registered as ``name`` (see the module docstring)."""
    if not isinstance(name, str) or name not in _CHAIN_MAPS:
        raise ValueError(f"chain_method: expected one of {', '.join(map(repr, _CHAIN_MAPS))}, got {name!r}")
    return _CHAIN_MAPS[name]


def chain_method_names() -> tuple[str, ...]:
    """What ``fit_nuts(chain_method=...)`` takes: ``"auto"`` and the registered chain maps' names."""
    return (AUTO, *_CHAIN_MAPS)


def check_chain_method(chain_method) -> str:
    """``chain_method`` if it is ``"auto"`` or a registered chain map's name; else a ``ValueError`` naming it."""
    if not isinstance(chain_method, str) or chain_method not in chain_method_names():
        raise ValueError(f"chain_method: expected one of {', '.join(map(repr, chain_method_names()))}, "
                         f"got {chain_method!r}")
    return chain_method


def resolve_chain_method(chain_method: str, num_chains: int) -> str:
    """The chain map ``chain_method`` names: itself, or for ``"auto"`` the one that suits the devices.

    ``"auto"`` is ``"parallel"`` when at least two devices would run chains: some ``d >= 2`` with
    ``d <= jax.device_count()`` divides ``num_chains`` (what ``"parallel"`` shards over, see
    :func:`_parallel_size`); otherwise ``"sequential"``. So one device, one chain, or 3 chains on 2 devices
    give ``"sequential"``: a ``"parallel"`` run on one device would only vectorise the chains. In a job of
    several processes ``jax.device_count()`` counts every process's devices, so the chains spread over the
    processes (each runs its share; every process gets all the draws).
    """
    check_chain_method(chain_method)
    if chain_method != AUTO:
        return chain_method
    if isinstance(num_chains, bool) or not isinstance(num_chains, numbers.Integral) or num_chains < 1:
        raise ValueError(f"num_chains: expected a positive integer, got {num_chains!r}")
    if _parallel_size(int(num_chains)) >= 2:
        return "parallel"
    return "sequential"


def register_chain_map(name: str, fn: ChainMap) -> None:
    """Register ``fn(chain, keys, inputs) -> outputs stacked on a leading chain axis`` as ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if name == AUTO:
        raise ValueError(f"name: {AUTO!r} is resolve_chain_method's rule, not a chain map; pick another name")
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    _CHAIN_MAPS[name] = fn
