"""DiffBio's operator API: a frozen config and an NNX module with ``apply``/``apply_batch``.

Every operator of the package derives from these two classes. ``apply`` takes one example (a dict of
arrays), returns the same dict with its outputs added, and passes ``state`` and ``metadata`` through
unchanged. ``apply_batch`` maps ``apply`` over a leading batch axis with ``nnx.vmap``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Self

import jax
from flax import nnx

__all__ = ["OperatorConfig", "OperatorModule", "FrozenParam", "has_model_twin"]


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Base of every operator config: a frozen dataclass (hashable, safe as a static jit argument).

    Subclasses add fields with defaults only, so ``Config()`` always constructs.
    """

    def replace(self, **changes: Any) -> "OperatorConfig":
        """A copy with ``changes`` applied (configs are immutable)."""
        return dataclasses.replace(self, **changes)


class FrozenParam(nnx.Variable):
    """A parameter kept in the module's state but excluded from ``nnx.Param`` filters.

    ``nnx.grad`` and ``nnx.Optimizer(..., wrt=nnx.Param)`` neither differentiate nor update it, which is
    how ``learnable_*=False`` and ``estimate_dispersion=False`` freeze a parameter.
    """


class OperatorModule(nnx.Module):
    """Base NNX module with DiffBio's operator API.

    Args:
        config: the operator's frozen config.
        rngs: ``nnx.Rngs`` for parameter initialisation (a default seed of 0 when ``None``).
        name: optional display name.
    """

    def __init__(self, config: OperatorConfig, *, rngs: nnx.Rngs | None = None, name: str | None = None):
        if not isinstance(config, OperatorConfig):
            raise TypeError(f"config: expected an OperatorConfig, got {type(config).__name__}")
        self.config = config
        self.name = name or type(self).__name__

    def apply(
        self,
        data: Mapping[str, Any],
        state: Any,
        metadata: Any,
        random_params: Any = None,
        stats: Any = None,
    ) -> tuple[dict[str, Any], Any, Any]:
        """Transform one example; returns ``(data | outputs, state, metadata)``."""
        raise NotImplementedError

    # The contract with the NumPyro twin (its site names: diffbio_prob.cores.contract). Not marked
    # abc.abstractmethod: nnx's metaclass enforces those at construction, and an operator only ever fitted
    # by gradient need not have a twin; to_operator (has_model_twin) refuses one without it, by name.
    def to_model_params(self) -> dict[str, Any]:
        """The parameters as the NumPyro model's site values (constrained, e.g. probabilities), usable as
        ``fit_nuts(..., init_params=...)``."""
        raise NotImplementedError(f"{type(self).__name__} has no NumPyro twin (to_model_params)")

    def load_model_params(self, params: Mapping[str, Any]) -> Self:
        """Set the parameters from site values (any subset the operator documents); returns ``self``.

        Raises:
            TypeError / ValueError: naming the site, for an unknown key, a wrong shape or an invalid value.
        """
        raise NotImplementedError(f"{type(self).__name__} has no NumPyro twin (load_model_params)")

    def __call__(self, data, state=None, metadata=None, random_params=None, stats=None):
        return self.apply(data, {} if state is None else state, metadata, random_params, stats)

    def apply_batch(
        self,
        data: Mapping[str, Any],
        state: Any = None,
        metadata: Any = None,
        random_params: Any = None,
        stats: Any = None,
    ) -> tuple[dict[str, Any], Any, Any]:
        """``apply`` mapped over the leading axis of every array in ``data``.

        ``state`` and ``metadata`` are shared by the whole batch and passed through unchanged.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data: expected a dict of arrays, got {type(data).__name__}")
        state = {} if state is None else state

        def one(module, example):
            out, _, _ = module.apply(example, state, metadata, random_params, stats)
            return out

        out = nnx.vmap(one, in_axes=(None, 0))(self, dict(data))
        return out, state, metadata


def leading_size(data: Mapping[str, Any]) -> int:
    """Size of the shared leading axis of ``data``'s arrays (raises if they disagree)."""
    sizes = {k: jax.numpy.shape(v)[0] for k, v in data.items() if jax.numpy.ndim(v) > 0}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"data: arrays disagree on the batch axis: {sizes}")
    return next(iter(sizes.values()))


def has_model_twin(operator: Any) -> bool:
    """Whether ``operator`` is an :class:`OperatorModule` that overrides both ``to_model_params`` and
    ``load_model_params`` (the contract :func:`diffbio_prob.inference.to_operator` relies on)."""
    cls = type(operator)
    return isinstance(operator, OperatorModule) and all(
        getattr(cls, m) is not getattr(OperatorModule, m) for m in ("to_model_params", "load_model_params"))

