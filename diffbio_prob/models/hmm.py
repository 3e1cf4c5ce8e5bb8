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

from diffbio_prob import parallel
from diffbio_prob.cores import hmm as core
from diffbio_prob.cores.contract import HMM_SITES, interior

__all__ = ["DIMS", "DiscreteHMM", "hmm_model", "relabel_states", "interior_params", "emission_dims",
           "EMISSION_PRIORS"]

# The Gaussian full-covariance prior's extra latent site (its covariances are the deterministic
# emission_covariances, the core's parameter).
_CORR_SITE = "emission_corr_cholesky"
_SCALES_SITE = "emission_scales"  # the diagonal family's site name, its standard deviations


def emission_dims(emission: str | core.Emission = "categorical") -> dict[str, list[str]]:
    """Dimension names of :func:`hmm_model`'s sites and arguments for one emission family
    (``fit_nuts(..., dims=emission_dims("poisson"))``; :data:`DIMS` is the default table).

    Example:
        >>> emission_dims("gaussian")["emission_means"]
        ['state', 'feature']
    """
    em = core.get_emission(emission)
    feature = {"categorical": "symbol", "multinomial": "symbol", "bernoulli": "mark"}.get(em.name, "feature")
    out = {HMM_SITES.initial: ["state"], HMM_SITES.transition: ["from_state", "to_state"],
           HMM_SITES.observations: ["sequence", "step"] + ([] if em.event_ndim == 0 or isinstance(em, core.Categorical)
                                                          else [feature]),
           "lengths": ["sequence"]}
    axes = {1: [], 2: [feature], 3: ["feature_row", "feature_col"]}
    for site, rank in _state_ranks(em).items():
        out[site] = ["state"] + axes[rank + 1]
    return out


def _state_ranks(em: core.Emission) -> dict[str, int]:
    """Emission site -> number of axes after its state axis (the chain's sites excluded)."""
    shapes = em.param_shapes(2, 1 if em.event_ndim or isinstance(em, core.Categorical) else None)
    ranks = {site: len(shapes[n]) - 1 for n, site in zip(em.param_names, em.site_names)}
    if isinstance(em, core.Gaussian) and em.covariance == "full":
        ranks.update({_SCALES_SITE: 1, _CORR_SITE: 2})
    return ranks


#: Dimension names of :func:`hmm_model`'s sites and arguments (``FitResult.to_arviz``): the categorical
#: model's, and every other family's site whose shape does not depend on the family. ``emission_means`` is
#: ``(S,)`` for the negative binomial but ``(S, D)`` for the Gaussian, so it is left to
#: :func:`emission_dims`.
DIMS: dict[str, list[str]] = {}
for _em in core.EMISSIONS.values():
    for _site, _names in emission_dims(_em).items():
        if _site != "emission_means" and _site not in DIMS:
            DIMS[_site] = _names
DIMS[HMM_SITES.emission] = ["state", "symbol"]
DIMS[HMM_SITES.observations] = ["sequence", "step"]
del _em, _site, _names


def _positive_steps(num_steps) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
    return int(num_steps)


