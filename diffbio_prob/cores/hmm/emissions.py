"""HMM emission families as small objects (after dynamax's ``HMMEmissions``, ``models/*_hmm.py``).

Every family answers the same six questions, so the forward pass, Baum-Welch, the NNX operator and the
NumPyro model handle any of them with one code path:

=====================  =====================================================================================
``param_names``        the parameter keys, declared once (``("rates",)`` for Poisson); the NumPyro sites
                       are ``site_names`` = ``"emission_" + name`` (``emission_probs`` for categorical).
``param_shapes``       ``(num_states, num_features) -> {name: shape}``.
``check_params``       numpy-side validation of a params dict; ``ValueError`` naming ``params['key']``.
``check_observations`` numpy-side validation of ``(T, *event)`` or ``(B, T, *event)`` observations
                       (``event_ndim`` 0 or 1); ``TypeError``/``ValueError`` naming the argument.
``log_likelihoods``    ``(params, observations (..., T, *event)) -> Float[Array, "... T S"]``; a missing
                       step (or feature) contributes 0, so it is marginalised exactly.
``m_step``             ``(observations, weights (..., T, S), previous) -> params``: the weighted maximum
                       likelihood from posterior marginals (closed form; the negative-binomial
                       concentration by a guarded Newton search that never lowers the objective). A state
                       with no weight keeps its previous value (hmmlearn #169).
``sample``             ``(key, params, states (...)) -> observations (..., *event)``.
``initial_params``     ``(observations, num_states, rng) -> params``: a data-driven Baum-Welch start.
``constrain``          unconstrained arrays -> params (``unconstrain`` is its inverse), for gradient fits.
=====================  =====================================================================================

Missing values: ``-1`` for integer families (categorical symbol, Poisson / NB count, Bernoulli mark; a
multinomial step with any ``-1``), NaN for Gaussian features (full covariance: NaN anywhere drops the
step). Parameters are natural (probabilities, rates, means, scales, covariances), never logs.

Families: :class:`Categorical` ``probs`` (S, M); :class:`Poisson` ``rates`` (S,);
:class:`NegativeBinomial` ``means``, ``concentrations`` (S,) (``Var = mu + mu^2 / r``, NumPyro's
``NegativeBinomial2``); :class:`Gaussian` ``means`` (S, D) and ``scales`` (S, D) (``covariance="diag"``) or
``covariances`` (S, D, D) (``"full"``); :class:`Bernoulli` ``probs`` (S, D) (independent marks, ChromHMM's
emission, Ernst & Kellis 2012); :class:`Multinomial` ``probs`` (S, M). :func:`get_emission` maps a name
(``"negative-binomial"``, ``"gaussian_full"``, ...) to an instance.

Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> em = get_emission("poisson")
    >>> params = em.check_params({"rates": [1.0, 10.0]}, num_states=2)
    >>> em.log_likelihoods(params, jnp.array([0, 12, -1])).shape, em.site_names
    ((3, 2), ('emission_rates',))
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from diffbio_prob.cores.nb import nb_log_pmf

__all__ = [
    "Emission",
    "Categorical",
    "Poisson",
    "NegativeBinomial",
    "Gaussian",
    "Bernoulli",
    "Multinomial",
    "EMISSIONS",
    "get_emission",
    "categorical_log_likelihoods",
    "poisson_log_likelihoods",
    "gaussian_log_likelihoods",
]

Array = jax.Array


# ------------------------------------------------------------------------------------------------
# Emission log-likelihood kernels: each returns Float[Array, "... T S"] with missing rows set to 0.
# ------------------------------------------------------------------------------------------------
@jax.jit
def categorical_log_likelihoods(log_emission: Array, observations: Array) -> Array:
    """Per-step log-likelihoods of a categorical emission; symbol ``-1`` means missing.

    Args:
        log_emission: ``Float[Array, "S M"]`` log p(y = m | z = k) at ``[k, m]``.
        observations: ``Int[Array, "T"]`` (or any shape, e.g. a padded ``"B T"`` batch) symbols in
            ``0..M-1``, or ``-1`` for a missing step.

    Returns:
        ``Float[Array, "T S"]`` (``observations.shape + (S,)``); a missing step's row is 0 (it is
        marginalised out).

    Example:
        >>> categorical_log_likelihoods(jnp.log(jnp.eye(2) * 0.5 + 0.25), jnp.array([0, -1])).shape
        (2, 2)
    """
    return _categorical_ll(log_emission, jnp.asarray(observations))


# The VJP of a gather is a scatter-add, which XLA runs serially on CPU (~20 ns per element: 16 ms at
# T = 1e5, K = 8, more than the whole forward pass). For a moderate alphabet the transpose is a tiny
# matmul with the one-hot observations instead.
_ONE_HOT_MAX_SYMBOLS = 64


@jax.custom_vjp
def _categorical_ll(log_emission, observations):
    observed = observations >= 0
    # Sanitise before indexing (double where): a -1 would index the last symbol and its cotangent
    # would land on a real parameter.
    safe = jnp.where(observed, observations, 0)
    ll = log_emission.T[safe]
    return jnp.where(observed[..., None], ll, 0.0)


def _categorical_ll_fwd(log_emission, observations):
    return _categorical_ll(log_emission, observations), (observations, log_emission.shape)


def _categorical_ll_bwd(res, g):
    observations, (num_states, num_symbols) = res
    y = observations.reshape(-1)
    g = jnp.where((y >= 0)[:, None], g.reshape(-1, num_states), 0.0)
    if num_symbols <= _ONE_HOT_MAX_SYMBOLS:
        one_hot = jax.nn.one_hot(y, num_symbols, dtype=g.dtype)  # -1 -> a zero row
        grad = g.T @ one_hot
    else:
        grad = jax.ops.segment_sum(g, jnp.where(y >= 0, y, 0), num_segments=num_symbols).T
    return grad, None


_categorical_ll.defvjp(_categorical_ll_fwd, _categorical_ll_bwd)


def _count_mask(y: Array) -> Array:
    observed = y >= 0
    if jnp.issubdtype(y.dtype, jnp.floating):
        observed = observed & ~jnp.isnan(y)
    return observed


@jax.jit
def poisson_log_likelihoods(log_rate: Array, observations: Array) -> Array:
    """Per-step log-likelihoods of a Poisson emission; ``-1`` or NaN means missing.

    Args:
        log_rate: ``Float[Array, "S"]`` log of each state's Poisson rate.
        observations: ``Int[Array, "... T"]`` or ``Float[Array, "... T"]`` counts.

    Returns:
        ``Float[Array, "... T S"]`` of ``y log(rate) - rate - log(y!)``; missing rows are 0.

    Example:
        >>> poisson_log_likelihoods(jnp.zeros(3), jnp.array([0, 2])).shape
        (2, 3)
    """
    y = jnp.asarray(observations)
    observed = _count_mask(y)
    y = jnp.where(observed, y, 0).astype(jnp.result_type(log_rate, float))
    # y log(rate) with y = 0 is 0 even at rate 0 (log_rate = -inf): guard the product.
    term = jnp.where(y[..., None] > 0, y[..., None] * jnp.where(y[..., None] > 0, log_rate, 0.0), 0.0)
    ll = term - jnp.exp(log_rate) - jax.scipy.special.gammaln(y + 1.0)[..., None]
    return jnp.where(observed[..., None], ll, 0.0)


@jax.jit
def gaussian_log_likelihoods(mean: Array, log_scale: Array, observations: Array) -> Array:
    """Per-step log-likelihoods of a (diagonal) Gaussian emission; NaN entries are missing.

    Args:
        mean: ``Float[Array, "S"]`` or ``Float[Array, "S D"]`` state means.
        log_scale: same shape as ``mean``: log standard deviations.
        observations: ``Float[Array, "... T"]`` (with ``(S,)`` means) or ``Float[Array, "... T D"]``; a
            NaN feature is marginalised (its term is dropped), so a fully-NaN step has row 0.

    Returns:
        ``Float[Array, "... T S"]``.

    Example:
        >>> gaussian_log_likelihoods(jnp.zeros(2), jnp.zeros(2), jnp.array([0.0, jnp.nan])).shape
        (2, 2)
    """
    y = jnp.asarray(observations, dtype=jnp.result_type(mean, float))
    if jnp.ndim(mean) == 1:
        y, mean, log_scale = y[..., None], mean[:, None], log_scale[:, None]
    observed = ~jnp.isnan(y)  # (..., T, D)
    y = jnp.where(observed, y, 0.0)  # sanitise: NaN * 0 cotangents would poison the parameters
    z = (y[..., None, :] - mean) * jnp.exp(-log_scale)
    terms = -0.5 * z**2 - log_scale - 0.5 * jnp.log(2 * jnp.pi)
    return jnp.sum(jnp.where(observed[..., None, :], terms, 0.0), axis=-1)


# ------------------------------------------------------------------------------------------------
# Shared numpy-side checks
# ------------------------------------------------------------------------------------------------
def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def _safe_ratio(num, den, previous):
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), previous)


def _flatten(emission: "Emission", observations, weights):
    """``(..., T, *event)`` and ``(..., T, S)`` -> ``(N, *event)``, ``(N, S)``."""
    y = jnp.asarray(observations)
    w = jnp.asarray(weights)
    event = y.shape[y.ndim - emission.event_ndim:] if emission.event_ndim else ()
    if y.shape[: y.ndim - emission.event_ndim] != w.shape[:-1]:
        raise ValueError(f"weights: expected shape {y.shape[: y.ndim - emission.event_ndim]} + (S,) to match the "
                         f"observations {y.shape}, got {w.shape}")
    return y.reshape((-1,) + event), w.reshape(-1, w.shape[-1])


@dataclasses.dataclass(frozen=True)
class Emission:
    """The protocol every family implements (see the module docstring). Instances are immutable and
    hashable, so they can be static arguments of ``jax.jit``."""

    name: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    event_ndim: ClassVar[int] = 0
    integer: ClassVar[bool] = True  # observations are integers with -1 = missing (else floats, NaN = missing)

    @property
    def site_names(self) -> tuple[str, ...]:
        """NumPyro site names of the parameters: ``"emission_" + name``."""
        return tuple("emission_" + n for n in self.param_names)

    # -- shapes and checks ------------------------------------------------------------------------
    def param_shapes(self, num_states: int, num_features: int | None = None) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def num_features(self, params: Mapping[str, Any]) -> int | None:
        """D (or M) read from the parameters; ``None`` for univariate families."""
        return None

    def _check_values(self, params: dict[str, np.ndarray], name: str = "params") -> None:
        """Family constraints on validated-shape parameters."""

    def check_params(self, params: Mapping[str, Any], num_states: int | None = None,
                     num_features: int | None = None, name: str = "params") -> dict[str, np.ndarray]:
        """Validate a params dict (numpy, before any tracing); returns float64 arrays.

        Raises:
            TypeError / ValueError: naming ``params['key']``: unknown or missing keys, wrong shapes,
                non-finite values, values outside the family's constraints.
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"{name}: expected a dict with keys {list(self.param_names)}, got {type(params).__name__}")
        unknown = sorted(set(map(str, params)) - set(self.param_names))
        missing = [k for k in self.param_names if k not in params]
        if unknown or missing:
            raise ValueError(f"{name}: {self.name} emission expects keys {list(self.param_names)}; "
                             + (f"unknown {unknown}" if unknown else f"missing {missing}"))
        out = {}
        for k in self.param_names:
            try:
                out[k] = np.asarray(params[k], dtype=float)
            except (TypeError, ValueError):
                raise TypeError(f"{name}[{k!r}]: expected a numeric array") from None
            if not np.isfinite(out[k]).all():
                raise ValueError(f"{name}[{k!r}]: expected finite values")
        first = out[self.param_names[0]]
        s = first.shape[0] if num_states is None and first.ndim else num_states
        d = self.num_features(out) if num_features is None else num_features
        if s is None:
            raise ValueError(f"{name}[{self.param_names[0]!r}]: expected a leading state axis, got a scalar")
        shapes = self.param_shapes(int(s), d)
        for k, shp in shapes.items():
            if out[k].shape != shp:
                raise ValueError(f"{name}[{k!r}]: expected shape {shp} ({s} states), got {out[k].shape}")
        self._check_values(out, name)
        return out

    def _check_observation_values(self, arr: np.ndarray, name: str) -> np.ndarray:
        return arr

    def check_observations(self, observations: Any, num_features: int | None = None,
                           name: str = "observations") -> np.ndarray:
        """Validate ``(T, *event)`` or ``(B, T, *event)`` observations (numpy side).

        Returns:
            The array (int64 for integer families, float64 for Gaussian), missing values as ``-1`` / NaN.

        Raises:
            TypeError / ValueError: naming ``name``: wrong dtype, rank, an empty sequence, values outside
                the family's support, a feature count different from ``num_features``.
        """
        if isinstance(observations, (str, bytes)) or observations is None:
            raise TypeError(f"{name}: expected a numeric array, got {type(observations).__name__}")
        try:
            arr = np.asarray(observations)
        except ValueError:
            raise ValueError(f"{name}: sequences of different lengths; pad them and pass 'lengths'") from None
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise TypeError(f"{name}: expected a numeric array for the {self.name} emission, got dtype {arr.dtype}")
        e = self.event_ndim
        want = "(T,) or (B, T)" if e == 0 else "(T, D) or (B, T, D)"
        if arr.ndim not in (e + 1, e + 2):
            raise ValueError(f"{name}: expected shape {want} for the {self.name} emission, got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"{name}: empty (shape {arr.shape})")
        if e and num_features is not None and arr.shape[-1] != num_features:
            raise ValueError(f"{name}: expected {num_features} features on the last axis, got shape {arr.shape}")
        if self.integer:
            if np.issubdtype(arr.dtype, np.floating):
                miss = np.isnan(arr)
                filled = np.where(miss, -1, arr)
                if (filled != np.floor(filled)).any():
                    raise ValueError(f"{name}: expected integer values for the {self.name} emission (-1 or NaN = "
                                     "missing), found a fraction")
                arr = filled
            arr = arr.astype(np.int64)
            if (arr < -1).any():
                where = tuple(int(i) for i in np.argwhere(arr < -1)[0])
                raise ValueError(f"{name}: negative value {int(arr[where])} at index {where}; only -1 marks a "
                                 "missing value")
        else:
            arr = arr.astype(np.float64)
            if np.isinf(arr).any():
                raise ValueError(f"{name}: contains inf (NaN marks a missing value)")
        return self._check_observation_values(arr, name)

    def missing_steps(self, observations) -> Array:
        """``Bool[Array, "... T"]``: True where the whole step is missing."""
        y = jnp.asarray(observations)
        miss = ~_count_mask(y) if self.integer else jnp.isnan(y)
        return jnp.all(miss, axis=-1) if self.event_ndim else miss

    # -- math -------------------------------------------------------------------------------------
    def log_likelihoods(self, params: Mapping[str, Array], observations: Array) -> Array:
        raise NotImplementedError

    def m_step(self, observations, weights, previous: Mapping[str, Array]) -> dict[str, Array]:
        raise NotImplementedError

    def sample(self, key: Array, params: Mapping[str, Array], states: Array, **kwargs) -> Array:
        raise NotImplementedError

    def initial_params(self, observations, num_states: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def constrain(self, raw: Mapping[str, Array]) -> dict[str, Array]:
        raise NotImplementedError

    def unconstrain(self, params: Mapping[str, Array]) -> dict[str, Array]:
        raise NotImplementedError


def _valid_values(emission: Emission, observations) -> np.ndarray:
    """Observed values flattened to ``(N, *event)`` (whole missing steps dropped), numpy."""
    y = np.asarray(observations)
    y = y.reshape((-1,) + (y.shape[-1:] if emission.event_ndim else ()))
    miss = np.asarray(emission.missing_steps(jnp.asarray(y)))
    return y[~miss]


def _simplex(name: str, p: np.ndarray) -> None:
    if (p < 0).any() or not np.allclose(p.sum(-1), 1.0, atol=1e-6):
        raise ValueError(f"{name}: expected non-negative rows summing to 1, got row sums {p.sum(-1)}")


def _quantile_start(values: np.ndarray, num_states: int, rng: np.random.Generator) -> np.ndarray:
    """Evenly spaced quantiles of the data (a spread start), nudged so equal quantiles differ."""
    q = np.quantile(values, (np.arange(num_states) + 0.5) / num_states, axis=0)
    spread = np.std(values, axis=0) + 1e-3
    return q + 1e-2 * spread * rng.standard_normal(q.shape)


# ------------------------------------------------------------------------------------------------
# Families
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Categorical(Emission):
    """One symbol in ``0..M-1`` per step; ``probs`` (S, M). The log-likelihood's gradient is a one-hot
    matmul (custom VJP), not a scatter-add."""

    name: ClassVar[str] = "categorical"
    param_names: ClassVar[tuple[str, ...]] = ("probs",)
    event_ndim: ClassVar[int] = 0

    def param_shapes(self, num_states, num_features=None):
        if num_features is None:
            raise ValueError("num_features: the categorical emission needs the number of symbols M")
        return {"probs": (num_states, num_features)}

    def num_features(self, params):
        return int(np.shape(params["probs"])[-1])

    def _check_values(self, params, name="params"):
        _simplex(f"{name}['probs']", params["probs"])

    def _check_observation_values(self, arr, name):
        return arr

    def check_observations(self, observations, num_features=None, name="observations"):
        """Integer symbols in ``0..M-1`` (``M = num_features``), ``-1`` = missing; the one check of the
        categorical HMM's observations (operator, ``baum_welch``, ``hmm_model``). Floats are refused, not
        rounded: a float symbol array is usually a mistake upstream (NaN gets its own message)."""
        if isinstance(observations, (str, bytes)) or (
                not hasattr(observations, "shape") and not isinstance(observations, (list, tuple))):
            raise TypeError(f"{name}: expected an integer array, got {type(observations).__name__}")
        try:
            arr = np.asarray(observations)
        except ValueError:  # NumPy: "inhomogeneous shape"
            raise ValueError(f"{name}: sequences of different lengths; pad them to a (B, T) array with -1 "
                             "and pass 'lengths'") from None
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise TypeError(f"{name}: expected integer symbols, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and arr.size:
            if np.isnan(arr).any():
                raise ValueError(f"{name}: contains NaN; encode a missing symbol as -1")
            raise TypeError(f"{name}: expected integer symbols, got dtype {arr.dtype} (cast with .astype(int))")
        m = num_features
        bad = (arr < -1) | ((arr >= m) if m is not None else False)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            allowed = f"0..{m - 1} (num_emissions={m})" if m is not None else "0, 1, ..."
            raise ValueError(f"{name}: symbols must be in {allowed} or -1 for missing; found {int(arr[where])} "
                             f"at index {where if len(where) > 1 else where[0]}")
        return super().check_observations(arr, None, name)

    def log_likelihoods(self, params, observations):
        return _categorical_ll(jnp.log(jnp.asarray(params["probs"])), jnp.asarray(observations))

    def m_step(self, observations, weights, previous, concentration=1.0):
        """Expected symbol counts (plus ``concentration - 1`` Dirichlet pseudo-counts), normalised."""
        y, w = _flatten(self, observations, weights)
        prev = jnp.asarray(previous["probs"])
        counts = w.T @ jax.nn.one_hot(y, prev.shape[-1], dtype=w.dtype)  # -1 -> a zero row
        counts = jnp.maximum(counts + (jnp.asarray(concentration, w.dtype) - 1.0), 0.0)
        return {"probs": _safe_ratio(counts, counts.sum(-1, keepdims=True), prev)}

    def sample(self, key, params, states, **kwargs):
        logp = jnp.log(jnp.asarray(params["probs"]))
        return jax.random.categorical(key, logp[jnp.maximum(states, 0)], axis=-1).astype(jnp.int32)

    def initial_params(self, observations, num_states, rng):
        m = int(np.max(observations)) + 1
        return {"probs": rng.dirichlet(np.ones(m), size=num_states)}

    def constrain(self, raw):
        return {"probs": jax.nn.softmax(raw["probs"], axis=-1)}

    def unconstrain(self, params):
        return {"probs": jnp.log(jnp.asarray(params["probs"]))}


@dataclasses.dataclass(frozen=True)
class Poisson(Emission):
    """A count per step; ``rates`` (S,)."""

    name: ClassVar[str] = "poisson"
    param_names: ClassVar[tuple[str, ...]] = ("rates",)
    event_ndim: ClassVar[int] = 0

    def param_shapes(self, num_states, num_features=None):
        return {"rates": (num_states,)}

    def _check_values(self, params, name="params"):
        if (params["rates"] <= 0).any():
            raise ValueError(f"{name}['rates']: expected positive rates, got {params['rates']}")

    def log_likelihoods(self, params, observations):
        return poisson_log_likelihoods(jnp.log(jnp.asarray(params["rates"])), observations)

    def m_step(self, observations, weights, previous):
        """Posterior-weighted mean count per state."""
        y, w = _flatten(self, observations, weights)
        obs = _count_mask(y)
        y0 = jnp.where(obs, y, 0).astype(w.dtype)
        return {"rates": _safe_ratio(w.T @ y0, w.T @ obs.astype(w.dtype), jnp.asarray(previous["rates"]))}

    def sample(self, key, params, states, **kwargs):
        rates = jnp.asarray(params["rates"])
        return jax.random.poisson(key, rates[jnp.maximum(states, 0)]).astype(jnp.int32)

    def initial_params(self, observations, num_states, rng):
        v = _valid_values(self, observations).astype(float)
        return {"rates": np.maximum(np.sort(_quantile_start(v, num_states, rng)), 0.1 * v.mean() + 1e-3)}

    def constrain(self, raw):
        return {"rates": jnp.exp(raw["rates"])}

    def unconstrain(self, params):
        return {"rates": jnp.log(jnp.asarray(params["rates"]))}


# Newton iterations of the negative-binomial concentration per M-step, and the step lengths tried in each
# (0 included, so a step never lowers the expected complete-data log-likelihood: generalised EM).
_NB_NEWTON_STEPS = 8
_NB_STEP_LENGTHS = (1.0, 0.5, 0.25, 0.125, 0.0)


@dataclasses.dataclass(frozen=True)
class NegativeBinomial(Emission):
    """A count per step; ``means`` and ``concentrations`` (S,), ``Var = mu + mu^2 / r`` (the core's
    :func:`diffbio_prob.cores.nb.nb_log_pmf`, NumPyro's ``NegativeBinomial2``)."""

    name: ClassVar[str] = "negative_binomial"
    param_names: ClassVar[tuple[str, ...]] = ("means", "concentrations")
    event_ndim: ClassVar[int] = 0

    def param_shapes(self, num_states, num_features=None):
        return {"means": (num_states,), "concentrations": (num_states,)}

    def _check_values(self, params, name="params"):
        for k in self.param_names:
            if (params[k] <= 0).any():
                raise ValueError(f"{name}[{k!r}]: expected positive values, got {params[k]}")

    def log_likelihoods(self, params, observations):
        y = jnp.asarray(observations)
        observed = _count_mask(y)
        mu, r = jnp.asarray(params["means"]), jnp.asarray(params["concentrations"])
        y = jnp.where(observed, y, 0).astype(jnp.result_type(mu, float))
        ll = nb_log_pmf(y[..., None], mu, r)
        return jnp.where(observed[..., None], ll, 0.0)

    def m_step(self, observations, weights, previous):
        """Means: the weighted mean (exact for any concentration). Concentrations: Newton on log r with
        the step lengths ``1, 1/2, ..., 0`` tried and the best kept, from the previous value."""
        y, w = _flatten(self, observations, weights)
        obs = _count_mask(y)
        w = w * obs[:, None]
        y0 = jnp.where(obs, y, 0).astype(w.dtype)
        mu = _safe_ratio(w.T @ y0, jnp.sum(w, 0), jnp.asarray(previous["means"], w.dtype))

        def q(u):  # (S,) expected complete-data log-likelihood per state
            return jnp.sum(w * nb_log_pmf(y0[:, None], mu[None], jnp.exp(u)[None]), axis=0)

        grad = jax.grad(lambda u: jnp.sum(q(u)))
        hess = jax.grad(lambda u: jnp.sum(grad(u)))  # diagonal: the states do not interact
        steps = jnp.asarray(_NB_STEP_LENGTHS, w.dtype)

        def newton(_, u):
            g, h = grad(u), hess(u)
            d = jnp.clip(jnp.where(h < 0, -g / jnp.where(h < 0, h, -1.0), jnp.sign(g)), -2.0, 2.0)
            cand = u[None] + steps[:, None] * d[None]  # (K, S)
            vals = jax.vmap(q)(cand)
            vals = jnp.where(jnp.isfinite(vals), vals, -jnp.inf)
            return jnp.take_along_axis(cand, jnp.argmax(vals, axis=0)[None], axis=0)[0]

        u0 = jnp.log(jnp.asarray(previous["concentrations"], w.dtype))
        u = lax.fori_loop(0, _NB_NEWTON_STEPS, newton, u0)
        u = jnp.where(jnp.sum(w, 0) > 0, u, u0)
        return {"means": mu, "concentrations": jnp.exp(u)}

    def sample(self, key, params, states, **kwargs):
        k1, k2 = jax.random.split(key)
        z = jnp.maximum(states, 0)
        mu, r = jnp.asarray(params["means"])[z], jnp.asarray(params["concentrations"])[z]
        lam = jax.random.gamma(k1, r) * mu / r  # gamma-Poisson mixture
        return jax.random.poisson(k2, lam).astype(jnp.int32)

    def initial_params(self, observations, num_states, rng):
        v = _valid_values(self, observations).astype(float)
        mean, var = v.mean(), v.var()
        r = mean**2 / (var - mean) if var > mean * 1.01 else 100.0
        means = np.maximum(np.sort(_quantile_start(v, num_states, rng)), 0.1 * mean + 1e-3)
        return {"means": means, "concentrations": np.full(num_states, float(np.clip(r, 0.1, 1e4)))}

    def constrain(self, raw):
        return {k: jnp.exp(raw[k]) for k in self.param_names}

    def unconstrain(self, params):
        return {k: jnp.log(jnp.asarray(params[k])) for k in self.param_names}


@dataclasses.dataclass(frozen=True)
class Gaussian(Emission):
    """A real vector (T, D) per step; ``means`` (S, D) and ``scales`` (S, D) (``covariance="diag"``: NaN
    features are marginalised) or ``covariances`` (S, D, D) (``"full"``: a step with any NaN is missing).

    Args:
        covariance: ``"diag"`` or ``"full"``.
    """

    covariance: str = "diag"
    event_ndim: ClassVar[int] = 1
    integer: ClassVar[bool] = False

    def __post_init__(self):
        if self.covariance not in ("diag", "full"):
            raise ValueError(f"covariance: expected 'diag' or 'full', got {self.covariance!r}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return "gaussian" if self.covariance == "diag" else "gaussian_full"

    @property
    def param_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("means", "scales") if self.covariance == "diag" else ("means", "covariances")

    def param_shapes(self, num_states, num_features=None):
        if num_features is None:
            raise ValueError("num_features: the Gaussian emission needs the number of features D")
        s, d = num_states, num_features
        return {"means": (s, d), self.param_names[1]: (s, d) if self.covariance == "diag" else (s, d, d)}

    def num_features(self, params):
        return int(np.shape(params["means"])[-1])

    def _check_values(self, params, name="params"):
        if self.covariance == "diag":
            if (params["scales"] <= 0).any():
                raise ValueError(f"{name}['scales']: expected positive standard deviations")
            return
        c = params["covariances"]
        if not np.allclose(c, np.swapaxes(c, -1, -2), rtol=1e-8, atol=1e-10):
            raise ValueError(f"{name}['covariances']: expected symmetric matrices")
        if (np.linalg.eigvalsh(c) <= 0).any():
            raise ValueError(f"{name}['covariances']: expected positive definite matrices")

    def _check_observation_values(self, arr, name):
        if self.covariance == "full":
            nan = np.isnan(arr)
            partial = nan.any(-1) & ~nan.all(-1)
            if partial.any():
                where = tuple(int(i) for i in np.argwhere(partial)[0])
                raise ValueError(f"{name}: step {where} is partly NaN; the full-covariance Gaussian marginalises "
                                 "whole steps only (NaN in every feature)")
        return arr

    def missing_steps(self, observations):
        nan = jnp.isnan(jnp.asarray(observations))
        return jnp.all(nan, -1) if self.covariance == "diag" else jnp.any(nan, -1)

    def log_likelihoods(self, params, observations):
        mu = jnp.asarray(params["means"])
        if self.covariance == "diag":
            return gaussian_log_likelihoods(mu, jnp.log(jnp.asarray(params["scales"])), observations)
        y = jnp.asarray(observations, dtype=jnp.result_type(mu, float))
        missing = jnp.any(jnp.isnan(y), axis=-1)
        y = jnp.where(missing[..., None], 0.0, y)
        chol = jnp.linalg.cholesky(jnp.asarray(params["covariances"], mu.dtype))  # (S, D, D)
        eye = jnp.broadcast_to(jnp.eye(mu.shape[-1], dtype=mu.dtype), chol.shape)
        inv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)  # L^-1, once per state
        z = jnp.einsum("sij,...sj->...si", inv, y[..., None, :] - mu)
        logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
        ll = -0.5 * jnp.sum(z**2, -1) - logdet - 0.5 * mu.shape[-1] * jnp.log(2 * jnp.pi)
        return jnp.where(missing[..., None], 0.0, ll)

    def m_step(self, observations, weights, previous):
        """Weighted means and (co)variances (two-pass: the centred sum, accurate in float32)."""
        y, w = _flatten(self, observations, weights)
        mu_prev = jnp.asarray(previous["means"], w.dtype)
        if self.covariance == "diag":
            obs = ~jnp.isnan(y)
            y0 = jnp.where(obs, y, 0.0).astype(w.dtype)
            n = w.T @ obs.astype(w.dtype)  # (S, D)
            mu = _safe_ratio(w.T @ y0, n, mu_prev)
            dev = jnp.where(obs[:, None, :], y0[:, None, :] - mu[None], 0.0)
            var = _safe_ratio(jnp.einsum("ns,nsd->sd", w, dev**2), n, jnp.asarray(previous["scales"], w.dtype) ** 2)
            var = jnp.where(var > 0, var, jnp.asarray(previous["scales"], w.dtype) ** 2)
            return {"means": mu, "scales": jnp.sqrt(var)}
        obs = ~jnp.any(jnp.isnan(y), -1)
        w = w * obs[:, None]
        y0 = jnp.where(obs[:, None], y, 0.0).astype(w.dtype)
        n = jnp.sum(w, 0)
        mu = _safe_ratio(w.T @ y0, n[:, None], mu_prev)
        dev = y0[:, None, :] - mu[None]
        cov = jnp.einsum("ns,nsd,nse->sde", w, dev, dev)
        prev_cov = jnp.asarray(previous["covariances"], w.dtype)
        return {"means": mu, "covariances": _safe_ratio(cov, n[:, None, None], prev_cov)}

    def sample(self, key, params, states, **kwargs):
        z = jnp.maximum(states, 0)
        mu = jnp.asarray(params["means"])
        eps = jax.random.normal(key, z.shape + mu.shape[-1:], dtype=mu.dtype)
        if self.covariance == "diag":
            return mu[z] + jnp.asarray(params["scales"])[z] * eps
        chol = jnp.linalg.cholesky(jnp.asarray(params["covariances"], mu.dtype))
        return mu[z] + jnp.einsum("...ij,...j->...i", chol[z], eps)

    def initial_params(self, observations, num_states, rng):
        v = _valid_values(self, observations)
        v = v[~np.isnan(v).any(-1)] if np.isnan(v).any() else v
        means = _quantile_start(v, num_states, rng)
        means = means[np.argsort(means[:, 0])]
        if self.covariance == "diag":
            return {"means": means, "scales": np.broadcast_to(np.std(v, 0) + 1e-3, means.shape).copy()}
        cov = np.atleast_2d(np.cov(v, rowvar=False)) + 1e-6 * np.eye(v.shape[-1])
        return {"means": means, "covariances": np.broadcast_to(cov, (num_states,) + cov.shape).copy()}

    def constrain(self, raw):
        if self.covariance == "diag":
            return {"means": raw["means"], "scales": jnp.exp(raw["scales"])}
        # raw["covariances"]: a Cholesky factor with its diagonal on the log scale.
        r = raw["covariances"]
        chol = jnp.tril(r, -1) + jnp.exp(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None] * jnp.eye(r.shape[-1])
        return {"means": raw["means"], "covariances": chol @ jnp.swapaxes(chol, -1, -2)}

    def unconstrain(self, params):
        if self.covariance == "diag":
            return {"means": jnp.asarray(params["means"]), "scales": jnp.log(jnp.asarray(params["scales"]))}
        chol = jnp.linalg.cholesky(jnp.asarray(params["covariances"]))
        raw = jnp.tril(chol, -1) + jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))[..., None] * jnp.eye(chol.shape[-1])
        return {"means": jnp.asarray(params["means"]), "covariances": raw}


@dataclasses.dataclass(frozen=True)
class Bernoulli(Emission):
    """D independent 0/1 marks per step (ChromHMM's emission; a mark of -1 is missing); ``probs`` (S, D)."""

    name: ClassVar[str] = "bernoulli"
    param_names: ClassVar[tuple[str, ...]] = ("probs",)
    event_ndim: ClassVar[int] = 1

    def param_shapes(self, num_states, num_features=None):
        if num_features is None:
            raise ValueError("num_features: the Bernoulli emission needs the number of marks D")
        return {"probs": (num_states, num_features)}

    def num_features(self, params):
        return int(np.shape(params["probs"])[-1])

    def _check_values(self, params, name="params"):
        p = params["probs"]
        if (p < 0).any() or (p > 1).any():
            raise ValueError(f"{name}['probs']: expected probabilities in [0, 1]")

    def _check_observation_values(self, arr, name):
        if (arr > 1).any():
            where = tuple(int(i) for i in np.argwhere(arr > 1)[0])
            raise ValueError(f"{name}: expected 0/1 marks (-1 = missing), found {int(arr[where])} at index {where}")
        return arr

    def log_likelihoods(self, params, observations):
        y = jnp.asarray(observations)
        p = jnp.asarray(params["probs"])
        observed = y >= 0
        on = (y == 1)[..., None, :]
        # Each branch evaluated where it is used only (log 0 = -inf is a real impossibility, not a NaN).
        log_p = jnp.log(jnp.where(on, p, 1.0))
        log_q = jnp.log1p(-jnp.where(on, 0.0, p))
        terms = jnp.where(on, log_p, log_q)
        return jnp.sum(jnp.where(observed[..., None, :], terms, 0.0), axis=-1)

    def m_step(self, observations, weights, previous):
        """Posterior-weighted frequency of each mark per state (observed marks only)."""
        y, w = _flatten(self, observations, weights)
        obs = (y >= 0).astype(w.dtype)
        on = (y == 1).astype(w.dtype)
        return {"probs": _safe_ratio(w.T @ on, w.T @ obs, jnp.asarray(previous["probs"], w.dtype))}

    def sample(self, key, params, states, **kwargs):
        p = jnp.asarray(params["probs"])[jnp.maximum(states, 0)]
        return jax.random.bernoulli(key, p).astype(jnp.int32)

    def initial_params(self, observations, num_states, rng):
        v = _valid_values(self, observations)
        freq = np.array([(c[c >= 0] == 1).mean() if (c >= 0).any() else 0.5 for c in v.T])
        return {"probs": np.clip(freq + rng.uniform(-0.2, 0.2, (num_states, v.shape[-1])), 0.02, 0.98)}

    def constrain(self, raw):
        return {"probs": jax.nn.sigmoid(raw["probs"])}

    def unconstrain(self, params):
        p = jnp.asarray(params["probs"])
        return {"probs": jnp.log(p) - jnp.log1p(-p)}


@dataclasses.dataclass(frozen=True)
class Multinomial(Emission):
    """A count vector (T, M) per step with its own total; ``probs`` (S, M). A step with any -1 is missing.
    ``sample`` needs ``total_count`` (a scalar or an array of the states' shape)."""

    name: ClassVar[str] = "multinomial"
    param_names: ClassVar[tuple[str, ...]] = ("probs",)
    event_ndim: ClassVar[int] = 1

    def param_shapes(self, num_states, num_features=None):
        if num_features is None:
            raise ValueError("num_features: the multinomial emission needs the number of categories M")
        return {"probs": (num_states, num_features)}

    def num_features(self, params):
        return int(np.shape(params["probs"])[-1])

    def _check_values(self, params, name="params"):
        _simplex(f"{name}['probs']", params["probs"])

    def _check_observation_values(self, arr, name):
        neg = arr < 0
        partial = neg.any(-1) & ~neg.all(-1)
        if partial.any():
            where = tuple(int(i) for i in np.argwhere(partial)[0])
            raise ValueError(f"{name}: step {where} mixes counts and -1; mark a missing step with -1 in every "
                             "category")
        return arr

    def missing_steps(self, observations):
        return jnp.any(jnp.asarray(observations) < 0, -1)

    def log_likelihoods(self, params, observations):
        y = jnp.asarray(observations)
        p = jnp.asarray(params["probs"])
        missing = jnp.any(y < 0, -1)
        y = jnp.where(missing[..., None], 0, y).astype(jnp.result_type(p, float))
        gl = jax.scipy.special.gammaln
        const = gl(jnp.sum(y, -1) + 1.0) - jnp.sum(gl(y + 1.0), -1)  # (..., T)
        yk = y[..., None, :]
        terms = jnp.where(yk > 0, yk * jnp.log(jnp.where(yk > 0, p, 1.0)), 0.0)
        return jnp.where(missing[..., None], 0.0, const[..., None] + jnp.sum(terms, -1))

    def m_step(self, observations, weights, previous):
        """Expected category counts per state, normalised."""
        y, w = _flatten(self, observations, weights)
        obs = ~jnp.any(y < 0, -1)
        counts = (w * obs[:, None]).T @ jnp.where(obs[:, None], y, 0).astype(w.dtype)
        return {"probs": _safe_ratio(counts, counts.sum(-1, keepdims=True), jnp.asarray(previous["probs"], w.dtype))}

    def sample(self, key, params, states, total_count=None, **kwargs):
        if total_count is None:
            raise ValueError("total_count: the multinomial emission needs the number of trials per step")
        p = jnp.asarray(params["probs"])[jnp.maximum(states, 0)]
        n = jnp.broadcast_to(jnp.asarray(total_count), jnp.shape(states))
        return jax.random.multinomial(key, n.astype(p.dtype), p).astype(jnp.int32)

    def initial_params(self, observations, num_states, rng):
        v = _valid_values(self, observations).astype(float)
        freq = v.sum(0) + 1.0
        return {"probs": rng.dirichlet(50 * freq / freq.sum(), size=num_states)}

    def constrain(self, raw):
        return {"probs": jax.nn.softmax(raw["probs"], axis=-1)}

    def unconstrain(self, params):
        return {"probs": jnp.log(jnp.asarray(params["probs"]))}


EMISSIONS: dict[str, Emission] = {
    "categorical": Categorical(),
    "poisson": Poisson(),
    "negative_binomial": NegativeBinomial(),
    "gaussian": Gaussian("diag"),
    "gaussian_full": Gaussian("full"),
    "bernoulli": Bernoulli(),
    "multinomial": Multinomial(),
}


def get_emission(emission: str | Emission) -> Emission:
    """An :class:`Emission` instance from itself or its name (``-`` and ``_`` alike, any case).

    Example:
        >>> get_emission("Negative-Binomial").param_names
        ('means', 'concentrations')
    """
    if isinstance(emission, Emission):
        return emission
    if not isinstance(emission, str):
        raise TypeError(f"emission: expected a name or an Emission, got {type(emission).__name__}")
    key = emission.strip().lower().replace("-", "_")
    if key not in EMISSIONS:
        raise ValueError(f"emission: unknown {emission!r}; expected one of {sorted(EMISSIONS)}")
    return EMISSIONS[key]
