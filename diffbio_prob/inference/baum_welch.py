"""Baum-Welch EM for an HMM with any emission family: forward-backward E-step, closed-form M-step.

The E-step's expected counts are the gradient of the summed log-likelihood with respect to the
log-parameters (Eisner 2016: forward-backward *is* backprop): ``d/d log pi = sum_n gamma^n_1``,
``d/d log A = sum_n sum_t xi^n_t``, ``d/d log B[k, m] = sum_n sum_t gamma^n_t(k) [y_t = m]``. The core's
custom VJP computes exactly these by one forward-backward sweep per sequence, vmapped over a padded
ragged batch; so EM, the NNX operator and the NumPyro model all run the same likelihood code.

M-step (Rabiner 1989; hmmlearn ``_do_mstep``): normalise the expected counts plus ``concentration - 1``
pseudo-counts (the MAP under the Dirichlet priors of :func:`diffbio_prob.models.hmm_model`;
concentration 1 = maximum likelihood). A row with no counts keeps its previous value instead of
turning into 0/0 (hmmlearn #169). The objective (log-likelihood + log prior) never decreases.

Other emission families (``emission="poisson"``, ``"gaussian"``, ... or a
:class:`diffbio_prob.cores.hmm.Emission`): the E-step's smoothed marginals are the gradient of the
log-likelihood with respect to the emission log-likelihood matrix, and the M-step is the emission's own
``m_step`` (weighted sufficient statistics; hmmlearn's ``_do_mstep`` with no priors).

Example:
    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 1] * 20)
    >>> fit = baum_welch(y, num_states=2, num_emissions=2, num_iters=50, seed=0)
    >>> bool(np.all(np.diff(fit.log_likelihood_history) > -1e-4))
    True
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffbio_prob import parallel
from diffbio_prob.cores import hmm as core
from diffbio_prob.cores.contract import HMM_SITES

__all__ = ["baum_welch", "BaumWelchResult", "pad_sequences", "random_start"]


@dataclasses.dataclass
class BaumWelchResult:
    """Output of :func:`baum_welch`.

    Attributes:
        initial_probs: ``(S,)``.
        transition_probs: ``(S, S)``.
        emission_probs: ``(S, M)`` for the categorical emission, else ``None``.
        log_likelihood_history: ``(I + 1,)`` total log-likelihood of the parameters before each of the
            ``I`` iterations run, and of the returned parameters (last entry).
        objective_history: same with the log Dirichlet prior added (equal to the above at concentration 1);
            non-decreasing.
        num_iters: iterations run.
        converged: the objective's last improvement was below ``tol``.
        emission: the emission family's name.
        emission_params: the emission's parameters keyed by its ``param_names`` (``{"probs": ...}``,
            ``{"rates": ...}``, ``{"means": ..., "scales": ...}``, ...).
    """

    initial_probs: np.ndarray
    transition_probs: np.ndarray
    emission_probs: np.ndarray | None
    log_likelihood_history: np.ndarray
    objective_history: np.ndarray
    num_iters: int
    converged: bool
    emission: str = "categorical"
    emission_params: dict[str, np.ndarray] | None = None

    def __post_init__(self):
        if self.emission_params is None and self.emission_probs is not None:
            self.emission_params = {"probs": self.emission_probs}

    @property
    def log_likelihood(self) -> float:
        """Total log-likelihood of the returned parameters."""
        return float(self.log_likelihood_history[-1])

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameters keyed by :func:`diffbio_prob.models.hmm_model`'s site names (for ``init_params``
        or ``DifferentiableHMM.load_model_params``): ``emission_`` + each emission parameter's name, as
        ``Emission.site_names`` (a custom family's instance is not kept here, so the rule is applied)."""
        out = {HMM_SITES.initial: self.initial_probs, HMM_SITES.transition: self.transition_probs}
        out.update({"emission_" + k: v for k, v in (self.emission_params or {}).items()})
        return out


