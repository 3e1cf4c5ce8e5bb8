"""Differentiable EM transcript quantification (DiffBio's ``DifferentiableEMQuantifier``), on the EM core.

The seed's API and defaults, with the real EM: the E-step weights are ``∝ alpha_t w_ct / l_t`` and the
M-step does not divide by length again (the seed divided the abundances by length a second time, so it
converged to a different, wrong point when lengths differ). All math is in :mod:`diffbio_prob.cores.em`;
the NumPyro twin :func:`diffbio_prob.models.em_model` calls the same likelihood.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> op = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=2, n_iterations=200))
    >>> compat = jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    >>> out, _, _ = op.apply({"compatibility": compat, "effective_lengths": jnp.array([100.0, 100.0])}, {}, None)
    >>> [round(float(x), 3) for x in out["abundances"]]
    [0.5, 0.5]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffbio_prob.cores import em as core
from diffbio_prob.cores.contract import EM_SITES, interior
from diffbio_prob.operators.base import FrozenParam, OperatorConfig, OperatorModule

__all__ = ["EMQuantifierConfig", "DifferentiableEMQuantifier"]


@dataclasses.dataclass(frozen=True)
class EMQuantifierConfig(OperatorConfig):
    """Configuration of :class:`DifferentiableEMQuantifier`.

    Attributes:
        n_transcripts: number of transcripts ``T``.
        n_iterations: EM iterations, unrolled so gradients flow through them (the seed's mode).
        temperature: tempers the E-step responsibilities (``∝ (alpha w / l)^(1/T)``); 1.0 is exact EM.
        algorithm: ``"em"`` (salmon ``--useEM``) or ``"vbem"`` (salmon's default).
        prior: VBEM prior per transcript (salmon's 0.01).
        until_converged: run to salmon's convergence rule (``lax.while_loop``, at least ``n_iterations``
            iterations) instead of exactly ``n_iterations``; not reverse-differentiable.
        learnable_init: the initial abundances are an ``nnx.Param`` (else kept frozen).
    """

    n_transcripts: int = 1000
    n_iterations: int = 10
    temperature: float = 1.0
    algorithm: str = "em"
    prior: float = 0.01
    until_converged: bool = False
    learnable_init: bool = True

    def __post_init__(self):
        for name in ("n_transcripts", "n_iterations"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        core._check_temperature(self.temperature)
        if self.algorithm not in ("em", "vbem"):
            raise ValueError(f"algorithm: expected 'em' or 'vbem', got {self.algorithm!r}")
        core.check_prior(self.prior, self.n_transcripts)  # the core's one prior check (also quantify's)
        for name in ("until_converged", "learnable_init"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class DifferentiableEMQuantifier(OperatorModule):
    """EM quantification of transcripts from read/class-transcript compatibility.

    Inputs (``apply``'s ``data``), either form:

    * ``compatibility`` ``(R, T)``: one row per read (or per class, with ``counts`` ``(R,)``); entries are
      0/1 or non-negative weights; plus ``effective_lengths`` ``(T,)``.
    * ``equivalence_classes``: a :class:`diffbio_prob.cores.em.EquivalenceClasses`, a dense ``(C, T)``
      weight matrix, or a list of transcript-id lists; plus ``counts`` ``(C,)`` and ``effective_lengths``.

    Outputs added to ``data``: ``abundances`` (read fractions, sum 1), ``estimated_counts`` (salmon's
    NumReads), ``tpm``, and ``log_likelihood`` (of the classes at ``abundances``, the scalar that
    ``fit_gradient`` maximises).

    Parameters: ``log_initial_abundances`` ``(T,)`` (softmax gives the starting read fractions;
    zeros = uniform start).

    Args:
        config: :class:`EMQuantifierConfig`.
        rngs: unused (the start is uniform, so the result is deterministic); accepted for the API.
        name: optional display name.
    """

    def __init__(self, config: EMQuantifierConfig | None = None, *, rngs: nnx.Rngs | None = None,
                 name: str | None = None):
        config = EMQuantifierConfig() if config is None else config
        if not isinstance(config, EMQuantifierConfig):
            raise TypeError(f"config: expected an EMQuantifierConfig, got {type(config).__name__}")
        super().__init__(config, rngs=rngs, name=name)
        self.n_transcripts = config.n_transcripts
        self.n_iterations = config.n_iterations
        kind = nnx.Param if config.learnable_init else FrozenParam
        self.log_initial_abundances = kind(jnp.zeros((config.n_transcripts,), jnp.result_type(float)))

    # --- the seed's methods --------------------------------------------------------------------
    def get_initial_abundances(self) -> jax.Array:
        """``Float[Array, "T"]`` starting read fractions (softmax of ``log_initial_abundances``)."""
        return jax.nn.softmax(self.log_initial_abundances[...])

    def em_step(self, abundances, compatibility, effective_lengths) -> jax.Array:
        """One EM iteration on read fractions with a dense ``(R, T)`` compatibility matrix."""
        eqc = core.from_dense(compatibility)
        total = jnp.sum(eqc.counts)
        new = core.em_step(eqc, effective_lengths, jnp.asarray(abundances) * total, self.config.temperature)
        return new / total

    def quantify(self, compatibility, effective_lengths) -> jax.Array:
        """``Float[Array, "T"]`` read fractions after the configured iterations (dense input)."""
        eqc = core.from_dense(compatibility)
        return core.quant_outputs(self._run(eqc, effective_lengths), effective_lengths).abundances

    def compute_tpm(self, abundances, effective_lengths) -> jax.Array:
        """TPM from read fractions: ``1e6 (alpha_t / l_t) / sum_j alpha_j / l_j``."""
        return core.tpm(jnp.asarray(abundances), jnp.asarray(effective_lengths))

    # --- input handling ------------------------------------------------------------------------
    def _eq_classes(self, data: Mapping[str, Any]) -> tuple[core.EquivalenceClasses, jax.Array]:
        if not isinstance(data, Mapping):
            raise TypeError(f"data: expected a dict of arrays, got {type(data).__name__}")
        has_c, has_e = "compatibility" in data, "equivalence_classes" in data
        if has_c == has_e:
            raise ValueError(
                "data: expected either 'compatibility' (R, T) or 'equivalence_classes' + 'counts', "
                f"with 'effective_lengths'; got keys {sorted(data)}"
            )
        if "effective_lengths" not in data:
            raise ValueError(f"data: 'effective_lengths' (T,) is required; got keys {sorted(data)}")
        T = self.n_transcripts
        lengths = data["effective_lengths"]
        if np.shape(lengths) != (T,):
            raise ValueError(f"effective_lengths: expected shape ({T},), got {np.shape(lengths)}")
        counts = data.get("counts")
        for key, value in (("effective_lengths", lengths), ("counts", counts)):
            if value is not None and _concrete(value) and not isinstance(value, core.EquivalenceClasses):
                arr = np.asarray(value)
                if not (np.issubdtype(arr.dtype, np.number) and arr.dtype != bool):
                    raise TypeError(f"{key}: expected numbers, got dtype {arr.dtype}")
        if has_c:
            compat = data["compatibility"]
            shape = np.shape(compat)
            if len(shape) != 2 or shape[1] != T:
                raise ValueError(f"compatibility: expected shape (R, {T}) (reads x transcripts), got {shape}")
            if counts is not None and np.shape(counts) != (shape[0],):
                raise ValueError(f"counts: expected shape ({shape[0]},) (one per compatibility row), got "
                                 f"{np.shape(counts)}")
            self._check_dense("compatibility", compat)
            eqc = core.from_dense(compat, counts)
        else:
            eqc = self._classes_from(data["equivalence_classes"], counts)
        if jnp.issubdtype(eqc.counts.dtype, jnp.integer):
            eqc = eqc.replace(counts=eqc.counts.astype(jnp.result_type(float)))
        core.validate(eqc, jnp.asarray(lengths, eqc.counts.dtype) if _concrete(lengths) else None,
                      name="compatibility" if has_c else "equivalence_classes")
        return eqc, jnp.asarray(lengths, eqc.counts.dtype)

    def _check_dense(self, key: str, mat) -> None:
        if not _concrete(mat):
            return
        m = np.asarray(mat)
        if not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
            raise TypeError(f"{key}: expected a numeric (R, T) matrix, got dtype {m.dtype}")
        if not np.all(np.isfinite(m)) or np.any(m < 0):
            raise ValueError(f"{key}: entries must be finite and non-negative")
        empty = ~np.any(m > 0, axis=1)
        if empty.any():
            raise ValueError(f"{key}: row {int(np.argmax(empty))} is empty (compatible with no transcript)")

    def _classes_from(self, classes, counts) -> core.EquivalenceClasses:
        T = self.n_transcripts
        if isinstance(classes, core.EquivalenceClasses):
            if classes.n_transcripts != T:
                raise ValueError(f"equivalence_classes: built for {classes.n_transcripts} transcripts, the operator "
                                 f"has n_transcripts={T}")
            if counts is not None:
                if np.shape(counts) != (classes.n_classes,):
                    raise ValueError(f"counts: expected shape ({classes.n_classes},), got {np.shape(counts)}")
                classes = classes.replace(counts=jnp.asarray(counts, classes.counts.dtype))
            return classes
        if counts is None:
            raise ValueError("counts: required with 'equivalence_classes' (fragments per class)")
        if isinstance(classes, (list, tuple)) and all(isinstance(c, (list, tuple, np.ndarray)) for c in classes):
            if np.shape(counts) != (len(classes),):
                raise ValueError(f"counts: expected shape ({len(classes)},), got {np.shape(counts)}")
            if any(len(c) == 0 for c in classes):
                raise ValueError(f"equivalence_classes: class {[len(c) for c in classes].index(0)} is empty")
            for i, c in enumerate(classes):
                ids = np.asarray(c)
                if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) and ids.dtype != bool):
                    raise TypeError(f"equivalence_classes: class {i} must list integer transcript ids, got {list(c)!r}")
                if len(np.unique(ids)) != len(ids):
                    raise ValueError(f"equivalence_classes: class {i} lists a transcript more than once: {list(c)!r}")
            cid = np.concatenate([np.full(len(c), i) for i, c in enumerate(classes)]) if classes else np.zeros(0, int)
            tid = np.concatenate([np.asarray(c, np.int64) for c in classes]) if classes else np.zeros(0, int)
            return core.make_eq_classes(cid, tid, counts, T)
        shape = np.shape(classes)
        if len(shape) != 2 or shape[1] != T:
            raise ValueError(
                f"equivalence_classes: expected an EquivalenceClasses, a list of transcript-id lists or a (C, {T}) "
                f"matrix, got shape {shape}"
            )
        if np.shape(counts) != (shape[0],):
            raise ValueError(f"counts: expected shape ({shape[0]},), got {np.shape(counts)}")
        self._check_dense("equivalence_classes", classes)
        return core.from_dense(classes, counts)

    # --- the computation -----------------------------------------------------------------------
    def _run(self, eqc: core.EquivalenceClasses, lengths) -> jax.Array:
        cfg = self.config
        init = self.get_initial_abundances().astype(eqc.counts.dtype) * jnp.sum(eqc.counts)
        if cfg.until_converged:
            return core.em(eqc, lengths, algorithm=cfg.algorithm, prior=cfg.prior, init=init,
                           min_iter=cfg.n_iterations, max_iter=max(10_000, cfg.n_iterations),
                           temperature=cfg.temperature).counts
        return core.em_unrolled(eqc, lengths, init, cfg.n_iterations, algorithm=cfg.algorithm, prior=cfg.prior,
                                temperature=cfg.temperature)

    def apply(self, data, state, metadata, random_params=None, stats=None):
        """Quantify one example; returns ``(data | outputs, state, metadata)``."""
        eqc, lengths = self._eq_classes(data)
        counts = self._run(eqc, lengths)
        out = core.quant_outputs(counts, lengths)
        result = dict(data)
        result.update(
            abundances=out.abundances,
            estimated_counts=out.estimated_counts,
            tpm=out.tpm,
            log_likelihood=core.log_likelihood(eqc, lengths, out.abundances),
        )
        return result, state, metadata

    def apply_batch(self, data, state=None, metadata=None, random_params=None, stats=None):
        """``apply`` over a leading batch axis of array inputs (each example validated first)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"data: expected a dict of arrays, got {type(data).__name__}")
        if any(isinstance(v, core.EquivalenceClasses) for v in data.values()):
            raise TypeError("equivalence_classes: batch dense (B, C, T) matrices; an EquivalenceClasses is one example")
        sizes = {k: jnp.shape(v)[0] for k, v in data.items() if jnp.ndim(v) > 0}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"data: arrays disagree on the batch axis: {sizes}")
        for b in range(next(iter(sizes.values()))):
            self._eq_classes({k: v[b] for k, v in data.items()})
        return super().apply_batch(data, state, metadata, random_params, stats)

    # --- parameters both ways with the NumPyro twin (em_model's sites, cores.contract.EM_SITES) ---------
    def to_model_params(self, data: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """``{"abundances": read fractions}`` for ``fit_nuts/fit_svi(init_params=...)``.

        With ``data`` it is this operator's EM estimate on it, moved off the simplex's boundary by
        :func:`~diffbio_prob.cores.contract.interior` (mix 1e-6: a Dirichlet site's boundary is at -inf in
        NUTS's unconstrained space); without, the initial abundances.
        """
        if data is None:
            return {EM_SITES.abundances: np.asarray(self.get_initial_abundances())}
        a = self.apply(data, {}, None)[0]["abundances"]
        return {EM_SITES.abundances: interior(np.asarray(a), mix=1e-6)}

    def load_model_params(self, params: Mapping[str, Any]) -> "DifferentiableEMQuantifier":
        """Start from given read fractions (e.g. a posterior mean): sets ``log_initial_abundances``.

        The model's deterministic sites (``estimated_counts``, ``tpm``) may be present and are ignored.

        Raises:
            TypeError / ValueError: naming the key, for a non-dict, an unknown key, a missing
                ``abundances``, a wrong shape or a fraction that is not finite and positive.
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict keyed by site names, got {type(params).__name__}")
        unknown = sorted(set(map(str, params)) - set(EM_SITES[:3]))
        if unknown:
            raise ValueError(f"params: unknown keys {unknown}; expected key {EM_SITES.abundances!r}")
        if EM_SITES.abundances not in params:
            raise ValueError(f"params: expected key {EM_SITES.abundances!r}, got {sorted(params)}")
        a = np.asarray(params[EM_SITES.abundances], float)
        if a.shape != (self.n_transcripts,):
            raise ValueError(f"abundances: expected shape ({self.n_transcripts},), got {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError("abundances: expected finite positive read fractions")
        self.log_initial_abundances[...] = jnp.asarray(np.log(a / a.sum()), self.log_initial_abundances[...].dtype)
        return self
