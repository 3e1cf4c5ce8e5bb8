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

__all__ = ["HMMFit", "fit_hmm", "decode_hmm", "hmm_log_likelihood", "run_hmm"]

_METHODS = ("em", "gradient", "svi", "nuts")
_SITES = ("initial_probs", "transition_probs", "emission_probs")


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
        >>> round(hmm_log_likelihood(p, [np.array([0, 1, 1])]), 6) == round(3 * np.log(0.5), 6)
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
        order_symbol: the emission symbol whose probability orders the states.
        progress: progress bars.

    Returns:
        :class:`HMMFit`.
    """
    import time

    started = time.perf_counter()
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
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
                       num_chains=num_chains, **kw)
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
    input: str | Path,
    states: int,
    out: str | Path,
    *,
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
    quiet: bool = False,
) -> dict[str, Path]:
    """The ``diffbio-prob hmm`` command: read, fit, decode, write (every file atomically).

    Writes into ``out``: ``posteriors.<fmt>`` (per position), ``viterbi.<fmt>`` (per sequence),
    ``parameters.json`` (fitted probabilities, alphabet, log-likelihood, history) and, for SVI and NUTS,
    ``posterior_summary.<fmt>`` and ``posterior.nc`` (ArviZ netCDF).

    Returns:
        ``{name: path}`` of the written files.
    """
    from diffbio_prob.io.atomic import atomic_path, atomic_write
    from diffbio_prob.io.sequences import read_sequences

    if fmt not in ("tsv", "csv"):
        raise ValueError(f"format: expected 'tsv' or 'csv', got {fmt!r}")
    if isinstance(states, bool) or not isinstance(states, (int, np.integer)) or states < 1:
        raise ValueError(f"states: expected a positive integer, got {states!r}")
    from diffbio_prob.io.atomic import check_output_path  # output paths checked before any work

    out = check_output_path(out, "out", "dir")
    for name in (f"posteriors.{fmt}", f"viterbi.{fmt}", "parameters.json"):
        check_output_path(out / name, "out", "file")
    seqs = read_sequences(input, alphabet, missing=missing)
    if not quiet:
        n = sum(len(s) for s in seqs.sequences)
        print(f"hmm: {len(seqs.sequences)} sequence(s), {n} symbols, alphabet {''.join(seqs.alphabet)}; fitting {fit}")
    result = fit_hmm(
        seqs.sequences, states, seqs.num_symbols, fit, seed=seed, num_iters=num_iters, restarts=restarts,
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains, progress=not quiet,
    )
    posteriors, paths = decode_hmm(result.params, seqs.sequences, seqs.names, seqs.alphabet)

    sep = "\t" if fmt == "tsv" else ","
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
