"""The HMM's NumPyro twin: a ``DiscreteHMM`` distribution and ``hmm_model`` with Dirichlet priors.

NumPyro has no discrete-HMM distribution (NumPyro #1010): enumerating the hidden states with
``markov``/funsor is ~5x slower than marginalising them with a hand-written forward pass. Here
``DiscreteHMM.log_prob`` *is* the core's forward pass (:func:`diffbio_prob.cores.hmm.log_likelihood`,
with its forward-backward gradient), the same function the NNX operator calls.

Label switching: the likelihood is invariant under relabelling the states, so an unsupervised HMM
posterior has S! symmetric modes. A NUTS chain stays in one of them; chains started from different
points can land in different ones and R-hat blows up. Two remedies, used together by
:mod:`diffbio_prob.workflows.hmm`: start every chain from the same point estimate (``init_params`` from
Baum-Welch or a gradient fit), and relabel the draws with :func:`relabel_states` (sorts the states in
each draw by one emission probability) before summarising.

Example:
    >>> import jax, jax.numpy as jnp
    >>> d = DiscreteHMM(jnp.array([0.5, 0.5]), jnp.array([[0.95, 0.05], [0.1, 0.9]]),
    ...                 jnp.array([[0.5, 0.5], [0.9, 0.1]]), num_steps=4)
    >>> d.sample(jax.random.key(0)).shape, d.log_prob(jnp.array([0, 1, 0, 0])).shape
    ((4,), ())
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from diffbio_prob.cores import hmm as core

__all__ = ["DiscreteHMM", "hmm_model", "relabel_states", "interior_params"]


class DiscreteHMM(dist.Distribution):
    """Distribution of a categorical-emission HMM's observation sequence, hidden states marginalised.

    ``event_shape = (T,)``; ``batch_shape`` is the broadcast of the parameters' leading dimensions and
    ``lengths``. Symbols are ``0..M-1``; ``-1`` marks a missing step (marginalised) and the padding past a
    sequence's length (``sample`` writes ``-1`` there).

    Args:
        initial_probs: ``Float[Array, "... S"]`` p(z_1).
        transition_probs: ``Float[Array, "... S S"]`` p(z_{t+1} = j | z_t = i) at ``[i, j]``.
        emission_probs: ``Float[Array, "... S M"]`` p(y = m | z = k) at ``[k, m]``.
        num_steps: T, the length of the event (padded length for ragged batches).
        lengths: optional ``Int[Array, "..."]`` valid steps per sequence (ragged batch).
        validate_args: NumPyro's argument validation.

    Example:
        >>> d = DiscreteHMM(jnp.ones(2) / 2, jnp.eye(2), jnp.array([[1.0, 0.0], [0.0, 1.0]]), 3,
        ...                 lengths=jnp.array([3, 1]))
        >>> d.batch_shape, d.log_prob(jnp.array([[0, 0, 0], [1, -1, -1]])).round(4).tolist()
        ((2,), [-0.6931, -0.6931])
    """

    arg_constraints = {
        "initial_probs": constraints.simplex,
        "transition_probs": constraints.simplex,
        "emission_probs": constraints.simplex,
    }
    pytree_data_fields = ("initial_probs", "transition_probs", "emission_probs", "lengths")
    pytree_aux_fields = ("num_steps",)

    def __init__(
        self,
        initial_probs,
        transition_probs,
        emission_probs,
        num_steps: int,
        lengths=None,
        *,
        validate_args=None,
    ):
        if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
        self.initial_probs = jnp.asarray(initial_probs)
        self.transition_probs = jnp.asarray(transition_probs)
        self.emission_probs = jnp.asarray(emission_probs)
        s = self.initial_probs.shape[-1]
        if self.transition_probs.shape[-2:] != (s, s) or self.emission_probs.shape[-2] != s:
            raise ValueError(
                f"DiscreteHMM: inconsistent shapes: initial_probs {self.initial_probs.shape}, "
                f"transition_probs {self.transition_probs.shape}, emission_probs {self.emission_probs.shape}"
            )
        self.num_steps = int(num_steps)
        self.lengths = None if lengths is None else jnp.asarray(lengths)
        if lengths is not None and not isinstance(lengths, jax.core.Tracer):
            lens = np.asarray(lengths)
            if not np.issubdtype(lens.dtype, np.integer) or (lens < 0).any() or (lens > num_steps).any():
                raise ValueError(f"lengths: expected integers in 0..{num_steps} (num_steps), got {lens}")
        batch_shape = jnp.broadcast_shapes(
            self.initial_probs.shape[:-1],
            self.transition_probs.shape[:-2],
            self.emission_probs.shape[:-2],
            () if self.lengths is None else self.lengths.shape,
        )
        super().__init__(batch_shape=batch_shape, event_shape=(self.num_steps,), validate_args=validate_args)

    @property
    def num_states(self) -> int:
        return self.initial_probs.shape[-1]

    @property
    def num_emissions(self) -> int:
        return self.emission_probs.shape[-1]

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(-1, self.num_emissions - 1), 1)

    def _flat_params(self, batch_shape):
        """Parameters broadcast to ``batch_shape`` and flattened to one leading axis."""
        s, m = self.num_states, self.num_emissions
        n = int(np.prod(batch_shape, dtype=int))
        pi = jnp.broadcast_to(self.initial_probs, batch_shape + (s,)).reshape(n, s)
        a = jnp.broadcast_to(self.transition_probs, batch_shape + (s, s)).reshape(n, s, s)
        b = jnp.broadcast_to(self.emission_probs, batch_shape + (s, m)).reshape(n, s, m)
        if self.lengths is None:
            lens = jnp.full((n,), self.num_steps, jnp.int32)
        else:
            lens = jnp.broadcast_to(self.lengths, batch_shape).reshape(n)
        return pi, a, b, lens

    def _check_value(self, value):
        """Shape and dtype of ``value`` (static: checked under ``jit`` too); returns ``(symbols, in_support)``.

        Follows NumPyro's ``validate_sample`` convention for values outside the support (a symbol not in
        ``-1..M-1``, or a non-integral float): their log-probability is ``-inf`` (probability 0, never
        NaN), and with ``validate_args=True`` a concrete such value also warns, naming the first bad
        entry. A value of the wrong event shape or a non-numeric dtype is a ``ValueError`` /
        ``TypeError`` naming ``value`` (a structural error, not an improbable observation).
        """
        if isinstance(value, (str, bytes)):
            raise TypeError(f"value: expected integer symbols, got {type(value).__name__}")
        value = jnp.asarray(value)
        if value.dtype == jnp.bool_ or not (jnp.issubdtype(value.dtype, jnp.integer)
                                            or jnp.issubdtype(value.dtype, jnp.floating)):
            raise TypeError(f"value: expected integer symbols in 0..{self.num_emissions - 1} (-1 = missing), "
                            f"got dtype {value.dtype}")
        if value.ndim < 1 or value.shape[-1] != self.num_steps:
            raise ValueError(f"value: expected event shape ({self.num_steps},) (num_steps) on the last axis, "
                             f"got shape {value.shape}")
        try:
            jnp.broadcast_shapes(value.shape[:-1], self.batch_shape)
        except ValueError:
            raise ValueError(f"value: batch shape {value.shape[:-1]} does not broadcast with the distribution's "
                             f"batch shape {self.batch_shape}") from None
        ok = (value >= -1) & (value <= self.num_emissions - 1)
        if jnp.issubdtype(value.dtype, jnp.floating):
            ok = ok & (value == jnp.floor(value))  # NaN fails both
        if self.lengths is not None:  # what lies past a sequence's length is padding, never looked at
            ok = ok | (jnp.arange(self.num_steps) >= self.lengths[..., None])
        if self._validate_args and not isinstance(value, jax.core.Tracer):
            bad = ~np.asarray(ok)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                warnings.warn(
                    f"value: {np.asarray(value)[where]} at index {where} is outside the support (symbols "
                    f"0..{self.num_emissions - 1}, -1 = missing); its log_prob is -inf", stacklevel=3)
        symbols = jnp.where(ok, value, -1).astype(jnp.int32)  # sanitised: an out-of-support step is masked below
        return symbols, jnp.all(ok, axis=-1)

    def log_prob(self, value):
        """log p(value), states marginalised by the core's forward pass; shape ``sample + batch``.

        ``-inf`` for a value outside the support (see :meth:`_check_value`); ``ValueError`` for a value
        whose last axis is not ``num_steps`` long.
        """
        value, in_support = self._check_value(value)
        return jnp.where(in_support, self._log_prob(value), -jnp.inf)

    def _log_prob(self, value):
        batch_shape = jnp.broadcast_shapes(value.shape[:-1], self.batch_shape)
        y = jnp.broadcast_to(value, batch_shape + (self.num_steps,)).reshape(-1, self.num_steps)
        shared = self.initial_probs.ndim == 1 and self.transition_probs.ndim == 2 and self.emission_probs.ndim == 2
        if shared:
            # One set of parameters for every sequence (the model's case): the core's batched path.
            n = y.shape[0]
            lens = (
                jnp.full((n,), self.num_steps, jnp.int32)
                if self.lengths is None
                else jnp.broadcast_to(self.lengths, batch_shape).reshape(n)
            )
            params = core.HMMParams(jnp.log(self.initial_probs), jnp.log(self.transition_probs))
            log_b = jnp.log(self.emission_probs)
            return core.categorical_log_likelihood_batch(params, log_b, y, lens).reshape(batch_shape)
        pi, a, b, lens = self._flat_params(batch_shape)

        def one(pi, a, b, y, n):
            ll = core.categorical_log_likelihoods(jnp.log(b), y)
            return core.log_likelihood(core.HMMParams(jnp.log(pi), jnp.log(a)), ll, n)

        return jax.vmap(one)(pi, a, b, y, lens).reshape(batch_shape)

    def sample_with_intermediates(self, key, sample_shape=()):
        """``(observations, [states])``, both ``sample_shape + batch_shape + (T,)``; -1 on padding."""
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        pi, a, b, lens = self._flat_params(shape)
        keys = jax.random.split(key, pi.shape[0])

        def one(k, pi, a, b, n):
            z, y = core.sample_categorical(k, core.HMMParams(jnp.log(pi), jnp.log(a)), jnp.log(b), self.num_steps)
            valid = jnp.arange(self.num_steps) < n
            return jnp.where(valid, z, -1), jnp.where(valid, y, -1)

        z, y = jax.vmap(one)(keys, pi, a, b, lens)
        return y.reshape(shape + (self.num_steps,)), [z.reshape(shape + (self.num_steps,))]

    def sample(self, key, sample_shape=()):
        return self.sample_with_intermediates(key, sample_shape)[0]


def _concentration(name: str, value: Any, shape: tuple[int, ...]):
    if isinstance(value, jax.core.Tracer):
        return jnp.broadcast_to(value, shape)
    c = np.asarray(value, dtype=float)
    try:
        np.broadcast_to(c, shape)
    except ValueError:
        raise ValueError(f"{name}: expected a positive scalar or an array broadcastable to {shape}, got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"{name}: expected positive finite concentrations")
    return jnp.broadcast_to(jnp.asarray(c, dtype=jnp.result_type(float)), shape)


def hmm_model(
    observations=None,
    lengths=None,
    *,
    num_states: int = 2,
    num_emissions: int | None = None,
    num_steps: int | None = None,
    initial_concentration=1.0,
    transition_concentration=1.0,
    emission_concentration=1.0,
) -> None:
    """Bayesian categorical HMM with Dirichlet priors on every probability row.

    Sites (all names plain; the operator's ``to_model_params``/``load_model_params`` use the first three):
        ``initial_probs``: latent ``(S,)`` ~ Dirichlet(initial_concentration).
        ``transition_probs``: latent ``(S, S)``, each row ~ Dirichlet(transition_concentration).
        ``emission_probs``: latent ``(S, M)``, each row ~ Dirichlet(emission_concentration).
        ``observations``: observed :class:`DiscreteHMM`, batch shape ``()`` for one (T,) sequence or
            ``(B,)`` for a (B, T) batch, so the pointwise log-likelihood (for LOO) is per sequence.

    Label switching: see the module docstring and :func:`relabel_states`.

    Args:
        observations: ``Int[Array, "T"]`` or ``Int[Array, "B T"]`` symbols, ``-1`` for missing/padding;
            ``None`` to sample from the prior (then give ``num_steps``).
        lengths: optional ``Int[Array, "B"]`` valid steps per sequence.
        num_states: S.
        num_emissions: M (default: ``max(observations) + 1``, needs concrete observations).
        num_steps: T when ``observations`` is None.
        initial_concentration: scalar or ``(S,)``.
        transition_concentration: scalar, ``(S,)`` or ``(S, S)`` (e.g. a sticky prior with a larger
            diagonal).
        emission_concentration: scalar, ``(M,)`` or ``(S, M)``.

    Example:
        >>> from numpyro.infer import Predictive
        >>> prior = Predictive(hmm_model, num_samples=3)(jax.random.key(0), num_emissions=4, num_steps=10)
        >>> prior["observations"].shape, prior["transition_probs"].shape
        ((3, 10), (3, 2, 2))
    """
    if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)) or num_states < 1:
        raise ValueError(f"num_states: expected a positive integer, got {num_states!r}")
    if observations is not None:
        if not isinstance(observations, jax.core.Tracer):
            arr = np.asarray(observations)
            if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
                raise TypeError(f"observations: expected integer symbols, got dtype {arr.dtype}")
            if arr.ndim not in (1, 2) or arr.size == 0:
                raise ValueError(f"observations: expected a non-empty (T,) or (B, T) array, got shape {arr.shape}")
            if num_emissions is None:
                num_emissions = int(arr.max()) + 1
            if (arr < -1).any() or (arr >= num_emissions).any():
                raise ValueError(f"observations: symbols must be in 0..{num_emissions - 1} or -1 for missing")
        elif num_emissions is None:
            raise ValueError("num_emissions: required when observations are traced")
        observations = jnp.asarray(observations)
        num_steps = observations.shape[-1]
        if lengths is not None and np.shape(lengths) != observations.shape[:-1]:
            raise ValueError(f"lengths: expected shape {observations.shape[:-1]} (one per sequence of observations "
                             f"{observations.shape}), got {np.shape(lengths)}")
    elif num_steps is None or num_emissions is None:
        raise ValueError("num_steps and num_emissions: required when observations is None (prior sampling)")
    elif isinstance(num_steps, (bool, np.bool_)) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
    if isinstance(num_emissions, bool) or not isinstance(num_emissions, (int, np.integer)) or num_emissions < 1:
        raise ValueError(f"num_emissions: expected a positive integer, got {num_emissions!r}")
    s, m = int(num_states), int(num_emissions)
    c_init = _concentration("initial_concentration", initial_concentration, (s,))
    c_trans = _concentration("transition_concentration", transition_concentration, (s, s))
    c_emit = _concentration("emission_concentration", emission_concentration, (s, m))

    initial = numpyro.sample("initial_probs", dist.Dirichlet(c_init))
    transition = numpyro.sample("transition_probs", dist.Dirichlet(c_trans).to_event(1))
    emission = numpyro.sample("emission_probs", dist.Dirichlet(c_emit).to_event(1))
    if lengths is not None:
        lengths = jnp.asarray(lengths)
    numpyro.sample("observations", DiscreteHMM(initial, transition, emission, int(num_steps), lengths), obs=observations)


def relabel_states(
    samples: Mapping[str, Any], symbol: int = -1, *, key: str = "emission_probs"
) -> dict[str, np.ndarray]:
    """Undo label switching: in each draw, order the states by ascending ``emission_probs[:, symbol]``.

    Every state-indexed site of :func:`hmm_model` is permuted consistently (``initial_probs`` entries,
    ``transition_probs`` rows and columns, ``emission_probs`` rows); other sites are returned unchanged.
    Works on any leading dimensions, e.g. ``(chain, draw)`` from ``FitResult.samples``.

    Args:
        samples: dict of arrays with at least ``emission_probs`` (``(..., S, M)``).
        symbol: the emission symbol whose probability orders the states (default the last; for the
            dishonest casino, the six: fair state first, loaded state second).
        key: the emission site's name.

    Returns:
        A new dict with the relabelled arrays.

    Example:
        >>> e = np.array([[[0.2, 0.8], [0.9, 0.1]]])            # one draw, state 0 likes symbol 1
        >>> out = relabel_states({"emission_probs": e, "initial_probs": np.array([[0.3, 0.7]])})
        >>> out["emission_probs"][0, 0].tolist(), out["initial_probs"].tolist()
        ([0.9, 0.1], [[0.7, 0.3]])
    """
    if key not in samples:
        raise ValueError(f"samples: missing key {key!r}")
    emission = np.asarray(samples[key])
    perm = np.argsort(emission[..., symbol], axis=-1, kind="stable")  # (..., S)
    out = {k: np.asarray(v) for k, v in samples.items()}
    out[key] = np.take_along_axis(emission, perm[..., None], axis=-2)
    if "initial_probs" in out:
        out["initial_probs"] = np.take_along_axis(out["initial_probs"], perm, axis=-1)
    if "transition_probs" in out:
        t = np.take_along_axis(out["transition_probs"], perm[..., :, None], axis=-2)
        out["transition_probs"] = np.take_along_axis(t, perm[..., None, :], axis=-1)
    return out


def interior_params(params: Mapping[str, Any], mix: float = 1e-3) -> dict[str, np.ndarray]:
    """Move probability rows off the simplex's boundary: ``(1 - mix) p + mix / K`` per row.

    A Baum-Welch fit often has exact zeros (e.g. ``initial_probs = [1, 0]`` on one sequence); NUTS works
    in unconstrained coordinates where such a point is at infinity ("Cannot find valid initial
    parameters"). Apply this to a point estimate before passing it as ``init_params``.

    Example:
        >>> interior_params({"initial_probs": np.array([1.0, 0.0])}, mix=0.1)["initial_probs"].round(6).tolist()
        [0.95, 0.05]
    """
    if not 0 < mix < 1:
        raise ValueError(f"mix: expected a number in (0, 1), got {mix!r}")
    out = {}
    for k, v in params.items():
        p = np.asarray(v, dtype=float)
        out[k] = (1.0 - mix) * p + mix / p.shape[-1]
    return out
