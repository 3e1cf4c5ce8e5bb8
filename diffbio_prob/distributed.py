"""Several processes, one JAX program: ``jax.distributed`` set up once, before any computation.

After :func:`initialize`, ``jax.devices()`` lists the devices of every process, so the mesh of
:mod:`diffbio_prob.parallel` spans them all and its sharded programs run as one program over all
processes (each process holding the whole input, the results gathered back to each). The engine is
JAX's own (https://docs.jax.dev/en/latest/multi_process.html); on CPU its collectives go through gloo.

With no arguments, :func:`initialize` joins a cluster only when the environment describes one of
several processes: ``srun`` under SLURM (``SLURM_NTASKS`` > 1 with ``SLURM_STEP_NODELIST``), Open MPI
(``OMPI_COMM_WORLD_SIZE`` > 1), or ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID``, or JAX's own detection). ``DIFFBIO_PROB_DISTRIBUTED=0`` turns the detection off.

Imports jax only (lazily: the argument checks run before JAX loads).
"""

from __future__ import annotations

import os

__all__ = ["initialize", "check_arguments", "environment_has_cluster", "environment_process_id",
           "process_index", "process_count", "is_primary"]

_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def _int_env(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def environment_has_cluster() -> bool:
    """Whether the environment describes a job of several processes that JAX can join."""
    if os.environ.get("DIFFBIO_PROB_DISTRIBUTED", "1") == "0":
        return False
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if all(v in os.environ for v in _SLURM) and (_int_env("SLURM_NTASKS") or 0) > 1:
        return True
    return (_int_env("OMPI_COMM_WORLD_SIZE") or 0) > 1


def environment_process_id() -> int | None:
    """This process's rank as the cluster environment states it (``JAX_PROCESS_ID``, ``SLURM_PROCID``,
    ``OMPI_COMM_WORLD_RANK``), without importing JAX; ``None`` outside a cluster or when it is not stated.

    For the commands that compute nothing with JAX (``tximport``) and so never join the job."""
    if not environment_has_cluster():
        return None
    # the order of JAX's own detection: an explicit JAX_PROCESS_ID first, then the launcher's rank
    ranks = [_int_env("JAX_PROCESS_ID") if os.environ.get("JAX_COORDINATOR_ADDRESS") else None]
    if all(v in os.environ for v in _SLURM) and (_int_env("SLURM_NTASKS") or 0) > 1:
        ranks.append(_int_env("SLURM_PROCID"))
    ranks.append(_int_env("OMPI_COMM_WORLD_RANK"))
    return next((r for r in ranks if r is not None), None)


def check_arguments(coordinator, num_processes, process_id) -> None:
    """ValueError/TypeError unless all three are ``None`` or ``HOST:PORT``, ``N >= 1``, ``0 <= I < N``."""
    given = [x is not None for x in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("coordinator, num_processes, process_id: give all three or none")
    if not any(given):
        return
    if not isinstance(coordinator, str):
        raise TypeError(f"coordinator: expected a 'HOST:PORT' string, got {coordinator!r}")
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator: expected HOST:PORT with a port in [1, 65535], got {coordinator!r}")
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an integer, got {value!r}")
    if num_processes < 1:
        raise ValueError(f"num_processes: expected a positive integer, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id: expected an integer in [0, {num_processes}), got {process_id}")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout: int = 300) -> bool:
    """Join (or start, as process 0 at ``coordinator``) a job of ``num_processes`` JAX processes.

    Call it before any JAX computation. With no arguments it joins the cluster the environment
    describes (see the module docstring) and otherwise does nothing; a second call does nothing.

    Args:
        coordinator: ``HOST:PORT`` of process 0 (``127.0.0.1:PORT`` for processes on one machine).
        num_processes: how many processes take part.
        process_id: this process's rank, in ``[0, num_processes)``.
        timeout: seconds to wait for the other processes.

    Returns:
        Whether this process now belongs to a job of several processes.

    Example:
        >>> initialize()  # no cluster in the environment: nothing to do
        False
    """
    check_arguments(coordinator, num_processes, process_id)
    import jax

    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    if coordinator is None:
        if not environment_has_cluster():
            return False
        if os.environ.get("JAX_COORDINATOR_ADDRESS"):
            num_processes, process_id = _int_env("JAX_NUM_PROCESSES"), _int_env("JAX_PROCESS_ID")
    elif num_processes == 1:
        return False
    # only the CPU client reads this; GPU and TPU keep their own collectives (NCCL, ICI)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=timeout)
    return jax.process_count() > 1


def process_index() -> int:
    """This process's rank (0 without :func:`initialize`)."""
    import jax

    return jax.process_index()


def process_count() -> int:
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """Whether this is process 0, the one that writes the outputs."""
    return process_index() == 0