class DiscreteHMM(dist.Distribution):
    """Distribution of an HMM's observation sequence, hidden states marginalised by the core's forward pass.

    Three ways to give the emission (exactly one):

    * ``emission_probs`` (third positional argument): categorical symbols ``0..M-1``, ``-1`` = missing
      (marginalised) and padding; the core's fast batched categorical kernels.
    * ``observation_dist``: any NumPyro distribution whose batch shape ends in ``(S,)`` (Pyro's
      ``DiscreteHMM`` convention), e.g. ``dist.Poisson(rates)`` with rates ``(S,)`` or per-sequence ``(B, S)``;
      the log-likelihood matrix is ``observation_dist.log_prob(y_t)`` for every state. Steps past ``lengths``
      are replaced by a point of the support before ``log_prob`` (so their gradients are zero, never NaN).
    * ``emission`` (a name or :class:`diffbio_prob.cores.hmm.Emission`) with ``emission_params`` (natural
      parameters keyed by its ``param_names``, leading batch axes allowed): the core's own emission
      log-likelihoods, the functions the NNX operator calls (``-1`` / NaN = missing).

    ``event_shape = (T,) + observation event shape``; ``batch_shape`` broadcasts the leading axes of
    ``initial_probs``, ``transition_probs``, the emission and ``lengths``.

    Args:
        initial_probs: ``Float[Array, "... S"]`` p(z_1).
        transition_probs: ``Float[Array, "... S S"]`` p(z_{t+1} = j | z_t = i) at ``[i, j]``.
        emission_probs: ``Float[Array, "... S M"]`` p(y = m | z = k) at ``[k, m]`` (categorical form).
        num_steps: T, the length of the event (padded length for ragged batches).
        lengths: optional ``Int[Array, "..."]`` valid steps per sequence (ragged batch).
        observation_dist: a NumPyro distribution with batch shape ``(..., S)``.
        emission, emission_params: a core emission and its parameters.
        method: the forward pass of :meth:`log_prob`: ``"auto"`` (default; the associative scan on an
            accelerator from ``diffbio_prob.cores.hmm.PARALLEL_MIN_STEPS`` steps on, else ``lax.scan``),
            ``"sequential"`` or ``"parallel"`` (:func:`diffbio_prob.cores.hmm.resolve_method`).
        validate_args: NumPyro's argument validation.

    Example:
        >>> d = DiscreteHMM(jnp.ones(2) / 2, jnp.eye(2), jnp.array([[1.0, 0.0], [0.0, 1.0]]), 3,
        ...                 lengths=jnp.array([3, 1]))
        >>> d.batch_shape, d.log_prob(jnp.array([[0, 0, 0], [1, -1, -1]])).round(4).tolist()
        ((2,), [-0.6931, -0.6931])
        >>> p = DiscreteHMM(jnp.ones(2) / 2, jnp.eye(2), observation_dist=dist.Poisson(jnp.array([1.0, 5.0])),
        ...                 num_steps=3)
        >>> p.log_prob(jnp.array([0, 1, 0])).shape, p.viterbi(jnp.array([0, 1, 0]))[0].tolist()
        ((), [0, 0, 0])
    """

    arg_constraints = {
        "initial_probs": constraints.simplex,
        "transition_probs": constraints.simplex,
    }
    pytree_data_fields = ("initial_probs", "transition_probs", "emission_probs", "lengths", "observation_dist",
                          "emission_params")
    pytree_aux_fields = ("num_steps", "emission", "method")

    def __init__(
        self,
        initial_probs,
        transition_probs,
        emission_probs=None,
        num_steps: int | None = None,
        lengths=None,
        *,
        observation_dist: dist.Distribution | None = None,
        emission: str | core.Emission | None = None,
        emission_params: Mapping[str, Any] | None = None,
        method: str = "auto",
        validate_args=None,
    ):
        given = [n for n, v in (("emission_probs", emission_probs), ("observation_dist", observation_dist),
                                ("emission", emission)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"DiscreteHMM: give exactly one of emission_probs, observation_dist or emission "
                             f"(with emission_params); got {given or 'none'}")
        if num_steps is None:
            raise ValueError("num_steps: required (the number of time steps T of the event)")
        self.num_steps = _positive_steps(num_steps)
        core.resolve_method(method, self.num_steps)  # ValueError naming 'method' for an unknown one
        self.method = method
        self.initial_probs = jnp.asarray(initial_probs)
        self.transition_probs = jnp.asarray(transition_probs)
        s = self.initial_probs.shape[-1]
        self.emission_probs = None if emission_probs is None else jnp.asarray(emission_probs)
        self.observation_dist = observation_dist
        self.emission = None if emission is None else core.get_emission(emission)
        self.emission_params = None
        if self.transition_probs.shape[-2:] != (s, s):
            raise ValueError(f"DiscreteHMM: inconsistent shapes: initial_probs {self.initial_probs.shape}, "
                             f"transition_probs {self.transition_probs.shape}")
        if self.emission_probs is not None:
            if self.emission_probs.ndim < 2 or self.emission_probs.shape[-2] != s:
                raise ValueError(
                    f"DiscreteHMM: inconsistent shapes: initial_probs {self.initial_probs.shape}, "
                    f"transition_probs {self.transition_probs.shape}, emission_probs {self.emission_probs.shape}"
                )
            emission_batch, event = self.emission_probs.shape[:-2], ()
        elif observation_dist is not None:
            if not isinstance(observation_dist, dist.Distribution):
                raise TypeError(f"observation_dist: expected a NumPyro distribution, got {type(observation_dist).__name__}")
            ob = tuple(observation_dist.batch_shape)
            if not ob or ob[-1] != s:
                raise ValueError(f"observation_dist: expected a batch shape ending in ({s},) (one distribution per "
                                 f"state), got batch shape {ob}")
            emission_batch, event = ob[:-1], tuple(observation_dist.event_shape)
        else:
            if not isinstance(emission_params, Mapping):
                raise TypeError("emission_params: expected a dict of the emission's parameters, got "
                                f"{type(emission_params).__name__}")
            em = self.emission
            missing = [k for k in em.param_names if k not in emission_params]
            if missing:
                raise ValueError(f"emission_params: missing {missing} for the {em.name} emission")
            self.emission_params = {k: jnp.asarray(emission_params[k]) for k in em.param_names}
            d = em.num_features(self.emission_params)
            shapes = em.param_shapes(s, d)
            batches = []
            for k, shp in shapes.items():
                v = self.emission_params[k]
                if v.shape[v.ndim - len(shp):] != shp:
                    raise ValueError(f"emission_params[{k!r}]: expected trailing shape {shp}, got {v.shape}")
                batches.append(v.shape[: v.ndim - len(shp)])
            emission_batch, event = jnp.broadcast_shapes(*batches), ((d,) if em.event_ndim else ())
        self.lengths = None if lengths is None else jnp.asarray(lengths)
        if lengths is not None and not isinstance(lengths, jax.core.Tracer):
            lens = np.asarray(lengths)
            if not np.issubdtype(lens.dtype, np.integer) or (lens < 0).any() or (lens > self.num_steps).any():
                raise ValueError(f"lengths: expected integers in 0..{self.num_steps} (num_steps), got {lens}")
        batch_shape = jnp.broadcast_shapes(
            self.initial_probs.shape[:-1],
            self.transition_probs.shape[:-2],
            tuple(emission_batch),
            () if self.lengths is None else self.lengths.shape,
        )
        super().__init__(batch_shape=batch_shape, event_shape=(self.num_steps,) + tuple(event),
                         validate_args=validate_args)
        if self._validate_args and self.emission_probs is not None and not isinstance(self.emission_probs, jax.core.Tracer):
            # on a numpy copy: a constant built inside a trace (jit, a NumPyro model under NUTS) is concrete,
            # but jnp ops on it there are staged, and bool() of their result fails
            if not bool(np.all(constraints.simplex(np.asarray(self.emission_probs)))):
                raise ValueError("emission_probs: each row must be a probability vector (non-negative, summing to 1)")

    @property
    def num_states(self) -> int:
        return self.initial_probs.shape[-1]

    @property
    def num_emissions(self) -> int:
        """M, the number of symbols (categorical form only)."""
        if self.emission_probs is None:
            raise AttributeError("num_emissions: only the categorical form (emission_probs) has symbols")
        return self.emission_probs.shape[-1]

    @property
    def _obs_event_ndim(self) -> int:
        return len(self.event_shape) - 1

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        if self.emission_probs is not None:
            return constraints.independent(constraints.integer_interval(-1, self.num_emissions - 1), 1)
        if self.observation_dist is not None:
            return constraints.independent(self.observation_dist.support, 1)
        base = constraints.integer_greater_than(-2) if self.emission.integer else constraints.real
        return constraints.independent(base, len(self.event_shape))

    # --------------------------------------------------------------------------------------------
    # the log-likelihood matrix, flattened over the batch
    # --------------------------------------------------------------------------------------------
    def _flat_chain(self, batch_shape):
        """Chain parameters: ``(log pi, log A, shared)``; flattened to ``(N, ...)`` unless shared."""
        s = self.num_states
        shared = self.initial_probs.ndim == 1 and self.transition_probs.ndim == 2
        if shared:
            return jnp.log(self.initial_probs), jnp.log(self.transition_probs), True
        n = int(np.prod(batch_shape, dtype=int))
        pi = jnp.broadcast_to(self.initial_probs, batch_shape + (s,)).reshape(n, s)
        a = jnp.broadcast_to(self.transition_probs, batch_shape + (s, s)).reshape(n, s, s)
        return jnp.log(pi), jnp.log(a), False

    def _flat_lengths(self, batch_shape):
        n = int(np.prod(batch_shape, dtype=int))
        if self.lengths is None:
            return jnp.full((n,), self.num_steps, jnp.int32)
        return jnp.broadcast_to(self.lengths, batch_shape).reshape(n)

    def _valid(self, batch_shape):
        """``Bool[Array, "*batch T"]``: steps before each sequence's length."""
        t = jnp.arange(self.num_steps)
        if self.lengths is None:
            return jnp.ones(batch_shape + (self.num_steps,), bool)
        return jnp.broadcast_to(t < self.lengths[..., None], batch_shape + (self.num_steps,))

    def _check_generic_value(self, value):
        value = jnp.asarray(value)
        ev = tuple(self.event_shape)
        if value.ndim < len(ev) or tuple(value.shape[value.ndim - len(ev):]) != ev:
            raise ValueError(f"value: expected event shape {ev} (num_steps, then the observation's event shape) on "
                             f"the last axes, got shape {value.shape}")
        batch = value.shape[: value.ndim - len(ev)]
        try:
            return value, jnp.broadcast_shapes(batch, self.batch_shape)
        except ValueError:
            raise ValueError(f"value: batch shape {batch} does not broadcast with the distribution's batch shape "
                             f"{self.batch_shape}") from None

    def _log_likelihoods(self, value, batch_shape):
        """``Float[Array, "N T S"]`` emission log-likelihoods for ``value`` broadcast to ``batch_shape``."""
        t, e, s = self.num_steps, self._obs_event_ndim, self.num_states
        ev = tuple(self.event_shape)
        n = int(np.prod(batch_shape, dtype=int))
        valid = self._valid(batch_shape)
        if self.emission_probs is not None:
            y = jnp.broadcast_to(value, batch_shape + (t,)).reshape(n, t)
            b = jnp.broadcast_to(self.emission_probs, batch_shape + self.emission_probs.shape[-2:])
            b = b.reshape((n,) + self.emission_probs.shape[-2:])
            return jax.vmap(core.categorical_log_likelihoods)(jnp.log(b), y)
        y = jnp.broadcast_to(value, batch_shape + ev)
        pad = ~valid.reshape(valid.shape + (1,) * e)
        if self.observation_dist is not None:
            d = self.observation_dist
            # Padding -> a point of the support (the double where: no NaN in the unused branch's gradient).
            y = jnp.where(pad, d.support.feasible_like(y), y)
            yt = jnp.moveaxis(y, len(batch_shape), 0)  # (T, *batch, *event)
            yt = jnp.expand_dims(yt, yt.ndim - e)  # (T, *batch, 1, *event): one value against every state
            ll = d.log_prob(yt)  # (T, *batch, S)
            ll = jnp.broadcast_to(ll, (t,) + batch_shape + (s,))
            return jnp.moveaxis(ll, 0, -2).reshape(n, t, s)
        em = self.emission
        missing = -1 if em.integer else jnp.nan
        y = jnp.where(pad, jnp.asarray(missing, y.dtype), y)
        params = self.emission_params
        d = em.num_features(params)
        shapes = em.param_shapes(s, d)
        if all(params[k].ndim == len(shp) for k, shp in shapes.items()):  # shared emission parameters
            return em.log_likelihoods(params, y).reshape(n, t, s)
        flat = {k: jnp.broadcast_to(v, batch_shape + shapes[k]).reshape((n,) + shapes[k]) for k, v in params.items()}
        return jax.vmap(em.log_likelihoods)(flat, y.reshape((n,) + ev))

    def _core_args(self, value):
        """``(log pi, log A, shared, ll (N, T, S), lengths (N,), batch_shape)`` for a checked value."""
        if self.emission_probs is not None:
            batch_shape = jnp.broadcast_shapes(value.shape[:-1], self.batch_shape)
        else:
            value, batch_shape = self._check_generic_value(value)
        ll = self._log_likelihoods(value, batch_shape)
        log_pi, log_a, shared = self._flat_chain(batch_shape)
        return log_pi, log_a, shared, ll, self._flat_lengths(batch_shape), batch_shape

    # --------------------------------------------------------------------------------------------
    # log_prob
    # --------------------------------------------------------------------------------------------
    def _check_value(self, value):
        """Shape and dtype of a categorical ``value`` (static: checked under ``jit`` too); returns
        ``(symbols, in_support)``.

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
        # ``ok`` itself, not ``value``: under a trace even a concrete value gives a traced ``ok``.
        if self._validate_args and not isinstance(ok, jax.core.Tracer):
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

        Categorical form: ``-inf`` for a value outside the support (see :meth:`_check_value`). Every
        form: ``ValueError`` for a value whose trailing axes are not the event shape. The sequences (sample
        and batch axes flattened) are split over all devices when their number is a multiple of the device
        count (:func:`diffbio_prob.parallel.constrain_batch`; not inside ``fit_nuts``'s ``"parallel"``
        chains, which hold the devices).
        """
        if self.emission_probs is None:
            return self._log_prob(value)
        value, in_support = self._check_value(value)
        # a value or lengths committed to other devices (jax.device_put(x, device)) leave in_support there,
        # away from the log-probabilities on the batch mesh
        return jnp.where(parallel.constrain_shared(in_support), self._log_prob(value), -jnp.inf)

    def _log_prob(self, value):
        if self.emission_probs is not None:
            batch_shape = jnp.broadcast_shapes(value.shape[:-1], self.batch_shape)
            shared = self.initial_probs.ndim == 1 and self.transition_probs.ndim == 2 and self.emission_probs.ndim == 2
            if shared:
                # One set of parameters for every sequence (the model's case): the core's batched path.
                y = jnp.broadcast_to(value, batch_shape + (self.num_steps,)).reshape(-1, self.num_steps)
                params = core.HMMParams(jnp.log(self.initial_probs), jnp.log(self.transition_probs))
                log_b = jnp.log(self.emission_probs)
                # parameters committed to other devices (jax.device_put(p, device)) join the split batch
                params, log_b = parallel.constrain_shared((params, log_b))
                y, lens = parallel.constrain_batch((y, self._flat_lengths(batch_shape)))
                out = core.categorical_log_likelihood_batch(params, log_b, y, lens, method=self.method)
                return parallel.constrain_gathered(out).reshape(batch_shape)
        log_pi, log_a, shared, ll, lens, batch_shape = self._core_args(value)
        ll, lens = parallel.constrain_batch((ll, lens))
        if shared:
            log_pi, log_a = parallel.constrain_shared((log_pi, log_a))
            out = core.log_likelihood_batch(core.HMMParams(log_pi, log_a), ll, lens, method=self.method)
        else:
            # each sequence's chain parameters on its device, so none reads another's rows
            log_pi, log_a = parallel.constrain_batch((log_pi, log_a))
            out = jax.vmap(lambda p, a, x, n: core.log_likelihood(core.HMMParams(p, a), x, n, method=self.method))(
                log_pi, log_a, ll, lens)
        return parallel.constrain_gathered(out).reshape(batch_shape)

    # --------------------------------------------------------------------------------------------
    # filtering, smoothing, decoding
    # --------------------------------------------------------------------------------------------
    def _prepared(self, value):
        if self.emission_probs is not None:
            value, _ = self._check_value(value)
        return self._core_args(value)

    def filter(self, value):
        """Filtered marginals ``p(z_t | y_{1:t})``: ``Float[Array, "*batch T S"]`` (zero past each length)."""
        log_pi, log_a, shared, ll, lens, batch_shape = self._prepared(value)
        if shared:
            f = jax.vmap(lambda x, n: core.forward_filter(core.HMMParams(log_pi, log_a), x, n).filtered)(ll, lens)
        else:
            f = jax.vmap(lambda p, a, x, n: core.forward_filter(core.HMMParams(p, a), x, n).filtered)(
                log_pi, log_a, ll, lens)
        return f.reshape(batch_shape + f.shape[-2:])

    def posterior_marginals(self, value):
        """Smoothed marginals ``p(z_t | y_{1:L})``: ``Float[Array, "*batch T S"]`` (zero past each length)."""
        log_pi, log_a, shared, ll, lens, batch_shape = self._prepared(value)
        if shared:
            g = core.smoother_batch(core.HMMParams(log_pi, log_a), ll, lens).smoothed
        else:
            g = jax.vmap(lambda p, a, x, n: core.smoother(core.HMMParams(p, a), x, n).smoothed)(log_pi, log_a, ll, lens)
        return g.reshape(batch_shape + g.shape[-2:])

    def viterbi(self, value):
        """Most probable state paths ``Int[Array, "*batch T"]`` (-1 past each length) and their joint
        log-probabilities ``log p(z*, y)`` (``*batch``)."""
        log_pi, log_a, shared, ll, lens, batch_shape = self._prepared(value)
        if shared:
            path, lp = core.viterbi_batch(core.HMMParams(log_pi, log_a), ll, lens)
        else:
            path, lp = jax.vmap(lambda p, a, x, n: core.viterbi(core.HMMParams(p, a), x, n))(log_pi, log_a, ll, lens)
        return path.reshape(batch_shape + (self.num_steps,)), lp.reshape(batch_shape)

    # --------------------------------------------------------------------------------------------
    # sampling
    # --------------------------------------------------------------------------------------------
    def sample_with_intermediates(self, key, sample_shape=()):
        """``(observations, [states])``: ``sample_shape + batch_shape + event_shape`` and ``... + (T,)``.

        States are -1 on padding; so are categorical symbols and the core emissions' values (NaN for
        real-valued ones). With ``observation_dist`` the values past a length are draws, never read by
        :meth:`log_prob`.
        """
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        t, s = self.num_steps, self.num_states
        n = int(np.prod(shape, dtype=int))
        pi = jnp.broadcast_to(self.initial_probs, shape + (s,)).reshape(n, s)
        a = jnp.broadcast_to(self.transition_probs, shape + (s, s)).reshape(n, s, s)
        k_states, k_obs = jax.random.split(key)
        keys = jax.random.split(k_states, n)
        z = jax.vmap(lambda k, p, m: core.sample_states(k, core.HMMParams(jnp.log(p), jnp.log(m)), t))(keys, pi, a)
        valid = jnp.arange(t)[None, :] < self._flat_lengths(shape)[:, None]
        z = jnp.where(valid, z, -1).reshape(shape + (t,))
        ev = tuple(self.event_shape)
        if self.emission_probs is not None:
            b = jnp.broadcast_to(self.emission_probs, shape + self.emission_probs.shape[-2:])
            logits = jnp.take_along_axis(jnp.log(b), jnp.maximum(z, 0)[..., None], axis=-2)  # (*shape, T, M)
            y = jax.random.categorical(k_obs, logits, axis=-1).astype(jnp.int32)
            return jnp.where(z >= 0, y, -1), [z]
        e = self._obs_event_ndim
        if self.observation_dist is not None:
            d = self.observation_dist.expand(shape + (s,))
            y_all = d.sample(k_obs, (t,))  # (T, *shape, S, *event)
            idx = jnp.moveaxis(jnp.maximum(z, 0), -1, 0)  # (T, *shape)
            idx = idx.reshape(idx.shape + (1,) * (1 + e))
            y = jnp.take_along_axis(y_all, idx, axis=len(shape) + 1)
            y = jnp.squeeze(y, axis=len(shape) + 1)
            return jnp.moveaxis(y, 0, len(shape)), [z]
        em = self.emission
        params = self.emission_params
        shapes = em.param_shapes(s, em.num_features(params))
        flat = {k: jnp.broadcast_to(v, shape + shapes[k]).reshape((n,) + shapes[k]) for k, v in params.items()}
        y = jax.vmap(em.sample)(jax.random.split(k_obs, n), flat, z.reshape(n, t))
        pad = (z < 0).reshape(shape + (t,) + (1,) * e)
        y = jnp.where(pad, jnp.asarray(-1 if em.integer else jnp.nan, y.dtype), y.reshape(shape + ev))
        return y, [z]

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
    emission: str | core.Emission = "categorical",
    num_features: int | None = None,
    emission_prior: Mapping[str, float] | None = None,
    method: str = "auto",
) -> None:
    """Bayesian HMM with Dirichlet priors on the chain and a prior per emission family.

    ``emission="categorical"`` (default) is the model described below. Any other family of
    :mod:`diffbio_prob.cores.hmm.emissions` samples its parameters as sites ``emission_<param>`` with the
    priors in :data:`EMISSION_PRIORS` (keys overridable by ``emission_prior``) and scores the observations
    with the core's emission log-likelihoods (the NNX operator's functions):

    ====================  ===================================================================================
    ``poisson``           ``emission_rates`` (S,) ~ Gamma(concentration, rate)
    ``negative_binomial`` ``emission_means`` (S,) ~ Gamma(mean_concentration, mean_rate);
                          ``emission_concentrations`` (S,) ~ LogNormal(concentration_loc, concentration_scale)
    ``gaussian``          ``emission_means`` (S, D) ~ Normal(mean_loc, mean_scale);
                          ``emission_scales`` (S, D) ~ LogNormal(scale_loc, scale_scale)
    ``gaussian_full``     the same means and scales, ``emission_corr_cholesky`` (S, D, D) ~
                          LKJCholesky(D, lkj_concentration); deterministic ``emission_covariances``
    ``bernoulli``         ``emission_probs`` (S, D) ~ Beta(emission_concentration, emission_concentration)
    ``multinomial``       ``emission_probs`` (S, M) rows ~ Dirichlet(emission_concentration)
    ====================  ===================================================================================

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
        emission_concentration: scalar, ``(M,)`` or ``(S, M)`` (categorical, multinomial; Bernoulli's
            Beta prior takes it for both shapes).
        emission: the emission family (a name or a core :class:`~diffbio_prob.cores.hmm.Emission`).
        num_features: D (or M) of a vector emission; needed when ``observations`` is None or traced.
        emission_prior: overrides of the family's prior hyperparameters (see the table above).
        method: :class:`DiscreteHMM`'s forward pass (``"auto"``, ``"sequential"``, ``"parallel"``).

    Example:
        >>> from numpyro.infer import Predictive
        >>> prior = Predictive(hmm_model, num_samples=3)(jax.random.key(0), num_emissions=4, num_steps=10)
        >>> prior["observations"].shape, prior["transition_probs"].shape
        ((3, 10), (3, 2, 2))
    """
    if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)) or num_states < 1:
        raise ValueError(f"num_states: expected a positive integer, got {num_states!r}")
    em = core.get_emission(emission)
    if not isinstance(em, core.Categorical):
        return _emission_model(em, observations, lengths, int(num_states), num_steps, num_features, emission_prior,
                               initial_concentration, transition_concentration, emission_concentration, method)
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

    initial = numpyro.sample(HMM_SITES.initial, dist.Dirichlet(c_init))
    transition = numpyro.sample(HMM_SITES.transition, dist.Dirichlet(c_trans).to_event(1))
    emission = numpyro.sample(HMM_SITES.emission, dist.Dirichlet(c_emit).to_event(1))
    if lengths is not None:
        lengths = jnp.asarray(lengths)
    numpyro.sample(HMM_SITES.observations, DiscreteHMM(initial, transition, emission, int(num_steps), lengths,
                                                       method=method), obs=observations)


