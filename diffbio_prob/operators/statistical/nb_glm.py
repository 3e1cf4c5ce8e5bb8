"""Differentiable negative-binomial GLM (DiffBio's ``DifferentiableNBGLM``) on the shared NB core.

The seed's API and defaults: coefficients ``beta`` of shape ``(n_covariates, n_features)``
(initialised N(0, 0.1^2)), per-gene ``log_dispersion`` (initialised 0), and
``log mu = design @ beta + log(size_factor)``. The likelihood is
:func:`diffbio_prob.cores.nb.nb_glm_log_likelihood`, the function the NumPyro twin
:func:`diffbio_prob.models.nb_glm.nb_glm_model` calls too, so for equal parameters both give the same
log-likelihood.

Parameterisation: ``dispersion`` is DiffBio's, the NB size ``r`` with ``Var = mu + mu^2 / r``, and
``dispersion = exp(log_dispersion)`` (the seed's ``softplus(.) + 1e-4`` is not a log and put a floor
of 1e-4 on ``r``). DESeq2's dispersion is ``alpha = 1 / r``; the NumPyro model's site ``alpha`` is
that, so :meth:`to_model_params`/:meth:`load_model_params` convert.

What the seed left out and this operator adds: batched input ``(N, G)`` alongside the per-sample
input, ``estimate_dispersion=False`` that really freezes the dispersion (``FrozenParam``), input
validation before anything is traced, and parameter exchange with the NumPyro model.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> glm = DifferentiableNBGLM(NBGLMConfig(n_features=3, n_covariates=2), rngs=nnx.Rngs(0))
    >>> data = {"counts": jnp.array([1.0, 0.0, 4.0]), "design": jnp.array([1.0, 0.0]), "size_factor": 1.2}
    >>> out, _, _ = glm.apply(data, {}, None)
    >>> out["log_likelihood"].shape, out["predicted_mean"].shape, out["coefficients"].shape
    ((), (3,), (2, 3))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffbio_prob.cores import nb as core
from diffbio_prob.cores.contract import NB_GLM_SITES
from diffbio_prob.operators.base import FrozenParam, OperatorConfig, OperatorModule

__all__ = ["NBGLMConfig", "DifferentiableNBGLM"]

# The latent sites of diffbio_prob.models.nb_glm.nb_glm_model (declared in cores.contract).
_SITES = (NB_GLM_SITES.coefficients, NB_GLM_SITES.dispersion)


@dataclasses.dataclass(frozen=True)
class NBGLMConfig(OperatorConfig):
    """Configuration of :class:`DifferentiableNBGLM` (the seed's fields and defaults).

    Attributes:
        n_features: number of genes ``G``.
        n_covariates: number of design-matrix columns ``C`` (intercept included).
        estimate_dispersion: the log-dispersions are an ``nnx.Param`` (trained) or a
            ``FrozenParam`` (kept, never differentiated or updated).
    """

    n_features: int = 2000
    n_covariates: int = 2
    estimate_dispersion: bool = True

    def __post_init__(self):
        for name in ("n_features", "n_covariates"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if not isinstance(self.estimate_dispersion, (bool, np.bool_)):
            raise TypeError(f"estimate_dispersion: expected a bool, got {self.estimate_dispersion!r}")


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


class DifferentiableNBGLM(OperatorModule):
    """Negative-binomial GLM with per-gene coefficients and dispersions, trainable by gradient.

    ``apply`` input keys: ``counts`` ``(G,)`` with ``design`` ``(C,)`` and ``size_factor`` (scalar) for one
    sample, or ``counts`` ``(N, G)`` with ``design`` ``(N, C)`` and ``size_factors`` (or ``size_factor``)
    ``(N,)`` for a batch; size factors default to 1. Output keys added: ``log_likelihood`` (scalar, or
    ``(N,)``: summed over genes), ``predicted_mean`` (``(G,)`` or ``(N, G)``), ``dispersion`` (``(G,)``, the NB
    size ``r``) and ``coefficients`` (``(C, G)``).

    Args:
        config: :class:`NBGLMConfig`.
        rngs: ``nnx.Rngs`` for the coefficient initialisation (seed 0 when ``None``).
        name: optional display name.

    Example:
        >>> glm = DifferentiableNBGLM(NBGLMConfig(n_features=4, n_covariates=2))
        >>> batch = {"counts": jnp.ones((3, 4)), "design": jnp.ones((3, 2)), "size_factors": jnp.ones(3)}
        >>> glm.apply(batch, {}, None)[0]["log_likelihood"].shape
        (3,)
    """

    def __init__(self, config: NBGLMConfig, *, rngs: nnx.Rngs | None = None, name: str | None = None):
        if not isinstance(config, NBGLMConfig):
            raise TypeError(f"config: expected an NBGLMConfig, got {type(config).__name__}")
        super().__init__(config, rngs=rngs, name=name)
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        c, g = config.n_covariates, config.n_features
        self.beta = nnx.Param(jax.random.normal(rngs.params(), (c, g)) * 0.1)
        disp_cls = nnx.Param if config.estimate_dispersion else FrozenParam
        self.log_dispersion = disp_cls(jnp.zeros((g,)))

    # ------------------------------------------------------------------------------------------
    # the seed's accessors
    # ------------------------------------------------------------------------------------------
    def get_coefficients(self) -> jax.Array:
        """Coefficients ``(C, G)`` (natural log)."""
        return self.beta[...]

    def get_dispersion(self) -> jax.Array:
        """NB size ``r = exp(log_dispersion)`` per gene, ``(G,)``."""
        return jnp.exp(self.log_dispersion[...])

    def predict_mean(self, design, size_factor) -> jax.Array:
        """Mean counts ``size_factor * exp(design @ beta)``: ``(G,)`` for one sample, ``(N, G)`` for a batch."""
        design = jnp.asarray(design)
        log_sf = jnp.log(jnp.asarray(size_factor, design.dtype))
        return jnp.exp(design @ self.get_coefficients() + log_sf[..., None])

    # ------------------------------------------------------------------------------------------
    # validation (before anything is traced)
    # ------------------------------------------------------------------------------------------
    def _prepare(self, data: Any):
        if not isinstance(data, Mapping):
            raise TypeError(f"data: expected a dict with 'counts' and 'design', got {type(data).__name__}")
        for key in ("counts", "design"):
            if key not in data:
                raise ValueError(f"data: missing key {key!r} (expected 'counts', 'design' and 'size_factor(s)')")
        g, c = self.config.n_features, self.config.n_covariates
        counts, design = data["counts"], data["design"]
        if "size_factors" in data and "size_factor" in data:
            raise ValueError("data: give either 'size_factors' or 'size_factor', not both")
        sf_key = "size_factors" if "size_factors" in data else "size_factor"
        sf = data.get(sf_key)
        c_shape, d_shape = np.shape(counts), np.shape(design)
        if len(c_shape) not in (1, 2):
            raise ValueError(f"counts: expected shape (G,) or (N, G) with G={g}, got {c_shape}")
        if c_shape[-1] != g:
            raise ValueError(f"counts: expected {g} genes (n_features) on the last axis, got shape {c_shape}")
        batched = len(c_shape) == 2
        want_d = (c_shape[0], c) if batched else (c,)
        if d_shape != want_d:
            raise ValueError(f"design: expected shape {want_d} (n_covariates={c}), got {d_shape}")
        want_sf = (c_shape[0],) if batched else ()
        if sf is None:
            sf = np.ones(want_sf)
        elif np.shape(sf) != want_sf:
            raise ValueError(f"{sf_key}: expected shape {want_sf}, got {np.shape(sf)}")
        # the checks the NumPyro model runs too (cores.nb), on concrete values only
        core.check_counts(counts, "counts")
        core.check_finite(design, "design")
        core.check_positive(sf, sf_key)
        dtype = jnp.result_type(float)
        return (
            jnp.asarray(counts, dtype),
            jnp.asarray(design, dtype),
            jnp.asarray(sf, dtype),
            batched,
        )

    # ------------------------------------------------------------------------------------------
    # DiffBio API
    # ------------------------------------------------------------------------------------------
    def apply(
        self,
        data: Mapping[str, Any],
        state: Any,
        metadata: Any,
        random_params: Any = None,
        stats: Any = None,
    ) -> tuple[dict[str, Any], Any, Any]:
        """NB log-likelihood and predicted means of one sample ``(G,)`` or a batch ``(N, G)``.

        Returns:
            ``(data | {"log_likelihood", "predicted_mean", "dispersion", "coefficients"}, state, metadata)``.

        Raises:
            TypeError / ValueError naming the key: negative, non-integer, NaN or infinite counts,
            non-positive size factors, shapes that do not match the config.
        """
        counts, design, sf, _ = self._prepare(data)
        size = self.get_dispersion()
        beta = self.get_coefficients()
        pointwise = core.nb_glm_log_likelihood(counts, design, jnp.log(sf), beta, size)
        out = dict(data)
        out["log_likelihood"] = jnp.sum(pointwise, axis=-1)
        out["predicted_mean"] = core.nb_glm_mean(design, jnp.log(sf), beta)
        out["dispersion"] = size
        out["coefficients"] = beta
        return out, state, metadata

    def apply_batch(self, data, state=None, metadata=None, random_params=None, stats=None):
        """``apply`` on a batch: ``counts`` ``(N, G)``, ``design`` ``(N, C)``, ``size_factors`` ``(N,)``."""
        if isinstance(data, Mapping) and "counts" in data and np.ndim(data["counts"]) != 2:
            raise ValueError(f"counts: apply_batch expects shape (N, G), got shape {np.shape(data['counts'])}")
        return self.apply(data, {} if state is None else state, metadata, random_params, stats)

    def pointwise_log_likelihood(self, counts, design, size_factors) -> jax.Array:
        """Per-sample, per-gene log-likelihood ``(N, G)`` (what the NumPyro model's ``counts`` site records)."""
        c, d, s, _ = self._prepare({"counts": counts, "design": design, "size_factors": size_factors})
        return core.nb_glm_log_likelihood(c, d, jnp.log(s), self.get_coefficients(), self.get_dispersion())

    # ------------------------------------------------------------------------------------------
    # parameter exchange with the NumPyro model
    # ------------------------------------------------------------------------------------------
    def to_model_params(self) -> dict[str, np.ndarray]:
        """Constrained values keyed by :func:`~diffbio_prob.models.nb_glm.nb_glm_model`'s sites:
        ``beta`` ``(C, G)`` and ``alpha = 1 / dispersion`` ``(G,)`` (DESeq2's dispersion)."""
        return {
            NB_GLM_SITES.coefficients: np.asarray(self.get_coefficients()),
            NB_GLM_SITES.dispersion: np.asarray(1.0 / self.get_dispersion()),
        }

    def load_model_params(self, params: Mapping[str, Any]) -> "DifferentiableNBGLM":
        """Set ``beta`` and/or the dispersion from model-site values (e.g. a posterior mean).

        ``alpha`` (DESeq2's dispersion) becomes ``log_dispersion = -log(alpha)``. Frozen parameters are
        set too (freezing is about training, not loading).

        Raises:
            ValueError: naming the key, for a wrong shape or non-finite / non-positive values.
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict keyed by site names, got {type(params).__name__}")
        c, g = self.config.n_covariates, self.config.n_features
        unknown = set(params) - set(_SITES)
        if unknown:
            raise ValueError(f"params: unknown keys {sorted(unknown)}; expected some of {list(_SITES)}")
        beta, alpha = _SITES
        if beta in params:
            b = np.asarray(params[beta], dtype=float)
            if b.shape != (c, g):
                raise ValueError(f"beta: expected shape {(c, g)}, got {b.shape}")
            if not np.isfinite(b).all():
                raise ValueError("beta: expected finite values")
            self.beta[...] = jnp.asarray(b, self.beta[...].dtype)
        if alpha in params:
            a = np.asarray(params[alpha], dtype=float)
            if a.shape != (g,):
                raise ValueError(f"alpha: expected shape {(g,)}, got {a.shape}")
            if not np.isfinite(a).all() or (a <= 0).any():
                raise ValueError("alpha: expected finite positive dispersions")
            self.log_dispersion[...] = jnp.asarray(-np.log(a), self.log_dispersion[...].dtype)
        return self
