"""Fit a categorical HMM to symbol sequences and decode them (state posteriors + Viterbi paths).

Four fits share one likelihood: Baum-Welch EM (``"em"``, the default), gradient ascent on the NNX
operator (``"gradient"``), and SVI (``"svi"``, a mean-field normal guide) or NUTS (``"nuts"``) on the
NumPyro model, started from an EM fit or from a start point ``init`` (e.g. a gradient fit's
parameters); their states are relabelled per draw, see :func:`diffbio_prob.models.hmm.relabel_states`.
EM and the gradient fit start from ``init`` too when given. Decoding uses the operator loaded with the
fitted (or posterior-mean) parameters; with posterior ``draws`` the state posteriors are averaged over
draws (parameter uncertainty included). States are always reported in a canonical order:
ascending probability of emitting ``order_symbol`` (the last symbol by default), so runs and methods
are comparable.

Genome tracks (:func:`fit_emission_hmm`, :func:`decode_emission_hmm`, ``run_hmm(emission=...)``): a
bedGraph read-depth track segmented into copy-number states with a Poisson, negative-binomial or Gaussian
emission (state 0 the lowest depth; segments = runs of one Viterbi state, :func:`bedgraph_segments`), and
ChromHMM binarized marks learnt with independent Bernoulli emissions and written in ChromHMM's files and
state order (:mod:`diffbio_prob.io.chromhmm`; on ChromHMM 1.27's own example fit the tables agree to 1e-6).
Both are Baum-Welch on the emission objects of :mod:`diffbio_prob.cores.hmm`.

Example:
    >>> import numpy as np
    >>> rolls = [np.array([0, 5, 5, 5, 1, 2, 5, 5, 3, 4] * 10)]
    >>> fit = fit_hmm(rolls, num_states=2, num_emissions=6, method="em", seed=0)
    >>> posteriors, paths = decode_hmm(fit.params, rolls)
    >>> list(paths.columns)[:3]
    ['sequence', 'length', 'log_likelihood']
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from diffbio_prob.cores.contract import HMM_SITES

__all__ = ["HMMFit", "fit_hmm", "decode_hmm", "hmm_log_likelihood", "run_hmm", "EmissionHMMFit", "fit_emission_hmm",
           "decode_emission_hmm", "bedgraph_segments", "check_hmm_input"]

_METHODS = ("em", "gradient", "svi", "nuts")
_SITES = (HMM_SITES.initial, HMM_SITES.transition, HMM_SITES.emission)


@dataclasses.dataclass
class HMMFit:
    """A fitted HMM.

    Attributes:
        params: ``{"initial_probs", "transition_probs", "emission_probs"}`` (canonical state order; for
            SVI and NUTS the posterior mean).
        method: ``"em"``, ``"gradient"``, ``"svi"`` or ``"nuts"``.
        log_likelihood: total log-likelihood of ``params`` on the training sequences.
        history: EM log-likelihood per iteration, or the gradient/SVI fit's loss per step (NUTS: the
            history of the EM fit it started from; empty when started from ``init``).
        result: the ``FitResult`` of the gradient, SVI or NUTS fit (SVI/NUTS draws relabelled to the
            canonical state order); None for EM.
        elapsed_s: wall time of :func:`fit_hmm` (JIT compilation included).
    """

    params: dict[str, np.ndarray]
    method: str
    log_likelihood: float
    history: np.ndarray
    result: Any = None
    elapsed_s: float = float("nan")


def _padded(sequences) -> tuple[np.ndarray, np.ndarray]:
    from diffbio_prob.inference.baum_welch import pad_sequences

    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        return sequences, np.full(sequences.shape[0], sequences.shape[1])
    if isinstance(sequences, np.ndarray) and sequences.ndim == 1:
        sequences = [sequences]
    if not isinstance(sequences, (list, tuple)) or not sequences:
        raise ValueError("sequences: expected a non-empty list of 1-D integer arrays")
    return pad_sequences(sequences)


def _canonical(params: Mapping[str, np.ndarray], order_symbol: int) -> dict[str, np.ndarray]:
    from diffbio_prob.models.hmm import relabel_states

    return relabel_states({k: np.asarray(v) for k, v in params.items()}, order_symbol)


def _total_log_likelihood(params, obs, lengths) -> float:
    import jax.numpy as jnp

    from diffbio_prob.operators.statistical.hmm import DifferentiableHMM, HMMConfig

    s, m = np.shape(params["emission_probs"])
    op = DifferentiableHMM(HMMConfig(num_states=int(s), num_emissions=int(m))).load_model_params(params)
    return float(jnp.sum(op.forward_pass(obs, lengths)))


def hmm_log_likelihood(params: Mapping[str, Any], sequences) -> float:
    """Total log-likelihood (states marginalised) of ``sequences`` under the probabilities ``params``.

    Args:
        params: ``{"initial_probs", "transition_probs", "emission_probs"}`` (e.g. ``HMMFit.params``).
        sequences: list of 1-D int arrays (``-1`` = missing) or a padded ``(B, T)`` array.

    Example:
        >>> p = {"initial_probs": np.array([1.0]), "transition_probs": np.array([[1.0]]),
        ...      "emission_probs": np.array([[0.5, 0.5]])}
        >>> round(hmm_log_likelihood(p, [np.array([0, 1, 1])]), 6) == round(float(3 * np.log(0.5)), 6)
        True
    """
    missing = [k for k in _SITES if k not in params]
    if missing:
        raise ValueError(f"params: missing keys {missing}")
    obs, lengths = _padded(sequences)
    return _total_log_likelihood({k: np.asarray(params[k], float) for k in _SITES}, obs, lengths)


def _start(init, num_states: int, num_emissions: int, seed: int) -> dict[str, np.ndarray]:
    """A complete start point: the sites ``init`` gives (checked), the others Baum-Welch's random start."""
    from diffbio_prob.inference.baum_welch import random_start

    start = random_start(num_states, num_emissions, seed)
    if init is None:
        return start
    if not isinstance(init, Mapping):
        raise TypeError(f"init: expected a dict keyed by site names, got {type(init).__name__}")
    unknown = [k for k in init if k not in _SITES]
    if unknown:
        raise ValueError(f"init: unknown keys {unknown} (expected some of {list(_SITES)})")
    for name, value in init.items():
        p = np.asarray(value, float)
        if p.shape != start[name].shape:
            raise ValueError(f"init: {name} expected shape {start[name].shape}, got {p.shape}")
        if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(-1), 1.0, atol=1e-6):
            raise ValueError(f"init: {name} must hold probability rows (non-negative, each summing to 1)")
        start[name] = p / p.sum(-1, keepdims=True)
    return start


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def fit_hmm(
    sequences,
    num_states: int,
    num_emissions: int | None = None,
    method: str = "em",
    *,
    seed: int = 0,
    init: Mapping[str, Any] | None = None,
    num_iters: int = 200,
    tol: float = 1e-4,
    restarts: int | None = None,
    num_steps: int = 500,
    learning_rate: float | None = None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    chain_method: str = "sequential",
    order_symbol: int = -1,
    progress: bool = False,
) -> HMMFit:
    """Fit a categorical HMM to sequences.

    Args:
        sequences: list of 1-D int arrays (``-1`` = missing), or a padded ``(B, T)`` array.
        num_states: S.
        num_emissions: M (default ``max + 1``).
        method: ``"em"`` (Baum-Welch, best of ``restarts`` random starts), ``"gradient"`` (Adam on the
            NNX operator for ``num_steps`` steps, from Baum-Welch's random start for ``seed``), ``"svi"``
            (a mean-field normal guide on :func:`diffbio_prob.models.hmm_model`, ``num_steps`` steps,
            ``num_samples`` draws from the guide) or ``"nuts"`` (NUTS on ``hmm_model``). SVI and NUTS
            start at ``init`` or else at the EM fit (best of ``restarts``); their draws are relabelled
            by ``order_symbol`` and ``params`` is the posterior mean.
        seed: random seed (random starts, SVI and NUTS).
        init: a start point ``{"initial_probs", "transition_probs", "emission_probs"}`` (any subset;
            missing sites come from Baum-Welch's random start for ``seed``), e.g. another fit's
            ``params``. EM runs once from it; the gradient fit starts at it; SVI and NUTS start at it
            (moved off the simplex's boundary) instead of at an EM fit.
        num_iters, tol: EM iterations (per restart) and its stopping tolerance (absolute improvement).
        restarts: EM random starts (default 3; 1 with ``init``, which allows no other value).
        num_steps: gradient or SVI steps.
        learning_rate: Adam's step size (default 0.05 for the gradient fit, 0.01 for SVI).
        num_warmup, num_samples, num_chains: NUTS (``num_samples`` per chain; for SVI the draws).
        chain_method: how NUTS runs its chains (``fit_nuts``'s ``chain_method``, ``"auto"`` included);
            checked for every method, used by ``"nuts"`` only.
        order_symbol: the emission symbol whose probability orders the states.
        progress: progress bars.

    Returns:
        :class:`HMMFit`.
    """
    import time

    started = time.perf_counter()
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    from diffbio_prob.inference.chains import check_chain_method

    check_chain_method(chain_method)  # before the EM start a NUTS fit waits for
    if restarts is None:
        restarts = 1 if init is not None else 3
    _check_count("restarts", restarts)
    if init is not None and restarts != 1:
        raise ValueError(f"restarts: a fit from init runs once, got restarts={restarts!r}")
    for name, value in (("num_steps", num_steps), ("num_samples", num_samples), ("num_chains", num_chains)):
        _check_count(name, value)
    _check_count("num_warmup", num_warmup, 0)
    if learning_rate is not None and not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    obs, lengths = _padded(sequences)
    if num_emissions is None:
        num_emissions = int(obs.max()) + 1
    if not -num_emissions <= order_symbol < num_emissions:
        raise ValueError(f"order_symbol: expected a symbol index in 0..{num_emissions - 1}, got {order_symbol}")
    start = _start(init, num_states, num_emissions, seed)

    def done(params, history, result=None, ll=None) -> HMMFit:
        ll = _total_log_likelihood(params, obs, lengths) if ll is None else ll
        return HMMFit(params, method, ll, np.asarray(history), result, time.perf_counter() - started)

    if method == "gradient":
        import optax
        from flax import nnx

        from diffbio_prob.inference import fit_gradient
        from diffbio_prob.operators.statistical.hmm import DifferentiableHMM, HMMConfig

        op = DifferentiableHMM(HMMConfig(num_states=num_states, num_emissions=num_emissions), rngs=nnx.Rngs(seed))
        op.load_model_params(start)
        data = {"observations": obs, "lengths": lengths}
        res = fit_gradient(op, data, optimizer=optax.adam(0.05 if learning_rate is None else learning_rate),
                           num_steps=num_steps, progress=progress)
        params = _canonical(op.to_model_params(), order_symbol)
        res = dataclasses.replace(res, params=params)
        return done(params, res.loss_history, res)

    history = np.empty(0)
    if method == "em" or init is None:
        from diffbio_prob.inference.baum_welch import baum_welch

        em = None
        for r in range(restarts):
            fit = baum_welch(obs, num_states, num_emissions, lengths=lengths, num_iters=num_iters, tol=tol,
                             init=start if init is not None else None, seed=seed + r)
            if em is None or fit.log_likelihood > em.log_likelihood:
                em = fit
        if method == "em":
            return done(_canonical(em.params, order_symbol), em.log_likelihood_history, ll=em.log_likelihood)
        start, history = em.params, em.log_likelihood_history

    from diffbio_prob.inference import fit_nuts, fit_svi
    from diffbio_prob.models.hmm import hmm_model, interior_params, relabel_states

    point = interior_params(_canonical(start, order_symbol))
    # one whole sequence goes to the model as (T,): the pointwise log-likelihood is then one scalar per draw
    data = (obs[0],) if obs.shape[0] == 1 and lengths[0] == obs.shape[1] else (obs, lengths)
    kw = dict(num_states=num_states, num_emissions=num_emissions, init_params=point, rng_key=seed,
              progress=progress)
    if method == "svi":
        import optax

        res = fit_svi(hmm_model, *data, num_steps=num_steps, num_samples=num_samples,
                      optimizer=optax.adam(0.01 if learning_rate is None else learning_rate), **kw)
        history = res.loss_history
    else:
        res = fit_nuts(hmm_model, *data, num_warmup=num_warmup, num_samples=num_samples,
                       num_chains=num_chains, chain_method=chain_method, **kw)
    samples = relabel_states(res.samples, order_symbol)
    mean = {k: samples[k].mean(axis=(0, 1)) for k in _SITES}
    # rows of a posterior mean of simplex draws sum to 1 up to rounding; renormalise that rounding away
    mean = {k: v / v.sum(-1, keepdims=True) for k, v in mean.items()}
    res = dataclasses.replace(res, samples=samples, params=mean)
    return done(mean, history, res)


