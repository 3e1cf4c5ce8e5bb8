"""Fit an NNX operator by gradient descent with optax."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diffbio_prob.inference.progress import Progress, step_counter
from diffbio_prob.inference.results import FitResult

__all__ = ["fit_gradient", "negative_log_likelihood"]


def negative_log_likelihood(operator: nnx.Module, data: Mapping[str, Any]) -> jax.Array:
    """Default loss: minus the summed ``log_likelihood`` output of ``operator.apply``."""
    out, _, _ = operator.apply(data, {}, None)
    return -jnp.sum(out["log_likelihood"])


def fit_gradient(
    operator: nnx.Module,
    data: Mapping[str, Any],
    *,
    loss_fn: Callable[[nnx.Module, Mapping[str, Any]], jax.Array] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int = 500,
    progress: bool = True,
    wrt: Any = nnx.Param,
) -> FitResult:
    """Maximum likelihood (or any loss) for an NNX operator with an optax optimiser.

    Trains ``operator`` in place: only variables matching ``wrt`` (``nnx.Param`` by default) receive
    gradients and updates, so parameters an operator stores as ``FrozenParam`` stay fixed. The whole loop
    is one compiled program (``lax.scan``), the progress bar driven from inside it, so a fit with and
    without a bar is the same program. A non-finite loss ends the fit with a ``FloatingPointError`` (the
    operator left as it was) rather than returning NaN parameters.

    Args:
        operator: the NNX operator to train.
        data: the operator's input dict (validated by its ``apply``).
        loss_fn: ``loss_fn(operator, data) -> scalar``; defaults to ``negative_log_likelihood``.
        optimizer: an optax transformation (default ``optax.adam(1e-2)``).
        num_steps: number of optimiser steps.
        progress: show a progress bar (the same program either way).
        wrt: the NNX filter of the variables to train.

    Returns:
        A ``FitResult`` with ``method="gradient"``, ``loss_history`` and, when the operator offers
        ``to_model_params()``, ``params`` keyed by the NumPyro model's site names (so ``fit_nuts(...,
        init_params=result.params)`` starts from it). ``extra["state"]`` is the trained ``nnx.State``.

    Example:
        >>> hmm = DifferentiableHMM(HMMConfig(num_states=2, num_emissions=6))     # doctest: +SKIP
        >>> result = fit_gradient(hmm, {"observations": rolls}, num_steps=300)   # doctest: +SKIP
    """
    if not isinstance(operator, nnx.Module):
        raise TypeError(f"operator: expected a flax.nnx.Module, got {type(operator).__name__}")
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
    loss_fn = loss_fn or negative_log_likelihood
    # Validate the data outside of any trace, so a bad input fails with the operator's own message; the
    # operator's parameters are abstract there, so nothing is computed or compiled.
    nnx.eval_shape(lambda op: loss_fn(op, data), operator)
    tx = optimizer if optimizer is not None else optax.adam(1e-2)
    opt = nnx.Optimizer(operator, tx, wrt=wrt)
    grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt))
    start = time.perf_counter()
    losses = _steps(operator, opt, grad_fn, data, int(num_steps), progress)
    elapsed = time.perf_counter() - start
    from diffbio_prob.operators.base import has_model_twin

    # An operator fitted by gradient need not have a NumPyro twin; then the result carries no sites.
    params = operator.to_model_params() if has_model_twin(operator) else {}
    return FitResult(
        method="gradient",
        params={k: np.asarray(v) for k, v in params.items()},
        loss_history=losses,
        elapsed_s=elapsed,
        extra={"state": nnx.state(operator, wrt)},
    )


def _steps(operator, opt, grad_fn, data, num_steps: int, progress: bool) -> np.ndarray:
    """All steps as one compiled ``lax.scan`` (NNX's functional split/merge), the progress bar driven from
    inside it; the operator is updated only when every loss is finite, so a failed fit leaves it as it was."""
    graphdef, state = nnx.split((operator, opt))
    bar = Progress(progress, num_steps, lambda _, step: "gradient")

    @jax.jit
    def run(state, batch):
        def body(carry, _):
            state, count = carry
            model, optimiser = nnx.merge(graphdef, state)
            loss, grads = grad_fn(model, batch)
            optimiser.update(model, grads)
            count = count + 1
            bar.tick(0, count, loss=loss)
            return (nnx.state((model, optimiser)), count), loss

        (state, _), losses = jax.lax.scan(body, (state, step_counter()), None, length=num_steps)
        return state, losses

    with bar:
        state, losses = run(state, data)
        losses = np.asarray(losses, dtype=float)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        i = int(bad[0])
        raise FloatingPointError(f"fit_gradient: loss became {losses[i]} at step {i}; lower the learning rate")
    nnx.update((operator, opt), state)
    return losses