# Default prior hyperparameters per emission family (``hmm_model(emission_prior=...)`` overrides them):
# weakly informative on the data's natural scale (counts of order 1-100, standardised real values).
EMISSION_PRIORS: dict[str, dict[str, float]] = {
    "poisson": {"concentration": 1.0, "rate": 0.1},
    "negative_binomial": {"mean_concentration": 1.0, "mean_rate": 0.1, "concentration_loc": float(np.log(10.0)),
                          "concentration_scale": 1.5},
    "gaussian": {"mean_loc": 0.0, "mean_scale": 10.0, "scale_loc": 0.0, "scale_scale": 1.5},
    "gaussian_full": {"mean_loc": 0.0, "mean_scale": 10.0, "scale_loc": 0.0, "scale_scale": 1.5,
                      "lkj_concentration": 1.0},
    "bernoulli": {},
    "multinomial": {},
}


def _emission_model(em, observations, lengths, s, num_steps, num_features, emission_prior,
                    initial_concentration, transition_concentration, emission_concentration, method="auto"):
    """:func:`hmm_model` for a non-categorical emission."""
    prior = dict(EMISSION_PRIORS[em.name])
    if emission_prior is not None:
        if not isinstance(emission_prior, Mapping):
            raise TypeError(f"emission_prior: expected a dict, got {type(emission_prior).__name__}")
        unknown = sorted(set(emission_prior) - set(prior))
        if unknown:
            raise ValueError(f"emission_prior: unknown keys {unknown} for the {em.name} emission; expected some of "
                             f"{sorted(prior)}")
        prior.update({k: float(v) for k, v in emission_prior.items()})
    e = em.event_ndim
    if observations is not None:
        if not isinstance(observations, jax.core.Tracer):
            observations = em.check_observations(observations, num_features)
        elif observations.ndim not in (e + 1, e + 2):
            raise ValueError(f"observations: expected {e + 1} or {e + 2} axes for the {em.name} emission, got "
                             f"shape {observations.shape}")
        observations = jnp.asarray(observations)
        num_steps = observations.shape[observations.ndim - 1 - e]
        if e:
            num_features = observations.shape[-1]
        batch = observations.shape[: observations.ndim - 1 - e]
        if lengths is not None and np.shape(lengths) != batch:
            raise ValueError(f"lengths: expected shape {batch} (one per sequence of observations "
                             f"{observations.shape}), got {np.shape(lengths)}")
    else:
        if isinstance(em, core.Multinomial):
            raise ValueError("observations: required for the multinomial emission (each step's total count is "
                             "taken from the data; prior sampling needs it)")
        if num_steps is None:
            raise ValueError("num_steps: required when observations is None (prior sampling)")
        num_steps = _positive_steps(num_steps)
    if e and (isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1):
        raise ValueError(f"num_features: expected a positive integer for the {em.name} emission, got {num_features!r}")
    d = None if not e else int(num_features)
    c_init = _concentration("initial_concentration", initial_concentration, (s,))
    c_trans = _concentration("transition_concentration", transition_concentration, (s, s))
    initial = numpyro.sample(HMM_SITES.initial, dist.Dirichlet(c_init))
    transition = numpyro.sample(HMM_SITES.transition, dist.Dirichlet(c_trans).to_event(1))
    params = _emission_prior(em, s, d, prior, emission_concentration)
    if lengths is not None:
        lengths = jnp.asarray(lengths)
    numpyro.sample(HMM_SITES.observations, DiscreteHMM(initial, transition, emission=em, emission_params=params,
                                               num_steps=int(num_steps), lengths=lengths, method=method),
                   obs=observations)