def _averaged_posteriors(draws: Mapping[str, Any], obs, lengths, max_draws: int) -> np.ndarray:
    """Smoothed state posteriors ``(B, T, S)`` averaged over up to ``max_draws`` evenly spaced draws."""
    import jax
    import jax.numpy as jnp

    from diffbio_prob.cores import hmm as core

    missing = [k for k in _SITES if k not in draws]
    if missing:
        raise ValueError(f"draws: missing keys {missing}")
    flat = {k: np.asarray(draws[k], float) for k in _SITES}
    n = flat["emission_probs"].shape[0]
    if flat["emission_probs"].ndim != 3 or any(v.shape[0] != n for v in flat.values()):
        raise ValueError("draws: expected flat draws (n, ...) of every site, e.g. FitResult.flat_samples()")
    _check_count("max_draws", max_draws)
    pick = np.unique(np.linspace(0, n - 1, min(max_draws, n)).astype(int))
    obs_j, lens_j = jnp.asarray(obs, jnp.int32), jnp.asarray(lengths, jnp.int32)

    def smoothed(args):
        pi, a, b = args
        return core.categorical_posteriors_batch(core.HMMParams(jnp.log(pi), jnp.log(a)), jnp.log(b), obs_j, lens_j)[1]

    stacked = tuple(jnp.asarray(flat[k][pick]) for k in _SITES)
    return np.asarray(jax.lax.map(smoothed, stacked)).mean(0)


