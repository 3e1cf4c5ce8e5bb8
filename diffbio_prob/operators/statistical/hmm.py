"""Differentiable discrete HMM (DiffBio's ``DifferentiableHMM``) on the shared HMM core.

The seed's API and defaults: logits parameters for the initial distribution, the transition matrix and
the emission matrix, normalised by ``log_softmax(logits / temperature)``. All math lives in
:mod:`diffbio_prob.cores.hmm` (float32-accurate forward pass, forward-backward gradient, Viterbi), and
the NumPyro twin :func:`diffbio_prob.models.hmm_model` calls the same functions, so for equal parameters
both give the same log-likelihood.

What the seed left out and this operator adds: batches of ragged sequences (``lengths`` or a prefix
``mask``), missing symbols (``-1``, marginalised), ``learnable_*`` flags that really freeze parameters
(``FrozenParam``: no gradient, no optimizer update), Viterbi decoding, sampling, input validation
before anything is traced, and the log-likelihoods and posteriors of a batch computed with its sequences
split over all devices (:func:`diffbio_prob.parallel.constrain_batch`).

Any emission family of :mod:`diffbio_prob.cores.hmm.emissions` (``HMMConfig(emission="poisson")``,
``"negative_binomial"``, ``"gaussian"``, ``"gaussian_full"``, ``"bernoulli"``, ``"multinomial"``): its
parameters are ``nnx.Param`` arrays in the emission's unconstrained coordinates (``emission.constrain``),
``emission_params()`` returns them in natural form, and the log-likelihood matrix is the emission's own
``log_likelihoods``, the function :func:`diffbio_prob.models.hmm_model` scores with.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> hmm = DifferentiableHMM(HMMConfig(num_states=3, num_emissions=4), rngs=nnx.Rngs(42))
    >>> out, state, meta = hmm.apply({"observations": jnp.array([0, 1, 2, 3])}, {}, None)
    >>> out["state_posteriors"].shape, out["posteriors"] is out["state_posteriors"]
    ((4, 3), True)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffbio_prob import parallel
from diffbio_prob.cores import hmm as core
from diffbio_prob.cores.contract import HMM_SITES
from diffbio_prob.operators.base import FrozenParam, OperatorConfig, OperatorModule

__all__ = ["HMMConfig", "DifferentiableHMM"]

@dataclasses.dataclass(frozen=True)
class HMMConfig(OperatorConfig):
    """Configuration of :class:`DifferentiableHMM` (the seed's fields and defaults).

    Attributes:
        num_states: number of hidden states ``S``.
        num_emissions: number of symbols ``M`` (4 for DNA).
        temperature: every logits array is divided by it before the softmax, ``p = softmax(logits / T)``:
            T > 1 flattens the initial, transition and emission distributions, T < 1 sharpens them.
            The loaded/saved probabilities are those after tempering.
        learnable_transitions: the transition logits are an ``nnx.Param`` (else a ``FrozenParam``).
        learnable_emissions: the emission logits are an ``nnx.Param`` (else a ``FrozenParam``).
        emission: the emission family (``"categorical"``, the seed's; or any name of
            :data:`diffbio_prob.cores.hmm.EMISSIONS`, ``-`` and ``_`` alike). ``temperature`` tempers the
            chain's logits and, for the categorical family only, the emission logits.
        num_features: D for ``gaussian``/``gaussian_full``/``bernoulli``, M for ``multinomial``; ``None`` for
            the univariate families (categorical uses ``num_emissions``).
    """

    num_states: int = 3
    num_emissions: int = 4
    temperature: float = 1.0
    learnable_transitions: bool = True
    learnable_emissions: bool = True
    emission: str = "categorical"
    num_features: int | None = None

    def __post_init__(self):
        for name in ("num_states", "num_emissions"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)):
            raise TypeError(f"temperature: expected a positive number, got {type(t).__name__}")
        if not (math.isfinite(float(t)) and float(t) > 0):
            raise ValueError(f"temperature: expected a positive finite number, got {t!r}")
        for name in ("learnable_transitions", "learnable_emissions"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        em = core.get_emission(self.emission)  # ValueError naming 'emission' for an unknown family
        d = self.num_features
        if em.event_ndim and not isinstance(em, core.Categorical):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise ValueError(f"num_features: expected a positive integer for the {em.name} emission, got {d!r}")
        elif d is not None:
            raise ValueError(f"num_features: the {em.name} emission has no feature axis; leave it None "
                             f"(got {d!r})")

    @property
    def emission_family(self) -> core.Emission:
        """The core emission object named by ``emission``."""
        return core.get_emission(self.emission)


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


# One jitted function per entry point: a (B, T) shape compiles once, on the core's batched
# (time-major) categorical path. The log-likelihood and posterior kernels split the sequences over the
# devices (parallel.constrain_batch; a B the devices do not divide runs unsplit).
@jax.jit
def _batch_log_likelihood(log_pi, log_a, log_b, obs, lengths):
    obs, lengths = parallel.constrain_batch((obs, lengths))
    out = core.categorical_log_likelihood_batch(core.HMMParams(log_pi, log_a), log_b, obs, lengths)
    return parallel.constrain_gathered(out)


@jax.jit
def _batch_apply(log_pi, log_a, log_b, obs, lengths):
    """(log-likelihood (B,), smoothed posteriors (B, T, S)) from one forward and one backward sweep; both
    differentiable (see :func:`diffbio_prob.cores.hmm.categorical_posteriors_batch`)."""
    obs, lengths = parallel.constrain_batch((obs, lengths))
    out = core.categorical_posteriors_batch(core.HMMParams(log_pi, log_a), log_b, obs, lengths)
    return parallel.constrain_gathered(out)


@jax.jit
def _batch_viterbi(log_pi, log_a, log_b, obs, lengths):
    return core.categorical_viterbi_batch(core.HMMParams(log_pi, log_a), log_b, obs, lengths)


# Any other emission: the (B, T, S) matrix from the emission object, then the core's batched passes.
@functools.partial(jax.jit, static_argnames=("emission",))
def _emission_log_likelihood(emission, log_pi, log_a, params, obs, lengths):
    obs, lengths = parallel.constrain_batch((obs, lengths))
    out = core.log_likelihood_batch(core.HMMParams(log_pi, log_a), emission.log_likelihoods(params, obs), lengths)
    return parallel.constrain_gathered(out)


@functools.partial(jax.jit, static_argnames=("emission",))
def _emission_apply(emission, log_pi, log_a, params, obs, lengths):
    """Log-likelihoods (B,) and posteriors (B, T, S): the posteriors are the gradient of the log-likelihood
    with respect to the emission matrix (Eisner 2016), one forward and one backward sweep."""
    obs, lengths = parallel.constrain_batch((obs, lengths))
    ll = emission.log_likelihoods(params, obs)
    log_lik, vjp = jax.vjp(lambda x: core.log_likelihood_batch(core.HMMParams(log_pi, log_a), x, lengths), ll)
    (gamma,) = vjp(jnp.ones_like(log_lik))
    return parallel.constrain_gathered((log_lik, gamma))


@functools.partial(jax.jit, static_argnames=("emission",))
def _emission_viterbi(emission, log_pi, log_a, params, obs, lengths):
    return core.viterbi_batch(core.HMMParams(log_pi, log_a), emission.log_likelihoods(params, obs), lengths)


class DifferentiableHMM(OperatorModule):
    """Discrete HMM with categorical (or any core family's) emissions, trainable by gradient.

    Parameters (logits, shape in brackets): ``log_initial_params`` (S), ``log_transition_params`` (S, S),
    ``log_emission_params`` (S, M), initialised as N(0, 0.1^2) like the seed. The initial logits are
    always an ``nnx.Param``; the others are ``FrozenParam`` when their ``learnable_*`` flag is False.

    ``apply`` input keys: ``observations`` (T,) or (B, T) int symbols in ``0..M-1`` (``-1`` = missing),
    optional ``lengths`` (B,) (or a scalar for one sequence) or ``mask`` (same shape as observations,
    True on a prefix of each row). Output keys added: ``log_likelihood`` (scalar or (B,)),
    ``state_posteriors`` and ``posteriors`` (the same array, (T, S) or (B, T, S), zero on padding).

    Args:
        config: :class:`HMMConfig`.
        rngs: ``nnx.Rngs`` for the initial logits (seed 0 when ``None``).
        name: optional display name.

    Example:
        >>> hmm = DifferentiableHMM(HMMConfig(num_states=2, num_emissions=3))
        >>> batch = {"observations": jnp.array([[0, 1, 2], [2, 2, -1]]), "lengths": jnp.array([3, 2])}
        >>> hmm.apply(batch, {}, None)[0]["log_likelihood"].shape
        (2,)
    """

    def __init__(self, config: HMMConfig, *, rngs: nnx.Rngs | None = None, name: str | None = None):
        if not isinstance(config, HMMConfig):
            raise TypeError(f"config: expected an HMMConfig, got {type(config).__name__}")
        super().__init__(config, rngs=rngs, name=name)
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        s, m = config.num_states, config.num_emissions
        # one draw split three ways (one compiled sampler per config instead of three)
        z = jax.random.normal(rngs.params(), (s * s + s * m + s,)) * 0.1
        trans_cls = nnx.Param if config.learnable_transitions else FrozenParam
        emit_cls = nnx.Param if config.learnable_emissions else FrozenParam
        self.log_transition_params = trans_cls(z[: s * s].reshape(s, s))
        self.log_emission_params = emit_cls(z[s * s : s * s + s * m].reshape(s, m))
        self.log_initial_params = nnx.Param(z[s * s + s * m :])
        em = config.emission_family
        self._emission = em
        if not isinstance(em, core.Categorical):
            # Unconstrained emission parameters, one nnx variable per parameter name: small N(0, 0.1^2)
            # values (unit-variance Gaussian means, so the states start apart); load Baum-Welch estimates
            # with load_model_params for a data-driven start.
            del self.log_emission_params
            key = rngs.params()
            for i, (name, shape) in enumerate(em.param_shapes(s, config.num_features).items()):
                sd = 1.0 if name == "means" else 0.1
                raw = jax.random.normal(jax.random.fold_in(key, i), shape) * sd
                if shape[1:] and len(shape) == 3:  # a Cholesky factor: zero off the diagonal
                    raw = jnp.zeros(shape)
                setattr(self, "emission_" + name, emit_cls(raw))

    # ------------------------------------------------------------------------------------------
    # parameters (the seed's accessors)
    # ------------------------------------------------------------------------------------------
    def get_log_transition_matrix(self) -> jax.Array:
        """``Float[Array, "S S"]`` log p(z_{t+1} = j | z_t = i) = log_softmax(logits / temperature)."""
        return jax.nn.log_softmax(self.log_transition_params[...] / self.config.temperature, axis=1)

    def get_log_emission_matrix(self) -> jax.Array:
        """``Float[Array, "S M"]`` log p(y = m | z = k)."""
        return jax.nn.log_softmax(self.log_emission_params[...] / self.config.temperature, axis=1)

    def get_log_initial_distribution(self) -> jax.Array:
        """``Float[Array, "S"]`` log p(z_1 = k)."""
        return jax.nn.log_softmax(self.log_initial_params[...] / self.config.temperature)

    def hmm_params(self) -> core.HMMParams:
        """The core's parameter pytree (log initial, log transition)."""
        return core.HMMParams(self.get_log_initial_distribution(), self.get_log_transition_matrix())

    @property
    def is_categorical(self) -> bool:
        return isinstance(self._emission, core.Categorical)

    def emission_params(self) -> dict[str, jax.Array]:
        """The emission's natural parameters keyed by its ``param_names``: ``probs`` (categorical,
        Bernoulli, multinomial), ``rates`` (Poisson), ``means``/``concentrations`` (negative binomial),
        ``means``/``scales`` or ``means``/``covariances`` (Gaussian)."""
        if self.is_categorical:
            return {"probs": jnp.exp(self.get_log_emission_matrix())}
        raw = {n: getattr(self, "emission_" + n)[...] for n in self._emission.param_names}
        return self._emission.constrain(raw)

    # ------------------------------------------------------------------------------------------
    # validation (before any tracing)
    # ------------------------------------------------------------------------------------------
    def _prepare(self, data: Any) -> tuple[jax.Array, jax.Array | None, bool]:
        """Validate ``data``; returns ``(observations (B, T), lengths (B,) or None, batched)``."""
        if not isinstance(data, Mapping):
            raise TypeError(f"data: expected a dict with key 'observations', got {type(data).__name__}")
        if "observations" not in data:
            raise ValueError(f"data: missing key 'observations' (got keys {sorted(map(str, data))})")
        obs = self._check_observations(data["observations"])
        e = self._event_ndim
        batched = obs.ndim == 2 + e
        obs2 = obs if batched else obs[None]
        if data.get("lengths") is not None and data.get("mask") is not None:
            raise ValueError("data: give either 'lengths' or 'mask', not both")
        lengths = None
        if data.get("lengths") is not None:
            lengths = self._check_lengths(data["lengths"], obs2.shape[:2], batched)
        elif data.get("mask") is not None:
            lengths = self._mask_to_lengths(data["mask"], obs.shape[: obs.ndim - e], batched)
        return obs2, lengths, batched

    def _check_observations(self, obs: Any):
        if not self.is_categorical:
            return self._check_emission_observations(obs)
        m = self.config.num_emissions
        if _is_tracer(obs):
            if not jnp.issubdtype(obs.dtype, jnp.integer):
                raise TypeError(f"observations: expected integer symbols, got dtype {obs.dtype}")
            if obs.ndim not in (1, 2):
                raise ValueError(f"observations: expected shape (T,) or (B, T), got shape {obs.shape}")
            if 0 in obs.shape:
                raise ValueError(f"observations: empty sequence (shape {obs.shape})")
            return obs
        arr = self._emission.check_observations(obs, m)
        return jnp.asarray(arr, dtype=jnp.int32)

    def _check_emission_observations(self, obs: Any):
        em, e = self._emission, self._emission.event_ndim
        if _is_tracer(obs):
            if obs.ndim not in (e + 1, e + 2) or 0 in obs.shape:
                raise ValueError(f"observations: expected a non-empty array with {e + 1} or {e + 2} axes for the "
                                 f"{em.name} emission, got shape {obs.shape}")
            return obs
        arr = em.check_observations(obs, self.config.num_features)
        return jnp.asarray(arr, dtype=jnp.int32 if em.integer else jnp.result_type(float))

    @property
    def _event_ndim(self) -> int:
        return self._emission.event_ndim

    @staticmethod
    def _check_lengths(lengths: Any, shape: tuple[int, int], batched: bool):
        b, t = shape
        want = (b,) if batched else ((), (1,))
        if _is_tracer(lengths):
            if not jnp.issubdtype(lengths.dtype, jnp.integer):
                raise TypeError(f"lengths: expected integers, got dtype {lengths.dtype}")
            return jnp.reshape(lengths, (b,))
        arr = np.asarray(lengths)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
        if (batched and arr.shape != want) or (not batched and arr.shape not in want):
            raise ValueError(f"lengths: expected shape {want if batched else '()'}, got {arr.shape}")
        arr = arr.reshape(b)
        if (arr < 0).any():
            raise ValueError(f"lengths: must be non-negative, got {int(arr.min())}")
        if (arr > t).any():
            raise ValueError(f"lengths: {int(arr.max())} is longer than the sequence axis ({t} steps)")
        if (arr == 0).any():
            raise ValueError(f"lengths: sequence {int(np.argmin(arr))} is empty (length 0)")
        return jnp.asarray(arr, dtype=jnp.int32)

    @staticmethod
    def _mask_to_lengths(mask: Any, shape: tuple[int, ...], batched: bool):
        if _is_tracer(mask):
            if mask.shape != shape:
                raise ValueError(f"mask: expected shape {shape} (same as observations), got {mask.shape}")
            return jnp.sum(mask.astype(jnp.int32), axis=-1).reshape(-1)
        arr = np.asarray(mask)
        if arr.shape != shape:
            raise ValueError(f"mask: expected shape {shape} (same as observations), got {arr.shape}")
        if arr.dtype != bool:
            if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
                raise TypeError(f"mask: expected booleans (or 0/1), got dtype {arr.dtype}")
            arr = arr.astype(bool)
        arr2 = arr.reshape(-1, shape[-1])
        lengths = arr2.sum(1)
        prefix = np.arange(shape[-1])[None, :] < lengths[:, None]
        if (prefix != arr2).any():
            raise ValueError(
                "mask: must be True on a prefix of each sequence and False after it (padding at the end); "
                "encode a missing symbol inside a sequence as -1"
            )
        if (lengths == 0).any():
            raise ValueError(f"mask: sequence {int(np.argmin(lengths))} is empty (no True entry)")
        return jnp.asarray(lengths, dtype=jnp.int32)

    # ------------------------------------------------------------------------------------------
    # computations (batched over the leading axis; lengths None = full length)
    # ------------------------------------------------------------------------------------------
    def _logs(self):
        return self.get_log_initial_distribution(), self.get_log_transition_matrix(), self.get_log_emission_matrix()

    def _run(self, kind: str, obs, lengths):
        """``kind`` in loglik / apply / viterbi, on the categorical kernels or the emission's."""
        lens = self._lengths(obs, lengths)
        if self.is_categorical:
            fn = {"loglik": _batch_log_likelihood, "apply": _batch_apply, "viterbi": _batch_viterbi}[kind]
            args = (*self._logs(), obs, lens)
        else:
            fn = {"loglik": _emission_log_likelihood, "apply": _emission_apply, "viterbi": _emission_viterbi}[kind]
            params = self.hmm_params()
            args = (params.log_initial, params.log_transition, self.emission_params(), obs, lens)
            fn = functools.partial(fn, self._emission)
        # Arguments committed to other devices than the batch mesh's (parameters after
        # jax.device_put(nnx.state(op), device), say; concrete, or an eager jax.grad's tracers) would meet
        # the kernels' constraint to the mesh ("incompatible devices"); replicated on the mesh, they run
        # with the split batch.
        return fn(*parallel.constrain_shared(args))

    @staticmethod
    def _lengths(obs: jax.Array, lengths):
        return jnp.full(obs.shape[0], obs.shape[1], jnp.int32) if lengths is None else lengths

    def apply(
        self,
        data: Mapping[str, Any],
        state: Any,
        metadata: Any,
        random_params: Any = None,
        stats: Any = None,
    ) -> tuple[dict[str, Any], Any, Any]:
        """Log-likelihood and state posteriors of one sequence (T,) or a batch (B, T).

        Args:
            data: dict with ``observations`` and optional ``lengths`` or ``mask``.
            state: passed through.
            metadata: passed through.
            random_params: unused (deterministic operator).
            stats: unused.

        Returns:
            ``(data | {"log_likelihood", "state_posteriors", "posteriors"}, state, metadata)``.

        Raises:
            TypeError / ValueError: naming the key, for float or out-of-range symbols, wrong rank, an
                empty sequence, NaN, bad ``lengths`` or ``mask``.
        """
        obs, lengths, batched = self._prepare(data)
        log_lik, post = self._run("apply", obs, lengths)
        if not batched:
            log_lik, post = log_lik[0], post[0]
        out = dict(data)
        out["log_likelihood"] = log_lik
        out["state_posteriors"] = post
        out["posteriors"] = post
        return out, state, metadata

    def apply_batch(self, data, state=None, metadata=None, random_params=None, stats=None):
        """``apply`` on a batch: ``observations`` must be (B, T) (optional ``lengths`` (B,) or ``mask``)."""
        want = 2 + self._event_ndim
        if isinstance(data, Mapping) and "observations" in data and np.ndim(data["observations"]) != want:
            raise ValueError(
                f"observations: apply_batch expects shape (B, T{', D' if want == 3 else ''}), got shape "
                f"{np.shape(data['observations'])}"
            )
        return self.apply(data, {} if state is None else state, metadata, random_params, stats)

    # ------------------------------------------------------------------------------------------
    # the seed's methods, and decoding / sampling
    # ------------------------------------------------------------------------------------------
    def forward_pass(self, observations, lengths=None) -> jax.Array:
        """log p(observations) (states marginalised): a scalar for (T,), (B,) for (B, T)."""
        obs, lens, batched = self._prepare({"observations": observations, "lengths": lengths})
        out = self._run("loglik", obs, lens)
        return out if batched else out[0]

    def forward_backward_posteriors(self, observations, lengths=None) -> jax.Array:
        """p(z_t | y) by forward-backward: (T, S), or (B, T, S) with zero rows on padding."""
        obs, lens, batched = self._prepare({"observations": observations, "lengths": lengths})
        out = self._run("apply", obs, lens)[1]
        return out if batched else out[0]

    def viterbi(self, observations, lengths=None) -> tuple[jax.Array, jax.Array]:
        """Most probable state path and its log p(path, y); the path is -1 on padding.

        Returns:
            ``(path, log_prob)``: (T,) and scalar, or (B, T) and (B,).
        """
        obs, lens, batched = self._prepare({"observations": observations, "lengths": lengths})
        path, lp = self._run("viterbi", obs, lens)
        return (path, lp) if batched else (path[0], lp[0])

    def sample(self, key, num_steps: int, num_sequences: int | None = None, **emission_kwargs) -> dict[str, jax.Array]:
        """Draw hidden states and observations from the model.

        Args:
            key: a JAX PRNG key or an int seed.
            num_steps: sequence length T.
            num_sequences: B for a (B, T) batch; ``None`` for one (T,) sequence.
            emission_kwargs: passed to the emission's ``sample`` (the multinomial's ``total_count``).

        Returns:
            ``{"states": ..., "observations": ...}`` with shape (T,) or (B, T).
        """
        if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
        if num_sequences is not None and (
            isinstance(num_sequences, bool) or not isinstance(num_sequences, (int, np.integer)) or num_sequences < 1
        ):
            raise ValueError(f"num_sequences: expected a positive integer or None, got {num_sequences!r}")
        if isinstance(key, (int, np.integer)):
            key = jax.random.key(int(key))
        if not self.is_categorical:
            params, em, ep = self.hmm_params(), self._emission, self.emission_params()

            def one(k):
                ks, ky = jax.random.split(k)
                z = core.sample_states(ks, params, int(num_steps))
                return z, em.sample(ky, ep, z, **emission_kwargs)

            if num_sequences is None:
                z, y = one(key)
            else:
                z, y = jax.vmap(one)(jax.random.split(key, int(num_sequences)))
            return {"states": z, "observations": y}
        params, log_b = self.hmm_params(), self.get_log_emission_matrix()
        if num_sequences is None:
            z, y = core.sample_categorical(key, params, log_b, int(num_steps))
        else:
            keys = jax.random.split(key, int(num_sequences))
            z, y = jax.vmap(lambda k: core.sample_categorical(k, params, log_b, int(num_steps)))(keys)
        return {"states": z, "observations": y}

    # ------------------------------------------------------------------------------------------
    # parameters in and out (the NumPyro model's site names)
    # ------------------------------------------------------------------------------------------
    def to_model_params(self) -> dict[str, np.ndarray]:
        """Probabilities keyed by :func:`diffbio_prob.models.hmm_model`'s site names.

        Returns:
            ``{"initial_probs": (S,), "transition_probs": (S, S), "emission_probs": (S, M)}``, usable as
            ``fit_nuts(..., init_params=...)``; for another emission its sites ``emission_<param>``
            (e.g. ``emission_rates``) instead of ``emission_probs``.
        """
        out = {
            HMM_SITES.initial: np.exp(np.asarray(self.get_log_initial_distribution())),
            HMM_SITES.transition: np.exp(np.asarray(self.get_log_transition_matrix())),
        }
        # the emission's sites as the core declares them (categorical: emission_probs)
        out.update({site: np.asarray(v) for site, v in zip(self._emission.site_names, self.emission_params().values())})
        return out

    def load_model_params(self, params: Mapping[str, Any]) -> "DifferentiableHMM":
        """Set the logits from probabilities keyed by the model's site names (e.g. a posterior mean).

        Any subset of ``initial_probs``, ``transition_probs``, ``emission_probs`` may be given; the logits
        become ``temperature * log(p)``, so the operator's tempered probabilities equal ``p`` exactly.
        Frozen parameters are set too (freezing is about training, not loading).

        Raises:
            ValueError: naming the key, for a wrong shape, negative entries or rows not summing to 1.
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict keyed by site names, got {type(params).__name__}")
        s, m = self.config.num_states, self.config.num_emissions
        shapes = {HMM_SITES.initial: (s,), HMM_SITES.transition: (s, s), HMM_SITES.emission: (s, m)}
        targets = {
            HMM_SITES.initial: "log_initial_params",
            HMM_SITES.transition: "log_transition_params",
            HMM_SITES.emission: "log_emission_params",
        }
        em = self._emission
        if not self.is_categorical:
            del shapes[HMM_SITES.emission], targets[HMM_SITES.emission]
            shapes.update({site: None for site in em.site_names})
        unknown = set(params) - set(shapes)
        if unknown:
            raise ValueError(f"params: unknown keys {sorted(unknown)}; expected some of {sorted(shapes)}")
        new = {}
        if not self.is_categorical:
            given = {n: params[site] for n, site in zip(em.param_names, em.site_names) if site in params}
            if given:
                # The emission's own checks on the full set (given values over the current ones).
                full = {k: np.asarray(v, dtype=float) for k, v in self.emission_params().items()}
                full.update(given)
                try:
                    checked = em.check_params(full, s, self.config.num_features, name="params")
                except ValueError as err:
                    raise ValueError(str(err).replace("params['", "params['emission_")) from None
                raw = em.unconstrain({k: jnp.asarray(v) for k, v in checked.items()})
                for n in given:
                    new["emission_" + n] = np.asarray(raw[n])
            params = {k: v for k, v in params.items() if k not in em.site_names}
        for key, value in params.items():
            p = np.asarray(value, dtype=float)
            if p.shape != shapes[key]:
                raise ValueError(f"{key}: expected shape {shapes[key]}, got {p.shape}")
            if not np.isfinite(p).all() or (p < 0).any():
                raise ValueError(f"{key}: expected finite non-negative probabilities")
            if not np.allclose(p.sum(-1), 1.0, atol=1e-5):
                raise ValueError(f"{key}: rows must sum to 1, got sums {p.sum(-1)}")
            with np.errstate(divide="ignore"):
                new[targets[key]] = self.config.temperature * np.log(p)
        dtype = self.log_initial_params[...].dtype
        for attr, logits in new.items():
            getattr(self, attr)[...] = jnp.asarray(logits, dtype)
        return self