def _emission_prior(em, s, d, prior, emission_concentration) -> dict:
    """Sample the emission's sites (the core's ``site_names``); returns the natural parameters."""
    name = em.name
    site = dict(zip(em.param_names, em.site_names))
    if name == "poisson":
        rates = numpyro.sample(site["rates"], dist.Gamma(prior["concentration"], prior["rate"]).expand([s]).to_event(1))
        return {"rates": rates}
    if name == "negative_binomial":
        means = numpyro.sample(site["means"],
                               dist.Gamma(prior["mean_concentration"], prior["mean_rate"]).expand([s]).to_event(1))
        conc = numpyro.sample(site["concentrations"], dist.LogNormal(
            prior["concentration_loc"], prior["concentration_scale"]).expand([s]).to_event(1))
        return {"means": means, "concentrations": conc}
    if name in ("gaussian", "gaussian_full"):
        means = numpyro.sample(site["means"], dist.Normal(prior["mean_loc"], prior["mean_scale"]).expand([s, d]).to_event(2))
        scales = numpyro.sample(_SCALES_SITE,
                                dist.LogNormal(prior["scale_loc"], prior["scale_scale"]).expand([s, d]).to_event(2))
        if name == "gaussian":
            return {"means": means, "scales": scales}
        corr = numpyro.sample(_CORR_SITE,
                              dist.LKJCholesky(d, prior["lkj_concentration"]).expand([s]).to_event(1))
        chol = scales[..., :, None] * corr
        cov = numpyro.deterministic(site["covariances"], chol @ jnp.swapaxes(chol, -1, -2))
        return {"means": means, "covariances": cov}
    if name == "bernoulli":
        c = _concentration("emission_concentration", emission_concentration, (s, d))
        return {"probs": numpyro.sample(site["probs"], dist.Beta(c, c).to_event(2))}
    if name == "multinomial":
        c = _concentration("emission_concentration", emission_concentration, (s, d))
        return {"probs": numpyro.sample(site["probs"], dist.Dirichlet(c).to_event(1))}
    raise ValueError(f"emission: hmm_model has no prior for {name!r}")


