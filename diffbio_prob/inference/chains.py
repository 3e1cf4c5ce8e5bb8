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
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N``. Inside it :func:`diffbio_prob.parallel.constrain_batch`
  leaves a model's batch unsplit: the chains hold the devices.

:func:`register_chain_map` adds a map under a new name (e.g. a multi-host one).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from diffbio_prob import parallel

__all__ = ["ChainMap", "chain_map", "chain_map_names", "register_chain_map"]

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


def _parallel(chain: Callable, keys, inputs):
    """One program sharded over a 1-d device mesh (axis ``"chain"``), each device's chains vectorised."""
    from jax.sharding import PartitionSpec

    n = _num_chains(keys)
    size = max(d for d in range(1, min(n, jax.device_count()) + 1) if n % d == 0)
    mesh = parallel.device_mesh("chain", size)
    block = jax.vmap(chain, in_axes=(0, 0, None))
    sharded = jax.shard_map(block, mesh=mesh, in_specs=(PartitionSpec("chain"), PartitionSpec("chain"), PartitionSpec()),
                            out_specs=PartitionSpec("chain"), check_vma=False)
    return jax.jit(sharded)(keys, _indices(keys), inputs)


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


def register_chain_map(name: str, fn: ChainMap) -> None:
    """Register ``fn(chain, keys, inputs) -> outputs stacked on a leading chain axis`` as ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    _CHAIN_MAPS[name] = fn
