"""Fit a categorical HMM to symbol sequences and decode them (state posteriors + Viterbi paths).

Three fits share one likelihood: Baum-Welch EM (``"em"``, the default), gradient ascent on the NNX
operator (``"gradient"``), and NUTS on the NumPyro model started from an EM fit (``"nuts"``; the states
are relabelled per draw, see :func:`diffbio_prob.models.hmm.relabel_states`). Decoding uses the operator
loaded with the fitted (or posterior-mean) parameters. States are always reported in a canonical order:
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

__all__ = ["HMMFit", "fit_hmm", "decode_hmm", "run_hmm"]

_METHODS = ("em", "gradient", "nuts")


@dataclasses.dataclass
class HMMFit:
    """A fitted HMM.

    Attributes:
        params: ``{"initial_probs", "transition_probs", "emission_probs"}`` (canonical state order).
        method: ``"em"``, ``"gradient"`` or ``"nuts"``.
        log_likelihood: total log-likelihood of ``params`` on the training sequences.
        history: EM log-likelihood per iteration, or the gradient fit's loss per step.
        result: the NUTS ``FitResult`` (relabelled draws) or the gradient ``FitResult``; None for EM.
    """

    params: dict[str, np.ndarray]
    method: str
    log_likelihood: float
    history: np.ndarray
    result: Any = None


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

    s, m = params["emission_probs"].shape
    op = DifferentiableHMM(HMMConfig(num_states=s, num_emissions=m)).load_model_params(params)
    return float(jnp.sum(op.forward_pass(obs, lengths)))


def fit_hmm(
    sequences,
    num_states: int,
    num_emissions: int | None = None,
    method: str = "em",
    *,
    seed: int = 0,
    num_iters: int = 200,
    restarts: int = 3,
    num_steps: int = 500,
    learning_rate: float = 0.05,
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
            NNX operator for ``num_steps`` steps, from Baum-Welch's random start for ``seed``) or
            ``"nuts"`` (NUTS on :func:`diffbio_prob.models.hmm_model`, every chain started from the EM
            fit; draws relabelled by ``order_symbol``).
        seed: random seed.
        num_iters: EM iterations (per restart).
        restarts: EM random starts.
        num_steps, learning_rate: gradient fit.
        num_warmup, num_samples, num_chains: NUTS.
        order_symbol: the emission symbol whose probability orders the states.
        progress: progress bars.

    Returns:
        :class:`HMMFit`.
    """
    from diffbio_prob.inference.baum_welch import baum_welch, random_start

    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 1:
        raise ValueError(f"restarts: expected a positive integer, got {restarts!r}")
    obs, lengths = _padded(sequences)
    if num_emissions is None:
        num_emissions = int(obs.max()) + 1
    if not -num_emissions <= order_symbol < num_emissions:
        raise ValueError(f"order_symbol: expected a symbol index in 0..{num_emissions - 1}, got {order_symbol}")

    if method == "gradient":
        import optax
        from flax import nnx

        from diffbio_prob.inference import fit_gradient
        from diffbio_prob.operators.statistical.hmm import DifferentiableHMM, HMMConfig

        op = DifferentiableHMM(HMMConfig(num_states=num_states, num_emissions=num_emissions), rngs=nnx.Rngs(seed))
        op.load_model_params(random_start(num_states, num_emissions, seed))  # Baum-Welch's random start
        data = {"observations": obs, "lengths": lengths}
        res = fit_gradient(op, data, optimizer=optax.adam(learning_rate), num_steps=num_steps, progress=progress)
        params = _canonical(op.to_model_params(), order_symbol)
        ll = _total_log_likelihood(params, obs, lengths)
        return HMMFit(params, "gradient", ll, np.asarray(res.loss_history), res)

    em = None
    for r in range(restarts):
        fit = baum_welch(obs, num_states, num_emissions, lengths=lengths, num_iters=num_iters, seed=seed + r)
        if em is None or fit.log_likelihood > em.log_likelihood:
            em = fit
    if method == "em":
        return HMMFit(_canonical(em.params, order_symbol), "em", em.log_likelihood, em.log_likelihood_history)

    from diffbio_prob.inference import fit_nuts
    from diffbio_prob.models.hmm import hmm_model, interior_params, relabel_states

    init = interior_params(_canonical(em.params, order_symbol))
    res = fit_nuts(
        hmm_model, obs, lengths, num_states=num_states, num_emissions=num_emissions, init_params=init,
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains, rng_key=seed, progress=progress,
    )
    res = dataclasses.replace(res, samples=relabel_states(res.samples, order_symbol))
    mean = {k: v.mean(axis=(0, 1)) for k, v in res.samples.items() if k in init}
    # rows of a posterior mean of simplex draws sum to 1 up to rounding; renormalise that rounding away
    mean = {k: v / v.sum(-1, keepdims=True) for k, v in mean.items()}
    res = dataclasses.replace(res, params=mean)
    ll = _total_log_likelihood(mean, obs, lengths)
    return HMMFit(mean, "nuts", ll, em.log_likelihood_history, res)


def decode_hmm(
    params: Mapping[str, np.ndarray],
    sequences,
    names: Sequence[str] | None = None,
    alphabet: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """State posteriors and Viterbi paths of each sequence under ``params``.

    Args:
        params: the model's probabilities (site names of :func:`diffbio_prob.models.hmm_model`).
        sequences: list of 1-D int arrays or a padded ``(B, T)`` array.
        names: sequence names (default ``seq1``...).
        alphabet: symbol names (default ``0..M-1``).

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
    out, _, _ = op.apply({"observations": obs, "lengths": lengths}, {}, None)
    post, ll = np.asarray(out["state_posteriors"]), np.asarray(out["log_likelihood"])
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
    ``parameters.json`` (fitted probabilities, alphabet, log-likelihood, history) and, for NUTS,
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
    if result.method == "nuts":
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
    if result.method == "nuts":
        with atomic_path(out / "posterior.nc") as tmp:
            result.result.save(tmp)
        written["posterior"] = out / "posterior.nc"
    if not quiet:
        print(f"hmm: log-likelihood {result.log_likelihood:.4f}; wrote {', '.join(str(p) for p in written.values())}")
    return written