def pad_sequences(sequences: Sequence[Any], event_ndim: int = 0, fill=-1) -> tuple[np.ndarray, np.ndarray]:
    """Stack sequences ``(T_i, *event)`` into a ``(B, T_max, *event)`` array padded with ``fill``
    (-1; NaN for real-valued emissions), plus their lengths.

    Example:
        >>> y, n = pad_sequences([[0, 1, 2], [1]])
        >>> y.tolist(), n.tolist()
        ([[0, 1, 2], [1, -1, -1]], [3, 1])
    """
    arrays = [np.asarray(s) for s in sequences]
    for i, a in enumerate(arrays):
        if a.ndim != 1 + event_ndim:
            want = "1-D" if event_ndim == 0 else f"{1 + event_ndim}-D (T, *event)"
            raise ValueError(f"observations: sequence {i} must be {want}, got shape {a.shape}")
        if event_ndim and a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"observations: sequence {i} has event shape {a.shape[1:]}, sequence 0 has "
                             f"{arrays[0].shape[1:]}")
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    event = arrays[0].shape[1:] if arrays else ()
    dtype = np.float64 if (isinstance(fill, float) and np.isnan(fill)) else np.int64
    out = np.full((len(arrays), int(lengths.max(initial=0))) + event, fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lengths


def _check_inputs(observations, lengths, num_emissions):
    if isinstance(observations, (list, tuple)) and len(observations) and np.ndim(observations[0]) == 1:
        if lengths is not None:
            raise ValueError("lengths: not allowed with a list of sequences (their lengths are used)")
        if len({len(s) for s in observations}) > 1 or any(np.asarray(s).dtype.kind == "f" for s in observations):
            observations, lengths = pad_sequences(observations)
    if num_emissions is not None and (isinstance(num_emissions, bool) or
                                      not isinstance(num_emissions, (int, np.integer)) or num_emissions < 1):
        raise ValueError(f"num_emissions: expected a positive integer, got {num_emissions!r}")
    obs = core.Categorical().check_observations(observations, num_emissions)
    if obs.ndim == 1:
        obs = obs[None]
        if lengths is not None and np.ndim(lengths) == 0:
            lengths = np.reshape(lengths, (1,))
    if num_emissions is None:
        num_emissions = max(int(obs.max()) + 1, 1)
    return obs, _check_lengths(lengths, obs.shape), int(num_emissions)


def _check_lengths(lengths, shape) -> np.ndarray:
    if lengths is None:
        return np.full(shape[0], shape[1])
    lens = np.asarray(lengths)
    if lens.dtype == bool or not np.issubdtype(lens.dtype, np.integer):
        raise TypeError(f"lengths: expected integers, got dtype {lens.dtype}")
    if lens.shape != (shape[0],):
        raise ValueError(f"lengths: expected shape ({shape[0]},), got {lens.shape}")
    if (lens < 1).any() or (lens > shape[1]).any():
        raise ValueError(f"lengths: expected values in 1..{shape[1]}, got min {lens.min()} max {lens.max()}")
    return lens


def _check_inputs_emission(observations, lengths, emission: core.Emission, num_features):
    """Observations of any emission family -> ``(B, T, *event)``, lengths ``(B,)``."""
    e = emission.event_ndim
    if isinstance(observations, (list, tuple)) and len(observations) and np.ndim(observations[0]) == 1 + e:
        if lengths is not None:
            raise ValueError("lengths: not allowed with a list of sequences (their lengths are used)")
        fill = -1 if emission.integer else float("nan")
        observations, lengths = pad_sequences(observations, event_ndim=e, fill=fill)
    obs = emission.check_observations(observations, num_features)
    if obs.ndim == e + 1:
        obs = obs[None]
        if lengths is not None and np.ndim(lengths) == 0:
            lengths = np.reshape(lengths, (1,))
    return obs, _check_lengths(lengths, obs.shape)


def _check_prob(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    p = np.asarray(value, dtype=float)
    if p.shape != shape:
        raise ValueError(f"init[{name!r}]: expected shape {shape}, got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(-1), 1.0, atol=1e-6):
        raise ValueError(f"init[{name!r}]: expected non-negative rows summing to 1")
    return p


def _pseudo(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    c = np.asarray(value, dtype=float)
    try:
        c = np.broadcast_to(c, shape)
    except ValueError:
        raise ValueError(f"{name}: expected a scalar or an array broadcastable to {shape}, got shape {c.shape}")
    if not np.isfinite(c).all() or (c <= 0).any():
        raise ValueError(f"{name}: expected positive finite Dirichlet concentrations")
    return c - 1.0


def random_start(num_states: int, num_emissions: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Baum-Welch's default start: uniform initial distribution, sticky transitions
    ``0.8 I + 0.2 Dirichlet(1)`` and Dirichlet(1) emission rows.

    Sticky because random non-sticky starts often end in a fast-switching local optimum on segmentation
    data (e.g. the dishonest casino).

    Example:
        >>> random_start(2, 3)["transition_probs"].sum(1).round(12).tolist()
        [1.0, 1.0]
    """
    rng = np.random.default_rng(seed)
    s, m = int(num_states), int(num_emissions)
    trans = 0.8 * np.eye(s) + 0.2 * rng.dirichlet(np.ones(s), size=s) if s > 1 else np.ones((1, 1))
    return {
        HMM_SITES.initial: np.full(s, 1.0 / s),
        HMM_SITES.transition: trans,
        HMM_SITES.emission: rng.dirichlet(np.ones(m), size=s),
    }


def _sequences_on_devices(obs: np.ndarray, lens: np.ndarray, dtype):
    """``(obs, lengths, weights)`` as device arrays, the sequences split over all devices when there are
    several (:mod:`diffbio_prob.parallel`). The batch is padded to a multiple of the device count with
    copies of the first sequence of weight 0, which add nothing to the log-likelihood nor (the counts
    are its gradients) to the expected counts; one device: no padding, weights all 1."""
    mesh = parallel.batch_mesh()
    b = obs.shape[0]
    weights = np.ones(b)
    if mesh is not None:
        extra = -b % mesh.size
        take = np.concatenate([np.arange(b), np.zeros(extra, int)])
        obs, lens, weights = obs[take], lens[take], np.concatenate([weights, np.zeros(extra)])
    obs_j = jnp.asarray(obs, obs.dtype if np.issubdtype(obs.dtype, np.integer) else dtype)
    return parallel.place(mesh, (obs_j, jnp.asarray(lens, jnp.int32), jnp.asarray(weights, dtype)))


@functools.partial(jax.jit, static_argnames=("emission",))
def _em_step(emission, log_pi, log_a, params, obs, lengths, weights):
    """Total log-likelihood, expected initial / transition counts and the emission's M-step, any family."""

    def total(log_pi, log_a, ll):
        return jnp.sum(weights * core.log_likelihood_batch(core.HMMParams(log_pi, log_a), ll, lengths))

    ll = emission.log_likelihoods(params, obs)
    value, (c_pi, c_a, gamma) = jax.value_and_grad(total, argnums=(0, 1, 2))(log_pi, log_a, ll)
    return value, c_pi, c_a, emission.m_step(obs, gamma, params)


@jax.jit
def _e_step(log_pi, log_a, log_b, obs, lengths, weights):
    """Total log-likelihood and expected counts (initial, transition, emission) of a padded batch."""

    def total(log_pi, log_a, log_b):
        lls = core.categorical_log_likelihood_batch(core.HMMParams(log_pi, log_a), log_b, obs, lengths)
        return jnp.sum(weights * lls)

    return jax.value_and_grad(total, argnums=(0, 1, 2))(log_pi, log_a, log_b)


def _normalise(counts: np.ndarray, previous: np.ndarray) -> np.ndarray:
    counts = np.maximum(counts, 0.0)
    sums = counts.sum(-1, keepdims=True)
    return np.where(sums > 0, counts / np.where(sums > 0, sums, 1.0), previous)


def _log_prior(pseudo: list[np.ndarray], probs: list[np.ndarray]) -> float:
    total = 0.0
    for c, p in zip(pseudo, probs):
        with np.errstate(divide="ignore", invalid="ignore"):
            total += float(np.sum(np.where(c != 0, c * np.log(p), 0.0)))
    return total


def baum_welch(
    observations,
    num_states: int,
    num_emissions: int | None = None,
    *,
    lengths=None,
    init: Mapping[str, Any] | None = None,
    num_iters: int = 100,
    tol: float = 1e-4,
    initial_concentration=1.0,
    transition_concentration=1.0,
    emission_concentration=1.0,
    seed: int = 0,
    emission: str | core.Emission = "categorical",
    num_features: int | None = None,
) -> BaumWelchResult:
    """Fit an HMM by expectation-maximisation (Baum-Welch).

    Args:
        observations: ``(T,)`` or padded ``(B, T)`` int symbols (``-1`` = missing/padding), or a list of
            1-D sequences of any lengths; for other emissions ``(T, *event)`` / ``(B, T, *event)`` in the
            emission's convention (``-1`` or NaN = missing), or a list of ``(T_i, *event)`` sequences.
        num_states: S.
        num_emissions: M (default ``max(observations) + 1``); categorical only.
        lengths: optional ``(B,)`` valid steps per row of a padded batch.
        init: optional start ``{"initial_probs", "transition_probs", "emission_probs"}`` (e.g. a
            ``FitResult.params`` or ``DifferentiableHMM.to_model_params()``); default: uniform initial
            distribution, sticky transitions ``0.8 I + 0.2 Dirichlet(1)`` and Dirichlet(1) emission rows
            drawn with ``seed``.
        num_iters: maximum number of EM iterations.
        tol: stop when the objective improves by less than this (absolute, as hmmlearn).
        initial_concentration, transition_concentration, emission_concentration: Dirichlet prior
            concentrations (scalars or arrays broadcastable to (S,), (S, S), (S, M)); values above 1 add
            ``concentration - 1`` pseudo-counts (MAP), 1 gives maximum likelihood.
        seed: seed of the random start.
        emission: ``"categorical"`` (default), ``"poisson"``, ``"negative_binomial"``, ``"gaussian"``,
            ``"gaussian_full"``, ``"bernoulli"``, ``"multinomial"`` or a
            :class:`diffbio_prob.cores.hmm.Emission`. Its ``init`` keys are ``"emission_" + name`` for
            each of its ``param_names`` (e.g. ``emission_rates``); the default start is the emission's
            ``initial_params`` (data quantiles for counts and Gaussians).
        num_features: D of a vector emission (checked against the observations' last axis).

    Returns:
        :class:`BaumWelchResult`.

    Raises:
        TypeError / ValueError: naming the argument, for bad observations, lengths, init or priors.
    """
    if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)) or num_states < 1:
        raise ValueError(f"num_states: expected a positive integer, got {num_states!r}")
    if isinstance(num_iters, bool) or not isinstance(num_iters, (int, np.integer)) or num_iters < 0:
        raise ValueError(f"num_iters: expected a non-negative integer, got {num_iters!r}")
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol: expected a non-negative number, got {tol!r}")
    em = core.get_emission(emission)
    if not isinstance(em, core.Categorical):
        return _baum_welch_emission(
            em, observations, int(num_states), lengths=lengths, init=init, num_iters=num_iters, tol=tol,
            initial_concentration=initial_concentration, transition_concentration=transition_concentration,
            emission_concentration=emission_concentration, seed=seed, num_features=num_features,
        )
    obs, lens, m = _check_inputs(observations, lengths, num_emissions)
    s = int(num_states)
    pseudo = [
        _pseudo("initial_concentration", initial_concentration, (s,)),
        _pseudo("transition_concentration", transition_concentration, (s, s)),
        _pseudo("emission_concentration", emission_concentration, (s, m)),
    ]
    if init is None:
        probs = list(random_start(s, m, seed).values())
    else:
        if not isinstance(init, Mapping):
            raise TypeError(f"init: expected a dict keyed by site names, got {type(init).__name__}")
        names = (HMM_SITES.initial, HMM_SITES.transition, HMM_SITES.emission)
        missing = [n for n in names if n not in init]
        if missing:
            raise ValueError(f"init: missing keys {missing}")
        probs = [_check_prob(n, init[n], shp) for n, shp in zip(names, [(s,), (s, s), (s, m)])]

    dtype = jnp.result_type(float)
    obs_j, lens_j, w_j = _sequences_on_devices(np.asarray(obs, np.int32), np.asarray(lens), dtype)

    def step(chain, eparams):
        with np.errstate(divide="ignore"):
            logs = [jnp.asarray(np.log(p), dtype) for p in (*chain, eparams["probs"])]
        # gather: across processes the outputs are global arrays (replicated), not local numpy values
        ll, (c_pi, c_a, c_b) = parallel.gather(_e_step(*logs, obs_j, lens_j, w_j))
        new = {"probs": _normalise(np.asarray(c_b, float) + pseudo[2], eparams["probs"])}
        return float(ll), [np.asarray(c_pi, float), np.asarray(c_a, float)], new

    def log_prior(chain, eparams):
        return _log_prior(pseudo, [*chain, eparams["probs"]])

    chain, eparams, ll_hist, obj_hist, it, converged = _iterate(
        step, probs[:2], {"probs": probs[2]}, pseudo[:2], log_prior, num_iters, tol)
    return BaumWelchResult(
        initial_probs=chain[0],
        transition_probs=chain[1],
        emission_probs=eparams["probs"],
        log_likelihood_history=ll_hist,
        objective_history=obj_hist,
        num_iters=it,
        converged=converged,
    )


def _iterate(step, chain, eparams, pseudo_chain, log_prior, num_iters: int, tol: float):
    """The EM loop of every family: ``step(chain, eparams) -> (log-lik, chain counts, next eparams)``.

    Each iteration records the objective of the current parameters, then moves the chain to its
    normalised expected counts (plus pseudo-counts) and the emission to ``step``'s M-step; it stops when
    the objective improves by less than ``tol`` (hmmlearn's rule). Returns the last parameters, the
    log-likelihood and objective histories, the iterations run and whether it converged.
    """
    ll_hist, obj_hist = [], []
    converged = False
    ll, counts, new_e = step(chain, eparams)
    if not np.isfinite(ll):
        raise ValueError("init: the observations have probability 0 under the starting parameters")
    it = 0
    for it in range(1, num_iters + 1):
        ll_hist.append(ll)
        obj_hist.append(ll + log_prior(chain, eparams))
        chain = [_normalise(c + a, p) for c, a, p in zip(counts, pseudo_chain, chain)]
        eparams = new_e
        ll, counts, new_e = step(chain, eparams)
        if not np.isfinite(ll):
            raise FloatingPointError(f"baum_welch: log-likelihood became {ll} at iteration {it}")
        if ll + log_prior(chain, eparams) - obj_hist[-1] < tol:
            converged = True
            break
    ll_hist.append(ll)
    obj_hist.append(ll + log_prior(chain, eparams))
    return chain, eparams, np.array(ll_hist), np.array(obj_hist), it, converged


def _check_chain_init(init, s: int) -> list[np.ndarray]:
    if not isinstance(init, Mapping):
        raise TypeError(f"init: expected a dict keyed by site names, got {type(init).__name__}")
    return [_check_prob(n, init[n], shp) for n, shp in ((HMM_SITES.initial, (s,)), (HMM_SITES.transition, (s, s)))]


def _baum_welch_emission(em: core.Emission, observations, s: int, *, lengths, init, num_iters, tol,
                         initial_concentration, transition_concentration, emission_concentration, seed,
                         num_features) -> BaumWelchResult:
    """:func:`baum_welch` for a non-categorical emission: the same loop with the emission's M-step."""
    if np.any(np.asarray(emission_concentration, dtype=float) != 1.0):
        raise ValueError(f"emission_concentration: a Dirichlet prior on emission rows exists for the categorical "
                         f"emission only, not {em.name}")
    obs, lens = _check_inputs_emission(observations, lengths, em, num_features)
    d = obs.shape[-1] if em.event_ndim else None
    pseudo = [
        _pseudo("initial_concentration", initial_concentration, (s,)),
        _pseudo("transition_concentration", transition_concentration, (s, s)),
    ]
    if init is None:
        rng = np.random.default_rng(seed)
        trans = 0.8 * np.eye(s) + 0.2 * rng.dirichlet(np.ones(s), size=s) if s > 1 else np.ones((1, 1))
        valid = obs[np.arange(obs.shape[1])[None, :] < lens[:, None]]
        chain = [np.full(s, 1.0 / s), trans]
        eparams = em.check_params(em.initial_params(valid, s, rng), s, d, name="initial_params")
    else:
        keys = [HMM_SITES.initial, HMM_SITES.transition, *em.site_names]
        if not isinstance(init, Mapping):
            raise TypeError(f"init: expected a dict keyed by site names, got {type(init).__name__}")
        missing = [k for k in keys if k not in init]
        if missing:
            raise ValueError(f"init: missing keys {missing} (the {em.name} emission's sites are {list(em.site_names)})")
        chain = _check_chain_init(init, s)
        eparams = em.check_params({n: init[k] for n, k in zip(em.param_names, em.site_names)}, s, d, name="init")

    dtype = jnp.result_type(float)
    obs_j, lens_j, w_j = _sequences_on_devices(np.asarray(obs, np.int32) if em.integer else np.asarray(obs),
                                               np.asarray(lens), dtype)

    def step(chain, eparams):
        with np.errstate(divide="ignore"):
            logs = [jnp.asarray(np.log(p), dtype) for p in chain]
        value, c_pi, c_a, new = parallel.gather(_em_step(
            em, *logs, {k: jnp.asarray(v, dtype) for k, v in eparams.items()}, obs_j, lens_j, w_j))
        return float(value), [np.asarray(c_pi, float), np.asarray(c_a, float)], {k: np.asarray(v, float)
                                                                                for k, v in new.items()}

    chain, eparams, ll_hist, obj_hist, it, converged = _iterate(
        step, chain, eparams, pseudo, lambda chain, _: _log_prior(pseudo, chain), num_iters, tol)
    return BaumWelchResult(
        initial_probs=chain[0],
        transition_probs=chain[1],
        emission_probs=None,
        log_likelihood_history=ll_hist,
        objective_history=obj_hist,
        num_iters=it,
        converged=converged,
        emission=em.name,
        emission_params=eparams,
    )