def relabel_states(
    samples: Mapping[str, Any], symbol: int = -1, *, key: str | None = None,
    emission: str | core.Emission = "categorical",
) -> dict[str, np.ndarray]:
    """Undo label switching: in each draw, order the states by ascending ``samples[key][..., :, symbol]``
    (or ``samples[key]`` itself for a per-state scalar such as Poisson ``emission_rates``).

    Every state-indexed site of :func:`hmm_model` for ``emission`` is permuted consistently along its state
    axis (``initial_probs`` entries, ``transition_probs`` rows and columns, each emission site's states:
    Poisson rates ``(S,)``, negative-binomial means and concentrations ``(S,)``, Gaussian means and scales
    ``(S, D)`` and covariances / correlation Cholesky factors ``(S, D, D)``, Bernoulli / multinomial /
    categorical probabilities ``(S, M)``); other sites are returned unchanged. Works on any leading
    dimensions, e.g. ``(chain, draw)`` from ``FitResult.samples``.

    Args:
        samples: dict of arrays with at least ``key``.
        symbol: the index (symbol, feature or mark) of ``key``'s last axis whose value orders the states
            (default the last; for the dishonest casino, the six: fair state first, loaded state second).
        key: the ordering site (default the emission's first site: ``emission_probs``, ``emission_rates``,
            ``emission_means``).
        emission: the emission family whose sites are permuted.

    Returns:
        A new dict with the relabelled arrays.

    Example:
        >>> e = np.array([[[0.2, 0.8], [0.9, 0.1]]])            # one draw, state 0 likes symbol 1
        >>> out = relabel_states({"emission_probs": e, "initial_probs": np.array([[0.3, 0.7]])})
        >>> out["emission_probs"][0, 0].tolist(), out["initial_probs"].tolist()
        ([0.9, 0.1], [[0.7, 0.3]])
        >>> relabel_states({"emission_rates": np.array([5.0, 1.0])}, emission="poisson")["emission_rates"].tolist()
        [1.0, 5.0]
    """
    em = core.get_emission(emission)
    ranks = {HMM_SITES.initial: 0, HMM_SITES.transition: 1, **_state_ranks(em)}
    key = em.site_names[0] if key is None else key
    if key not in samples:
        raise ValueError(f"samples: missing key {key!r}")
    if key not in ranks or key == HMM_SITES.transition:
        raise ValueError(f"key: {key!r} is not a state-indexed site of the {em.name} emission; expected one of "
                         f"{[k for k in ranks if k != HMM_SITES.transition]}")
    order = np.asarray(samples[key])
    if ranks[key] == 1:
        order = order[..., symbol]
    elif ranks[key] > 1:
        raise ValueError(f"key: {key!r} holds a matrix per state; order by a vector site instead")
    perm = np.argsort(order, axis=-1, kind="stable")  # (..., S)
    out = {k: np.asarray(v) for k, v in samples.items()}
    for site, rank in ranks.items():
        if site not in out:
            continue
        x = out[site]
        if x.ndim < perm.ndim + rank:
            raise ValueError(f"samples[{site!r}]: expected {perm.ndim - 1} leading axes before its state axis "
                             f"and {rank} after it, got shape {x.shape}")
        x = np.take_along_axis(x, perm.reshape(perm.shape + (1,) * rank), axis=perm.ndim - 1)
        if site == HMM_SITES.transition:
            x = np.take_along_axis(x, perm[..., None, :], axis=-1)
        out[site] = x
    return out


def interior_params(params: Mapping[str, Any], mix: float = 1e-3) -> dict[str, np.ndarray]:
    """Every probability row of ``params`` moved off the simplex's boundary by
    :func:`diffbio_prob.cores.contract.interior` (``(1 - mix) p + mix / K`` per row).

    A Baum-Welch fit often has exact zeros (e.g. ``initial_probs = [1, 0]`` on one sequence); NUTS cannot
    start there. Apply this to a categorical point estimate before passing it as ``init_params``; the
    values of every key are treated as probability rows.

    Example:
        >>> interior_params({"initial_probs": np.array([1.0, 0.0])}, mix=0.1)["initial_probs"].round(6).tolist()
        [0.95, 0.05]
    """
    return {k: interior(v, mix) for k, v in params.items()}
