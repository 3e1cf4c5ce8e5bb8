"""Transcript quantification by EM and VBEM over equivalence classes, in pure JAX.

Notation (``docs/notes/em.md``): class ``c`` holds transcripts ``T_c`` with per-entry weights ``w_ct`` and
fragment count ``n_c``; ``a_t`` are expected fragments (salmon's ``NumReads``); ``l_t`` effective
lengths. The *affinity* of an entry is ``w_ct / l_t`` (or ``w_ct`` itself when the weights already
contain ``1/l``, as in salmon's ``--dumpEqWeights`` dump).

* **EM** (salmon ``EMUpdate_``, kallisto ``EMAlgorithm.h``): ``a'_t = sum_{c ∋ t} n_c a_t aff_ct /
  sum_{j ∈ c} a_j aff_cj``; singleton classes give ``n_c`` outright; a class whose denominator is
  ``<=`` the smallest normal float is skipped (salmon's ``markDegenerateClasses``). The E-step divides by
  length once; the M-step does not divide again. Temperature ``T`` tempers the responsibilities
  (``∝ (a_t aff_ct)^(1/T)``); ``T = 1`` is exact EM.
* **VBEM** (salmon's default, ``VBEMUpdate_``): the same update with ``a`` replaced by ``e_t =
  exp(digamma(a_t + prior_t) - digamma(sum_j (a_j + prior_j)))`` (0 when ``a_t + prior_t <= 1e-10``);
  the prior is not added to ``a'``. Prior 0.01 per transcript, or ``1e-5 * l_t`` per nucleotide; it
  must be finite, positive and fit the float type (:func:`check_prior`, the one check of it).
* **Convergence** (salmon): at least ``min_iter`` (100) map evaluations, then stop once every ``t`` with
  ``a'_t > 1e-2`` has ``|a'_t - a_t| / a'_t <= 1e-2``, or at ``max_iter`` (10,000); afterwards
  ``a_t <= 1e-8`` is set to 0.
* **SQUAREM** (Varadhan & Roland 2008, scheme 3 with the adaptive step bound of the R package
  ``SQUAREM``): two map evaluations give ``r = F(x) - x`` and ``v = F(F(x)) - 2F(x) + x``; the
  extrapolation ``x - 2 s r + s^2 v`` (``s = -clip(|r|/|v|, 1, step_max)``) is clipped at 0 and
  stabilised by one more map evaluation. A step whose objective is below the start's falls back to
  ``F(F(x))``, so the objective never decreases. The objective is the log-likelihood (EM) or the
  collapsed evidence lower bound (VBEM), both by-products of the map evaluation.

* **Gibbs** (salmon ``CollapsedGibbsSampler.cpp``, :func:`gibbs_sample`): rates ``mu_t ~ Gamma(x_t + prior_t,
  rate 0.1 + l_t)``, every fragment of a multi-transcript class reassigned ``∝ mu_t l_t aff_ct``, a draw
  ``N mu_t l_t / sum_j mu_j l_j`` every ``thinning_factor`` rounds; chains in parallel.

Equivalence classes are a flat sparse structure (:class:`EquivalenceClasses`): one entry per
(class, transcript) pair, so an iteration is two gathers and two ``segment_sum`` over entries,
O(entries). A dense ``(C, T)`` compatibility matrix converts with :func:`from_dense`.

Example:
    >>> import jax.numpy as jnp
    >>> from diffbio_prob.cores import em
    >>> eqc = em.make_eq_classes([0, 1, 1, 2, 2], [0, 0, 1, 1, 2], counts=[10, 20, 5], n_transcripts=3)
    >>> res = em.em(eqc, jnp.array([100.0, 200.0, 100.0]), min_iter=1000, rel_tol=1e-12)
    >>> [round(float(x), 3) for x in res.counts]  # t1 shares every class with a shorter transcript
    [30.0, 0.0, 5.0]
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from diffbio_prob.cores.nb import lgamma_ratio

__all__ = [
    "EquivalenceClasses",
    "EMResult",
    "QuantOutputs",
    "make_eq_classes",
    "from_dense",
    "validate",
    "entry_affinities",
    "check_prior",
    "prior_vector",
    "uniform_init",
    "em_step",
    "vbem_step",
    "objective",
    "class_log_likelihood",
    "log_likelihood",
    "vbem_elbo",
    "converged",
    "em",
    "em_unrolled",
    "stack_eq_classes",
    "em_batch",
    "quant_outputs",
    "tpm",
    "truncate",
    "fast_digamma",
    "gibbs_sample",
    "gibbs_sample_batch",
    "gibbs_num_chains",
]

Array = jax.Array

# salmon's constants (CollapsedEMOptimizer.cpp, SalmonDefaults.hpp; see docs/notes/em.md §1).
DIGAMMA_MIN = 1e-10  # digammaMin: e_t = 0 below it (salmon#48, the digamma pole)
ALPHA_CHECK_CUTOFF = 1e-2  # only a'_t above it take part in the convergence test
REL_DIFF_TOLERANCE = 1e-2  # relative change that counts as converged
MIN_ALPHA = 1e-8  # truncateCountVector: a_t <= it is reported as 0
PER_TRANSCRIPT_PRIOR = 1e-2
PER_NUCLEOTIDE_PRIOR = 1e-5


@dataclasses.dataclass(frozen=True)
class EquivalenceClasses:
    """Equivalence classes as flat entries (one per class-transcript pair).

    Attributes:
        class_ids: ``Int[Array, "E"]`` class of each entry (0..C-1), non-decreasing.
        transcript_ids: ``Int[Array, "E"]`` transcript of each entry (0..T-1).
        weights: ``Float[Array, "E"]`` per-entry weight ``w_ct`` (1 for plain classes); entries of
            weight 0 are inert (a dense matrix's zeros).
        counts: ``Float[Array, "C"]`` fragments per class ``n_c``.
        n_transcripts: ``T`` (static).
        weights_include_length: ``True`` when ``w_ct`` already contains ``1/l_t`` (salmon's
            ``--dumpEqWeights`` dump and ``--eqclasses`` input); the E-step then does not divide by
            length again (static).
    """

    class_ids: Array
    transcript_ids: Array
    weights: Array
    counts: Array
    n_transcripts: int = dataclasses.field(metadata={"static": True})
    weights_include_length: bool = dataclasses.field(default=False, metadata={"static": True})

    @property
    def n_classes(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_entries(self) -> int:
        return int(self.class_ids.shape[0])

    def replace(self, **changes) -> "EquivalenceClasses":
        """A copy with ``changes`` (e.g. resampled ``counts``)."""
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    EquivalenceClasses,
    data_fields=["class_ids", "transcript_ids", "weights", "counts"],
    meta_fields=["n_transcripts", "weights_include_length"],
)


class EMResult(NamedTuple):
    """Result of :func:`em`.

    Attributes:
        counts: ``Float[Array, "T"]`` expected fragments per transcript (salmon's NumReads), truncated.
        n_iterations: iterations run (SQUAREM: extrapolation cycles).
        n_evaluations: EM/VBEM map evaluations (plain: equal to ``n_iterations``).
        converged: whether the convergence rule was met before ``max_iter``.
        objective: log-likelihood (EM) or evidence lower bound (VBEM) at the final, untruncated iterate.
    """

    counts: Array
    n_iterations: Array
    n_evaluations: Array
    converged: Array
    objective: Array


class QuantOutputs(NamedTuple):
    """Per-transcript outputs: ``abundances`` (read fractions, sum 1), ``estimated_counts`` (NumReads),
    ``tpm`` (``1e6 (a_t/l_t) / sum_j a_j/l_j``)."""

    abundances: Array
    estimated_counts: Array
    tpm: Array


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def make_eq_classes(
    class_ids,
    transcript_ids,
    counts,
    n_transcripts: int,
    weights=None,
    weights_include_length: bool = False,
) -> EquivalenceClasses:
    """Build :class:`EquivalenceClasses` from entry arrays (sorted by class if they are concrete).

    Args:
        class_ids: ``Int[Array, "E"]`` class of each entry (sorted here when concrete; traced ids must
            already be non-decreasing).
        transcript_ids: ``Int[Array, "E"]`` transcript of each entry.
        counts: ``Float[Array, "C"]`` fragments per class.
        n_transcripts: number of transcripts ``T``.
        weights: ``Float[Array, "E"]`` optional per-entry weights (default 1).
        weights_include_length: the weights already contain ``1/l_t``.

    Example:
        >>> eqc = make_eq_classes([0, 0, 1], [0, 1, 1], counts=[3, 1], n_transcripts=2)
        >>> eqc.n_classes, eqc.n_entries
        (2, 3)
    """
    dtype = jnp.result_type(float)
    if weights is None:
        weights = jnp.ones(np.shape(class_ids), dtype)
    if _is_concrete(class_ids, transcript_ids, weights):
        # segment sums run with indices_are_sorted=True: order entries by class (stable) once here.
        cid = np.asarray(class_ids)
        if cid.ndim == 1 and cid.size > 1 and np.any(np.diff(cid) < 0):
            order = np.argsort(cid, kind="stable")
            class_ids = cid[order]
            transcript_ids = np.asarray(transcript_ids)[order]
            weights = np.asarray(weights)[order]
    return EquivalenceClasses(
        class_ids=jnp.asarray(class_ids, jnp.int32),
        transcript_ids=jnp.asarray(transcript_ids, jnp.int32),
        weights=jnp.asarray(weights, dtype),
        counts=jnp.asarray(counts, dtype),
        n_transcripts=int(n_transcripts),
        weights_include_length=bool(weights_include_length),
    )


def from_dense(compatibility, counts=None, *, sparse: bool | None = None) -> EquivalenceClasses:
    """Convert a dense ``(C, T)`` compatibility (or weight) matrix to :class:`EquivalenceClasses`.

    Each row is a class (the seed's form: one row per read, count 1 each). With a concrete matrix only
    its non-zero entries are kept; a traced matrix keeps all ``C*T`` entries (zeros are inert), so the
    conversion works under ``jit``/``grad`` and gradients reach the matrix's values.

    Args:
        compatibility: ``Float[Array, "C T"]`` non-negative weights; 0 = incompatible.
        counts: ``Float[Array, "C"]`` per-row counts (default 1 per row).
        sparse: keep non-zero entries only (default: when the matrix is concrete).

    Example:
        >>> eqc = from_dense(jnp.array([[1.0, 1.0], [0.0, 1.0]]))
        >>> eqc.n_entries, [float(c) for c in eqc.counts]
        (3, [1.0, 1.0])
    """
    n_rows, n_transcripts = jnp.shape(compatibility)
    dtype = jnp.result_type(float)
    if counts is None:
        counts = jnp.ones((n_rows,), dtype)
    if sparse is None:
        sparse = _is_concrete(compatibility)
    if sparse:
        mat = np.asarray(compatibility)
        rows, cols = np.nonzero(mat)
        return make_eq_classes(rows, cols, counts, n_transcripts, weights=mat[rows, cols])
    rows = jnp.repeat(jnp.arange(n_rows, dtype=jnp.int32), n_transcripts)
    cols = jnp.tile(jnp.arange(n_transcripts, dtype=jnp.int32), n_rows)
    return EquivalenceClasses(
        class_ids=rows,
        transcript_ids=cols,
        weights=jnp.reshape(jnp.asarray(compatibility, dtype), (-1,)),
        counts=jnp.asarray(counts, dtype),
        n_transcripts=int(n_transcripts),
    )


def validate(eqc: EquivalenceClasses, effective_lengths=None, *, name: str = "equivalence_classes") -> None:
    """Check a concrete :class:`EquivalenceClasses` (and lengths); raise ``ValueError`` naming the problem.

    Checks: at least one class; entry arrays of equal length; transcript ids in ``[0, T)``; class ids in
    ``[0, C)``; every class has an entry of positive weight; weights and counts finite and
    non-negative, and at least one fragment in all; no positive weight below the working float type's
    smallest normal number (it would be flushed to zero, silently emptying its class: a 1e-40 weight
    in float32 gave a log-likelihood of -inf); lengths of shape ``(T,)``, finite and positive; the
    affinities ``w / l`` times the number of fragments finite. Traced arrays are skipped (validate
    before ``jit``).
    """
    arrays = (eqc.class_ids, eqc.transcript_ids, eqc.weights, eqc.counts)
    if not _is_concrete(*arrays):
        return
    cid, tid, w, n = (np.asarray(a) for a in arrays)
    T, C = eqc.n_transcripts, n.shape[0] if n.ndim == 1 else -1
    if n.ndim != 1:
        raise ValueError(f"counts: expected a 1-D array of per-class counts, got shape {n.shape}")
    if not (cid.shape == tid.shape == w.shape) or cid.ndim != 1:
        raise ValueError(
            f"{name}: class ids, transcript ids and weights must be 1-D of equal length, got shapes "
            f"{cid.shape}, {tid.shape}, {w.shape}"
        )
    if T < 1:
        raise ValueError(f"{name}: n_transcripts must be >= 1, got {T}")
    if C == 0:
        raise ValueError(f"{name}: no equivalence classes (expected at least one class with fragments)")
    if tid.size and (tid.min() < 0 or tid.max() >= T):
        bad = int(tid[(tid < 0) | (tid >= T)][0])
        raise ValueError(f"{name}: transcript id {bad} out of range [0, {T})")
    if cid.size and (cid.min() < 0 or cid.max() >= C):
        bad = int(cid[(cid < 0) | (cid >= C)][0])
        raise ValueError(f"{name}: class id {bad} out of range [0, {C}) (counts has {C} entries)")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        i = int(np.argmax(~(np.isfinite(w) & (w >= 0))))
        raise ValueError(f"{name}: weights must be finite and non-negative, got {w[i]} at entry {i}"
                         + (f" (overflows {w.dtype}?)" if np.isinf(w[i]) else ""))
    tiny = np.finfo(w.dtype).tiny if np.issubdtype(w.dtype, np.floating) else 0.0
    sub = (w > 0) & (w < tiny)
    if sub.any():
        i = int(np.argmax(sub))
        raise ValueError(
            f"{name}: weight {float(w[i]):.3g} at entry {i} (class {int(cid[i])}) is below the smallest normal "
            f"{w.dtype} ({tiny:.3g}) and would be flushed to zero; rescale the class's weights"
            + (" or use float64" if w.dtype != np.float64 else ""))
    if not np.all(np.isfinite(n)):
        i = int(np.argmax(~np.isfinite(n)))
        raise ValueError(f"counts: must be finite, got {n[i]} for class {i}")
    if np.any(n < 0):
        raise ValueError(f"counts: must be non-negative, got {float(n[n < 0][0])} for class {int(np.argmax(n < 0))}")
    total = float(np.sum(n, dtype=np.float64))
    if not total > 0:
        raise ValueError(f"counts: all {C} classes have 0 fragments; there is nothing to quantify")
    live = np.zeros(C, bool)
    live[cid[w > 0]] = True
    if not live.all():
        raise ValueError(f"{name}: class {int(np.argmin(live))} is empty (no transcript with a positive weight)")
    if effective_lengths is not None and _is_concrete(effective_lengths):
        lengths = np.asarray(effective_lengths)
        if not (np.issubdtype(lengths.dtype, np.number) and lengths.dtype != bool):
            raise TypeError(f"effective_lengths: expected numbers, got dtype {lengths.dtype}")
        if lengths.shape != (T,):
            raise ValueError(f"effective_lengths: expected shape ({T},), got {lengths.shape}")
        if not np.all(np.isfinite(lengths)) or np.any(lengths <= 0):
            i = int(np.argmax(~(np.isfinite(lengths) & (lengths > 0))))
            raise ValueError(f"effective_lengths: must be finite and positive, got {lengths[i]} at index {i}")
        if np.issubdtype(w.dtype, np.floating):
            with np.errstate(over="ignore", divide="ignore"):
                aff = w.astype(np.float64) if eqc.weights_include_length else w / lengths.astype(np.float64)[tid]
                top = float(np.max(aff, initial=0.0)) * max(total, 1.0)
            if not top < float(np.finfo(w.dtype).max):
                raise ValueError(
                    f"effective_lengths: the affinity weight / length reaches {float(np.max(aff)):.3g}, which times the "
                    f"{total:.3g} fragments overflows {w.dtype}; check for tiny effective lengths")


def entry_affinities(eqc: EquivalenceClasses, effective_lengths: Array) -> Array:
    """``Float[Array, "E"]`` ``w_ct / l_t`` per entry (``w_ct`` when the weights include the length)."""
    if eqc.weights_include_length:
        return eqc.weights
    return eqc.weights / jnp.asarray(effective_lengths)[eqc.transcript_ids]


def check_prior(prior, n_transcripts: int | None = None, effective_lengths=None, per_nucleotide: bool = False,
                *, total_counts=None, dtype=None) -> None:
    """Raise ``ValueError``/``TypeError`` unless ``prior`` is a usable VBEM prior; the one check of it.

    :func:`prior_vector` (so :func:`em`, :func:`em_unrolled`, :func:`vbem_step`, :func:`objective`), the
    EM operator's config and :func:`diffbio_prob.workflows.quant.quantify` all call this function.

    ``prior`` must be a real, finite number ``> 0`` (``None`` means salmon's default). With
    ``n_transcripts`` the prior vector (``prior`` per transcript, or ``prior * l_t`` per nucleotide)
    must also fit the working float type ``dtype`` (default: float64 under ``jax_enable_x64``, else
    float32): every entry a normal number (a subnormal one is flushed to zero and the Dirichlet
    becomes improper) and the total prior mass plus ``total_counts`` fragments at most half the largest
    float, since VBEM evaluates ``digamma(sum(a + prior))`` and the evidence bound takes ``lgamma``
    differences at that sum. That is the largest usable prior: about ``1.7e38 / T`` per transcript in
    float32 and ``9e307 / T`` in float64 (so ``1e300`` works in float64 only); up to it the counts and
    the bound are accurate (the bound is computed without cancellation), and any larger value is
    rejected, never silently turned into ``inf``. Traced values are not checked (check before ``jit``).
    """
    if prior is None or isinstance(prior, jax.core.Tracer):
        return
    arr = None if isinstance(prior, (str, bytes)) else np.asarray(prior)
    if arr is None or arr.ndim != 0 or arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"prior: expected a positive number, got {type(prior).__name__} {prior!r}")
    value = float(prior)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"prior: expected a finite positive number, got {value!r}")
    if n_transcripts is None:
        return
    dtype = np.dtype(jnp.result_type(float) if dtype is None else dtype)
    info = np.finfo(dtype)
    if per_nucleotide:
        if effective_lengths is None or isinstance(effective_lengths, jax.core.Tracer):
            return
        lengths = np.asarray(effective_lengths, np.float64)
        units, shortest = float(np.sum(lengths)), float(np.min(lengths, initial=np.inf))
        what = f"per-nucleotide prior {value!r} (total length {units:.6g})"
    else:
        units, shortest = float(n_transcripts), 1.0
        what = f"prior {value!r} per transcript over {int(n_transcripts)} transcripts"
    tiny, top = float(info.tiny), float(info.max)
    if value * shortest < tiny:
        raise ValueError(f"prior: the {what} gives {value * shortest:.3g}, below the smallest normal {dtype} "
                         f"({tiny:.3g}); use a larger prior" + (" or float64" if dtype != np.float64 else ""))
    n = 0.0 if total_counts is None or isinstance(total_counts, jax.core.Tracer) else float(total_counts)
    if not 2.0 * (value * units + n) < top:  # half the range: headroom for the sums' rounding
        raise ValueError(
            f"prior: the {what} is a total prior mass of {value:.3g} x {units:.6g}, which overflows {dtype} "
            f"(VBEM's sums need it below half the largest {dtype}, {top / 2:.3g}); the largest usable prior is "
            f"about {max(top / 2 - n, 0.0) / units:.3g}"
            + (" (or enable float64: jax_enable_x64 / --x64)" if dtype != np.float64 else ""))


def prior_vector(n_transcripts: int, effective_lengths=None, prior: float | None = None,
                 per_nucleotide: bool = False) -> Array:
    """salmon's VBEM prior: ``prior`` (default 0.01) per transcript, or ``prior * l_t`` (default 1e-5).

    Raises ``ValueError`` for a prior that is not finite and positive or that does not fit the working
    float type (:func:`check_prior`).
    """
    if per_nucleotide:
        if effective_lengths is None:
            raise ValueError("effective_lengths: required for a per-nucleotide prior")
        value = PER_NUCLEOTIDE_PRIOR if prior is None else prior
        check_prior(value, n_transcripts, effective_lengths, True)
        return value * jnp.asarray(effective_lengths, jnp.result_type(float))
    value = PER_TRANSCRIPT_PRIOR if prior is None else prior
    check_prior(value, n_transcripts)
    return jnp.full((n_transcripts,), value, jnp.result_type(float))


def uniform_init(eqc: EquivalenceClasses) -> Array:
    """salmon's start for small inputs: total fragments spread evenly over the transcripts that appear in
    a class (others start, and stay, at 0)."""
    return _uniform_init_jit(eqc)


@jax.jit
def _uniform_init_jit(eqc):
    active = jax.ops.segment_sum((eqc.weights > 0).astype(eqc.counts.dtype), eqc.transcript_ids,
                                 eqc.n_transcripts) > 0
    total = jnp.sum(eqc.counts)
    return jnp.where(active, total / jnp.maximum(jnp.sum(active), 1), 0.0)


class _Prepared(NamedTuple):
    """Per-problem constants reused by every map evaluation."""

    affinity: Array  # (E,) w_ct / l_t
    singleton: Array  # (E,) bool: the entry is the only live member of its class
    prior: Array  # (T,) VBEM prior (zeros for EM)


def _prepare(eqc: EquivalenceClasses, effective_lengths, prior) -> _Prepared:
    live = eqc.weights > 0
    sizes = jax.ops.segment_sum(live.astype(jnp.int32), eqc.class_ids, eqc.n_classes, indices_are_sorted=True)
    singleton = live & (sizes[eqc.class_ids] == 1)
    return _Prepared(entry_affinities(eqc, effective_lengths), singleton, prior)


def _safe_log(x: Array) -> Array:
    """``log x`` with ``log 0 = -inf`` and zero gradient there (double ``where``)."""
    pos = x > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), -jnp.inf)


def fast_digamma(x: Array) -> Array:
    """``digamma(x)`` for ``x > 0``: recurrence up to 10, then the asymptotic (Bernoulli) series.

    ``psi(x) = psi(x + 10) - sum_{i<10} 1/(x + i)`` for ``x < 10``, and for ``y >= 10``
    ``psi(y) = log y - 1/(2y) - sum_k B_2k / (2k y^2k)`` to ``y^-12`` (next term < 1e-15; Abramowitz &
    Stegun 6.3.18). Agrees with ``scipy.special.digamma`` to ~1e-15 absolute; about 4x cheaper than
    ``jax.scipy.special.digamma`` on CPU, which matters because VBEM evaluates it for every transcript in
    every iteration.
    """
    small = x < 10.0
    shift = jnp.zeros_like(x)
    for i in range(10):
        shift = shift + 1.0 / (x + i)
    y = jnp.where(small, x + 10.0, x)
    r = 1.0 / y
    r2 = r * r
    series = r2 * (1 / 12 - r2 * (1 / 120 - r2 * (1 / 252 - r2 * (1 / 240 - r2 * (1 / 132 - r2 * (691 / 32760))))))
    return jnp.log(y) - 0.5 * r - series - jnp.where(small, shift, 0.0)


def _vb_weights(a: Array, prior: Array) -> Array:
    """``e_t = exp(digamma(a_t + prior_t) - digamma(sum (a + prior)))``; 0 where ``a_t + prior_t <= 1e-10``."""
    b = a + prior
    ok = b > DIGAMMA_MIN
    log_e = fast_digamma(jnp.where(ok, b, 1.0)) - fast_digamma(jnp.sum(b))
    return jnp.where(ok, jnp.exp(log_e), 0.0)


def _map(eqc: EquivalenceClasses, prep: _Prepared, theta: Array, temperature) -> tuple[Array, Array]:
    """One E+M step with class weights ``theta`` (``a`` for EM, ``e`` for VBEM).

    Returns ``(a', denominators)``: the new expected counts and ``sum_{j in c} theta_j aff_cj`` per
    class, from which the objectives follow without another pass over the entries.
    """
    cid, tid, C = eqc.class_ids, eqc.transcript_ids, eqc.n_classes
    # Materialise theta before the gather: otherwise XLA fuses VBEM's digamma/exp into the gather and
    # recomputes it once per entry (E) instead of once per transcript (T): ~10x slower on CPU.
    theta = lax.optimization_barrier(theta)
    x = theta[tid] * prep.affinity
    denom = jax.ops.segment_sum(x, cid, C, indices_are_sorted=True)
    ok = denom > jnp.finfo(denom.dtype).tiny  # salmon skips degenerate classes (<= DBL_MIN)
    if isinstance(temperature, (int, float)) and float(temperature) == 1.0:
        # n_c / denom_c per class, then one gather per entry: a' = sum_c x_ct n_c / denom_c
        scale = jnp.where(ok, eqc.counts / jnp.where(ok, denom, 1.0), 0.0)
        contrib = x * scale[cid]
    else:
        # Tempered E-step, (theta aff)^(1/T) normalised per class in log space so that small T
        # neither underflows nor overflows.
        logits = (lax.optimization_barrier(_safe_log(theta))[tid] + _safe_log(prep.affinity)) / temperature
        top = jax.ops.segment_max(logits, cid, C, indices_are_sorted=True)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        p = jnp.where(jnp.isfinite(logits), jnp.exp(logits - top[cid]), 0.0)
        norm = jax.ops.segment_sum(p, cid, C, indices_are_sorted=True)
        scale = jnp.where(ok & (norm > 0), eqc.counts / jnp.where(norm > 0, norm, 1.0), 0.0)
        contrib = p * scale[cid]
    contrib = jnp.where(prep.singleton, eqc.counts[cid], contrib)  # a singleton class gives n_c outright (salmon)
    new = jax.ops.segment_sum(contrib, tid, eqc.n_transcripts)
    return new, denom


def _log_lik_from_denominators(counts: Array, denom: Array) -> Array:
    """``sum_c n_c log denom_c``; a class with count 0 contributes 0 even if its denominator is 0."""
    ok = denom > jnp.finfo(denom.dtype).tiny
    return jnp.sum(jnp.where(counts > 0, counts * _safe_log(jnp.where(ok, denom, 0.0)), 0.0))


def _dirichlet_kl(a: Array, prior: Array) -> Array:
    """``KL(Dir(a + prior) || Dir(prior))``, written without cancellation.

    ``lgamma(B) - lgamma(P) - sum_t [lgamma(b_t) - lgamma(p_t)] + sum_t a_t (psi(b_t) - psi(B))`` with
    ``b = a + prior``, ``B = sum b``, ``P = sum prior``: each ``lgamma`` difference is taken by
    :func:`diffbio_prob.cores.nb.lgamma_ratio` (accurate for any size of prior), and the linear term
    uses ``a`` itself, not ``b - prior`` (which is 0 in floating point once the prior dwarfs ``a``).
    Four separate ``lgamma`` of sums near ``T * prior`` lose every digit for a large prior (float32 gave
    a positive evidence bound at prior 1e10) and overflow to ``inf - inf`` for a huge one.
    """
    b = a + prior
    N, P = jnp.sum(a), jnp.sum(prior)
    B = N + P
    return (lgamma_ratio(N, P) - jnp.sum(lgamma_ratio(a, prior))
            + jnp.sum(a * (fast_digamma(b) - fast_digamma(B))))


def _objective_from(eqc, prep, a, denom, algorithm):
    """The objective at ``a`` given its class denominators (from ``_map`` or ``_denominators``)."""
    ll = _log_lik_from_denominators(eqc.counts, denom)
    if algorithm == "em":
        return ll - jnp.sum(eqc.counts) * jnp.log(jnp.sum(a))
    return ll - _dirichlet_kl(a, prep.prior)


def _theta(prep, a, algorithm):
    return a if algorithm == "em" else _vb_weights(a, prep.prior)


def _step(eqc, prep, a, algorithm, temperature, with_objective=True):
    """Map evaluation: ``(a', objective(a))`` (objective ``None`` when not asked: it costs compile time)."""
    new, denom = _map(eqc, prep, _theta(prep, a, algorithm), temperature)
    return new, (_objective_from(eqc, prep, a, denom, algorithm) if with_objective else None)


def _objective_only(eqc, prep, a, algorithm):
    """The objective at ``a`` without the M-step (one gather and one segment sum)."""
    x = lax.optimization_barrier(_theta(prep, a, algorithm))[eqc.transcript_ids] * prep.affinity
    denom = jax.ops.segment_sum(x, eqc.class_ids, eqc.n_classes, indices_are_sorted=True)
    return _objective_from(eqc, prep, a, denom, algorithm)


def _check_temperature(temperature) -> None:
    _check_real("temperature", temperature, positive=True)


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _check_real(name: str, value, *, positive: bool) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    arr = None if isinstance(value, (str, bytes)) else np.asarray(value)
    if arr is None or arr.ndim != 0 or arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    v = float(arr)
    if not np.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name}: expected a finite {'positive' if positive else 'non-negative'} number, got {v!r}")


def _check_loop(min_iter, max_iter, rel_tol, abs_cutoff, truncate_below) -> None:
    """The convergence settings of :func:`em` (concrete values only)."""
    _check_count("min_iter", min_iter, 0)
    _check_count("max_iter", max_iter, 1)
    if _is_concrete(min_iter, max_iter) and min_iter > max_iter:
        raise ValueError(f"min_iter: {min_iter} is larger than max_iter ({max_iter})")
    _check_real("rel_tol", rel_tol, positive=False)
    _check_real("abs_cutoff", abs_cutoff, positive=False)
    _check_real("truncate_below", truncate_below, positive=False)


def _check_init(init, n_transcripts: int) -> None:
    """A concrete start must be ``(T,)``, finite, non-negative and not all zero (EM keeps zeros at zero)."""
    if init is None or isinstance(init, jax.core.Tracer):
        return
    a = np.asarray(init)
    if not (np.issubdtype(a.dtype, np.number) and a.dtype != bool):
        raise TypeError(f"init: expected numbers, got dtype {a.dtype}")
    if a.shape != (n_transcripts,):
        raise ValueError(f"init: expected shape ({n_transcripts},), got {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or not np.sum(a) > 0:
        raise ValueError("init: expected finite non-negative starting counts with a positive total")


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ("em", "vbem"):
        raise ValueError(f"algorithm: expected 'em' or 'vbem', got {algorithm!r}")


def _prior_for(eqc, effective_lengths, algorithm, prior, per_nucleotide_prior):
    if algorithm == "em":
        check_prior(prior)  # EM has no prior, but a nonsense value is still an error
        return jnp.zeros((eqc.n_transcripts,), eqc.counts.dtype)
    value = prior if prior is not None else (PER_NUCLEOTIDE_PRIOR if per_nucleotide_prior else PER_TRANSCRIPT_PRIOR)
    total = float(np.sum(np.asarray(eqc.counts, np.float64))) if _is_concrete(eqc.counts) else None
    check_prior(value, eqc.n_transcripts, effective_lengths, per_nucleotide_prior, total_counts=total,
                dtype=eqc.counts.dtype)
    return prior_vector(eqc.n_transcripts, effective_lengths, prior, per_nucleotide_prior).astype(eqc.counts.dtype)


def _one_step_impl(eqc, effective_lengths, prior, a, *, algorithm, temperature, want):
    prep = _prepare(eqc, effective_lengths, prior)
    new, obj = _step(eqc, prep, a, algorithm, temperature, with_objective=want == "objective")
    return obj if want == "objective" else new


# One compiled program per call signature: cheaper than compiling each primitive in eager mode.
_one_step_jit = jax.jit(_one_step_impl, static_argnames=("algorithm", "temperature", "want"))


def _one_step(eqc, effective_lengths, prior, a, algorithm, temperature, want):
    a = jnp.asarray(a, eqc.counts.dtype)
    effective_lengths = jnp.asarray(effective_lengths, eqc.counts.dtype)
    if _is_concrete(temperature):
        return _one_step_jit(eqc, effective_lengths, prior, a, algorithm=algorithm, temperature=float(temperature),
                             want=want)
    return _one_step_impl(eqc, effective_lengths, prior, a, algorithm=algorithm, temperature=temperature, want=want)


def em_step(eqc: EquivalenceClasses, effective_lengths: Array, counts: Array, temperature: float = 1.0) -> Array:
    """One EM iteration: ``Float[Array, "T"]`` expected counts ``a`` -> ``a'``.

    Example:
        >>> eqc = make_eq_classes([0, 0], [0, 1], counts=[10], n_transcripts=2)
        >>> [round(float(x), 6) for x in em_step(eqc, jnp.array([1.0, 3.0]), jnp.array([5.0, 5.0]))]
        [7.5, 2.5]
    """
    p = jnp.zeros((eqc.n_transcripts,), eqc.counts.dtype)
    return _one_step(eqc, effective_lengths, p, counts, "em", temperature, "counts")


def vbem_step(eqc: EquivalenceClasses, effective_lengths: Array, counts: Array, prior: float | None = None,
              per_nucleotide_prior: bool = False, temperature: float = 1.0) -> Array:
    """One VBEM iteration (salmon's ``VBEMUpdate_``): expected counts ``a`` -> ``a'``."""
    p = _prior_for(eqc, effective_lengths, "vbem", prior, per_nucleotide_prior)
    return _one_step(eqc, effective_lengths, p, counts, "vbem", temperature, "counts")


def objective(eqc: EquivalenceClasses, effective_lengths: Array, counts: Array, algorithm: str = "em",
              prior: float | None = None, per_nucleotide_prior: bool = False) -> Array:
    """The quantity the iteration increases at expected counts ``a``: the log-likelihood of the read
    fractions ``a / sum(a)`` (EM, :func:`log_likelihood`) or the collapsed VBEM evidence lower bound
    (:func:`vbem_elbo`)."""
    _check_algorithm(algorithm)
    p = _prior_for(eqc, effective_lengths, algorithm, prior, per_nucleotide_prior)
    return _one_step(eqc, effective_lengths, p, counts, algorithm, 1.0, "objective")


def class_log_likelihood(eqc: EquivalenceClasses, effective_lengths: Array, abundances: Array) -> Array:
    """``Float[Array, "C"]`` pointwise ``n_c log sum_{t in c} alpha_t aff_ct`` at read fractions ``alpha``.

    Up to a constant per class that does not depend on ``alpha`` (salmon normalises each class's weights),
    this is the log-probability of the class's fragments under the mixture over transcripts
    (Bray et al. 2016, eq. 1). A class with fragments but zero probability gives ``-inf``.

    Example:
        >>> eqc = make_eq_classes([0, 1], [0, 1], counts=[2, 1], n_transcripts=2)
        >>> [round(float(x), 4) for x in class_log_likelihood(eqc, jnp.ones(2), jnp.array([0.5, 0.5]))]
        [-1.3863, -0.6931]
    """
    return _class_ll_jit(eqc, jnp.asarray(effective_lengths), jnp.asarray(abundances))


@jax.jit
def _class_ll_jit(eqc, effective_lengths, abundances):
    aff = entry_affinities(eqc, effective_lengths)
    x = lax.optimization_barrier(abundances)[eqc.transcript_ids] * aff
    denom = jax.ops.segment_sum(x, eqc.class_ids, eqc.n_classes, indices_are_sorted=True)
    return jnp.where(eqc.counts > 0, eqc.counts * _safe_log(denom), 0.0)


def log_likelihood(eqc: EquivalenceClasses, effective_lengths: Array, abundances: Array) -> Array:
    """Scalar sum of :func:`class_log_likelihood`."""
    return jnp.sum(class_log_likelihood(eqc, effective_lengths, abundances))


def vbem_elbo(eqc: EquivalenceClasses, effective_lengths: Array, counts: Array, prior: float | None = None,
              per_nucleotide_prior: bool = False) -> Array:
    """Collapsed evidence lower bound of salmon's VBEM at ``q(theta) = Dirichlet(a + prior)``.

    ``sum_c n_c log sum_t aff_ct exp(E log theta_t) - KL(Dir(a + prior) || Dir(prior))``: the bound
    maximised over the read assignments for this ``q(theta)``; each VBEM step increases it (coordinate
    ascent), so it is the VBEM objective that SQUAREM safeguards.
    """
    return objective(eqc, effective_lengths, counts, "vbem", prior, per_nucleotide_prior)


def converged(old: Array, new: Array, rel_tol=REL_DIFF_TOLERANCE, abs_cutoff=ALPHA_CHECK_CUTOFF) -> Array:
    """salmon's rule: every ``t`` with ``new_t > abs_cutoff`` has ``|new_t - old_t| / new_t <= rel_tol``."""
    big = new > abs_cutoff
    rel = jnp.abs(new - old) / jnp.where(big, new, 1.0)
    return jnp.all(jnp.where(big, rel <= rel_tol, True))


def truncate(counts: Array, cutoff: float = MIN_ALPHA) -> Array:
    """salmon's ``truncateCountVector``: values ``<= cutoff`` become 0."""
    return jnp.where(counts > cutoff, counts, 0.0)


class _Plain(NamedTuple):
    a: Array
    evals: Array
    conv: Array


class _Squarem(NamedTuple):
    x0: Array  # start of the current cycle (last accepted iterate)
    x1: Array  # F(x0)
    x2: Array  # F(x1)
    obj0: Array  # objective at x0
    phase: Array  # 0: evaluate F(x0); 1: F(x1); 2: F(extrapolated point)
    step_max: Array
    cycles: Array
    evals: Array
    conv: Array


def _extrapolate(x0, x1, x2, step_max):
    """SQUAREM's point ``x0 - 2 s r + s^2 v`` (``s = -alpha``), clipped at 0; ``alpha = 1`` gives ``x2``."""
    r = x1 - x0
    v = x2 - 2.0 * x1 + x0
    sr, sv = jnp.sqrt(jnp.sum(r * r)), jnp.sqrt(jnp.sum(v * v))
    ratio = jnp.where(sv > 0, sr / jnp.where(sv > 0, sv, 1.0), 1.0)
    alpha = jnp.clip(ratio, 1.0, step_max)
    return jnp.maximum(x0 + 2.0 * alpha * r + alpha * alpha * v, 0.0), alpha


def _em_loop(eqc, prep, init, min_iter, max_iter, rel_tol, abs_cutoff, algorithm, squarem, temperature):
    """Returns ``(a, n_iterations, n_evaluations, converged)``."""
    zero = jnp.zeros((), jnp.int32)
    false = jnp.zeros((), bool)

    if not squarem:
        def cond(s: _Plain):
            return (s.evals < min_iter) | ((s.evals < max_iter) & ~s.conv)

        def body(s: _Plain) -> _Plain:
            new, _ = _step(eqc, prep, s.a, algorithm, temperature, with_objective=False)
            return _Plain(new, s.evals + 1, converged(s.a, new, rel_tol, abs_cutoff))

        s = lax.while_loop(cond, body, _Plain(init, zero, false))
        return s.a, s.evals, s.evals, s.conv

    # SQUAREM as a three-phase state machine: one map evaluation per loop turn keeps a single copy of
    # the map in the compiled program (a third of the compile time of the unrolled cycle).
    def cond(s: _Squarem):
        return (s.evals < min_iter) | ((s.evals < max_iter) & ~s.conv)

    def body(s: _Squarem) -> _Squarem:
        xp, alpha = _extrapolate(s.x0, s.x1, s.x2, s.step_max)
        inp = jnp.where(s.phase == 0, s.x0, jnp.where(s.phase == 1, s.x1, xp))
        out, denom = _map(eqc, prep, _theta(prep, inp, algorithm), temperature)
        # the objective is needed at x0 (phase 0) and at the extrapolated point (phase 2) only
        obj = lax.cond(s.phase == 1, lambda: s.obj0,
                       lambda: _objective_from(eqc, prep, inp, denom, algorithm))
        # Phase 2: obj(F(xp)) >= obj(xp) (the map is monotone), so obj(xp) >= obj(x0) keeps the cycle
        # monotone; otherwise fall back to x2 = F(F(x0)).
        ok = jnp.isfinite(obj) & (obj >= s.obj0)
        new = jnp.where(ok, out, s.x2)
        prev = jnp.where(ok, inp, s.x1)
        grown = jnp.where(alpha >= s.step_max, 4.0 * s.step_max, s.step_max)
        end = s.phase == 2
        return _Squarem(
            x0=jnp.where(end, new, s.x0),
            x1=jnp.where(s.phase == 0, out, s.x1),
            x2=jnp.where(s.phase == 1, out, s.x2),
            obj0=jnp.where(s.phase == 0, obj, s.obj0),
            phase=jnp.where(end, 0, s.phase + 1),
            step_max=jnp.where(end, jnp.where(ok, grown, jnp.maximum(1.0, s.step_max / 4.0)), s.step_max),
            cycles=s.cycles + end.astype(jnp.int32),
            evals=s.evals + 1,
            conv=end & converged(prev, new, rel_tol, abs_cutoff),
        )

    one = jnp.ones((), init.dtype)
    s = lax.while_loop(cond, body, _Squarem(init, init, init, -jnp.inf * one, zero, one, zero, zero, false))
    # Stopped mid-cycle (max_iter): the latest plain iterate is the best point reached.
    a = jnp.where(s.phase == 0, s.x0, jnp.where(s.phase == 1, s.x1, s.x2))
    return a, s.cycles, s.evals, s.conv


def em(
    eqc: EquivalenceClasses,
    effective_lengths: Array,
    *,
    algorithm: str = "em",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    init: Array | None = None,
    min_iter: int = 100,
    max_iter: int = 10_000,
    rel_tol: float = REL_DIFF_TOLERANCE,
    abs_cutoff: float = ALPHA_CHECK_CUTOFF,
    squarem: bool = False,
    temperature: float = 1.0,
    truncate_below: float = MIN_ALPHA,
) -> EMResult:
    """Run EM or VBEM to salmon's convergence rule (``lax.while_loop``; jit-able, vmap-able over counts).

    Args:
        eqc: the equivalence classes.
        effective_lengths: ``Float[Array, "T"]`` effective lengths ``l_t`` (> 0).
        algorithm: ``"em"`` (salmon ``--useEM``, kallisto) or ``"vbem"`` (salmon's default).
        prior: VBEM prior (default 0.01 per transcript; 1e-5 per nucleotide).
        per_nucleotide_prior: ``prior_t = prior * l_t`` (salmon ``--perNucleotidePrior``).
        init: ``Float[Array, "T"]`` starting expected counts (default :func:`uniform_init`).
        min_iter, max_iter: bounds on map evaluations (salmon: 100 and 10,000; 50 in its bootstraps).
        rel_tol, abs_cutoff: the convergence rule (see :func:`converged`).
        squarem: SQUAREM acceleration (each cycle costs three map evaluations).
        temperature: tempers the E-step responsibilities; 1.0 is exact EM.
        truncate_below: final values ``<=`` this become 0 (salmon's 1e-8; 0 keeps everything).

    Returns:
        :class:`EMResult`; ``counts`` are salmon's NumReads.

    Example:
        >>> eqc = make_eq_classes([0, 1, 1, 2], [0, 0, 1, 1], counts=[10, 20, 30], n_transcripts=2)
        >>> res = em(eqc, jnp.array([1.0, 1.0]), min_iter=2000, rel_tol=1e-12)
        >>> [round(float(x), 3) for x in res.counts]
        [15.0, 45.0]
    """
    _check_algorithm(algorithm)
    _check_temperature(temperature)
    _check_loop(min_iter, max_iter, rel_tol, abs_cutoff, truncate_below)
    _check_init(init, eqc.n_transcripts)
    validate(eqc, effective_lengths)
    effective_lengths = jnp.asarray(effective_lengths, eqc.counts.dtype)
    p = _prior_for(eqc, effective_lengths, algorithm, prior, per_nucleotide_prior)
    a0 = uniform_init(eqc) if init is None else jnp.asarray(init, eqc.counts.dtype)
    return _em_jit(eqc, effective_lengths, p, a0, jnp.asarray(min_iter, jnp.int32), jnp.asarray(max_iter, jnp.int32),
                   jnp.asarray(rel_tol, eqc.counts.dtype), jnp.asarray(abs_cutoff, eqc.counts.dtype),
                   jnp.asarray(truncate_below, eqc.counts.dtype), algorithm=algorithm, squarem=bool(squarem),
                   temperature=float(temperature) if _is_concrete(temperature) else temperature)


def _em_impl(eqc, effective_lengths, prior, init, min_iter, max_iter, rel_tol, abs_cutoff, cutoff, *,
             algorithm, squarem, temperature):
    prep = _prepare(eqc, effective_lengths, prior)
    a, cycles, evals, conv = _em_loop(eqc, prep, init, min_iter, max_iter, rel_tol, abs_cutoff, algorithm, squarem,
                                      temperature)
    return EMResult(truncate(a, cutoff), cycles, evals, conv, _objective_only(eqc, prep, a, algorithm))


_em_jit = jax.jit(_em_impl, static_argnames=("algorithm", "squarem", "temperature"))


def em_unrolled(
    eqc: EquivalenceClasses,
    effective_lengths: Array,
    init: Array,
    n_iterations: int,
    *,
    algorithm: str = "em",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    temperature: float = 1.0,
    return_history: bool = False,
):
    """A fixed number of EM/VBEM iterations by ``lax.scan``: differentiable in every input.

    Gradients flow to ``init``, ``effective_lengths``, ``eqc.weights`` and ``eqc.counts`` (reverse mode
    through a ``while_loop`` is not possible, hence this mode).

    Args:
        eqc, effective_lengths, algorithm, prior, per_nucleotide_prior, temperature: as in :func:`em`.
        init: ``Float[Array, "T"]`` starting expected counts.
        n_iterations: number of map evaluations.
        return_history: also return the objective before each iteration (``Float[Array, "n_iterations"]``).

    Returns:
        ``Float[Array, "T"]`` expected counts after ``n_iterations`` (untruncated), and the history if asked.

    Example:
        >>> eqc = make_eq_classes([0, 0, 1], [0, 1, 1], counts=[30, 10], n_transcripts=2)
        >>> f = lambda l: em_unrolled(eqc, l, jnp.array([20.0, 20.0]), 5)[0]
        >>> bool(jax.grad(f)(jnp.array([1.0, 2.0]))[1] > 0)
        True
    """
    _check_algorithm(algorithm)
    _check_temperature(temperature)
    _check_count("n_iterations", n_iterations, 0)
    _check_init(init, eqc.n_transcripts)
    validate(eqc, effective_lengths)
    effective_lengths = jnp.asarray(effective_lengths, eqc.counts.dtype)
    p = _prior_for(eqc, effective_lengths, algorithm, prior, per_nucleotide_prior)
    temperature = float(temperature) if _is_concrete(temperature) else temperature
    final, history = _unrolled_jit(eqc, effective_lengths, p, jnp.asarray(init, eqc.counts.dtype),
                                   n_iterations=int(n_iterations), algorithm=algorithm, temperature=temperature,
                                   history=bool(return_history))
    return (final, history) if return_history else final


def _unrolled_impl(eqc, effective_lengths, prior, init, *, n_iterations, algorithm, temperature, history):
    prep = _prepare(eqc, effective_lengths, prior)

    def body(a, _):
        return _step(eqc, prep, a, algorithm, temperature, with_objective=history)

    return lax.scan(body, init, None, length=n_iterations)


_unrolled_jit = jax.jit(_unrolled_impl, static_argnames=("n_iterations", "algorithm", "temperature", "history"))


# --- several samples on one transcriptome in one program -------------------------------------------
def stack_eq_classes(eqcs, *, n_classes: int | None = None, n_entries: int | None = None) -> EquivalenceClasses:
    """Several samples' classes over the same ``T`` transcripts as one structure with a leading sample axis.

    Each sample is validated (:func:`validate`), then padded to ``n_classes`` classes and ``n_entries``
    entries: the extra entries have weight 0 and sit in the extra classes, which have 0 fragments, so
    every map evaluation, objective and Gibbs round of a sample is the one of its unpadded classes (a
    weight-0 entry and a count-0 class are inert). At least one extra class is kept, to hold the padding.

    Args:
        eqcs: a sequence of :class:`EquivalenceClasses` with equal ``n_transcripts`` and
            ``weights_include_length``.
        n_classes: padded class count (default one more than the largest); n_entries: padded entry
            count (default the largest).

    Returns:
        :class:`EquivalenceClasses` whose arrays have shape ``(K, ...)``, for :func:`em_batch` (or
        ``jax.vmap`` over its leading axis), not for :func:`em` itself.
    """
    eqcs = list(eqcs)
    if not eqcs or not all(isinstance(e, EquivalenceClasses) for e in eqcs):
        raise TypeError("eqcs: expected a non-empty sequence of EquivalenceClasses")
    first = eqcs[0]
    for k, e in enumerate(eqcs):
        validate(e, name=f"eqcs[{k}]")
        if e.n_transcripts != first.n_transcripts:
            raise ValueError(f"eqcs[{k}]: {e.n_transcripts} transcripts, eqcs[0] has {first.n_transcripts}")
        if e.weights_include_length != first.weights_include_length:
            raise ValueError(f"eqcs[{k}]: weights_include_length={e.weights_include_length}, eqcs[0] has "
                             f"{first.weights_include_length} (one program needs one kind of weights)")
    c_max = max(e.n_classes for e in eqcs) + 1
    e_max = max(e.n_entries for e in eqcs)
    n_classes = c_max if n_classes is None else n_classes
    n_entries = e_max if n_entries is None else n_entries
    _check_count("n_classes", n_classes, c_max)
    _check_count("n_entries", n_entries, e_max)
    dtype = jnp.result_type(float)
    K = len(eqcs)
    cid = np.full((K, n_entries), n_classes - 1, np.int32)
    tid = np.zeros((K, n_entries), np.int32)
    w = np.zeros((K, n_entries), dtype)
    n = np.zeros((K, n_classes), dtype)
    for k, e in enumerate(eqcs):
        E, C = e.n_entries, e.n_classes
        cid[k, :E], tid[k, :E], w[k, :E], n[k, :C] = e.class_ids, e.transcript_ids, e.weights, e.counts
    return EquivalenceClasses(jnp.asarray(cid), jnp.asarray(tid), jnp.asarray(w), jnp.asarray(n),
                              n_transcripts=first.n_transcripts, weights_include_length=first.weights_include_length)


def em_batch(
    eqc: EquivalenceClasses,
    effective_lengths: Array,
    *,
    algorithm: str = "em",
    prior: float | None = None,
    per_nucleotide_prior: bool = False,
    init: Array | None = None,
    counts: Array | None = None,
    min_iter: int = 100,
    max_iter: int = 10_000,
    rel_tol: float = REL_DIFF_TOLERANCE,
    abs_cutoff: float = ALPHA_CHECK_CUTOFF,
    squarem: bool = False,
    temperature: float = 1.0,
    truncate_below: float = MIN_ALPHA,
    batch_size: int | None = None,
) -> EMResult:
    """:func:`em` for every sample of a :func:`stack_eq_classes` structure, in one compiled program.

    The samples are vmapped (``batch_size=None``) or mapped ``batch_size`` at a time (``lax.map``). Under
    ``vmap`` the ``while_loop`` runs until the slowest sample has converged and leaves each finished
    sample's state as it was, so every sample stops where it would stop alone: the same iterate as
    :func:`em` on it, to rounding.

    Args:
        eqc: ``(K, ...)`` from :func:`stack_eq_classes`.
        effective_lengths: ``Float[Array, "K T"]`` (each sample its own, as salmon estimates them).
        init: ``Float[Array, "K T"]`` starts (default :func:`uniform_init` per sample).
        counts: ``Float[Array, "K R C"]``: instead of ``eqc.counts``, ``R`` count vectors per sample, each
            run from its uniform start (salmon's bootstrap); the result then has shape ``(K, R, ...)``.
        the rest: as in :func:`em`; ``prior`` is checked against every sample's fragment total.

    Returns:
        :class:`EMResult` with a leading sample axis (``(K, R)`` with ``counts``).
    """
    _check_algorithm(algorithm)
    _check_temperature(temperature)
    _check_loop(min_iter, max_iter, rel_tol, abs_cutoff, truncate_below)
    if batch_size is not None:
        _check_count("batch_size", batch_size, 1)
    dtype = eqc.counts.dtype
    if eqc.counts.ndim != 2:
        raise ValueError(f"eqc: expected a stack_eq_classes structure (counts (K, C)), got counts of shape "
                         f"{eqc.counts.shape}")
    K, C = eqc.counts.shape
    T = eqc.n_transcripts
    lengths = np.asarray(effective_lengths)
    if lengths.shape != (K, T):
        raise ValueError(f"effective_lengths: expected shape ({K}, {T}), got {lengths.shape}")
    if not np.all(np.isfinite(lengths)) or np.any(lengths <= 0):
        raise ValueError("effective_lengths: must be finite and positive")
    if counts is not None:
        counts = jnp.asarray(counts, dtype)
        if counts.ndim != 3 or counts.shape[0] != K or counts.shape[2] != C:
            raise ValueError(f"counts: expected shape ({K}, R, {C}), got {counts.shape}")
        if init is not None:
            raise ValueError("init: every count vector starts from its uniform start; give init or counts, not both")
    if init is not None:
        a = np.asarray(init)
        if a.shape != (K, T):
            raise ValueError(f"init: expected shape ({K}, {T}), got {a.shape}")
        for k in range(K):
            _check_init(a[k], T)
    totals = np.sum(np.asarray(eqc.counts, np.float64), axis=1)
    priors = []
    for k in range(K):
        if algorithm == "em":
            check_prior(prior)
            priors.append(np.zeros(T, dtype))
            continue
        value = prior if prior is not None else (PER_NUCLEOTIDE_PRIOR if per_nucleotide_prior else PER_TRANSCRIPT_PRIOR)
        check_prior(value, T, lengths[k], per_nucleotide_prior, total_counts=float(totals[k]), dtype=dtype)
        priors.append(np.asarray(prior_vector(T, lengths[k], prior, per_nucleotide_prior), dtype))
    temperature = float(temperature) if _is_concrete(temperature) else temperature
    scalars = (jnp.asarray(min_iter, jnp.int32), jnp.asarray(max_iter, jnp.int32), jnp.asarray(rel_tol, dtype),
               jnp.asarray(abs_cutoff, dtype), jnp.asarray(truncate_below, dtype))
    return _em_batch_jit(eqc, jnp.asarray(lengths, dtype), jnp.asarray(np.stack(priors)),
                         None if init is None else jnp.asarray(init, dtype), counts, *scalars, algorithm=algorithm,
                         squarem=bool(squarem), temperature=temperature, batch_size=batch_size)


def _em_batch_impl(eqc, lengths, prior, init, counts, min_iter, max_iter, rel_tol, abs_cutoff, cutoff, *,
                   algorithm, squarem, temperature, batch_size):
    def solve(e, l, p, a0):
        a0 = _uniform_init_jit(e) if a0 is None else a0
        return _em_impl(e, l, p, a0, min_iter, max_iter, rel_tol, abs_cutoff, cutoff, algorithm=algorithm,
                        squarem=squarem, temperature=temperature)

    def one(xs):
        e, l, p, a0, c = xs
        if c is None:
            return solve(e, l, p, a0)
        return jax.vmap(lambda ck: solve(e.replace(counts=ck), l, p, None))(c)

    xs = (eqc, lengths, prior, init, counts)
    if batch_size is None:
        return jax.vmap(one)(xs)
    return lax.map(one, xs, batch_size=batch_size)


_em_batch_jit = jax.jit(_em_batch_impl, static_argnames=("algorithm", "squarem", "temperature", "batch_size"))


def tpm(counts: Array, effective_lengths: Array) -> Array:
    """``1e6 (a_t / l_t) / sum_j (a_j / l_j)`` (salmon's TPM from NumReads); all zeros if every ``a`` is 0."""
    rate = counts / effective_lengths
    total = jnp.sum(rate)
    return jnp.where(total > 0, 1e6 * rate / jnp.where(total > 0, total, 1.0), 0.0)


def quant_outputs(counts: Array, effective_lengths: Array) -> QuantOutputs:
    """Read fractions, estimated counts and TPM from expected counts ``a``.

    Example:
        >>> out = quant_outputs(jnp.array([10.0, 30.0]), jnp.array([100.0, 300.0]))
        >>> [float(x) for x in out.abundances], [float(x) for x in out.tpm]
        ([0.25, 0.75], [500000.0, 500000.0])
    """
    counts = jnp.asarray(counts)
    return _quant_outputs_jit(counts, jnp.asarray(effective_lengths, counts.dtype))


@jax.jit
def _quant_outputs_jit(counts, effective_lengths):
    total = jnp.sum(counts)
    abundances = jnp.where(total > 0, counts / jnp.where(total > 0, total, 1.0), 0.0)
    return QuantOutputs(abundances, counts, tpm(counts, effective_lengths))


# --- salmon's Gibbs sampler over equivalence classes ----------------------------------------------
GIBBS_BETA = 0.1  # salmon's rate offset of the Gamma draw (CollapsedGibbsSampler.cpp, ``beta``)


def gibbs_num_chains(num_samples: int) -> int:
    """salmon's number of chains for ``num_samples`` draws: 1, then 2 from 50, 4 from 100, 8 from 200."""
    return 8 if num_samples >= 200 else 4 if num_samples >= 100 else 2 if num_samples >= 50 else 1


class _GibbsLayout(NamedTuple):
    """The fragments of classes with more than one live entry, each as its class's entry range."""

    frag_lo: Array  # (F,) first entry of the fragment's class
    frag_hi: Array  # (F,) one past its last entry
    frag_weight: Array  # (F,) 1 per fragment; 0 for the padding of a batch (gibbs_sample_batch)
    class_start: Array  # (E,) bool: the entry opens its class (for the segmented cumulative sum)
    direct: Array  # (T,) fragments of single-entry classes, given outright
    active: Array  # (T,) bool: the transcript has a live entry


def _gibbs_layout(eqc: EquivalenceClasses) -> tuple[_GibbsLayout, int]:
    cid = np.asarray(eqc.class_ids)
    tid = np.asarray(eqc.transcript_ids)
    w = np.asarray(eqc.weights)
    n = np.asarray(eqc.counts, np.float64)
    if not np.all(n == np.floor(n)):
        i = int(np.argmax(n != np.floor(n)))
        raise ValueError(f"counts: the Gibbs sampler assigns whole fragments; class {i} has {n[i]!r}")
    C, T = n.size, eqc.n_transcripts
    live = w > 0
    sizes = np.bincount(cid[live], minlength=C)
    start = np.searchsorted(cid, np.arange(C), side="left")
    end = np.searchsorted(cid, np.arange(C), side="right")
    multi = (sizes > 1) & (n > 0)
    reps = n.astype(np.int64) * multi
    frag_lo = np.repeat(start, reps).astype(np.int32)
    frag_hi = np.repeat(end, reps).astype(np.int32)
    single = live & (sizes[cid] == 1)
    direct = np.bincount(tid[single], weights=n[cid[single]], minlength=T)
    active = np.bincount(tid[live], minlength=T) > 0
    opens = np.zeros(cid.size, bool)
    opens[start[end > start]] = True
    width = int((end - start)[multi].max()) if multi.any() else 1
    dtype = eqc.counts.dtype
    return _GibbsLayout(jnp.asarray(frag_lo), jnp.asarray(frag_hi), jnp.ones(frag_lo.shape, dtype), jnp.asarray(opens),
                        jnp.asarray(direct, dtype), jnp.asarray(active)), width


def _n_bisect(width: int) -> int:
    return max(1, int(np.ceil(np.log2(width))) + 1)


def _segmented_cumsum(values: Array, opens: Array) -> Array:
    """Inclusive cumulative sum that restarts at every ``opens`` entry (exact per class in any float type)."""
    def combine(left, right):
        lf, lv = left
        rf, rv = right
        return lf | rf, jnp.where(rf, rv, lv + rv)

    return lax.associative_scan(combine, (opens, values))[1]


def _gibbs_round(eqc, layout, log_aff, log_len, prior, n_bisect, x, key):
    """One salmon round: rates ``mu_t ~ Gamma(x_t + prior_t, 1/(beta + l_t))`` for the active transcripts,
    then every fragment of a multi-transcript class reassigned ``∝ mu_t l_t aff_ct``. Returns the new hard
    counts and ``log(mu_t l_t)`` (``-inf`` for inactive transcripts)."""
    k_gamma, k_unif = jax.random.split(key)
    shape = jnp.where(layout.active, x + prior, 1.0)
    log_theta = jnp.where(layout.active, jax.random.loggamma(k_gamma, shape, dtype=x.dtype) + log_len, -jnp.inf)
    cid, tid = eqc.class_ids, eqc.transcript_ids
    logits = lax.optimization_barrier(log_theta)[tid] + log_aff
    top = jax.ops.segment_max(logits, cid, eqc.n_classes, indices_are_sorted=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    p = jnp.where(jnp.isfinite(logits), jnp.exp(logits - top[cid]), 0.0)
    cum = _segmented_cumsum(p, layout.class_start)
    F = layout.frag_lo.shape[0]
    if F:
        # u scaled by the class total, so the entry found always has positive probability
        u = jax.random.uniform(k_unif, (F,), x.dtype) * cum[layout.frag_hi - 1]
        lo, hi = layout.frag_lo, layout.frag_hi - 1
        for _ in range(n_bisect):  # first entry of the class range with cum > u
            mid = (lo + hi) // 2
            right = cum[mid] <= u
            lo = jnp.where(right, mid + 1, lo)
            hi = jnp.where(right, hi, mid)
        hits = jax.ops.segment_sum(layout.frag_weight, tid[jnp.minimum(lo, layout.frag_hi - 1)], eqc.n_transcripts)
    else:
        hits = jnp.zeros_like(x)
    return hits + layout.direct, log_theta


def _gibbs_impl(eqc, layout, effective_lengths, prior, init, keys, *, num_samples, thinning, n_bisect, beta):
    log_aff = _safe_log(entry_affinities(eqc, effective_lengths))
    log_len = jnp.log(effective_lengths) - jnp.log(beta + effective_lengths)
    x0 = jnp.where(layout.active, init, 0.0)

    def chain(key):
        def sample(carry, _):
            x, key = carry

            def rnd(_, state):
                x, _, key = state
                key, sub = jax.random.split(key)
                x, log_theta = _gibbs_round(eqc, layout, log_aff, log_len, prior, n_bisect, x, sub)
                return x, log_theta, key

            x, log_theta, key = lax.fori_loop(0, thinning, rnd, (x, jnp.zeros_like(x), key))
            return (x, key), log_theta

        return lax.scan(sample, (x0, key), None, length=num_samples)[1]

    return jax.vmap(chain)(keys)


_gibbs_jit = jax.jit(_gibbs_impl, static_argnames=("num_samples", "thinning", "n_bisect", "beta"))


def gibbs_sample(
    eqc: EquivalenceClasses,
    effective_lengths: Array,
    init: Array,
    key,
    *,
    num_samples: int,
    thinning_factor: int = 16,
    prior=1.0,
    num_chains: int | None = None,
    total: float | None = None,
    beta: float = GIBBS_BETA,
    truncate_below: float = MIN_ALPHA,
) -> Array:
    """salmon's Gibbs sampler (``CollapsedGibbsSampler.cpp``, after Turro et al. 2011), vectorised.

    Each round draws a rate per active transcript, ``mu_t ~ Gamma(x_t + prior_t, rate = beta + l_t)``
    (``x`` the hard counts of the previous round; at a chain's start the point estimate ``init``), then
    reassigns every fragment of a class with more than one transcript to transcript ``t`` with
    probability ``∝ mu_t w_ct`` (``w_ct`` salmon's per-entry weight before the ``1/l`` factor, i.e.
    ``∝ (mu_t l_t) aff_ct``); single-transcript classes keep their fragments. After
    ``thinning_factor`` rounds a draw is recorded: ``total * mu_t l_t / sum_j mu_j l_j``, values
    ``<= truncate_below`` set to 0 (salmon's count extrapolation). Transcripts in no class stay at 0.
    Chains (salmon: :func:`gibbs_num_chains`) run in parallel (``vmap``) and each restarts from
    ``init``; chain ``k`` gives draws ``k * (R // n) ..``, the last one the remainder, as in salmon.
    All fragments are reassigned at once (one uniform each, found by bisection in its class's
    cumulative weights, computed in log space), so a round is O(fragments * log(class size) + entries).

    Args:
        eqc: equivalence classes (concrete counts, whole numbers: the fragment layout is built from them).
        effective_lengths: ``Float[Array, "T"]``.
        init: ``Float[Array, "T"]`` start of every chain (salmon: the EM/VBEM estimate).
        key: a ``jax.random`` key (or an integer seed).
        num_samples: draws ``R``; thinning_factor: rounds per draw (salmon's ``--thinningFactor``, 16).
        prior: ``prior_t`` (scalar or ``(T,)``); salmon uses 1 per transcript after VBEM (``max(vbPrior, 1)``)
            and 1e-3 after EM.
        num_chains: default salmon's rule.
        total: what each draw sums to (default the number of fragments, ``sum(eqc.counts)``).
        beta: the Gamma's rate offset (salmon 0.1).

    Returns:
        ``Float[Array, "R T"]`` draws of the expected counts.
    """
    chains, step, longest = _gibbs_chains(num_samples, num_chains)
    _check_count("thinning_factor", thinning_factor, 1)
    validate(eqc, effective_lengths)
    dtype = eqc.counts.dtype
    lengths = jnp.asarray(effective_lengths, dtype)
    p = jnp.broadcast_to(jnp.asarray(prior, dtype), (eqc.n_transcripts,))
    if not bool(jnp.all(jnp.isfinite(p) & (p > 0))):
        raise ValueError("prior: the Gibbs prior must be finite and positive")
    _check_init(init, eqc.n_transcripts)
    layout, width = _gibbs_layout(eqc)
    n_bisect = _n_bisect(width)
    if isinstance(key, (int, np.integer)):
        key = jax.random.PRNGKey(int(key))
    keys = jax.random.split(key, chains)
    log_theta = _gibbs_jit(eqc, layout, lengths, p, jnp.asarray(init, dtype), keys, num_samples=int(longest),
                           thinning=int(thinning_factor), n_bisect=n_bisect, beta=float(beta))
    n = jnp.sum(eqc.counts) if total is None else jnp.asarray(total, dtype)
    return _gibbs_draws(log_theta, step, n, truncate_below)


def _gibbs_chains(num_samples: int, num_chains: int | None) -> tuple[int, int, int]:
    """``(chains, draws kept per chain but the last, draws run per chain)`` (salmon's split)."""
    _check_count("num_samples", num_samples, 1)
    if num_chains is not None:
        _check_count("num_chains", num_chains, 1)
    chains = gibbs_num_chains(num_samples) if num_chains is None else int(num_chains)
    chains = min(chains, num_samples)
    step = num_samples // chains
    return chains, step, num_samples - (chains - 1) * step


def _gibbs_draws(log_theta: Array, step: int, n: Array, truncate_below: float) -> Array:
    """Chain ``k`` gives draws ``k * step ..``, the last chain the rest; ``n mu_t l_t / sum_j mu_j l_j``."""
    chains = log_theta.shape[0]
    parts = [log_theta[k, :step] for k in range(chains - 1)] + [log_theta[chains - 1]]
    draws = n * jax.nn.softmax(jnp.concatenate(parts, axis=0), axis=-1)
    return jnp.where(draws > truncate_below, draws, 0.0)


def gibbs_sample_batch(
    eqcs,
    effective_lengths: Array,
    init: Array,
    keys,
    *,
    num_samples: int,
    thinning_factor: int = 16,
    prior=1.0,
    num_chains: int | None = None,
    beta: float = GIBBS_BETA,
    truncate_below: float = MIN_ALPHA,
    n_classes: int | None = None,
    n_entries: int | None = None,
) -> Array:
    """:func:`gibbs_sample` for several samples on one transcriptome, vmapped in one compiled program.

    The classes are padded as in :func:`stack_eq_classes` and the fragments of the multi-transcript
    classes to the largest sample's number, the padding fragments weighing 0. A sample's random numbers
    are those it draws alone with its key (``jax.random`` values do not depend on the array length they
    are cut from), so its draws are :func:`gibbs_sample`'s with that key, to rounding.

    Args:
        eqcs: a sequence of ``K`` :class:`EquivalenceClasses` (whole-number counts, equal ``n_transcripts``).
        effective_lengths, init: ``Float[Array, "K T"]``.
        keys: ``K`` ``jax.random`` keys (or integer seeds), one per sample.
        prior: scalar, ``(T,)`` or ``(K, T)``.
        n_classes, n_entries: padding (see :func:`stack_eq_classes`).
        the rest: as in :func:`gibbs_sample`.

    Returns:
        ``Float[Array, "K R T"]``.
    """
    eqcs = list(eqcs)
    chains, step, longest = _gibbs_chains(num_samples, num_chains)
    _check_count("thinning_factor", thinning_factor, 1)
    stacked = stack_eq_classes(eqcs, n_classes=n_classes, n_entries=n_entries)
    K, T = len(eqcs), stacked.n_transcripts
    dtype = stacked.counts.dtype
    lengths = np.asarray(effective_lengths)
    if lengths.shape != (K, T):
        raise ValueError(f"effective_lengths: expected shape ({K}, {T}), got {lengths.shape}")
    starts = np.asarray(init)
    if starts.shape != (K, T):
        raise ValueError(f"init: expected shape ({K}, {T}), got {starts.shape}")
    for e, l, a in zip(eqcs, lengths, starts):
        validate(e, l)
        _check_init(a, T)
    p = jnp.broadcast_to(jnp.asarray(prior, dtype), (K, T))
    if not bool(jnp.all(jnp.isfinite(p) & (p > 0))):
        raise ValueError("prior: the Gibbs prior must be finite and positive")
    if isinstance(keys, (list, tuple)) and keys and isinstance(keys[0], (int, np.integer)):
        keys = [jax.random.PRNGKey(int(k)) for k in keys]
    keys = jnp.asarray(keys)
    if keys.shape[0] != K:
        raise ValueError(f"keys: expected {K} keys, got {keys.shape[0]}")
    layouts, widths = zip(*(_gibbs_layout(e) for e in eqcs))
    F = max(int(lay.frag_lo.shape[0]) for lay in layouts)
    E = stacked.class_ids.shape[1]

    def pad(x, size, fill):
        x = np.asarray(x)
        return np.concatenate([x, np.full((size - x.shape[0],), fill, x.dtype)])

    layout = _GibbsLayout(
        frag_lo=jnp.asarray(np.stack([pad(lay.frag_lo, F, 0) for lay in layouts])),
        frag_hi=jnp.asarray(np.stack([pad(lay.frag_hi, F, 1) for lay in layouts])),  # a valid range, weight 0
        frag_weight=jnp.asarray(np.stack([pad(lay.frag_weight, F, 0) for lay in layouts])),
        class_start=jnp.asarray(np.stack([pad(lay.class_start, E, True) for lay in layouts])),
        direct=jnp.stack([lay.direct for lay in layouts]),
        active=jnp.stack([lay.active for lay in layouts]),
    )
    chain_keys = jax.vmap(lambda k: jax.random.split(k, chains))(keys)
    log_theta = _gibbs_batch_jit(stacked, layout, jnp.asarray(lengths, dtype), p, jnp.asarray(starts, dtype),
                                 chain_keys, num_samples=int(longest), thinning=int(thinning_factor),
                                 n_bisect=_n_bisect(max(widths)), beta=float(beta))
    totals = jnp.sum(stacked.counts, axis=1)
    return jax.vmap(lambda lt, n: _gibbs_draws(lt, step, n, truncate_below))(log_theta, totals)



def _gibbs_batch_impl(eqc, layout, lengths, prior, init, keys, *, num_samples, thinning, n_bisect, beta):
    def one(e, lay, l, p, a, k):
        return _gibbs_impl(e, lay, l, p, a, k, num_samples=num_samples, thinning=thinning, n_bisect=n_bisect,
                           beta=beta)

    return jax.vmap(one)(eqc, layout, lengths, prior, init, keys)


_gibbs_batch_jit = jax.jit(_gibbs_batch_impl, static_argnames=("num_samples", "thinning", "n_bisect", "beta"))
