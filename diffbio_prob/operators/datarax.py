"""The three operators as datarax operators (the optional ``datarax`` extra).

DiffBio's own operators derive from datarax's ``OperatorModule`` (PyPI ``datarax``), whose batch type is
``datarax.Batch`` and whose pipelines (``datarax.Pipeline``) apply each stage record by record. The
adapters here wrap one of our operators in such a module, so it runs where a datarax operator runs:

* ``adapter(batch)`` / ``adapter.apply_batch(batch)`` on a ``datarax.Batch``: our operator's own
  ``apply_batch`` on ``batch.data`` (its checks on concrete values, its batched kernels), returned as a
  new ``Batch`` with the batch's states and metadata unchanged;
* ``adapter.apply(data, state, metadata, key, stats)`` on one record: our operator's ``apply``. This is
  what a ``datarax.Pipeline`` calls, vmapped over the records of each batch.

Both paths give our operator's numbers: ``tests/test_datarax.py`` compares them with its ``apply`` /
``apply_batch`` to 1e-12 (float64), gradients included. One difference is datarax's rule that every field
of a batch carries the records on axis 0: the NB-GLM's ``dispersion`` ``(G,)`` and ``coefficients``
``(C, G)``, shared by the whole batch in our ``apply_batch``, come back repeated per record, ``(N, G)`` and
``(N, C, G)``, as the pipeline path produces them.

The wrapped operator is the adapter's submodule ``.operator``: its ``nnx.Param`` are the adapter's, so
``nnx.grad`` / ``nnx.Optimizer`` on the adapter (or on a pipeline holding it) train our operator, and
``FrozenParam`` stays frozen.

Importing this module does not import datarax (nor does ``import diffbio_prob``): the classes are built
on first use, and without the extra that use raises an ImportError naming ``pip install
'diffbio-prob[datarax]'``.

Example (with the extra installed):
    >>> from diffbio_prob.operators.datarax import to_datarax
    >>> from diffbio_prob.operators.statistical import DifferentiableHMM, HMMConfig
    >>> import datarax, jax.numpy as jnp
    >>> stage = to_datarax(DifferentiableHMM(HMMConfig(num_states=2, num_emissions=3)))
    >>> batch = datarax.Batch.from_parts({"observations": jnp.array([[0, 1, 2], [2, 2, 1]])}, {})
    >>> stage(batch)["log_likelihood"].shape
    (2,)
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["to_datarax", "DataraxOperator", "DataraxHMM", "DataraxNBGLM", "DataraxEMQuantifier"]

_EXTRA_HINT = "pip install 'diffbio-prob[datarax]'"
_CLASSES = ("DataraxOperator", "DataraxHMM", "DataraxNBGLM", "DataraxEMQuantifier")


def _require_datarax():
    """The datarax package, or an ImportError that says how to install it."""
    try:
        import datarax
    except ImportError as exc:
        raise ImportError(
            f"the datarax adapters need the optional 'datarax' extra: {_EXTRA_HINT} (datarax>=0.1.17)"
        ) from exc
    return datarax


@functools.cache
def _classes() -> dict[str, type]:
    """Build the adapter classes once per process (they subclass datarax's, so they need it imported)."""
    datarax = _require_datarax()
    import jax
    import jax.numpy as jnp
    from datarax.core.config import OperatorConfig as DataraxConfig

    from diffbio_prob.operators.base import OperatorModule as OurOperator
    from diffbio_prob.operators.statistical.em_quantification import (
        DifferentiableEMQuantifier, EMQuantifierConfig)
    from diffbio_prob.operators.statistical.hmm import DifferentiableHMM, HMMConfig
    from diffbio_prob.operators.statistical.nb_glm import DifferentiableNBGLM, NBGLMConfig

    Batch = datarax.Batch

    class DataraxOperator(datarax.OperatorModule):
        """One of our operators as a deterministic datarax ``OperatorModule``.

        Args:
            operator: the operator to wrap (kept as ``.operator``; its parameters are this module's).
            batch_strategy: how a datarax pipeline maps ``apply`` over a batch's records, ``"vmap"``
                (datarax's default) or ``"scan"`` (one record at a time, less memory).
            name: optional display name (default: the operator's).

        Raises:
            TypeError: ``operator`` is not one of the package's operators (or not the kind a subclass
                wraps).
            ValueError: an unknown ``batch_strategy``.
        """

        wraps: type = OurOperator
        # outputs of our apply_batch shared by the whole batch (no record axis), repeated per record
        # because a datarax batch holds records on axis 0 in every field
        shared_outputs: tuple[str, ...] = ()

        def __init__(self, operator: Any, *, batch_strategy: str = "vmap", name: str | None = None):
            if not isinstance(operator, self.wraps):
                raise TypeError(
                    f"operator: expected a {self.wraps.__name__}, got {type(operator).__name__}")
            if batch_strategy not in ("vmap", "scan"):
                raise ValueError(f"batch_strategy: expected 'vmap' or 'scan', got {batch_strategy!r}")
            super().__init__(DataraxConfig(batch_strategy=batch_strategy),
                             name=name or getattr(operator, "name", None) or type(operator).__name__)
            self.operator = operator

        def apply(self, data, state, metadata, key=None, stats=None):
            """One record through our operator's ``apply``; returns ``(data | outputs, state, metadata)``.
            ``key`` and ``stats`` are unused (the operator is deterministic and fits no statistics)."""
            del key, stats
            return self.operator.apply(data, state, metadata)

        def apply_batch(self, batch, stats=None):
            """Our operator's ``apply_batch`` on ``batch.data``, as a new ``Batch`` (states and metadata
            kept). ``stats`` is unused.

            Raises:
                TypeError: ``batch`` is not a ``datarax.Batch``.
                TypeError / ValueError: our operator's own checks, naming the field.
            """
            del stats
            if not isinstance(batch, Batch):
                raise TypeError(f"batch: expected a datarax.Batch, got {type(batch).__name__}")
            data = batch.data.get_value()
            if batch.batch_size == 0 or not jax.tree.leaves(data):
                return batch  # datarax's rule: nothing to map over, the batch comes back as it is
            out, _, _ = self.operator.apply_batch(dict(data))
            n = batch.batch_size
            for k in self.shared_outputs:
                if k in out and k not in data:
                    out[k] = jnp.broadcast_to(out[k], (n, *jnp.shape(out[k])))
            # Batch has no public getter for its per-record metadata; datarax's own apply_batch reads
            # _metadata_list the same way, and keeping it keeps the record indices a later stochastic
            # stage keys its randomness on
            return Batch.from_parts(
                data=out,
                states=batch.states.get_value(),
                metadata_list=batch._metadata_list.get_value(),
                batch_metadata=batch.get_batch_metadata(),
                batch_state=batch.get_batch_state(),
            )

        def output_spec(self, input_spec):
            """The record's output fields (``jax.ShapeDtypeStruct``), from tracing ``apply`` on
            ``input_spec`` (datarax's default would claim the input's fields unchanged)."""
            return jax.eval_shape(lambda d: self.apply(d, {}, None)[0], input_spec)

    class DataraxHMM(DataraxOperator):
        """:class:`~diffbio_prob.operators.statistical.DifferentiableHMM` as a datarax operator: batch
        fields ``observations`` (B, T[, D]), optional ``lengths`` (B,) or ``mask``; adds
        ``log_likelihood`` (B,), ``state_posteriors`` and ``posteriors`` (B, T, S).

        ``DataraxHMM(hmm)`` wraps an operator; ``DataraxHMM(HMMConfig(...), rngs=...)`` builds one."""

        wraps = DifferentiableHMM

        def __init__(self, operator, *, rngs=None, batch_strategy="vmap", name=None):
            if isinstance(operator, HMMConfig):
                operator = DifferentiableHMM(operator, rngs=rngs)
            super().__init__(operator, batch_strategy=batch_strategy, name=name)

    class DataraxNBGLM(DataraxOperator):
        """:class:`~diffbio_prob.operators.statistical.DifferentiableNBGLM` as a datarax operator: batch
        fields ``counts`` (N, G), ``design`` (N, C), optional ``size_factors`` (N,); adds
        ``log_likelihood`` (N,), ``predicted_mean`` (N, G) and, repeated per record, ``dispersion``
        (N, G) and ``coefficients`` (N, C, G).

        ``DataraxNBGLM(glm)`` wraps an operator; ``DataraxNBGLM(NBGLMConfig(...), rngs=...)`` builds one."""

        wraps = DifferentiableNBGLM
        shared_outputs = ("dispersion", "coefficients")

        def __init__(self, operator, *, rngs=None, batch_strategy="vmap", name=None):
            if isinstance(operator, NBGLMConfig):
                operator = DifferentiableNBGLM(operator, rngs=rngs)
            super().__init__(operator, batch_strategy=batch_strategy, name=name)

    class DataraxEMQuantifier(DataraxOperator):
        """:class:`~diffbio_prob.operators.statistical.DifferentiableEMQuantifier` as a datarax operator:
        batch fields ``compatibility`` (B, R, T) (or dense ``equivalence_classes`` (B, C, T) with
        ``counts`` (B, C)) and ``effective_lengths`` (B, T); adds ``abundances``, ``estimated_counts``,
        ``tpm`` (B, T) and ``log_likelihood`` (B,).

        ``DataraxEMQuantifier(em)`` wraps an operator; ``DataraxEMQuantifier(EMQuantifierConfig(...))``
        builds one."""

        wraps = DifferentiableEMQuantifier

        def __init__(self, operator=None, *, rngs=None, batch_strategy="vmap", name=None):
            if operator is None or isinstance(operator, EMQuantifierConfig):
                operator = DifferentiableEMQuantifier(operator, rngs=rngs)
            super().__init__(operator, batch_strategy=batch_strategy, name=name)

    return {c.__name__: c for c in (DataraxOperator, DataraxHMM, DataraxNBGLM, DataraxEMQuantifier)}


def to_datarax(operator: Any, *, batch_strategy: str = "vmap", name: str | None = None):
    """``operator`` (a DifferentiableHMM, DifferentiableNBGLM or DifferentiableEMQuantifier) wrapped as a
    datarax ``OperatorModule``: a :class:`DataraxHMM`, :class:`DataraxNBGLM` or
    :class:`DataraxEMQuantifier` sharing its parameters.

    Raises:
        ImportError: datarax is not installed (``pip install 'diffbio-prob[datarax]'``).
        TypeError: ``operator`` is none of the three.
    """
    classes = _classes()
    for cls_name in ("DataraxHMM", "DataraxNBGLM", "DataraxEMQuantifier"):
        cls = classes[cls_name]
        if isinstance(operator, cls.wraps):
            return cls(operator, batch_strategy=batch_strategy, name=name)
    raise TypeError(
        "operator: expected a DifferentiableHMM, DifferentiableNBGLM or DifferentiableEMQuantifier, got "
        f"{type(operator).__name__}")


def __getattr__(name: str):
    # PEP 562: the classes exist only once datarax is imported, on first access
    if name in _CLASSES:
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
