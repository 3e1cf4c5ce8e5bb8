"""salmon-style transcript quantification, end to end: equivalence classes -> EM/VBEM -> ``quant.sf``, and
posterior uncertainty of the counts by NUTS, SVI (on :func:`diffbio_prob.models.em_model`) or a bootstrap
over class counts (salmon's ``--numBootstraps``: multinomial resampling, EM on each draw, vmapped).

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

__all__ = [
    "QuantResult",
    "PosteriorSummary",
    "to_eq_classes",
    "quantify",
    "bootstrap_counts",
    "posterior",
    "log_likelihood",
    "run_quant",
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
        method: ``"nuts"``, ``"svi"`` or ``"bootstrap"``.
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
        names=list(table.names), lengths=L, effective_lengths=eff, tpm=np.asarray(out.tpm, float),
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
        names=list(table.names), lengths=L, effective_lengths=eff, tpm=np.asarray(q.tpm, float), num_reads=counts,
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
    core.check_prior(prior, eqc.n_transcripts, dtype=eqc.counts.dtype)  # before the draws are traced
    eff = jnp.asarray(_check_lengths(effective_lengths, eqc.n_transcripts), eqc.counts.dtype)
    counts = np.asarray(eqc.counts, float)
    total = int(round(counts.sum()))
    rng = np.random.default_rng(seed)
    resampled = rng.multinomial(total, counts / counts.sum(), size=n_draws).astype(np.asarray(eqc.counts).dtype)

    def one(c):
        return core.em(eqc.replace(counts=c), eff, algorithm=algorithm, prior=prior, min_iter=min_iter).counts

    resampled = jnp.asarray(resampled)
    if batch_size is None and n_draws * eqc.n_entries <= 2**25:
        draws = jax.vmap(one)(resampled)  # all draws in one vectorised while_loop
    else:  # bounded memory: batches of batch_size (default 1) through lax.map
        draws = jax.lax.map(one, resampled, batch_size=batch_size)
    return np.asarray(draws, float)


def posterior(
    table: EqClassTable,
    effective_lengths,
    method: str = "nuts",
    *,
    num_samples: int | None = None,
    num_warmup: int = 500,
    num_chains: int = 2,
    num_steps: int = 3000,
    concentration: float = 1.0,
    algorithm: str = "vbem",
    seed: int = 0,
    progress: bool = False,
) -> PosteriorSummary:
    """Posterior of the counts per transcript by NUTS or SVI on ``em_model``, or by salmon's bootstrap.

    NUTS starts every chain at the EM estimate (``init_params``); SVI uses a mean-field normal guide in
    the Dirichlet's unconstrained space. Draws are of ``estimated_counts`` (NumReads).

    Args:
        table, effective_lengths: the data (see :func:`quantify`).
        method: ``"nuts"``, ``"svi"`` or ``"bootstrap"``.
        num_samples: draws (default 500 per NUTS chain, 1000 for SVI, 30 bootstraps).
        num_warmup, num_chains: NUTS settings; num_steps: SVI steps.
        concentration: the Dirichlet prior of ``em_model``.
        algorithm: what the bootstrap reruns (``"em"`` or ``"vbem"``).
        seed: random seed; progress: show progress bars.
    """
    if method not in ("nuts", "svi", "bootstrap"):
        raise ValueError(f"method: expected 'nuts', 'svi' or 'bootstrap', got {method!r}")
    if num_samples is not None and (isinstance(num_samples, (bool, np.bool_))
                                    or not isinstance(num_samples, (int, np.integer)) or num_samples < 1):
        raise ValueError(f"num_samples: expected a positive integer or None (the default), got {num_samples!r}")
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")
    eqc = to_eq_classes(table)
    eff = _check_lengths(effective_lengths, eqc.n_transcripts)
    names = list(table.names)
    if method == "bootstrap":
        draws = bootstrap_counts(eqc, eff, n_draws=num_samples or 30, algorithm=algorithm, seed=seed)
        return PosteriorSummary(names, draws, "bootstrap")

    from diffbio_prob.inference import fit_nuts, fit_svi
    from diffbio_prob.models import em_model

    lengths = jnp.asarray(eff, eqc.counts.dtype)
    point = np.asarray(core.em(eqc, lengths, algorithm="em").counts, float)
    init = (point + 1e-6 * point.sum() / point.size) / (point.sum() * (1 + 1e-6))  # off the simplex's boundary
    if method == "nuts":
        fit = fit_nuts(em_model, eqc, lengths, concentration=concentration, num_warmup=num_warmup,
                       num_samples=num_samples or 500, num_chains=num_chains, rng_key=seed, progress=progress,
                       init_params={"abundances": init})
    else:
        fit = fit_svi(em_model, eqc, lengths, concentration=concentration, num_steps=num_steps,
                      num_samples=num_samples or 1000, rng_key=seed, progress=progress,
                      init_params={"abundances": init})
    draws = np.asarray(fit.samples["estimated_counts"], float)
    return PosteriorSummary(names, draws.reshape(-1, draws.shape[-1]), method, fit=fit)


def run_quant(
    eq_classes: str | os.PathLike,
    out: str | os.PathLike,
    *,
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
    seed: int = 0,
    quiet: bool = False,
) -> tuple[QuantResult, PosteriorSummary | None]:
    """Read -> quantify -> write ``quant.sf`` (and a posterior table); what ``diffbio-prob quant`` runs.

    Every input is read and checked before anything is written; outputs are written atomically.
    The posterior table goes to ``posterior_out`` (default: ``out`` with suffix ``.posterior.tsv``).
    """
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")
    if posterior_method not in (None, "nuts", "svi", "bootstrap"):
        raise ValueError(f"posterior: expected 'nuts', 'svi' or 'bootstrap', got {posterior_method!r}")
    from diffbio_prob.io.atomic import check_output_path  # output paths checked before any work

    check_output_path(out, "out", "file")
    if posterior_method is not None:
        check_output_path(Path(posterior_out) if posterior_out else Path(out).with_suffix(".posterior.tsv"),
                          "posterior_out", "file")
    table = read_eq_classes(eq_classes, counts=ec_counts, transcripts=transcripts)
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
    result = quantify(table, eff, lengths=tx_lengths, algorithm=algorithm, prior=prior,
                      per_nucleotide_prior=per_nucleotide_prior, squarem=squarem, min_iter=min_iter)
    post = None
    if posterior_method is not None:
        post = posterior(table, eff, posterior_method, num_samples=num_samples, algorithm=algorithm, seed=seed,
                         progress=not quiet)
    result.write(out)
    if post is not None:
        post_path = Path(posterior_out) if posterior_out else Path(out).with_suffix(".posterior.tsv")
        post.write(post_path)
    if not quiet:
        status = "converged" if result.converged else "stopped at max_iter"
        print(
            f"quant: {table.n_transcripts} transcripts, {table.n_classes} classes, {table.counts.sum():,.0f} "
            f"fragments; {algorithm.upper()} {status} after {result.n_iterations} iterations; wrote {out}"
            + (f" and {post_path}" if post is not None else ""),
            file=sys.stderr,
        )
    return result, post
