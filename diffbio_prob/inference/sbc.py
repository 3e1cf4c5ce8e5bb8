"""Simulation-based calibration (SBC; Talts, Betancourt, Simpson, Vehtari and Gelman 2018, arXiv:1804.06788).

Draw parameters from the prior, simulate data, fit the posterior, and record the rank of each true
parameter among ``L`` posterior draws. If the sampler and the model agree, every rank is uniform on
``0..L`` (Talts et al., Theorem 1); a shifted posterior piles ranks at one end, an over-confident one at
both ends, an over-dispersed one in the middle.

- :func:`ranks`, :func:`thin`: the rank statistic and the thinning of correlated draws (Talts et al., 4.2);
- :func:`uniformity_pvalue`: Pearson's chi-square over ``B`` equal bins of the ``L + 1`` rank values;
- :func:`holm`: Holm's step-down adjustment for the many parameters of one model (Holm 1979);
- :func:`run_sbc`: the whole loop for a NumPyro model, NUTS over all replicates in one compiled program
  (the same chain program as :func:`~diffbio_prob.inference.fit_nuts`, mapped over replicates'
  data instead of chains' keys);
- :func:`hmm_problem`, :func:`nb_glm_problem`, :func:`em_problem`: small SBC set-ups of the three models
  (``bench/sbc.py`` runs them; the tests run a smaller version).

Example:
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=200)                               # prior N(0, 1), no data: posterior = prior
    >>> calibrated, shifted = rng.normal(size=(200, 99)), rng.normal(1.0, 1.0, (200, 99))
    >>> p_ok, p_bad = (uniformity_pvalue(ranks(truth, d), 99) for d in (calibrated, shifted))
    >>> bool(p_ok > 0.01), bool(p_bad < 0.01)
    (True, True)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import NUTS, init_to_median
from scipy import stats

from diffbio_prob.inference.numpyro_fit import _nuts_chain, as_prng_key, model_sites
from diffbio_prob.inference.progress import Progress
from diffbio_prob.models.em import em_model
from diffbio_prob.models.hmm import hmm_model, relabel_states
from diffbio_prob.models.nb_glm import nb_glm_model

__all__ = ["SBCProblem", "SBCResult", "em_problem", "flatten_scalars", "hmm_problem", "holm", "nb_glm_problem",
           "ranks", "run_sbc", "thin", "uniformity_pvalue"]


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def ranks(truth, draws) -> np.ndarray:
    """``Int[ndarray, "R ..."]`` number of posterior draws below the true value, in ``0..L``.

    Args:
        truth: ``(R, ...)`` the prior draw of each replicate.
        draws: ``(R, L, ...)`` ``L`` posterior draws per replicate.

    Ties (only for discrete or rounded values) count half, so they cannot push ranks to one side
    (Talts et al. break them at random).
    """
    truth, draws = np.asarray(truth, dtype=float), np.asarray(draws, dtype=float)
    if draws.ndim < 2 or draws.shape[:1] + draws.shape[2:] != truth.shape:
        raise ValueError(f"draws: expected shape (R, L) + truth's trailing shape with R = {truth.shape[:1]}, got "
                         f"draws {draws.shape} for truth {truth.shape}")
    if not (np.all(np.isfinite(truth)) and np.all(np.isfinite(draws))):
        raise ValueError("truth, draws: expected finite values (a non-finite draw means the fit failed)")
    below = np.sum(draws < truth[:, None], axis=1)
    ties = np.sum(draws == truth[:, None], axis=1)
    return np.floor(below + ties / 2).astype(int)


def thin(draws, num_draws: int, axis: int = 1) -> np.ndarray:
    """``num_draws`` equally spaced draws along ``axis`` (the last of each stride), to cut autocorrelation.

    Correlated draws make the rank histogram too peaked or U-shaped even for a correct sampler (Talts et
    al., section 4.2): keep about one draw per effective sample.
    """
    draws = np.asarray(draws)
    num_draws = _positive_int("num_draws", num_draws)
    n = draws.shape[axis]
    if n < num_draws:
        raise ValueError(f"num_draws: {num_draws} exceeds the {n} draws available")
    stride = n // num_draws
    idx = np.arange(1, num_draws + 1) * stride - 1
    return np.take(draws, idx, axis=axis)


def uniformity_pvalue(rank_values, num_draws: int, bins: int | None = None) -> float:
    """p-value of Pearson's chi-square test that ranks are uniform on ``0..num_draws``.

    The ``num_draws + 1`` rank values are grouped into ``bins`` bins of equal width (``bins`` must divide
    ``num_draws + 1``: unequal bins would not have equal expected counts). Default: the largest divisor
    of ``num_draws + 1`` that leaves at least 5 expected ranks per bin (the chi-square approximation's
    usual condition), at most 20.
    """
    r = np.asarray(rank_values)
    num_draws = _positive_int("num_draws", num_draws)
    if r.ndim != 1 or r.size < 2:
        raise ValueError(f"rank_values: expected a 1-d array of at least 2 ranks, got shape {r.shape}")
    if not np.issubdtype(r.dtype, np.integer) or r.min() < 0 or r.max() > num_draws:
        raise ValueError(f"rank_values: expected integers in 0..{num_draws} (num_draws)")
    values = num_draws + 1
    if bins is None:
        bins = _default_bins(r.size, num_draws)
    bins = _positive_int("bins", bins, 2)
    if values % bins:
        raise ValueError(f"bins: expected a divisor of num_draws + 1 = {values}, got {bins}")
    counts = np.bincount(r // (values // bins), minlength=bins)
    return float(stats.chisquare(counts).pvalue)


def _default_bins(num_ranks: int, num_draws: int, name: str = "rank_values") -> int:
    values = num_draws + 1
    fits = [b for b in range(2, min(20, values) + 1) if values % b == 0 and num_ranks / b >= 5]
    if not fits:
        raise ValueError(f"{name}: {num_ranks} ranks are too few for a chi-square test over the {values} "
                         f"rank values (need 5 per bin and at least 2 bins that divide {values})")
    return fits[-1]


def holm(pvalues) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values: reject ``H_i`` at level ``a`` iff ``adjusted_i <= a``.

    Controls the family-wise error rate under any dependence between the tests (the elements of one
    simplex are dependent), and is uniformly more powerful than Bonferroni.

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("pvalues: expected a 1-d array of numbers in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def flatten_scalars(values: Mapping[str, Any], lead: int = 1) -> dict[str, np.ndarray]:
    """One entry per scalar parameter: ``site[i,j]`` -> the array over the ``lead`` leading axes.

    Example:
        >>> sorted(flatten_scalars({"a": np.zeros((4, 2)), "b": np.zeros(4)}))
        ['a[0]', 'a[1]', 'b']
    """
    out = {}
    for name, v in values.items():
        v = np.asarray(v)
        tail = v.shape[lead:]
        if not tail:
            out[name] = v
            continue
        for idx in np.ndindex(*tail):
            out[f"{name}[{','.join(map(str, idx))}]"] = v[(Ellipsis,) + idx]
    return out


@dataclasses.dataclass
class SBCResult:
    """Ranks and uniformity tests of one SBC run.

    Attributes:
        ranks: ``{parameter: Int[ndarray, "R"]}``, each in ``0..num_draws``.
        num_draws: ``L``, posterior draws per replicate the ranks were taken among.
        bins: chi-square bins.
        pvalues, adjusted: ``{parameter: p}`` raw and Holm-adjusted (over this run's parameters).
        divergences: ``Int[ndarray, "R"]`` divergent transitions per replicate after warm-up.
        mean_steps: ``Float[ndarray, "R"]`` mean leapfrog steps per NUTS iteration after warm-up.
        min_ess: ``{parameter: float}`` the smallest effective sample size of the ``L`` kept draws over
            replicates (``~L`` means the thinning removed the autocorrelation).
        elapsed_s: seconds of the whole run (prior draws, compile, NUTS, ranks).
        truth, draws: ``{parameter: (R,)}`` and ``{parameter: (R, L)}``, what the ranks were taken of
            (after ``functional``), e.g. to rank a deliberately distorted posterior.
    """

    ranks: dict[str, np.ndarray]
    num_draws: int
    bins: int
    pvalues: dict[str, float]
    adjusted: dict[str, float]
    divergences: np.ndarray
    mean_steps: np.ndarray
    min_ess: dict[str, float]
    elapsed_s: float
    truth: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    draws: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    def table(self, level: float = 0.01) -> list[tuple[str, float, float, bool]]:
        """Rows ``(parameter, p, Holm-adjusted p, passes)``; passes when the adjusted p exceeds ``level``."""
        return [(k, self.pvalues[k], self.adjusted[k], self.adjusted[k] > level) for k in self.ranks]

    def passed(self, level: float = 0.01) -> bool:
        """No parameter rejects uniformity at ``level`` after Holm's correction."""
        return all(row[3] for row in self.table(level))


def _leading(tree) -> int:
    sizes = {np.shape(x)[0] for x in jax.tree_util.tree_leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"simulate: expected every array to have the same leading (replicate) axis, got {sizes}")
    return sizes.pop()


def run_sbc(
    model: Callable,
    simulate: Callable[[jax.Array, int], tuple[Mapping[str, Any], Any]],
    build: Callable[[Any], tuple[tuple, dict]],
    num_replicates: int,
    *,
    num_draws: int = 99,
    thinning: int = 4,
    num_warmup: int = 500,
    functional: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None,
    rng_key: int | jax.Array = 0,
    batch_size: int = 20,
    bins: int | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
) -> SBCResult:
    """SBC of ``model`` fitted by NUTS: prior draw, simulated data, posterior ranks, uniformity tests.

    Args:
        model: a NumPyro model.
        simulate: ``simulate(key, R) -> (truth, data)``: ``R`` prior draws ``{site: (R, ...)}`` of the latent
            sites and data simulated from each (a pytree of arrays with a leading ``R`` axis). Drawing
            ``truth`` from the model itself (``numpyro.infer.Predictive`` with the observations ``None``)
            also tests that the model samples its prior the way it scores it.
        build: ``build(data_r) -> (args, kwargs)`` the model's arguments for one replicate's data (array
            leaves may be traced; non-array arguments are static).
        num_replicates: ``R``.
        num_draws: ``L``, draws the ranks are taken among (``L + 1`` rank values).
        thinning: NUTS keeps ``thinning * L`` draws after warm-up, of which every ``thinning``-th is used.
        num_warmup: NUTS warm-up steps (step size and diagonal mass adaptation) per replicate.
        functional: maps ``{site: (..., shape)}`` draws (and the truth, the same way) to the quantities
            ranked, e.g. :func:`~diffbio_prob.models.hmm.relabel_states` for an HMM's label switching;
            default: the truth's sites as they are.
        rng_key: seed or key (prior draws and NUTS keys are split from it).
        batch_size: replicates run in lock step (``lax.map(..., batch_size=)``): larger amortises the
            per-step overhead, smaller limits the cost of one replicate's deep trees to its batch.
        bins: chi-square bins (see :func:`uniformity_pvalue`).
        target_accept_prob, max_tree_depth: NUTS settings.

    Raises:
        RuntimeError: the log density at some replicate's start is not finite, or a draw is not.
    """
    num_replicates = _positive_int("num_replicates", num_replicates, 2)
    num_draws = _positive_int("num_draws", num_draws)
    thinning = _positive_int("thinning", thinning)
    num_warmup = _positive_int("num_warmup", num_warmup, 0)
    batch_size = _positive_int("batch_size", batch_size)
    if bins is None:
        bins = _default_bins(num_replicates, num_draws, "num_replicates")
    bins = _positive_int("bins", bins, 2)
    if (num_draws + 1) % bins:
        raise ValueError(f"bins: expected a divisor of num_draws + 1 = {num_draws + 1}, got {bins}")
    if not callable(simulate) or not callable(build):
        raise TypeError("simulate, build: expected callables")
    start = time.perf_counter()
    key_prior, key_nuts = jax.random.split(as_prng_key(rng_key))
    truth, data = simulate(key_prior, num_replicates)
    truth = {k: np.asarray(v) for k, v in truth.items()}
    if _leading((truth, data)) != num_replicates:
        raise ValueError(f"simulate: expected {num_replicates} replicates on the leading axis")
    first = jax.tree_util.tree_map(lambda x: x[0], data)
    args0, kwargs0 = build(first)
    latent = model_sites(model, *args0, **kwargs0)["latent"]
    missing = set(truth) - set(latent)
    if missing:
        raise ValueError(f"simulate: truth has sites {sorted(missing)} that are not latent sites of the model "
                         f"({latent})")
    num_samples = num_draws * thinning

    def make_kernel() -> NUTS:
        return NUTS(model, init_strategy=init_to_median, target_accept_prob=target_accept_prob,
                    max_tree_depth=max_tree_depth)

    no_bar = Progress(False, num_warmup + num_samples, lambda *_: "")
    chain = _nuts_chain(make_kernel, num_warmup, num_samples, latent, build, no_bar)

    def one(key_data):
        key, d = key_data
        draws, st, _, pe = chain(key, jnp.int32(0), d)
        draws = {k: v[thinning - 1::thinning] for k, v in draws.items() if k in truth}
        return draws, jnp.sum(st["diverging"]), jnp.mean(st["num_steps"]), pe

    keys = jax.random.split(key_nuts, num_replicates)
    program = jax.jit(lambda keys, data: jax.lax.map(one, (keys, data), batch_size=min(batch_size, num_replicates)))
    draws, divergences, steps, start_pe = jax.tree_util.tree_map(np.asarray, program(keys, data))
    if not np.all(np.isfinite(start_pe)):
        raise RuntimeError(f"run_sbc: the log density is not finite at the start of replicates "
                           f"{np.flatnonzero(~np.isfinite(start_pe)).tolist()}")
    if functional is not None:
        truth = {k: np.asarray(v) for k, v in functional(truth).items()}
        draws = {k: np.asarray(v) for k, v in functional(draws).items()}
    truth_s, draws_s = flatten_scalars(truth, 1), flatten_scalars(draws, 2)
    rank = {k: ranks(truth_s[k], draws_s[k]) for k in truth_s}
    # (1 chain, L draws, R replicates): one ESS per replicate
    ess = {k: float(np.min(effective_sample_size(draws_s[k].T[None]))) if num_draws >= 4 else float("nan")
           for k in draws_s}
    p = {k: uniformity_pvalue(v, num_draws, bins) for k, v in rank.items()}
    adj = dict(zip(p, holm(list(p.values()))))
    return SBCResult(ranks=rank, num_draws=num_draws, bins=bins, pvalues=p, adjusted=adj,
                     divergences=np.asarray(divergences), mean_steps=np.asarray(steps), min_ess=ess,
                     elapsed_s=time.perf_counter() - start, truth=truth_s, draws=draws_s)


# ------------------------------------------------------------------------------------------ problems
@dataclasses.dataclass(frozen=True)
class SBCProblem:
    """What :func:`run_sbc` needs for one model: ``run_sbc(p.model, p.simulate, p.build, R,
    functional=p.functional)``; ``description`` says the sizes and priors."""

    model: Callable
    simulate: Callable
    build: Callable
    functional: Callable | None
    description: str

    def run(self, num_replicates: int, **kwargs) -> SBCResult:
        return run_sbc(self.model, self.simulate, self.build, num_replicates, functional=self.functional, **kwargs)


def _prior_predictive(model, data_site: str, *args, **kwargs):
    """``simulate(key, R)`` from the model's own prior predictive: (the other sites' draws, ``data_site``'s)."""
    from numpyro.infer import Predictive

    def simulate(key, n):
        draws = Predictive(model, num_samples=n)(key, *args, **kwargs)
        data = draws.pop(data_site)
        return draws, data

    return simulate


def hmm_problem(num_states: int = 2, num_emissions: int = 3, num_steps: int = 100) -> SBCProblem:
    """:func:`~diffbio_prob.models.hmm.hmm_model` with its default flat Dirichlet priors, one sequence.

    The posterior is symmetric under relabelling the states, and a NUTS chain keeps to one labelling:
    truth and draws are both put in :func:`~diffbio_prob.models.hmm.relabel_states`'s order (states by
    ascending probability of symbol 0), a functional whose posterior does not depend on the labelling.
    """
    kw = dict(num_states=num_states, num_emissions=num_emissions)
    return SBCProblem(
        model=hmm_model,
        simulate=_prior_predictive(hmm_model, "observations", None, num_steps=num_steps, **kw),
        build=lambda obs: ((obs.astype(jnp.int32),), kw),
        functional=lambda d: relabel_states(d, symbol=0),
        description=f"hmm_model: S={num_states} states, M={num_emissions} symbols, one sequence of T={num_steps}, "
                    f"Dirichlet(1) priors; states ordered by emission_probs[:, 0]",
    )


def nb_glm_problem(num_samples: int = 6, num_genes: int = 2, **priors) -> SBCProblem:
    """:func:`~diffbio_prob.models.nb_glm.nb_glm_model`: intercept + a two-group factor, unequal size factors.

    ``priors``: the model's prior keywords (``prior``, ``prior_scale``, ``intercept_scale``, ...); its
    defaults otherwise.
    """
    group = (np.arange(num_samples) >= num_samples // 2).astype(float)
    design = jnp.asarray(np.column_stack([np.ones(num_samples), group]))
    sf = jnp.asarray(np.exp(np.linspace(-0.3, 0.3, num_samples)))
    return SBCProblem(
        model=nb_glm_model,
        simulate=_prior_predictive(nb_glm_model, "counts", None, design, sf, n_genes=num_genes, **priors),
        build=lambda counts: ((counts, design, sf), dict(priors)),
        functional=None,
        description=f"nb_glm_model: N={num_samples} samples (two groups), G={num_genes} genes, intercept + group, "
                    f"size factors exp(-0.3..0.3), priors " + (", ".join(f"{k}={v}" for k, v in priors.items())
                                                               or "the model's defaults"),
    )


def em_problem(num_fragments: int = 200, concentration: float = 1.0, seed: int = 0) -> SBCProblem:
    """:func:`~diffbio_prob.models.em.em_model` on 4 transcripts and 7 equivalence classes.

    The model scores class counts by ``n_c log sum_t alpha_t w_ct / l_t``, which is a multinomial
    log-likelihood (up to a constant) when ``q_ct = w_ct / l_t`` is, for every transcript, a distribution
    over the classes compatible with it: each fragment picks a transcript with probability ``alpha_t``,
    then a class with probability ``q_ct``. So the weights are ``w_ct = q_ct l_t`` with ``q_.t`` drawn
    once (Dirichlet over each transcript's classes), and the counts are
    ``Multinomial(N, sum_t alpha_t q_.t)``; ``alpha`` is drawn from the model's own prior.
    """
    from numpyro import distributions as dist
    from numpyro.infer import Predictive

    from diffbio_prob.cores import em as em_core

    classes = [[0], [1], [0, 1], [1, 2], [2, 3], [3], [0, 1, 2, 3]]
    lengths = np.array([500.0, 1000.0, 1500.0, 800.0])
    cid = np.array([c for c, members in enumerate(classes) for _ in members])
    tid = np.array([t for members in classes for t in members])
    rng = np.random.default_rng(seed)
    q = np.zeros((len(classes), 4))
    for t in range(4):
        rows = np.flatnonzero(tid == t)
        q[cid[rows], t] = rng.dirichlet(np.ones(rows.size))
    weights = q[cid, tid] * lengths[tid]
    eqc = em_core.make_eq_classes(cid, tid, np.ones(len(classes)), 4, weights=weights)
    lengths_j = jnp.asarray(lengths)
    q_j = jnp.asarray(q)

    def simulate(key, n):
        k1, k2 = jax.random.split(key)
        alpha = Predictive(em_model, num_samples=n)(k1, eqc, lengths_j, concentration)["abundances"]
        counts = dist.Multinomial(num_fragments, alpha @ q_j.T).sample(k2)
        return {"abundances": alpha}, counts.astype(jnp.result_type(float))

    return SBCProblem(
        model=em_model,
        simulate=simulate,
        build=lambda counts: ((eqc.replace(counts=counts), lengths_j, concentration), {}),
        functional=None,
        description=f"em_model: T=4 transcripts, C=7 classes, N={num_fragments} fragments, "
                    f"Dirichlet({concentration}) prior",
    )
