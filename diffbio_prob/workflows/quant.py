"""salmon-style transcript quantification, end to end: equivalence classes -> EM/VBEM -> ``quant.sf`` (or
salmon's whole output folder, which tximport and fishpond read), and posterior uncertainty of the counts
by NUTS, SVI (on :func:`diffbio_prob.models.em_model`), a bootstrap over class counts (salmon's
``--numBootstraps``: multinomial resampling, EM on each draw, vmapped) or salmon's Gibbs sampler
(``--numGibbsSamples``, :func:`gibbs_counts`).

Example:
    >>> from diffbio_prob.io.salmon import load_sample_data
    >>> d = load_sample_data()
    >>> res = quantify(d.table, d.effective_lengths, algorithm="vbem")
    >>> round(float(res.num_reads.sum()))
    10000
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffbio_prob.cores import em as core
from diffbio_prob.io.eqclasses import EqClassTable, read_eq_classes, read_lengths
from diffbio_prob.io.salmon import salmon_tpm

__all__ = [
    "QuantResult",
    "PosteriorSummary",
    "to_eq_classes",
    "quantify",
    "bootstrap_counts",
    "gibbs_counts",
    "gibbs_prior",
    "posterior",
    "log_likelihood",
    "run_quant",
    "quantify_many",
    "bootstrap_counts_many",
    "gibbs_counts_many",
    "sample_names",
    "run_quant_many",
]


@dataclasses.dataclass
class QuantResult:
    """A point estimate per transcript (salmon's ``quant.sf`` columns) and how it was reached.

    ``algorithm="gradient"``: ``n_iterations`` is the number of unrolled EM steps, ``converged`` is False
    (a fixed number of Adam steps), ``objective`` the log-likelihood and ``fit`` the gradient
    ``FitResult`` (``loss_history``, ``elapsed_s``); ``fit`` is None otherwise."""

    names: list[str]
    lengths: np.ndarray
    effective_lengths: np.ndarray
    tpm: np.ndarray
    num_reads: np.ndarray
    abundances: np.ndarray
    algorithm: str
    n_iterations: int
    n_evaluations: int
    converged: bool
    objective: float
    fit: object = None

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {"Length": self.lengths, "EffectiveLength": self.effective_lengths, "TPM": self.tpm,
             "NumReads": self.num_reads},
            index=pd.Index(self.names, name="Name"),
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``quant.sf`` atomically."""
        from diffbio_prob.io.salmon import write_quant_sf

        return write_quant_sf(path, self.names, self.lengths, self.effective_lengths, self.tpm, self.num_reads)


@dataclasses.dataclass
class PosteriorSummary:
    """Per-transcript posterior of the estimated counts (NumReads).

    Attributes:
        names: transcript names.
        draws: ``(n_draws, T)`` draws of the counts (chains flattened).
        method: ``"nuts"``, ``"svi"``, ``"bootstrap"`` or ``"gibbs"``.
        interval: probability of the central interval (``lower``/``upper``).
        fit: the ``FitResult`` (NUTS/SVI) for ArviZ (``fit.to_arviz()``), or ``None``.
    """

    names: list[str]
    draws: np.ndarray
    method: str
    interval: float = 0.95
    fit: object = None

    @property
    def mean(self) -> np.ndarray:
        return self.draws.mean(0)

    @property
    def sd(self) -> np.ndarray:
        return self.draws.std(0, ddof=1)

    @property
    def lower(self) -> np.ndarray:
        return np.quantile(self.draws, (1 - self.interval) / 2, axis=0)

    @property
    def upper(self) -> np.ndarray:
        return np.quantile(self.draws, 1 - (1 - self.interval) / 2, axis=0)

    def to_frame(self):
        import pandas as pd

        lo, hi = f"q{(1 - self.interval) / 2 * 100:g}", f"q{(1 + self.interval) / 2 * 100:g}"
        return pd.DataFrame(
            {"mean": self.mean, "sd": self.sd, lo: self.lower, hi: self.upper},
            index=pd.Index(self.names, name="Name"),
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the table (Name, mean, sd, interval ends) as TSV, atomically."""
        from diffbio_prob.io.atomic import atomic_write

        frame = self.to_frame()
        with atomic_write(path) as fh:
            frame.to_csv(fh, sep="\t", float_format="%.6g")
        return Path(path)


def to_eq_classes(table: EqClassTable) -> core.EquivalenceClasses:
    """The core structure of a table read from a file (classes with no fragments left out)."""
    if not isinstance(table, EqClassTable):
        raise TypeError(f"table: expected an EqClassTable (diffbio_prob.io), got {type(table).__name__}")
    table = table.drop_empty()
    if table.n_classes == 0:
        raise ValueError(f"{table.source or 'table'}: no equivalence class has fragments")
    eqc = core.make_eq_classes(table.class_ids, table.transcript_ids, table.counts, table.n_transcripts,
                               weights=table.weights, weights_include_length=table.weights_include_length)
    core.validate(eqc, name=table.source or "equivalence_classes")
    return eqc


def _check_lengths(effective_lengths, n: int, name: str = "effective_lengths") -> np.ndarray:
    try:
        eff = np.asarray(effective_lengths, float)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected {n} numbers, got {type(effective_lengths).__name__}") from None
    if eff.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {eff.shape}")
    if not np.all(np.isfinite(eff)) or np.any(eff <= 0):
        raise ValueError(f"{name}: must be finite and positive")
    return eff


def quantify(
    table: EqClassTable,
    effective_lengths: Sequence[float],
    *,
    lengths: Sequence[float] | None = None,
    algorithm: str = "vbem",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    squarem: bool = False,
    min_iter: int = 100,
    max_iter: int = 10_000,
    rel_tol: float = core.REL_DIFF_TOLERANCE,
    num_steps: int = 200,
    unrolled_steps: int = 10,
    learning_rate: float = 0.05,
    progress: bool = False,
) -> QuantResult:
    """EM or VBEM to salmon's convergence rule; salmon's defaults (VBEM, prior 0.01 per transcript).

    ``algorithm="gradient"`` is the differentiable counterpart: the NNX operator
    :class:`~diffbio_prob.operators.statistical.DifferentiableEMQuantifier` runs ``unrolled_steps`` EM
    steps from a learnable start (softmax logits, uniform at first), and Adam (``num_steps`` steps of
    size ``learning_rate``) trains that start so that the unrolled EM reaches the highest likelihood
    (gradients through EM). ``prior``, ``squarem``, ``min_iter``, ``max_iter`` and ``rel_tol`` are EM's
    and VBEM's alone.

    Args:
        table: equivalence classes (``diffbio_prob.io.read_eq_classes``).
        effective_lengths: ``(T,)`` in the table's transcript order.
        lengths: transcript lengths for ``quant.sf``'s ``Length`` (default: effective lengths rounded
            down, as salmon's ``--eqclasses`` mode writes).
        algorithm, prior, per_nucleotide_prior, squarem, min_iter, max_iter, rel_tol: see
            :func:`diffbio_prob.cores.em.em`; ``algorithm`` may also be ``"gradient"`` (above).
        num_steps, unrolled_steps, learning_rate, progress: the gradient fit (Adam steps, EM steps
            unrolled, step size, progress bar).
    """
    eqc = to_eq_classes(table)
    eff = _check_lengths(effective_lengths, eqc.n_transcripts)
    if lengths is not None:
        _check_lengths(lengths, eqc.n_transcripts, "lengths")
    # the one prior check (core.check_prior, shared with core.em and the EM operator), before any fit
    core.check_prior(prior, eqc.n_transcripts, eff, per_nucleotide_prior, total_counts=float(np.sum(table.counts)),
                     dtype=eqc.counts.dtype)
    L = np.floor(eff) if lengths is None else np.asarray(lengths, float)
    if algorithm == "gradient":
        return _quantify_gradient(table, eqc, eff, L, num_steps, unrolled_steps, learning_rate, progress)
    res = core.em(eqc, jnp.asarray(eff, eqc.counts.dtype), algorithm=algorithm, prior=prior,
                  per_nucleotide_prior=per_nucleotide_prior, squarem=squarem, min_iter=min_iter,
                  max_iter=max_iter, rel_tol=rel_tol)
    counts = np.asarray(res.counts, float)
    if not np.all(np.isfinite(counts)):
        raise FloatingPointError("quantify: EM produced non-finite counts; check the weights and lengths")
    out = core.quant_outputs(jnp.asarray(counts), jnp.asarray(eff))
    return QuantResult(
        names=list(table.names), lengths=L, effective_lengths=eff, tpm=salmon_tpm(counts, eff),
        num_reads=counts, abundances=np.asarray(out.abundances, float), algorithm=algorithm,
        n_iterations=int(res.n_iterations), n_evaluations=int(res.n_evaluations), converged=bool(res.converged),
        objective=float(res.objective),
    )


def _quantify_gradient(table, eqc, eff, L, num_steps, unrolled_steps, learning_rate, progress) -> QuantResult:
    """``quantify(algorithm="gradient")``: Adam on the operator's start through ``unrolled_steps`` EM steps."""
    import optax

    from diffbio_prob.inference import fit_gradient
    from diffbio_prob.operators.statistical import DifferentiableEMQuantifier, EMQuantifierConfig

    for name, value in (("num_steps", num_steps), ("unrolled_steps", unrolled_steps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    lengths = jnp.asarray(eff, eqc.counts.dtype)
    data = {"equivalence_classes": eqc, "counts": eqc.counts, "effective_lengths": lengths}
    op = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=eqc.n_transcripts,
                                                       n_iterations=int(unrolled_steps)))
    fit = fit_gradient(op, data, optimizer=optax.adam(learning_rate), num_steps=num_steps, progress=progress)
    out = op.apply(data, {}, None)[0]
    counts = np.asarray(out["estimated_counts"], float)
    if not np.all(np.isfinite(counts)):
        raise FloatingPointError("quantify: the gradient fit produced non-finite counts")
    q = core.quant_outputs(jnp.asarray(counts), jnp.asarray(eff))
    return QuantResult(
        names=list(table.names), lengths=L, effective_lengths=eff, tpm=salmon_tpm(counts, eff), num_reads=counts,
        abundances=np.asarray(q.abundances, float), algorithm="gradient", n_iterations=int(unrolled_steps),
        n_evaluations=int(unrolled_steps), converged=False,
        objective=log_likelihood(eqc, eff, counts), fit=fit,
    )


def log_likelihood(table_or_eqc, effective_lengths, counts) -> float:
    """Log-likelihood of the equivalence classes at the read fractions ``counts / sum(counts)``.

    Args:
        table_or_eqc: an ``EqClassTable`` or the core's ``EquivalenceClasses``.
        effective_lengths: ``(T,)``.
        counts: ``(T,)`` estimated counts (or abundances: only their proportions matter).
    """
    eqc = table_or_eqc if isinstance(table_or_eqc, core.EquivalenceClasses) else to_eq_classes(table_or_eqc)
    eff = _check_lengths(effective_lengths, eqc.n_transcripts)
    c = np.asarray(counts, float)
    if c.shape != (eqc.n_transcripts,) or not np.all(np.isfinite(c)) or np.any(c < 0) or c.sum() <= 0:
        raise ValueError(f"counts: expected {eqc.n_transcripts} finite non-negative values with a positive sum")
    dtype = eqc.counts.dtype
    return float(core.log_likelihood(eqc, jnp.asarray(eff, dtype), jnp.asarray(c / c.sum(), dtype)))


def _resample_classes(class_counts, n_draws: int, seed: int) -> np.ndarray:
    """salmon's bootstrap draw: ``(n_draws, C)`` class counts ``Multinomial(N, n_c / N)`` from ``seed``."""
    counts = np.asarray(class_counts, float)
    return np.random.default_rng(seed).multinomial(int(round(counts.sum())), counts / counts.sum(), size=n_draws)


def bootstrap_counts(
    table_or_eqc,
    effective_lengths,
    *,
    n_draws: int = 30,
    algorithm: str = "vbem",
    prior: float | None = None,
    seed: int = 0,
    min_iter: int = 50,
    batch_size: int | None = None,
    per_nucleotide_prior: bool = False,
) -> np.ndarray:
    """salmon's bootstrap: class counts resampled ``Multinomial(N, n_c / N)``, EM/VBEM rerun on each from
    the uniform start (``min_iter`` 50 as in salmon's bootstraps), truncated. Returns ``(n_draws, T)``.

    The core's ``while_loop`` EM is vmapped over all draws (``batch_size=None`` and at most 2^25
    draw-entries), or mapped with ``jax.lax.map`` in batches of ``batch_size`` to bound memory."""
    eqc = table_or_eqc if isinstance(table_or_eqc, core.EquivalenceClasses) else to_eq_classes(table_or_eqc)
    if isinstance(n_draws, (bool, np.bool_)) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"n_draws: expected a positive integer, got {n_draws!r}")
    if batch_size is not None and (isinstance(batch_size, (bool, np.bool_))
                                   or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")
    eff = jnp.asarray(_check_lengths(effective_lengths, eqc.n_transcripts), eqc.counts.dtype)
    # before the draws are traced
    core.check_prior(prior, eqc.n_transcripts, eff, per_nucleotide_prior, dtype=eqc.counts.dtype)
    resampled = _resample_classes(eqc.counts, n_draws, seed).astype(np.asarray(eqc.counts).dtype)

    def one(c):
        return core.em(eqc.replace(counts=c), eff, algorithm=algorithm, prior=prior,
                       per_nucleotide_prior=per_nucleotide_prior, min_iter=min_iter).counts

    resampled = jnp.asarray(resampled)
    if batch_size is None and n_draws * eqc.n_entries <= 2**25:
        draws = jax.vmap(one)(resampled)  # all draws in one vectorised while_loop
    else:  # bounded memory: batches of batch_size (default 1) through lax.map
        draws = jax.lax.map(one, resampled, batch_size=batch_size)
    return np.asarray(draws, float)


def gibbs_prior(n_transcripts: int, effective_lengths=None, *, algorithm: str = "vbem", prior: float | None = None,
                per_nucleotide_prior: bool = False) -> np.ndarray:
    """salmon's Gibbs prior (``populatePriorAlphasGibbs_``): after VBEM ``max(prior, 1)`` per transcript
    (``prior`` default 0.01, so 1), or ``max(prior, 1e-3) * max(1, l_t)`` per nucleotide (default 1e-5,
    so 1e-3); after EM 1e-3 per transcript."""
    if algorithm == "em":
        return np.full(n_transcripts, 1e-3)
    if per_nucleotide_prior:
        value = max(core.PER_NUCLEOTIDE_PRIOR if prior is None else float(prior), 1e-3)
        return value * np.maximum(1.0, np.asarray(effective_lengths, float))
    return np.full(n_transcripts, max(core.PER_TRANSCRIPT_PRIOR if prior is None else float(prior), 1.0))


def gibbs_counts(
    table_or_eqc,
    effective_lengths,
    *,
    n_draws: int = 30,
    thinning_factor: int = 16,
    init=None,
    algorithm: str = "vbem",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    num_chains: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """salmon's ``--numGibbsSamples``: :func:`diffbio_prob.cores.em.gibbs_sample` from the EM/VBEM estimate
    ``init`` (computed here when not given), with salmon's prior (:func:`gibbs_prior`) and chains.
    Returns ``(n_draws, T)`` float64 draws, each summing to the number of fragments."""
    eqc = table_or_eqc if isinstance(table_or_eqc, core.EquivalenceClasses) else to_eq_classes(table_or_eqc)
    for name, value in (("n_draws", n_draws), ("thinning_factor", thinning_factor), ("seed", seed)):
        low = 0 if name == "seed" else 1
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected a {'non-negative' if name == 'seed' else 'positive'} integer, "
                             f"got {value!r}")
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")
    core.check_prior(prior)
    eff = _check_lengths(effective_lengths, eqc.n_transcripts)
    lengths = jnp.asarray(eff, eqc.counts.dtype)
    if init is None:
        init = core.em(eqc, lengths, algorithm=algorithm, prior=prior, per_nucleotide_prior=per_nucleotide_prior).counts
    p = gibbs_prior(eqc.n_transcripts, eff, algorithm=algorithm, prior=prior, per_nucleotide_prior=per_nucleotide_prior)
    draws = core.gibbs_sample(eqc, lengths, jnp.asarray(init, eqc.counts.dtype), jax.random.PRNGKey(int(seed)),
                              num_samples=int(n_draws), thinning_factor=int(thinning_factor), prior=p,
                              num_chains=num_chains)
    return _to_total(np.asarray(draws, np.float64), float(np.sum(np.asarray(eqc.counts, np.float64))))


def _to_total(draws: np.ndarray, total: float) -> np.ndarray:
    """Each row rescaled in float64 to sum to ``total`` (the working float type's rounding removed)."""
    sums = draws.sum(axis=1, keepdims=True)
    if not np.all(np.isfinite(draws)) or np.any(sums <= 0):
        raise FloatingPointError("draws: a replicate is non-finite or all zero")
    return draws * (total / sums)


def posterior(
    table: EqClassTable,
    effective_lengths,
    method: str = "nuts",
    *,
    num_samples: int | None = None,
    num_warmup: int = 500,
    num_chains: int = 2,
    chain_method: str = "sequential",
    num_steps: int = 3000,
    concentration: float = 1.0,
    algorithm: str = "vbem",
    seed: int = 0,
    progress: bool = False,
    thinning_factor: int = 16,
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    init=None,
) -> PosteriorSummary:
    """Posterior of the counts per transcript by NUTS or SVI on ``em_model``, or by salmon's bootstrap or
    Gibbs sampler (:func:`gibbs_counts`, ``thinning_factor`` rounds per draw).

    NUTS starts every chain at the EM estimate (``init_params``); SVI uses a mean-field normal guide in
    the Dirichlet's unconstrained space. Draws are of ``estimated_counts`` (NumReads).

    Args:
        table, effective_lengths: the data (see :func:`quantify`).
        method: ``"nuts"``, ``"svi"``, ``"bootstrap"`` or ``"gibbs"``.
        num_samples: draws (default 500 per NUTS chain, 1000 for SVI, 30 bootstraps or Gibbs draws).
        num_warmup, num_chains, chain_method: NUTS settings (``chain_method`` as ``fit_nuts``'s, ``"auto"``
            included; checked for every method, used by NUTS only); num_steps: SVI steps.
        concentration: the Dirichlet prior of ``em_model``.
        algorithm: what the bootstrap reruns (``"em"`` or ``"vbem"``), and the Gibbs sampler's prior rule.
        seed: random seed; progress: show progress bars.
        thinning_factor: Gibbs rounds per draw; prior, per_nucleotide_prior: the VBEM prior (bootstrap,
            Gibbs); init: the Gibbs chains' start (default the EM/VBEM estimate).
    """
    if method not in ("nuts", "svi", "bootstrap", "gibbs"):
        raise ValueError(f"method: expected 'nuts', 'svi', 'bootstrap' or 'gibbs', got {method!r}")
    if num_samples is not None and (isinstance(num_samples, (bool, np.bool_))
                                    or not isinstance(num_samples, (int, np.integer)) or num_samples < 1):
        raise ValueError(f"num_samples: expected a positive integer or None (the default), got {num_samples!r}")
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")
    _check_chain_method(chain_method)
    eqc = to_eq_classes(table)
    eff = _check_lengths(effective_lengths, eqc.n_transcripts)
    names = list(table.names)
    if method == "bootstrap":
        draws = bootstrap_counts(eqc, eff, n_draws=num_samples or 30, algorithm=algorithm, seed=seed, prior=prior,
                                 per_nucleotide_prior=per_nucleotide_prior)
        return PosteriorSummary(names, draws, "bootstrap")
    if method == "gibbs":
        draws = gibbs_counts(eqc, eff, n_draws=num_samples or 30, thinning_factor=thinning_factor, init=init,
                             algorithm=algorithm, prior=prior, per_nucleotide_prior=per_nucleotide_prior, seed=seed)
        return PosteriorSummary(names, draws, "gibbs")

    from diffbio_prob.inference import fit_nuts, fit_svi
    from diffbio_prob.models import em_model

    lengths = jnp.asarray(eff, eqc.counts.dtype)
    point = np.asarray(core.em(eqc, lengths, algorithm="em").counts, float)
    init = (point + 1e-6 * point.sum() / point.size) / (point.sum() * (1 + 1e-6))  # off the simplex's boundary
    if method == "nuts":
        fit = fit_nuts(em_model, eqc, lengths, concentration=concentration, num_warmup=num_warmup,
                       num_samples=num_samples or 500, num_chains=num_chains, chain_method=chain_method, rng_key=seed,
                       progress=progress, init_params={"abundances": init})
    else:
        fit = fit_svi(em_model, eqc, lengths, concentration=concentration, num_steps=num_steps,
                      num_samples=num_samples or 1000, rng_key=seed, progress=progress,
                      init_params={"abundances": init})
    draws = np.asarray(fit.samples["estimated_counts"], float)
    return PosteriorSummary(names, draws.reshape(-1, draws.shape[-1]), method, fit=fit)


# --- several samples on one transcriptome, one compiled program ----------------------------------------------
#: class / entry counts are padded up to 1/8 of their power of two, so samples of similar size share a program
_BUCKET_FRACTION = 8


def _bucket(n: int) -> int:
    unit = max(1, (1 << max(int(n).bit_length() - 1, 0)) // _BUCKET_FRACTION)
    return -(-int(n) // unit) * unit


def _as_eqcs(tables_or_eqcs, name: str = "tables") -> tuple[list[core.EquivalenceClasses], list[str], list[str]]:
    """``(eqcs, transcript names, labels)``: every sample checked, on one transcriptome in one order."""
    items = list(tables_or_eqcs) if isinstance(tables_or_eqcs, (list, tuple)) else None
    if not items:
        raise TypeError(f"{name}: expected a non-empty list of EqClassTable (or EquivalenceClasses), got "
                        f"{type(tables_or_eqcs).__name__}")
    labels = [getattr(t, "source", "") or f"{name}[{k}]" for k, t in enumerate(items)]
    if all(isinstance(t, EqClassTable) for t in items):
        first = items[0]
        for t, label in zip(items[1:], labels[1:]):
            if list(t.names) != list(first.names):
                same = sorted(t.names) == sorted(first.names)
                raise ValueError(
                    f"{label}: its transcripts differ from {labels[0]}'s" + (
                        " (the same names in another order: read it with the first sample's order)" if same else
                        f" ({t.n_transcripts} against {first.n_transcripts}); samples quantified together need "
                        "one transcriptome"))
        return [to_eq_classes(t) for t in items], list(first.names), labels
    if all(isinstance(t, core.EquivalenceClasses) for t in items):
        for e, label in zip(items, labels):
            core.validate(e, name=label)
        return items, [], labels
    raise TypeError(f"{name}: expected EqClassTable or EquivalenceClasses items, not a mixture")


def _per_sample(values, n_samples: int, n: int, name: str) -> np.ndarray:
    """``(K, T)`` from one ``(T,)`` vector for all samples or one per sample, each checked."""
    try:
        arr = np.asarray(values, float)
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.ndim == 1:
        arr = np.broadcast_to(_check_lengths(arr, n, name), (n_samples, n))
    elif arr is not None and arr.ndim == 2 and arr.shape[0] == n_samples:
        arr = np.stack([_check_lengths(a, n, f"{name}[{k}]") for k, a in enumerate(arr)])
    else:
        raise ValueError(f"{name}: expected ({n},) for every sample or ({n_samples}, {n}), one per sample")
    return np.array(arr)


def _one_kind_of_weights(eqcs, effs):
    """Plain classes get ``1/l`` folded into their weights when some sample's weights already hold it, so
    that one program serves all (the affinities ``w/l`` are the same numbers)."""
    if len({e.weights_include_length for e in eqcs}) < 2:
        return eqcs
    out = []
    for e, l in zip(eqcs, effs):
        if not e.weights_include_length:
            w = np.asarray(e.weights, np.float64) / l[np.asarray(e.transcript_ids)]
            e = dataclasses.replace(e, weights=jnp.asarray(w, e.weights.dtype), weights_include_length=True)
        out.append(e)
    return out


def _stack(eqcs, n_dev: int = 1):
    """The padded stack (bucketed sizes; samples repeated up to a multiple of ``n_dev``) and ``K``."""
    K = len(eqcs)
    rows = eqcs + [eqcs[0]] * (-K % n_dev)  # a repeated real sample converges with the others: no NaN rows
    stacked = core.stack_eq_classes(rows, n_classes=_bucket(max(e.n_classes for e in eqcs) + 1),
                                    n_entries=_bucket(max(e.n_entries for e in eqcs)))
    return stacked, K


def _samples_per_step(batch_size, n_samples: int) -> int | None:
    """``"auto"``: all samples vmapped on an accelerator; one at a time (``lax.map``) on CPU, where the
    vmapped scatters and the lock step (every sample iterates until the slowest has converged) made the
    program 1.8x slower than mapping (``bench/em.py --many``: 16 samples 9.4 s vmapped, 5.3 s mapped)."""
    if batch_size == "auto":
        return None if jax.default_backend() != "cpu" or n_samples == 1 else 1
    if batch_size is not None:
        _positive("batch_size", batch_size)
    return batch_size


def _seeds(seed, seeds, n_samples: int) -> list[int]:
    if seeds is None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        return [int(seed) + k for k in range(n_samples)]
    seeds = list(seeds)
    if len(seeds) != n_samples or any(isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer))
                                      or s < 0 for s in seeds):
        raise ValueError(f"seeds: expected {n_samples} non-negative integers, got {seeds!r}")
    return [int(s) for s in seeds]


def quantify_many(
    tables: Sequence[EqClassTable],
    effective_lengths,
    *,
    lengths=None,
    algorithm: str = "vbem",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    squarem: bool = False,
    min_iter: int = 100,
    max_iter: int = 10_000,
    rel_tol: float = core.REL_DIFF_TOLERANCE,
    batch_size: int | str | None = "auto",
    shard: bool = True,
) -> list[QuantResult]:
    """:func:`quantify` for several samples on one transcriptome in one compiled program.

    The samples' classes are padded to one bucketed size (zero-count classes, zero-weight entries:
    :func:`diffbio_prob.cores.em.stack_eq_classes`) and EM/VBEM runs vmapped over them
    (:func:`diffbio_prob.cores.em.em_batch`); with several local devices the sample axis is split over
    them (``diffbio_prob.parallel``'s one-axis mesh). Each sample stops by salmon's rule where it
    would stop alone, so every result equals :func:`quantify` on that sample, to rounding.

    Args:
        tables: ``K`` equivalence-class tables with the same transcript names in the same order.
        effective_lengths: ``(T,)`` for all samples, or ``(K, T)`` (salmon estimates them per sample).
        lengths: ``quant.sf``'s ``Length``: ``None`` (effective lengths rounded down), ``(T,)`` or ``(K, T)``.
        batch_size: samples per vmapped step of a ``lax.map`` (``None``: all at once; ``"auto"``: all at
            once on an accelerator or split over several devices, one at a time on one CPU).
        shard: split the samples over the local devices when there are several.
        the rest: as in :func:`quantify` (EM and VBEM only; no ``"gradient"``).

    Returns:
        One :class:`QuantResult` per sample, in order.

    Example:
        >>> from diffbio_prob.io.salmon import load_sample_data
        >>> d = load_sample_data()
        >>> a, b = quantify_many([d.table, d.table], d.effective_lengths)
        >>> bool(np.allclose(a.num_reads, b.num_reads))
        True
    """
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem' for several samples, got {algorithm!r}")
    eqcs, names, labels = _as_eqcs(tables)
    if not names:
        raise TypeError("tables: expected EqClassTable items (quant.sf needs transcript names)")
    K, T = len(eqcs), eqcs[0].n_transcripts
    effs = _per_sample(effective_lengths, K, T, "effective_lengths")
    Ls = np.floor(effs) if lengths is None else _per_sample(lengths, K, T, "lengths")
    for e, t, l, label in zip(eqcs, tables, effs, labels):
        core.check_prior(prior, T, l, per_nucleotide_prior, total_counts=float(np.sum(t.counts)), dtype=e.counts.dtype)
        core.validate(e, l, name=label)
    from diffbio_prob.parallel import batch_mesh, gather, place

    mesh = batch_mesh(shard)
    n_dev = 1 if mesh is None else mesh.size
    batch_size = None if mesh is not None and batch_size == "auto" else _samples_per_step(batch_size, K)
    stacked, _ = _stack(_one_kind_of_weights(eqcs, effs), n_dev)
    rows = np.concatenate([effs, np.repeat(effs[:1], stacked.counts.shape[0] - K, axis=0)])
    # The counts stay whole on every device: em_batch reads them on the host (its prior check), which a
    # global array spread over several processes does not allow; the classes and entries are split.
    stacked = place(mesh, stacked).replace(counts=stacked.counts)
    rows = np.asarray(rows, np.asarray(stacked.counts).dtype)
    res = core.em_batch(stacked, rows, algorithm=algorithm, prior=prior, per_nucleotide_prior=per_nucleotide_prior,
                        squarem=squarem, min_iter=min_iter, max_iter=max_iter, rel_tol=rel_tol, batch_size=batch_size)
    res = gather(res)  # numpy on every process, also when the samples were split over several
    counts_all = np.asarray(res.counts, float)
    out = []
    for k in range(K):
        counts, eff = counts_all[k], effs[k]
        if not np.all(np.isfinite(counts)):
            raise FloatingPointError(f"quantify: {labels[k]}: EM produced non-finite counts; check the weights and "
                                     "lengths")
        q = core.quant_outputs(jnp.asarray(counts), jnp.asarray(eff))
        out.append(QuantResult(
            names=list(names), lengths=Ls[k], effective_lengths=eff, tpm=salmon_tpm(counts, eff), num_reads=counts,
            abundances=np.asarray(q.abundances, float), algorithm=algorithm,
            n_iterations=int(res.n_iterations[k]), n_evaluations=int(res.n_evaluations[k]),
            converged=bool(res.converged[k]), objective=float(res.objective[k])))
    return out


def bootstrap_counts_many(
    tables_or_eqcs,
    effective_lengths,
    *,
    n_draws: int = 30,
    algorithm: str = "vbem",
    prior: float | None = None,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    min_iter: int = 50,
    batch_size: int | str | None = "auto",
    per_nucleotide_prior: bool = False,
) -> list[np.ndarray]:
    """:func:`bootstrap_counts` for several samples in one program (vmapped over samples and draws).

    Sample ``k`` resamples with ``seeds[k]`` (default ``seed + k``), so its draws are
    ``bootstrap_counts(sample_k, ..., seed=seeds[k])``, to rounding. ``batch_size`` samples go through
    at a time (as in :func:`quantify_many`; ``None``: all, or as many as keep the draws under 2^25
    entries). Returns ``K`` ``(n_draws, T)``."""
    _positive("n_draws", n_draws, allow_none=False)
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")
    eqcs, _, labels = _as_eqcs(tables_or_eqcs, "tables_or_eqcs")
    K, T = len(eqcs), eqcs[0].n_transcripts
    batch_size = _samples_per_step(batch_size, K)
    sample_seeds = _seeds(seed, seeds, K)
    effs = _per_sample(effective_lengths, K, T, "effective_lengths")
    for e, l in zip(eqcs, effs):
        core.check_prior(prior, T, l, per_nucleotide_prior, dtype=e.counts.dtype)
    stacked, _ = _stack(_one_kind_of_weights(eqcs, effs))
    C = stacked.counts.shape[1]
    dtype = np.asarray(stacked.counts).dtype
    resampled = np.zeros((K, n_draws, C), dtype)
    for k, (e, s) in enumerate(zip(eqcs, sample_seeds)):  # bootstrap_counts' draws, sample by sample
        resampled[k, :, : e.n_classes] = _resample_classes(e.counts, n_draws, s)
    if batch_size is None and K * n_draws * stacked.class_ids.shape[1] > 2**25:
        batch_size = max(1, 2**25 // (n_draws * stacked.class_ids.shape[1]))
    res = core.em_batch(stacked, effs, algorithm=algorithm, prior=prior, per_nucleotide_prior=per_nucleotide_prior,
                        counts=resampled, min_iter=min_iter, batch_size=batch_size)
    draws = np.asarray(res.counts, float)
    return [draws[k] for k in range(K)]


def gibbs_counts_many(
    tables_or_eqcs,
    effective_lengths,
    *,
    n_draws: int = 30,
    thinning_factor: int = 16,
    init=None,
    algorithm: str = "vbem",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    num_chains: int | None = None,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """:func:`gibbs_counts` for several samples in one program (vmapped over samples and chains:
    :func:`diffbio_prob.cores.em.gibbs_sample_batch`).

    Sample ``k`` uses the key of ``seeds[k]`` (default ``seed + k``) and starts at ``init[k]`` (default
    :func:`quantify_many`'s estimate), so its draws are ``gibbs_counts(sample_k, ..., init=init[k],
    seed=seeds[k])``, to rounding. Returns ``K`` ``(n_draws, T)`` float64 arrays summing to each sample's
    fragments."""
    for name, value in (("n_draws", n_draws), ("thinning_factor", thinning_factor)):
        _positive(name, value, allow_none=False)
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")
    core.check_prior(prior)
    eqcs, _, labels = _as_eqcs(tables_or_eqcs, "tables_or_eqcs")
    K, T = len(eqcs), eqcs[0].n_transcripts
    sample_seeds = _seeds(seed, seeds, K)
    effs = _per_sample(effective_lengths, K, T, "effective_lengths")
    eqcs = _one_kind_of_weights(eqcs, effs)
    dtype = eqcs[0].counts.dtype
    if init is None:
        stacked, _ = _stack(eqcs)
        init = core.em_batch(stacked, effs, algorithm=algorithm, prior=prior,
                             per_nucleotide_prior=per_nucleotide_prior).counts
    init = np.asarray(init, float)
    if init.shape != (K, T):
        raise ValueError(f"init: expected shape ({K}, {T}), one start per sample, got {init.shape}")
    priors = np.stack([gibbs_prior(T, l, algorithm=algorithm, prior=prior, per_nucleotide_prior=per_nucleotide_prior)
                       for l in effs])
    c_pad = _bucket(max(e.n_classes for e in eqcs) + 1)
    draws = core.gibbs_sample_batch(eqcs, jnp.asarray(effs, dtype), jnp.asarray(init, dtype),
                                    [jax.random.PRNGKey(s) for s in sample_seeds], num_samples=int(n_draws),
                                    thinning_factor=int(thinning_factor), prior=jnp.asarray(priors, dtype),
                                    num_chains=num_chains, n_classes=c_pad,
                                    n_entries=_bucket(max(e.n_entries for e in eqcs)))
    draws = np.asarray(draws, np.float64)
    return [_to_total(draws[k], float(np.sum(np.asarray(e.counts, np.float64)))) for k, e in enumerate(eqcs)]


#: ``meta_info.json`` fields taken from the input's own salmon run (the ``meta_info.json`` beside its
#: ``eq_classes.txt.gz``) when that run has the same number of targets: they describe the reads and the
#: index, which the quantification from the classes does not change.
INHERITED_META = (
    "num_libraries", "library_types", "frag_dist_length", "frag_length_mean", "frag_length_sd", "seq_bias_correct",
    "gc_bias_correct", "num_bias_bins", "mapping_type", "keep_duplicates", "num_decoy_targets", "length_classes",
    "index_seq_hash", "index_name_hash", "index_seq_hash512", "index_name_hash512", "index_decoy_seq_hash",
    "index_decoy_name_hash", "num_processed",
)


def _inherited_meta(eq_classes, n_transcripts: int, num_mapped: float) -> dict:
    from diffbio_prob.io.base import FormatError
    from diffbio_prob.io.salmon import _read_json

    path = Path(eq_classes).parent / "meta_info.json"
    if not path.is_file():
        return {}
    try:
        meta = _read_json(path)
    except (FormatError, OSError):
        return {}
    if meta.get("num_valid_targets", meta.get("num_targets")) != n_transcripts:
        return {}
    out = {k: meta[k] for k in INHERITED_META if k in meta}
    processed = out.get("num_processed")
    if not isinstance(processed, (int, float)) or isinstance(processed, bool) or processed < num_mapped:
        out.pop("num_processed", None)
    return out


def _fld_moments(fld) -> dict:
    from diffbio_prob.io.salmon import read_fld

    m = read_fld(fld) if isinstance(fld, (str, os.PathLike)) else np.asarray(fld, float)
    x = np.arange(m.size)
    mean = float((x * m).sum() / m.sum())
    return {"frag_dist_length": int(m.size), "frag_length_mean": mean,
            "frag_length_sd": float(np.sqrt(((x - mean) ** 2 * m).sum() / m.sum()))}


def _salmon_dir_files(out_dir) -> dict[str, Path]:
    d = Path(out_dir)
    return {"quant.sf": d / "quant.sf", "cmd_info.json": d / "cmd_info.json",
            "meta_info.json": d / "aux_info" / "meta_info.json",
            "bootstraps.gz": d / "aux_info" / "bootstrap" / "bootstraps.gz",
            "names.tsv.gz": d / "aux_info" / "bootstrap" / "names.tsv.gz"}


def _positive(name, value, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def _check_run_choices(algorithm, posterior_method, chain_method) -> None:
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")
    if posterior_method not in (None, "nuts", "svi", "bootstrap", "gibbs"):
        raise ValueError(f"posterior: expected 'nuts', 'svi', 'bootstrap' or 'gibbs', got {posterior_method!r}")
    _check_chain_method(chain_method)


def _check_chain_method(chain_method) -> None:
    # the default needs no look-up: the registry's import (the inference package) would add ~40 ms to
    # every quant run that draws nothing by NUTS
    if chain_method != "sequential":
        from diffbio_prob.inference.chains import check_chain_method

        check_chain_method(chain_method)


def _draw_method(posterior_method, num_samples, num_bootstraps, num_gibbs_samples, thinning_factor, posterior_out):
    """``(method, n_draws)`` from run_quant's three ways to draw replicates (at most one)."""
    for name, value in (("num_samples", num_samples), ("num_bootstraps", num_bootstraps),
                        ("num_gibbs_samples", num_gibbs_samples), ("thinning_factor", thinning_factor)):
        _positive(name, value, allow_none=name != "thinning_factor")
    chosen = [n for n, v in (("num_bootstraps", num_bootstraps), ("num_gibbs_samples", num_gibbs_samples),
                             ("posterior_method", posterior_method)) if v is not None]
    if len(chosen) > 1:
        raise ValueError(f"{chosen[1]}: give one way to draw replicates, not {' and '.join(chosen)}")
    method, n_draws = posterior_method, num_samples
    if num_bootstraps is not None:
        method, n_draws = "bootstrap", num_bootstraps
    elif num_gibbs_samples is not None:
        method, n_draws = "gibbs", num_gibbs_samples
    if num_samples is not None and posterior_method is None:
        raise ValueError("num_samples: only used with posterior_method")
    if posterior_out is not None and method is None:
        raise ValueError("posterior_out: only used with draws (posterior_method, num_bootstraps, num_gibbs_samples)")
    return method, n_draws


def _check_salmon_dir(out_dir) -> None:
    from diffbio_prob.io.atomic import check_output_path

    check_output_path(out_dir, "out_dir", "dir")
    for folder in (Path(out_dir) / "aux_info", Path(out_dir) / "aux_info" / "bootstrap"):
        check_output_path(folder, "out_dir", "dir")
    for path in _salmon_dir_files(out_dir).values():
        check_output_path(path, "out_dir", "file")


def _read_input(eq_classes, lengths, ec_counts, transcripts, fld, length_formula, names=None):
    """``(table, effective lengths, transcript lengths or None)`` of one sample; with ``names`` the table is put
    in that transcript order (a different set of transcripts is a ``ValueError`` naming the file)."""
    table = read_eq_classes(eq_classes, counts=ec_counts, transcripts=transcripts)
    if names is not None:
        table = _in_order(table, names)
    tx_lengths = None
    if lengths is not None:
        lt = read_lengths(lengths, fld=fld, formula=length_formula, names=table.names)
        eff, tx_lengths = lt.effective_lengths, lt.lengths
    elif table.lengths is not None:
        if fld is not None:
            raise ValueError("fld: needs --lengths (transcript lengths); the eq-class file's lengths are effective")
        eff = table.lengths
    else:
        raise ValueError(f"lengths: {eq_classes} carries no effective lengths; give --lengths (quant.sf, "
                         "name<TAB>efflen table, or transcript lengths with --fld)")
    return table, eff, tx_lengths


def _in_order(table: EqClassTable, names: Sequence[str]) -> EqClassTable:
    """``table`` with its transcripts in the order ``names`` (the same set, or a ``ValueError``)."""
    if list(table.names) == list(names):
        return table
    src = table.source or "table"
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in table.names if n not in index]
    extra = [n for n in names if n not in set(table.names)]
    if missing or extra or len(table.names) != len(names):
        what = (f"{len(missing)} transcript(s) the first sample lacks, e.g. {missing[:3]}" if missing
                else f"lacks {len(extra)} of the first sample's transcripts, e.g. {extra[:3]}")
        raise ValueError(f"{src}: not the first sample's transcriptome ({len(table.names)} transcripts against "
                         f"{len(names)}; {what}); samples quantified together need the same transcripts")
    perm = np.array([index[n] for n in table.names], np.int64)
    lengths = None
    if table.lengths is not None:
        lengths = np.empty_like(np.asarray(table.lengths, float))
        lengths[perm] = table.lengths
    return dataclasses.replace(table, names=list(names), transcript_ids=perm[table.transcript_ids], lengths=lengths)


def _write_sample_dir(out_dir, eq_classes, table, result, post, *, lengths, ec_counts, transcripts, fld, algorithm,
                      method, n_draws, thinning_factor, seed, command, start) -> None:
    from diffbio_prob.io.salmon import write_salmon_dir

    total = float(np.sum(table.counts))
    meta = _inherited_meta(eq_classes, table.n_transcripts, total)
    if fld is not None:
        meta.update(_fld_moments(fld))
    meta["num_eq_classes"] = int(table.drop_empty().n_classes)
    processed = meta.pop("num_processed", None)
    libs = meta.pop("library_types", ["A"])
    mean, sd = meta.pop("frag_length_mean", None), meta.pop("frag_length_sd", None)
    meta.pop("num_libraries", None)
    cmd = {"eqclasses": str(eq_classes)}
    for key, value in (("lengths", lengths), ("ecCounts", ec_counts), ("transcripts", transcripts), ("fld", fld)):
        if value is not None:
            cmd[key] = str(value)
    cmd["algorithm"] = algorithm
    if method == "bootstrap":
        cmd["numBootstraps"] = str(n_draws or 30)
    elif method == "gibbs":
        cmd.update({"numGibbsSamples": str(n_draws or 30), "thinningFactor": str(thinning_factor)})
    elif method is not None:
        cmd["posterior"] = method
        if n_draws is not None:
            cmd["numSamples"] = str(n_draws)
    cmd["seed"] = str(seed)
    cmd["output"] = str(out_dir)
    cmd.update(command or {})
    write_salmon_dir(
        out_dir, result.names, result.lengths, result.effective_lengths, result.num_reads, tpm=result.tpm,
        draws=None if post is None else post.draws, samp_type="none" if post is None else post.method,
        opt_type="vb" if algorithm == "vbem" else "em", num_mapped=total, num_processed=processed,
        num_eq_classes=meta.pop("num_eq_classes"), library_types=libs, frag_length_mean=mean,
        frag_length_sd=sd, cmd_info=cmd, meta=meta, start_time=start)


def run_quant(
    eq_classes: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    lengths: str | os.PathLike | None = None,
    ec_counts: str | os.PathLike | None = None,
    transcripts: str | os.PathLike | None = None,
    fld: str | os.PathLike | None = None,
    length_formula: str = "salmon",
    algorithm: str = "vbem",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    squarem: bool = False,
    min_iter: int = 100,
    posterior_method: str | None = None,
    num_samples: int | None = None,
    posterior_out: str | os.PathLike | None = None,
    num_bootstraps: int | None = None,
    num_gibbs_samples: int | None = None,
    thinning_factor: int = 16,
    seed: int = 0,
    quiet: bool = False,
    command: dict | None = None,
    chain_method: str = "sequential",
) -> tuple[QuantResult, PosteriorSummary | None]:
    """Read -> quantify -> write ``quant.sf`` (and the draws); what ``diffbio-prob quant`` runs.

    ``out`` writes one ``quant.sf``, and with draws their summary table (``posterior_out``, default
    ``out`` with suffix ``.posterior.tsv``). ``out_dir`` writes salmon's layout instead
    (:func:`diffbio_prob.io.salmon.write_salmon_dir`: ``quant.sf``, ``cmd_info.json``,
    ``aux_info/meta_info.json``, the draws as ``aux_info/bootstrap/bootstraps.gz`` + ``names.tsv.gz``),
    which tximport reads with its inferential replicates; the table then only if ``posterior_out`` is given.

    The draws: ``num_bootstraps`` (salmon's bootstrap), ``num_gibbs_samples`` with ``thinning_factor``
    (salmon's Gibbs sampler) or ``posterior_method`` (``"nuts"``, ``"svi"``, ``"bootstrap"``, ``"gibbs"``)
    with ``num_samples``: at most one of the three. Each replicate sums to the number of fragments.
    ``chain_method``: how NUTS runs its chains (see :func:`posterior`). Several samples at once:
    :func:`run_quant_many`.

    Every argument and input is read and checked before anything is written; outputs are written atomically.
    """
    _check_run_choices(algorithm, posterior_method, chain_method)
    if (out is None) == (out_dir is None):
        raise ValueError("out: give exactly one of out (a quant.sf file) and out_dir (a salmon output folder)")
    method, n_draws = _draw_method(posterior_method, num_samples, num_bootstraps, num_gibbs_samples, thinning_factor,
                                   posterior_out)
    from diffbio_prob.io.atomic import check_output_path  # output paths checked before any work

    post_path = None
    if out is not None:
        check_output_path(out, "out", "file")
        if method is not None:
            post_path = Path(posterior_out) if posterior_out else Path(out).with_suffix(".posterior.tsv")
    else:
        _check_salmon_dir(out_dir)
        post_path = Path(posterior_out) if posterior_out else None
    if post_path is not None:
        check_output_path(post_path, "posterior_out", "file")
    import time

    start = time.time()
    table, eff, tx_lengths = _read_input(eq_classes, lengths, ec_counts, transcripts, fld, length_formula)
    result = quantify(table, eff, lengths=tx_lengths, algorithm=algorithm, prior=prior,
                      per_nucleotide_prior=per_nucleotide_prior, squarem=squarem, min_iter=min_iter)
    total = float(np.sum(table.counts))
    post = None
    if method is not None:
        post = posterior(table, eff, method, num_samples=n_draws, algorithm=algorithm, seed=seed,
                         chain_method=chain_method, progress=not quiet, thinning_factor=thinning_factor, prior=prior,
                         per_nucleotide_prior=per_nucleotide_prior,
                         init=result.num_reads if method == "gibbs" else None)
        post.draws = _to_total(np.asarray(post.draws, np.float64), total)
    if out is not None:
        result.write(out)
    else:
        _write_sample_dir(out_dir, eq_classes, table, result, post, lengths=lengths, ec_counts=ec_counts,
                          transcripts=transcripts, fld=fld, algorithm=algorithm, method=method, n_draws=n_draws,
                          thinning_factor=thinning_factor, seed=seed, command=command, start=start)
    if post is not None and post_path is not None:
        post.write(post_path)
    if not quiet:
        status = "converged" if result.converged else "stopped at max_iter"
        if out is not None:
            wrote = f"{out}" + (f" and {post_path}" if post_path is not None else "")
        else:
            draws = "" if post is None else f" with {post.draws.shape[0]} {post.method} replicates"
            wrote = f"{out_dir}/ (salmon layout{draws})" + (f" and {post_path}" if post_path is not None else "")
        print(
            f"quant: {table.n_transcripts} transcripts, {table.n_classes} classes, {table.counts.sum():,.0f} "
            f"fragments; {algorithm.upper()} {status} after {result.n_iterations} iterations; wrote {wrote}",
            file=sys.stderr,
        )
    return result, post


_GENERIC_STEMS = ("eq_classes", "pseudoalignments", "matrix")


def sample_names(paths: Sequence[str | os.PathLike], samples: Sequence[str] | None = None) -> list[str]:
    """The sample names (output folder names) of eq-class files: ``samples`` if given, else as the folders
    are named: ``S/aux_info/eq_classes.txt.gz`` -> ``S`` (salmon's output folder), ``S/matrix.ec`` or
    ``S/pseudoalignments.ec`` -> ``S``, else the file name without ``.gz`` and its last suffix
    (``A1.txt.gz`` -> ``A1``). A name given twice, or one that is no folder name, is a ``ValueError``."""
    paths = list(paths)
    if samples is not None:
        names, where, fix = [str(n) for n in samples], "samples", ""
        if len(names) != len(paths):
            raise ValueError(f"samples: {len(names)} names for {len(paths)} eq-class files")
    else:
        names, where, fix = [], "eq_classes", "; name the samples (--samples FILE)"
        for p in paths:
            p = Path(p).absolute()
            stem = p.name[:-3] if p.name.endswith(".gz") else p.name
            stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
            if p.parent.name == "aux_info" and stem == "eq_classes":
                names.append(p.parent.parent.name)
            elif stem in _GENERIC_STEMS:
                names.append(p.parent.name)
            else:
                names.append(stem)
    for n in names:
        if not n or n in (".", "..") or "/" in n or "\\" in n or "\0" in n or n != n.strip():
            raise ValueError(f"{where}: {n!r} is not a usable folder name for a sample{fix}")
    seen: dict[str, int] = {}
    for k, n in enumerate(names):
        if n in seen:
            raise ValueError(f"{where}: sample name {n!r} given twice (files {seen[n] + 1} and {k + 1}){fix}")
        seen[n] = k
    return names


def _one_or_each(value, n: int, name: str) -> list:
    """``value`` for every sample (one path or ``None``) or one per sample (a list of ``n``)."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return [value] * n
    value = list(value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ValueError(f"{name}: expected 1 file for all samples or {n} (one per eq-class file), got {len(value)}")
    return value


def run_quant_many(
    eq_classes: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    samples: Sequence[str] | None = None,
    lengths=None,
    ec_counts=None,
    transcripts=None,
    fld=None,
    length_formula: str = "salmon",
    algorithm: str = "vbem",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    squarem: bool = False,
    min_iter: int = 100,
    posterior_method: str | None = None,
    num_samples: int | None = None,
    num_bootstraps: int | None = None,
    num_gibbs_samples: int | None = None,
    thinning_factor: int = 16,
    seed: int = 0,
    quiet: bool = False,
    command: dict | None = None,
    batch_size: int | str | None = "auto",
    chain_method: str = "sequential",
) -> tuple[list[str], list[QuantResult], list[PosteriorSummary | None]]:
    """:func:`run_quant` for several samples on one transcriptome: ``out_dir/<sample>/`` in salmon's layout each,
    the EM/VBEM of all samples in one program (:func:`quantify_many`), bootstraps and Gibbs draws too
    (:func:`bootstrap_counts_many`, :func:`gibbs_counts_many`; sample ``k`` draws with seed ``seed + k``);
    NUTS (its chains run by ``chain_method``, see :func:`posterior`) and SVI run sample by sample.

    ``lengths``, ``ec_counts``, ``transcripts`` and ``fld`` are one path for all samples or one per
    eq-class file. Sample names: ``samples``, else :func:`sample_names`. Every sample is read in the
    first one's transcript order (another set of transcripts is an error naming the file); every input is
    read and every output path checked before anything is written. Returns ``(names, results, draws)``.
    """
    _check_run_choices(algorithm, posterior_method, chain_method)
    paths = list(eq_classes) if not isinstance(eq_classes, (str, os.PathLike)) else [eq_classes]
    if not paths:
        raise ValueError("eq_classes: expected at least one file")
    K = len(paths)
    method, n_draws = _draw_method(posterior_method, num_samples, num_bootstraps, num_gibbs_samples, thinning_factor,
                                   None)
    names = sample_names(paths, samples)
    per = {key: _one_or_each(v, K, key) for key, v in (("lengths", lengths), ("ec_counts", ec_counts),
                                                         ("transcripts", transcripts), ("fld", fld))}
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    out_dirs = [Path(out_dir) / n for n in names]
    from diffbio_prob.io.atomic import check_output_path

    check_output_path(out_dir, "out_dir", "dir")
    for d in out_dirs:
        _check_salmon_dir(d)
    import time

    start = time.time()
    tables, effs, tx_lengths = [], [], []
    for k, path in enumerate(paths):
        table, eff, L = _read_input(path, per["lengths"][k], per["ec_counts"][k], per["transcripts"][k],
                                    per["fld"][k], length_formula, names=tables[0].names if tables else None)
        tables.append(table)
        effs.append(eff)
        tx_lengths.append(np.floor(eff) if L is None else L)
    results = quantify_many(tables, np.stack(effs), lengths=np.stack(tx_lengths), algorithm=algorithm, prior=prior,
                            per_nucleotide_prior=per_nucleotide_prior, squarem=squarem, min_iter=min_iter,
                            batch_size=batch_size)
    posts: list[PosteriorSummary | None] = [None] * K
    seeds = [seed + k for k in range(K)]
    if method in ("bootstrap", "gibbs"):
        many = dict(n_draws=n_draws or 30, algorithm=algorithm, prior=prior, per_nucleotide_prior=per_nucleotide_prior,
                    seeds=seeds)
        if method == "bootstrap":
            draws = bootstrap_counts_many(tables, np.stack(effs), batch_size=batch_size, **many)
        else:
            draws = gibbs_counts_many(tables, np.stack(effs), thinning_factor=thinning_factor,
                                      init=np.stack([r.num_reads for r in results]), **many)
        posts = [PosteriorSummary(list(tables[0].names), d, method) for d in draws]
    elif method is not None:
        posts = [posterior(t, e, method, num_samples=n_draws, algorithm=algorithm, seed=s, progress=not quiet,
                           chain_method=chain_method, thinning_factor=thinning_factor, prior=prior,
                           per_nucleotide_prior=per_nucleotide_prior)
                 for t, e, s in zip(tables, effs, seeds)]
    for post, table in zip(posts, tables):
        if post is not None:
            post.draws = _to_total(np.asarray(post.draws, np.float64), float(np.sum(table.counts)))
    for k in range(K):
        _write_sample_dir(out_dirs[k], paths[k], tables[k], results[k], posts[k], lengths=per["lengths"][k],
                          ec_counts=per["ec_counts"][k], transcripts=per["transcripts"][k], fld=per["fld"][k],
                          algorithm=algorithm, method=method, n_draws=n_draws, thinning_factor=thinning_factor,
                          seed=seeds[k], command=command, start=start)
    if not quiet:
        for name, table, res, post in zip(names, tables, results, posts):
            status = "converged" if res.converged else "stopped at max_iter"
            draws = "" if post is None else f" with {post.draws.shape[0]} {post.method} replicates"
            print(f"quant: {name}: {table.n_transcripts} transcripts, {table.n_classes} classes, "
                  f"{table.counts.sum():,.0f} fragments; {algorithm.upper()} {status} after {res.n_iterations} "
                  f"iterations; wrote {Path(out_dir) / name}/ (salmon layout{draws})", file=sys.stderr)
        print(f"quant: {K} samples quantified in one program", file=sys.stderr)
    return names, results, posts