def decode_hmm(
    params: Mapping[str, np.ndarray],
    sequences,
    names: Sequence[str] | None = None,
    alphabet: Sequence[str] | None = None,
    *,
    draws: Mapping[str, Any] | None = None,
    max_draws: int = 100,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """State posteriors and Viterbi paths of each sequence under ``params``.

    Args:
        params: the model's probabilities (site names of :func:`diffbio_prob.models.hmm_model`).
        sequences: list of 1-D int arrays or a padded ``(B, T)`` array.
        names: sequence names (default ``seq1``...).
        alphabet: symbol names (default ``0..M-1``).
        draws: optional posterior draws ``{site: (n, ...)}`` (e.g. ``HMMFit.result.flat_samples()`` of an
            SVI or NUTS fit): the ``p_state`` columns are then the state posteriors averaged over up to
            ``max_draws`` evenly spaced draws (parameter uncertainty included) instead of the plug-in
            posteriors at ``params``. The Viterbi path and log-likelihoods stay those of ``params``.
        max_draws: how many draws to average.

    Returns:
        ``(posteriors, paths)``: ``posteriors`` has one row per position: ``sequence``, ``position``
        (1-based), ``symbol``, ``viterbi_state``, ``p_state0``...; ``paths`` has one row per sequence:
        ``sequence``, ``length``, ``log_likelihood``, ``viterbi_log_prob``, ``viterbi_path`` (states
        joined by commas).
    """
    from diffbio_prob.operators.statistical.hmm import DifferentiableHMM, HMMConfig

    obs, lengths = _padded(sequences)
    s, m = np.shape(params["emission_probs"])
    names = list(names) if names is not None else [f"seq{i + 1}" for i in range(len(lengths))]
    if len(names) != len(lengths):
        raise ValueError(f"names: expected {len(lengths)} names, got {len(names)}")
    alphabet = list(alphabet) if alphabet is not None else [str(i) for i in range(m)]
    if len(alphabet) != m:
        raise ValueError(f"alphabet: expected {m} symbols (emission_probs has {m} columns), got {len(alphabet)}")
    op = DifferentiableHMM(HMMConfig(num_states=int(s), num_emissions=int(m))).load_model_params(params)
    if draws is None:
        out, _, _ = op.apply({"observations": obs, "lengths": lengths}, {}, None)
        post, ll = np.asarray(out["state_posteriors"]), np.asarray(out["log_likelihood"])
    else:
        post = _averaged_posteriors(draws, obs, lengths, max_draws)
        ll = np.asarray(op.forward_pass(obs, lengths))
    path, vlp = (np.asarray(x) for x in op.viterbi(obs, lengths))

    valid = np.arange(obs.shape[1])[None, :] < lengths[:, None]
    b_idx, t_idx = np.nonzero(valid)
    symbols = np.asarray(alphabet + ["?"], dtype=object)[np.where(obs[b_idx, t_idx] >= 0, obs[b_idx, t_idx], m)]
    table = {
        "sequence": np.asarray(names, dtype=object)[b_idx],
        "position": t_idx + 1,
        "symbol": symbols,
        "viterbi_state": path[b_idx, t_idx],
    }
    for k in range(int(s)):
        table[f"p_state{k}"] = post[b_idx, t_idx, k]
    posteriors = pd.DataFrame(table)
    paths = pd.DataFrame(
        {
            "sequence": names,
            "length": lengths,
            "log_likelihood": ll,
            "viterbi_log_prob": vlp,
            "viterbi_path": [",".join(map(str, path[i, :n])) for i, n in enumerate(lengths)],
        }
    )
    return posteriors, paths


def run_hmm(
    input: str | Path | Sequence[str | Path],
    states: int,
    out: str | Path,
    *,
    emission: str = "categorical",
    bin_size: int = 200,
    alphabet: str | None = None,
    missing: str = "",
    fit: str = "em",
    fmt: str = "tsv",
    seed: int = 0,
    num_iters: int = 200,
    restarts: int = 3,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    chain_method: str = "sequential",
    quiet: bool = False,
) -> dict[str, Path]:
    """The ``diffbio-prob hmm`` command: read, fit, decode, write (every file atomically).

    ``emission="categorical"`` (symbol sequences) writes into ``out``: ``posteriors.<fmt>`` (per position),
    ``viterbi.<fmt>`` (per sequence), ``parameters.json`` (fitted probabilities, alphabet, log-likelihood,
    history) and, for SVI and NUTS, ``posterior_summary.<fmt>`` and ``posterior.nc`` (ArviZ netCDF).

    ``"poisson"``, ``"negative-binomial"`` or ``"gaussian"`` segment a bedGraph track (``input``: one file,
    split into bins of one width by :meth:`diffbio_prob.io.bedgraph.BedGraph.fixed_bins`; Baum-Welch only): ``segments.bed`` (BED6+3, see :func:`bedgraph_segments`), ``posteriors.<fmt>`` (per
    bin) and ``parameters.json``. ``"bernoulli"`` learns chromatin states from ChromHMM binarized files
    (``input``: files and/or folders; bins of ``bin_size`` bp): ChromHMM's ``<cell>_<K>_segments.bed``,
    ``emissions_<K>.txt``, ``transitions_<K>.txt`` (see :mod:`diffbio_prob.io.chromhmm`) and
    ``parameters.json``.

    ``num_warmup``, ``num_samples``, ``num_chains`` and ``chain_method`` are the NUTS settings of
    ``fit="nuts"`` (see :func:`fit_hmm`).

    Returns:
        ``{name: path}`` of the written files.
    """
    from diffbio_prob.io.atomic import atomic_path, atomic_write
    from diffbio_prob.io.sequences import read_sequences

    if fmt not in ("tsv", "csv"):
        raise ValueError(f"format: expected 'tsv' or 'csv', got {fmt!r}")
    if isinstance(states, bool) or not isinstance(states, (int, np.integer)) or states < 1:
        raise ValueError(f"states: expected a positive integer, got {states!r}")
    inputs = [input] if isinstance(input, (str, Path)) else list(input)
    check_hmm_input(inputs, emission)
    if emission != "bernoulli" and bin_size != 200:
        raise ValueError("bin_size: only used with emission 'bernoulli' (a bedGraph's lines are its bins)")
    _check_count("bin_size", bin_size)
    if emission != "categorical" and fit != "em":
        raise ValueError(f"fit: the {emission} emission is fitted by Baum-Welch only (fit='em'), got {fit!r}")
    if emission != "categorical" and (alphabet is not None or missing):
        raise ValueError(f"alphabet, missing: only used with categorical sequences, not the {emission} emission")
    from diffbio_prob.inference.chains import check_chain_method

    check_chain_method(chain_method)
    from diffbio_prob.io.atomic import check_output_path  # output paths checked before any work

    out = check_output_path(out, "out", "dir")
    if emission == "bernoulli":
        return _run_chromhmm(inputs, states, out, bin_size=bin_size, seed=seed, num_iters=num_iters,
                             restarts=restarts, quiet=quiet)
    if emission != "categorical":
        for name in track_output_names(fmt):
            check_output_path(out / name, "out", "file")
        return _run_track(inputs[0], states, out, emission, fmt=fmt, seed=seed, num_iters=num_iters,
                          restarts=restarts, quiet=quiet)
    input = inputs[0]
    for name in (f"posteriors.{fmt}", f"viterbi.{fmt}", "parameters.json"):
        check_output_path(out / name, "out", "file")
    seqs = read_sequences(input, alphabet, missing=missing)
    if not quiet:
        n = sum(len(s) for s in seqs.sequences)
        print(f"hmm: {len(seqs.sequences)} sequence(s), {n} symbols, alphabet {''.join(seqs.alphabet)}; fitting {fit}")
    result = fit_hmm(
        seqs.sequences, states, seqs.num_symbols, fit, seed=seed, num_iters=num_iters, restarts=restarts,
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains, chain_method=chain_method,
        progress=not quiet,
    )
    posteriors, paths = decode_hmm(result.params, seqs.sequences, seqs.names, seqs.alphabet)

    sep = "\t" if fmt == "tsv" else ","
    from diffbio_prob.io.atomic import writes_discarded

    if not writes_discarded():  # in a job of several processes only process 0 creates anything
        out.mkdir(parents=True, exist_ok=True)
    written = {}
    files = {"posteriors": posteriors, "viterbi": paths}
    if result.method in ("svi", "nuts"):
        summary = result.result.summary(var_names=["initial_probs", "transition_probs", "emission_probs"])
        files["posterior_summary"] = summary.reset_index().rename(columns={"index": "parameter"})
    for name, frame in files.items():
        path = out / f"{name}.{fmt}"
        with atomic_write(path) as fh:
            frame.to_csv(fh, sep=sep, index=False, float_format="%.6g")
        written[name] = path
    meta = {
        "method": result.method,
        "num_states": int(states),
        "alphabet": seqs.alphabet,
        "log_likelihood": result.log_likelihood,
        "state_order": f"ascending probability of emitting {seqs.alphabet[-1]!r}",
        **{k: np.asarray(v).tolist() for k, v in result.params.items()},
        "history": np.asarray(result.history).tolist(),
    }
    with atomic_write(out / "parameters.json") as fh:
        json.dump(meta, fh, indent=2)
    written["parameters"] = out / "parameters.json"
    if result.method in ("svi", "nuts"):
        with atomic_path(out / "posterior.nc") as tmp:
            result.result.save(tmp)
        written["posterior"] = out / "posterior.nc"
    if not quiet:
        print(f"hmm: log-likelihood {result.log_likelihood:.4f}; wrote {', '.join(str(p) for p in written.values())}")
    return written


# ------------------------------------------------------------------------------------------------
# Emission HMMs on genome tracks: read depth (bedGraph) -> copy-number segments, ChromHMM binarized
# marks -> chromatin states. One likelihood: the emission objects of cores.hmm and the core smoother.
# ------------------------------------------------------------------------------------------------
TRACK_EMISSIONS = ("poisson", "negative-binomial", "gaussian")
EMISSION_CHOICES = ("categorical", *TRACK_EMISSIONS, "bernoulli")


@dataclasses.dataclass
class EmissionHMMFit:
    """A Baum-Welch fit of an HMM with a non-categorical emission, states in the canonical order.

    Attributes:
        emission: the emission's name (``"poisson"``, ``"negative-binomial"``, ``"gaussian"``, ``"bernoulli"``).
        initial_probs: ``(S,)``; transition_probs: ``(S, S)``.
        emission_params: the emission's parameters (``rates``; ``means``, ``concentrations``; ``means``,
            ``scales``; ``probs``), leading axis the states.
        log_likelihood: total log-likelihood of the returned parameters.
        history: total log-likelihood before each iteration of the best restart, and of the result.
        converged: the last improvement was below ``tol``.
        order: ``order[new] = old``: the canonical order applied to the fitted states.
    """

    emission: str
    initial_probs: np.ndarray
    transition_probs: np.ndarray
    emission_params: dict[str, np.ndarray]
    log_likelihood: float
    history: np.ndarray
    converged: bool
    order: np.ndarray


def _emission(name: str):
    from diffbio_prob.cores.hmm import get_emission

    if name not in EMISSION_CHOICES[1:]:
        raise ValueError(f"emission: expected one of {EMISSION_CHOICES[1:]}, got {name!r}")
    return get_emission(name)


def _pad_tracks(em, observations: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``(T_b, *event)`` sequences, padded with the emission's missing value; and the lengths."""
    lengths = np.array([len(o) for o in observations], dtype=np.int64)
    event = np.shape(observations[0])[1:]
    fill, dtype = (-1, np.int64) if em.integer else (np.nan, np.float64)
    out = np.full((len(observations), int(lengths.max()), *event), fill, dtype=dtype)
    for b, o in enumerate(observations):
        out[b, : len(o)] = o
    return out, lengths


def _canonical_order(emission: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
    """``order[new] = old``: ascending mean level for depth tracks (state 0 the lowest), ChromHMM's
    ``Emission`` order for marks."""
    if emission == "bernoulli":
        from diffbio_prob.io.chromhmm import emission_order

        return emission_order(params["probs"])
    level = params["rates"] if emission == "poisson" else np.asarray(params["means"]).reshape(len(params["means"]), -1)[:, 0]
    return np.argsort(level, kind="stable")


def fit_emission_hmm(
    observations: Sequence[np.ndarray],
    num_states: int,
    emission: str,
    *,
    seed: int = 0,
    num_iters: int = 200,
    tol: float = 1e-4,
    restarts: int = 3,
) -> EmissionHMMFit:
    """Fit an HMM with a Poisson, negative-binomial, Gaussian or independent-Bernoulli emission by
    Baum-Welch (:func:`diffbio_prob.inference.baum_welch.baum_welch` with the emission), the best of
    ``restarts`` starts (sticky transitions, the emission's data-driven start; seeds ``seed + r``).

    Args:
        observations: one array per sequence: ``(T_b,)`` counts (-1 = missing) for Poisson / NB,
            ``(T_b,)`` or ``(T_b, D)`` reals (NaN = missing) for Gaussian, ``(T_b, D)`` 0/1 marks (-1 =
            missing) for Bernoulli.
        num_states: S.
        emission: ``"poisson"``, ``"negative-binomial"``, ``"gaussian"`` or ``"bernoulli"``.
        seed: the starts use seeds ``seed, seed + 1, ...``.
        num_iters, tol: iterations per start and the absolute log-likelihood change that stops them.
        restarts: starts.

    Returns:
        :class:`EmissionHMMFit`, states in the canonical order (ascending level; ChromHMM's order for marks).

    Example:
        >>> y = np.r_[np.random.default_rng(0).poisson(2, 60), np.random.default_rng(1).poisson(20, 60)]
        >>> fit = fit_emission_hmm([y], 2, "poisson", restarts=1)
        >>> [round(float(r)) for r in fit.emission_params["rates"]]
        [2, 20]
    """
    em = _emission(emission)
    _check_count("num_states", num_states)
    _check_count("num_iters", num_iters)
    _check_count("restarts", restarts)
    if not (isinstance(tol, (int, float)) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: expected a non-negative number, got {tol!r}")
    if isinstance(observations, np.ndarray) or not isinstance(observations, (list, tuple)) or not observations:
        raise ValueError("observations: expected a non-empty list of arrays, one per sequence")
    if emission == "gaussian":
        observations = [np.asarray(o, float).reshape(len(o), -1) for o in observations]
    checked = [em.check_observations(o, name=f"observations[{i}]") for i, o in enumerate(observations)]
    if len({c.shape[1:] for c in checked}) > 1:
        raise ValueError(f"observations: every sequence needs the same features, got {[c.shape[1:] for c in checked]}")
    obs, lengths = _pad_tracks(em, checked)
    if bool(np.all(np.asarray(em.missing_steps(obs)))):
        raise ValueError("observations: every step is missing")
    from diffbio_prob.inference.baum_welch import baum_welch

    best = None
    for r in range(restarts):
        fit = baum_welch(obs, num_states, lengths=lengths, emission=em, num_iters=num_iters, tol=tol, seed=seed + r)
        if best is None or fit.log_likelihood > best.log_likelihood:
            best = fit
    pi, a, params = best.initial_probs, best.transition_probs, best.emission_params
    history, converged = best.log_likelihood_history, best.converged
    order = _canonical_order(emission, params)
    return EmissionHMMFit(emission, pi[order], a[np.ix_(order, order)], {k: v[order] for k, v in params.items()},
                          float(history[-1]), history, converged, order)


def decode_emission_hmm(fit: EmissionHMMFit, observations: Sequence[np.ndarray]):
    """Smoothed state posteriors, Viterbi paths and log-likelihoods of each sequence under ``fit``.

    Returns:
        ``(posteriors, paths, log_likelihoods)``: lists of ``(T_b, S)`` and ``(T_b,)`` arrays, and ``(B,)``.
    """
    import jax.numpy as jnp

    from diffbio_prob.cores import hmm as core

    em = _emission(fit.emission)
    if fit.emission == "gaussian":
        observations = [np.asarray(o, float).reshape(len(o), -1) for o in observations]
    checked = [em.check_observations(o, name=f"observations[{i}]") for i, o in enumerate(observations)]
    obs, lengths = _pad_tracks(em, checked)
    params = {k: jnp.asarray(v) for k, v in fit.emission_params.items()}
    hp = core.HMMParams(jnp.log(jnp.asarray(fit.initial_probs)), jnp.log(jnp.asarray(fit.transition_probs)))
    ll = em.log_likelihoods(params, jnp.asarray(obs))
    lens = jnp.asarray(lengths, jnp.int32)
    post = core.smoother_batch(hp, ll, lens)
    path, _ = core.viterbi_batch(hp, ll, lens)
    smoothed, path = np.asarray(post.smoothed, float), np.asarray(path)
    return ([smoothed[b, :n] for b, n in enumerate(lengths)], [path[b, :n] for b, n in enumerate(lengths)],
            np.asarray(post.log_likelihood, float))


def bedgraph_segments(track, fit: EmissionHMMFit, posteriors, paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The segment table (BED6+3) and the per-bin table of a decoded bedGraph track.

    Segments are runs of one Viterbi state over adjacent bins (:func:`diffbio_prob.io.bedgraph.runs`):
    ``chrom, start, end, name`` (``state<k>``), ``score`` (``round(1000 * mean_posterior)``, BED's 0-1000),
    ``strand`` (``.``), ``bins``, ``mean_posterior`` (the mean over the segment's bins of p(state k | data))
    and ``mean_value`` (the track's mean over them). Bins: ``chrom, start, end, value, viterbi_state,
    p_state0...``.
    """
    from diffbio_prob.io.bedgraph import runs

    seg, bins = [], []
    s = fit.transition_probs.shape[0]
    for chrom, st, en, val, post, path in zip(track.chroms, track.starts, track.ends, track.values, posteriors, paths):
        r = runs(st, en, path)
        lo, hi = r[:, 0], r[:, 1]
        state = path[lo]
        p_own = post[np.arange(len(path)), path]
        csum = np.concatenate([[0.0], np.cumsum(p_own)])
        vsum = np.concatenate([[0.0], np.cumsum(val)])
        mean_p = (csum[hi] - csum[lo]) / (hi - lo)
        seg.append(pd.DataFrame({
            "chrom": chrom, "start": st[lo], "end": en[hi - 1], "name": [f"state{k}" for k in state],
            "score": np.rint(1000 * mean_p).astype(np.int64), "strand": ".", "bins": hi - lo,
            "mean_posterior": mean_p, "mean_value": (vsum[hi] - vsum[lo]) / (hi - lo),
        }))
        table = {"chrom": chrom, "start": st, "end": en, "value": val, "viterbi_state": path}
        table.update({f"p_state{k}": post[:, k] for k in range(s)})
        bins.append(pd.DataFrame(table))
    return pd.concat(seg, ignore_index=True), pd.concat(bins, ignore_index=True)


def _looks_like(path: Path) -> str | None:
    """``"bedgraph"``, ``"chromhmm"``, ``"fasta"`` or None (unknown, or unreadable: the reader reports it)
    from the first lines of a file."""
    import gzip
    import io
    import zlib

    from diffbio_prob.io.bedgraph import looks_like_bedgraph
    from diffbio_prob.io.chromhmm import looks_like_binarized

    with open(path, "rb") as fh:
        raw = fh.read(1 << 16)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(1 << 16)
        except (EOFError, OSError, zlib.error):
            return None
    try:
        lines = raw.decode("utf-8-sig").splitlines()[:20]
    except UnicodeDecodeError:
        return None
    if looks_like_binarized(lines):
        return "chromhmm"
    if looks_like_bedgraph(lines):
        return "bedgraph"
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    return "fasta" if first.startswith(">") else None


def check_hmm_input(inputs: Sequence[str | Path], emission: str) -> None:
    """The inputs suit ``emission``, told by their content before anything is read in full: sequences for
    categorical, one bedGraph for the depth emissions, ChromHMM binarized files or folders for bernoulli.
    An input that looks like none of these is left to its reader, whose error names the line.

    Raises:
        ValueError: ``"emission <name>: '<file>' looks like ...; use --emission ..."``.
    """
    if emission not in EMISSION_CHOICES:
        raise ValueError(f"emission: expected one of {EMISSION_CHOICES}, got {emission!r}")
    if emission != "bernoulli" and len(inputs) != 1:
        raise ValueError(f"input: --emission {emission} reads one file, got {len(inputs)}")
    looks = {"bedgraph": "a bedGraph track (chrom start end value)", "chromhmm": "a ChromHMM binarized file",
             "folder": "a folder", "fasta": "a FASTA file"}
    use = {"bedgraph": f"use --emission {' | '.join(TRACK_EMISSIONS)}", "chromhmm": "use --emission bernoulli",
           "folder": "use --emission bernoulli (a folder of ChromHMM binarized files)",
           "fasta": "use --emission categorical"}
    wrong = {"categorical": ("bedgraph", "chromhmm", "folder"), "bernoulli": ("bedgraph", "fasta")}.get(
        emission, ("chromhmm", "folder", "fasta"))
    for p in map(Path, inputs):
        kind = "folder" if p.is_dir() else _looks_like(p) if p.is_file() else None
        if kind in wrong:
            raise ValueError(f"emission {emission}: {str(p)!r} looks like {looks[kind]}; {use[kind]}")


def _write_table(frame: pd.DataFrame, path: Path, sep: str) -> None:
    from diffbio_prob.io.atomic import atomic_write

    with atomic_write(path) as fh:
        frame.to_csv(fh, sep=sep, index=False, float_format="%.6g")


def _write_json(meta: dict, path: Path) -> None:
    from diffbio_prob.io.atomic import atomic_write

    with atomic_write(path) as fh:
        json.dump(meta, fh, indent=2)


def _fit_meta(fit: EmissionHMMFit, order_text: str, **extra) -> dict:
    return {
        "emission": fit.emission, "num_states": int(len(fit.initial_probs)), "log_likelihood": fit.log_likelihood,
        "converged": bool(fit.converged), "state_order": order_text, **extra,
        "initial_probs": fit.initial_probs.tolist(), "transition_probs": fit.transition_probs.tolist(),
        "emission_params": {k: np.asarray(v).tolist() for k, v in fit.emission_params.items()},
        "history": np.asarray(fit.history).tolist(),
    }


def track_output_names(fmt: str = "tsv") -> tuple[str, ...]:
    """The files ``run_hmm`` writes for a bedGraph input."""
    return ("segments.bed", f"posteriors.{fmt}", "parameters.json")


def chromhmm_output_names(num_states: int, cells: Sequence[str] = ()) -> tuple[str, ...]:
    """The files ``run_hmm`` writes for ChromHMM input (ChromHMM's names, and ``parameters.json``)."""
    return (*(f"{c}_{num_states}_segments.bed" for c in dict.fromkeys(cells)), f"emissions_{num_states}.txt",
            f"transitions_{num_states}.txt", "parameters.json")


def _run_track(input, states, out: Path, emission, *, fmt, seed, num_iters, restarts, quiet) -> dict[str, Path]:
    from diffbio_prob.io.bedgraph import read_bedgraph, write_bed

    # one HMM step per bin of one width: runs of equal bins written as one line are split again
    track = read_bedgraph(input, values="real" if emission == "gaussian" else "counts").fixed_bins()
    if not quiet:
        print(f"hmm: {len(track.chroms)} chromosome(s), {track.num_bins} bins; Baum-Welch, {emission} emission, "
              f"{states} states")
    values = track.values if emission == "gaussian" else [v.astype(np.int64) for v in track.values]
    fit = fit_emission_hmm(values, states, emission, seed=seed, num_iters=num_iters, restarts=restarts)
    posteriors, paths, _ = decode_emission_hmm(fit, values)
    segments, bins = bedgraph_segments(track, fit, posteriors, paths)
    from diffbio_prob.io.atomic import writes_discarded

    if not writes_discarded():  # in a job of several processes only process 0 creates anything
        out.mkdir(parents=True, exist_ok=True)
    names = track_output_names(fmt)
    written = {"segments": out / names[0], "posteriors": out / names[1], "parameters": out / names[2]}
    write_bed(written["segments"], segments["chrom"], segments["start"], segments["end"],
              {c: segments[c].to_numpy() for c in segments.columns[3:]},
              track=f'name="{emission} HMM" description="{states}-state segmentation of {Path(input).name}"')
    _write_table(bins, written["posteriors"], "\t" if fmt == "tsv" else ",")
    _write_json(_fit_meta(fit, "state0 has the lowest mean level (rate / mean), ascending",
                          chromosomes=track.chroms, input=str(input)), written["parameters"])
    if not quiet:
        print(f"hmm: {len(segments)} segments, log-likelihood {fit.log_likelihood:.4f}; wrote "
              f"{', '.join(str(p) for p in written.values())}")
    return written


def _run_chromhmm(inputs, states, out: Path, *, bin_size, seed, num_iters, restarts, quiet) -> dict[str, Path]:
    from diffbio_prob.io.atomic import check_output_path
    from diffbio_prob.io.chromhmm import MISSING, read_binarized, write_emissions, write_segments, write_transitions

    data = read_binarized(inputs)
    names = chromhmm_output_names(states, data.cells)
    for name in names:
        check_output_path(out / name, "out", "file")
    marks = [np.where(x == MISSING, -1, x).astype(np.int64) for x in data.data]
    if not quiet:
        print(f"hmm: {len(marks)} file(s), {sum(len(m) for m in marks)} bins of {bin_size} bp, marks "
              f"{', '.join(data.marks)}; Baum-Welch, {states} states")
    fit = fit_emission_hmm(marks, states, "bernoulli", seed=seed, num_iters=num_iters, restarts=restarts)
    posteriors, _, _ = decode_emission_hmm(fit, marks)
    from diffbio_prob.io.atomic import writes_discarded

    if not writes_discarded():  # in a job of several processes only process 0 creates anything
        out.mkdir(parents=True, exist_ok=True)
    written = {}
    for cell in dict.fromkeys(data.cells):
        idx = [i for i, c in enumerate(data.cells) if c == cell]
        # ChromHMM's segmentation: the state of highest posterior per bin (MakeSegmentation's default)
        path = out / f"{cell}_{states}_segments.bed"
        write_segments(path, [data.chroms[i] for i in idx], [posteriors[i].argmax(1) for i in idx], bin_size)
        written[f"segments_{cell}"] = path
    written["emissions"] = write_emissions(out / f"emissions_{states}.txt", data.marks, fit.emission_params["probs"])
    written["transitions"] = write_transitions(out / f"transitions_{states}.txt", fit.transition_probs)
    written["parameters"] = out / "parameters.json"
    _write_json(_fit_meta(fit, "ChromHMM's Emission order (greedy correlation chain of the emission rows); "
                          "state k is E<k+1>", marks=data.marks, bin_size=int(bin_size), files=data.sources),
                written["parameters"])
    if not quiet:
        print(f"hmm: log-likelihood {fit.log_likelihood:.4f}; wrote {', '.join(str(p) for p in written.values())}")
    return written
