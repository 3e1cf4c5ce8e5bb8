"""DESeq2's differential-expression pipeline on the JAX NB-GLM core, giving R's answers.

``fit_deseq2`` runs what R's ``DESeq()`` runs: size factors (median of ratios, ``poscounts`` or
``iterate``), gene-wise Cox-Reid dispersions, the parametric dispersion trend (``a0 + a1 / mean``,
the trimmed mean as fallback), MAP dispersions with DESeq2's outlier rule, the GLM coefficients,
the Wald test or the likelihood-ratio test against a reduced design, Cook's distances, and the
replacement of outlier counts with a refit when a cell has at least 7 replicates.
``DESeq2Fit.results`` is R's ``results()``: contrasts by factor levels, coefficient name or numeric
vector, Cook's filtering, independent filtering at ``alpha = 0.1`` and Benjamini-Hochberg.

Every per-gene computation runs in the vectorised core (:mod:`diffbio_prob.cores.nb`) with genes as
the batch axis; when JAX sees several devices the genes are sharded across them
(``jax.sharding.NamedSharding`` over a one-axis mesh) and results do not change. The small global
steps (the dispersion trend, the prior variance, filtering) run on the host with R's own
definitions (:mod:`diffbio_prob.workflows.deseq2.rstats`).

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> counts = pd.DataFrame(rng.negative_binomial(5, 0.1, size=(50, 8)),
    ...                       index=[f"g{i}" for i in range(50)], columns=[f"s{j}" for j in range(8)])
    >>> meta = pd.DataFrame({"condition": ["A"] * 4 + ["B"] * 4}, index=counts.columns)
    >>> res = deseq2(counts, meta, "~ condition", contrast=["condition", "B", "A"])  # doctest: +SKIP
    >>> list(res.columns)  # doctest: +SKIP
    ['baseMean', 'log2FoldChange', 'lfcSE', 'stat', 'pvalue', 'padj']
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from diffbio_prob.cores import nb as core
from diffbio_prob.io.counts import align_counts, from_anndata, validate_counts
from diffbio_prob.workflows.deseq2 import rstats
from diffbio_prob.workflows.deseq2.design import Contrast, Design, build_design, resolve_contrast

__all__ = [
    "DESeq2Options",
    "DESeq2Fit",
    "fit_deseq2",
    "deseq2",
    "estimate_size_factors",
    "prepare_inputs",
]

LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class DESeq2Options:
    """DESeq2's control parameters (R defaults)."""

    min_disp: float = 1e-8
    kappa_0: float = 1.0
    disp_tol: float = 1e-6
    disp_maxit: int = 100
    min_mu: float = 0.5
    beta_tol: float = 1e-8
    beta_maxit: int = 100
    outlier_sd: float = 2.0
    min_replicates_for_replace: float = 7
    fit_type: str = "parametric"
    dispersion_fit: str = "deseq2"  # "deseq2" (R's line search, R's numbers) or "newton" (exact optimum)


# ------------------------------------------------------------------------------------------
# Devices and shapes: the gene axis is padded to a bucket and sharded over the devices. For small
# problems (compilation costs more than the run) samples and coefficients are padded too, masked out
# inside the core, so that every design up to 104 samples and 6 coefficients shares one compiled
# program; large problems keep their own shapes (padding would cost run time).
# ------------------------------------------------------------------------------------------
_BUCKET = 256
_SMALL_GENES = 2048
_MIN_SAMPLES = 104
_MIN_COEFS = 6


def _mesh(shard: bool):
    if not shard:
        return None
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.array(devices), ("genes",))


def _padded_size(g: int, n_dev: int) -> int:
    unit = _BUCKET * n_dev
    return max(unit, int(math.ceil(g / unit)) * unit)


@dataclasses.dataclass(frozen=True)
class _Shape:
    """Padding of the sample and coefficient axes (masked out inside the core)."""

    n: int
    p: int
    n_pad: int
    p_pad: int

    @classmethod
    def of(cls, design: np.ndarray, n_genes: int) -> "_Shape":
        n, p = design.shape
        if n_genes > _SMALL_GENES:
            return cls(n, p, n, p)
        n_pad = max(_MIN_SAMPLES, int(math.ceil(n / 8)) * 8)
        p_pad = max(_MIN_COEFS, p + (p % 2))
        return cls(n, p, n_pad, p_pad)

    def samples(self, a, fill: float) -> np.ndarray:
        a = np.asarray(a, dtype=float)
        if self.n_pad == self.n:
            return a
        pad = np.full(a.shape[:-1] + (self.n_pad - self.n,), fill)
        return np.concatenate([a, pad], axis=-1)

    def coefs(self, a) -> np.ndarray:
        a = np.asarray(a, dtype=float)
        if self.p_pad == self.p:
            return a
        return np.concatenate([a, np.zeros(a.shape[:-1] + (self.p_pad - self.p,))], axis=-1)

    def design(self, x) -> np.ndarray:
        out = np.zeros((self.n_pad, self.p_pad))
        out[: self.n, : self.p] = x
        return out

    @property
    def sample_mask(self) -> np.ndarray:
        return (np.arange(self.n_pad) < self.n).astype(float)

    @property
    def coef_mask(self) -> np.ndarray:
        return (np.arange(self.p_pad) < self.p).astype(float)


def _run_genes(kernel, gene_args: tuple, shared_args: tuple = (), *, shard: bool = True, **static):
    """Run ``kernel(*gene_args, *shared_args, **static)`` with the gene axis padded and sharded.

    Padding repeats the first gene (a real problem that converges like the others) and is cut off
    from every output, all of which have the gene axis first.
    """
    g = int(gene_args[0].shape[0])
    mesh = _mesh(shard)
    n_dev = 1 if mesh is None else mesh.size
    size = _padded_size(g, n_dev)
    padded = []
    for a in gene_args:
        a = np.asarray(a)
        if size > g:
            pad = np.repeat(a[:1], size - g, axis=0)
            a = np.concatenate([a, pad], axis=0)
        if mesh is not None:
            spec = jax.sharding.PartitionSpec("genes", *([None] * (a.ndim - 1)))
            a = jax.device_put(a, jax.sharding.NamedSharding(mesh, spec))
        padded.append(a)
    shared = []
    for a in shared_args:
        if mesh is not None and isinstance(a, np.ndarray):
            a = jax.device_put(a, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        shared.append(a)
    fn = kernel.small if size <= _SMALL_GENES * n_dev else kernel.large
    out = fn(*padded, *shared, **static)
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[:g], out)


class _Kernel:
    """A jitted kernel in two builds: XLA's full optimisation for large problems, and optimisation
    level 0 for small ones, which compiles ~3x faster and runs ~2x slower (a win below a few
    thousand genes, where compilation is most of the time). Same numbers to rounding."""

    def __init__(self, fn, static_argnames=()):
        self.__name__ = fn.__name__
        self.large = jax.jit(fn, static_argnames=static_argnames)
        self.small = jax.jit(
            fn, static_argnames=static_argnames, compiler_options={"xla_backend_optimization_level": 0}
        )


def _kernel(*static_argnames):
    return lambda fn: _Kernel(fn, static_argnames)


@_kernel("min_mu", "tol", "max_iter")
def _k_irls(counts, log_sf, alpha, beta_init, design, ridge, smask, cmask, *, min_mu, tol, max_iter):
    res = core.irls_fit(
        counts,
        design,
        log_sf,
        alpha,
        beta_init,
        ridge,
        min_mu=min_mu,
        tol=tol,
        max_iter=max_iter,
        sample_mask=smask,
        coef_mask=cmask,
    )
    sigma, hat = core.wald_covariance_and_hat(design, res.mu, alpha, ridge, smask, cmask)
    mu_raw = core.glm_mean(design, res.beta, log_sf)
    return res.beta, res.n_iter, sigma, hat, mu_raw, res.log_likelihood


@_kernel("min_mu")
def _k_beta_newton(counts, log_sf, alpha, beta_init, design, ridge, smask, cmask, *, min_mu):
    beta, conv = core.fit_beta_newton(
        counts, design, log_sf, alpha, beta_init, ridge, sample_mask=smask, coef_mask=cmask
    )
    mu_raw = core.glm_mean(design, beta, log_sf)
    sigma, _ = core.wald_covariance_and_hat(design, jnp.maximum(mu_raw, min_mu), alpha, ridge, smask, cmask)
    loglik = core.nb_log_likelihood(counts, mu_raw, alpha, smask)
    return beta, conv, sigma, mu_raw, loglik


@_kernel("min_log_alpha", "kappa_0", "tol", "max_iter")
def _k_line_search(
    counts,
    mu,
    log_alpha0,
    prior_mean,
    design,
    prior_var,
    use_prior,
    smask,
    cmask,
    *,
    min_log_alpha,
    kappa_0,
    tol,
    max_iter,
):
    g = counts.shape[0]
    # Large problems: 15 passes over all genes (DESeq2's line search needs ~12 for most), then the
    # stragglers in chunks of g/8 (see cores.nb._masked_loop).
    compact = (15, g // 8) if g >= 4096 else None
    return core.fit_dispersion_line_search(
        counts,
        mu,
        design,
        log_alpha0,
        prior_mean,
        prior_var,
        use_prior=use_prior,
        min_log_alpha=min_log_alpha,
        kappa_0=kappa_0,
        tol=tol,
        max_iter=max_iter,
        compact=compact,
        sample_mask=smask,
        coef_mask=cmask,
    )


@_kernel("lower", "upper")
def _k_disp_newton(counts, mu, log_alpha0, prior_mean, design, prior_var, use_prior, smask, cmask, *, lower, upper):
    return core.fit_dispersion_newton(
        counts,
        mu,
        design,
        log_alpha0,
        prior_mean,
        prior_var,
        use_prior=use_prior,
        lower=lower,
        upper=upper,
        sample_mask=smask,
        coef_mask=cmask,
    )


@_kernel()
def _k_grid(counts, mu, prior_mean, design, prior_var, grid, use_prior, smask, cmask):
    return core.fit_dispersion_grid(
        counts, mu, design, prior_mean, prior_var, use_prior=use_prior, grid=grid, sample_mask=smask, coef_mask=cmask
    )


@_kernel()
def _k_loglik(counts, mu, alpha, smask):
    return core.nb_log_likelihood(counts, mu, alpha, smask)


# ------------------------------------------------------------------------------------------
# Size factors.
# ------------------------------------------------------------------------------------------


def _median_ratio(counts: np.ndarray, loggeomeans: np.ndarray) -> np.ndarray:
    finite = np.isfinite(loggeomeans)
    if not finite.any():
        raise ValueError(
            "counts: every gene contains at least one zero, cannot compute log geometric means "
            "(use size_factors='poscounts' or 'iterate')"
        )
    with np.errstate(divide="ignore"):
        logc = np.log(counts)
    sf = np.empty(counts.shape[1])
    for j in range(counts.shape[1]):
        use = finite & (counts[:, j] > 0)
        if not use.any():
            raise ValueError(f"counts: sample {j} has no positive count among the genes used for size factors")
        sf[j] = math.exp(np.median(logc[use, j] - loggeomeans[use]))
    return sf


def estimate_size_factors(counts: np.ndarray, method: str = "ratio", *, opts: DESeq2Options | None = None) -> np.ndarray:
    """DESeq2 size factors of a genes x samples count matrix.

    Args:
        counts: ``(G, N)`` counts.
        method: ``"ratio"`` (median of ratios to the geometric mean, ``estimateSizeFactorsForMatrix``),
            ``"poscounts"`` (geometric means over positive counts, then scaled to geometric mean 1) or
            ``"iterate"`` (``estimateSizeFactorsIterate``: maximise the NB likelihood of an
            intercept-only model, alternating with dispersion estimates).

    Returns:
        ``(N,)`` size factors.
    """
    counts = np.asarray(counts, dtype=float)
    if method == "ratio":
        with np.errstate(divide="ignore"):
            lg = np.log(counts).mean(axis=1)
        return _median_ratio(counts, lg)
    if method == "poscounts":
        with np.errstate(divide="ignore"):
            lc = np.log(counts)
        lc[~np.isfinite(lc)] = 0.0
        lg = lc.mean(axis=1)
        lg[counts.sum(axis=1) == 0] = -np.inf
        sf = _median_ratio(counts, lg)
        return sf / math.exp(np.mean(np.log(sf)))
    if method == "iterate":
        return _size_factors_iterate(counts, opts or DESeq2Options())
    raise ValueError(f"size_factors: expected 'ratio', 'poscounts', 'iterate' or an array, got {method!r}")


def _size_factors_iterate(counts: np.ndarray, opts: DESeq2Options, niter: int = 10, q: float = 0.05) -> np.ndarray:
    # DESeq2 estimateSizeFactorsIterate: design ~1, dispersions with fitType="mean", then maximise
    # the summed log-likelihood of all but the 5% worst genes over log size factors (L-BFGS-B with
    # R optim's finite-difference gradient, ndeps = 1e-3).
    n = counts.shape[1]
    x = np.ones((n, 1))
    sf = np.ones(n)
    idx = counts.sum(axis=1) > 0
    cts = counts[idx]
    o = dataclasses.replace(opts, fit_type="mean")
    for i in range(1, niter + 1):
        st = _dispersions(cts, x, sf, o, shard=True)
        qmat = st["mu"] / sf
        disps = st["dispersion"]
        size = 1.0 / disps[:, None]
        old = sf.copy()

        def fn(p):
            s = np.exp(p - p.mean())
            mu = qmat * s
            ll = special.gammaln(cts + size) - special.gammaln(size) - special.gammaln(cts + 1)
            ll = ll + size * np.log(size / (size + mu)) + special.xlogy(cts, mu / (size + mu))
            gene_ll = ll.sum(axis=1)
            return -float(np.sum(gene_ll[gene_ll > np.quantile(gene_ll, q)]))

        def grad(p):
            eps = 1e-3
            g = np.empty_like(p)
            for k in range(p.size):
                e = np.zeros_like(p)
                e[k] = eps
                g[k] = (fn(p + e) - fn(p - e)) / (2 * eps)
            return g

        res = optimize.minimize(
            fn, np.log(old), jac=grad, method="L-BFGS-B", options={"maxcor": 5, "ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0}
        )
        if not res.success and "ABNORMAL" not in str(res.message).upper():
            raise RuntimeError(f"iterative size factors did not converge within an iteration: {res.message}")
        sf = np.exp(res.x - res.x.mean())
        if i > 1 and np.sum((np.log(old) - np.log(sf)) ** 2) < 1e-4:
            return sf
    raise RuntimeError("iterative size factor normalization did not converge")


# ------------------------------------------------------------------------------------------
# GLM fits (fitNbinomGLMs).
# ------------------------------------------------------------------------------------------


def _nb_loglik_np(counts, mu, alpha, shard=True):
    shp = _Shape.of(np.ones((counts.shape[1], 1)), counts.shape[0])
    return _run_genes(
        _k_loglik, (shp.samples(counts, 0.0), shp.samples(mu, 1.0), alpha), (shp.sample_mask,), shard=shard
    )


def _fit_glm(counts, design, sf, alpha, opts: DESeq2Options, *, shard=True, lambda_log2=1e-6) -> dict:
    """DESeq2 ``fitNbinomGLMs``: IRLS with a tiny ridge, the optimiser fallback, SEs and hat values.

    Coefficients are returned on the natural-log scale; ``se`` and ``sigma`` too.
    """
    g, n = counts.shape
    p = design.shape[1]
    norm = counts / sf
    log_sf = np.log(sf)
    if p == 1 and np.all(design == 1.0) and lambda_log2 <= 1e-6:
        # justIntercept: log2 of the mean of normalised counts, no IRLS (fitNbinomGLMs).
        beta_log2 = np.log2(norm.mean(axis=1))
        mu = sf[None, :] * np.exp2(beta_log2)[:, None]
        loglik = _nb_loglik_np(counts, mu, alpha, shard)
        w = 1.0 / (1.0 / mu + alpha[:, None])
        xtwx = w.sum(axis=1)
        sigma = (1.0 / xtwx)[:, None, None]
        return {
            "beta": (beta_log2 * LN2)[:, None],
            "sigma": sigma,
            "se": np.sqrt(sigma[:, :, 0]),
            "mu": mu,
            "loglik": loglik,
            "conv": np.ones(g, bool),
            "n_iter": np.ones(g, int),
            "hat": w / xtwx[:, None],
        }
    beta_init = np.linalg.lstsq(design, np.log(norm + 0.1).T, rcond=None)[0].T
    ridge = np.full(p, lambda_log2 / LN2**2)
    shp = _Shape.of(design, g)
    masks = (shp.sample_mask, shp.coef_mask)
    log_sf_gn = shp.samples(np.broadcast_to(log_sf, (g, n)), 0.0)
    beta, n_iter, sigma, hat, mu, loglik = _run_genes(
        _k_irls,
        (shp.samples(counts, 0.0), log_sf_gn, alpha, shp.coefs(beta_init)),
        (shp.design(design), shp.coefs(ridge)) + masks,
        shard=shard,
        min_mu=opts.min_mu,
        tol=opts.beta_tol,
        max_iter=opts.beta_maxit,
    )
    beta = np.array(beta[:, :p])
    sigma = np.array(sigma[:, :p, :p])
    mu = np.array(mu[:, :n])
    hat = hat[:, :n]
    loglik = np.array(loglik)
    row_stable = np.all(np.isfinite(beta), axis=1)
    var_pos = np.all(np.diagonal(sigma, axis1=1, axis2=2) > 0, axis=1)
    conv = n_iter < opts.beta_maxit
    rows = np.flatnonzero(~conv | ~row_stable | ~var_pos)
    if rows.size:
        ok_start = row_stable[rows] & np.all(np.abs(beta[rows] * LOG2E) < 30, axis=1)
        start = np.where(ok_start[:, None], beta[rows], beta_init[rows] * LN2)
        start = np.nan_to_num(start)
        b2, c2, s2, m2, l2 = _run_genes(
            _k_beta_newton,
            (shp.samples(counts[rows], 0.0), log_sf_gn[rows], alpha[rows], shp.coefs(start)),
            (shp.design(design), shp.coefs(ridge)) + masks,
            shard=shard,
            min_mu=opts.min_mu,
        )
        beta[rows], sigma[rows] = b2[:, :p], s2[:, :p, :p]
        mu[rows], loglik[rows] = m2[:, :n], l2
        conv[rows] = conv[rows] | np.asarray(c2)
    se = np.sqrt(np.maximum(np.diagonal(sigma, axis1=1, axis2=2), 0.0))
    return {
        "beta": beta,
        "sigma": sigma,
        "se": se,
        "mu": mu,
        "loglik": loglik,
        "conv": conv,
        "n_iter": np.asarray(n_iter),
        "hat": np.asarray(hat),
    }


# ------------------------------------------------------------------------------------------
# Dispersions.
# ------------------------------------------------------------------------------------------


def _linear_model_mu(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    # DESeq2 linearModelMu: least-squares fitted values of each row of y on x.
    q, _ = np.linalg.qr(x)
    return (y @ q) @ q.T


def _n_groups(x: np.ndarray) -> int:
    return len({tuple(r) for r in x})


def _fit_disp(counts, mu, design, log_alpha0, prior_mean, prior_var, use_prior, opts, shard):
    shp = _Shape.of(design, counts.shape[0])
    gene_args = (shp.samples(counts, 0.0), shp.samples(mu, 1.0), log_alpha0, prior_mean)
    shared = (shp.design(design), float(prior_var), bool(use_prior), shp.sample_mask, shp.coef_mask)
    if opts.dispersion_fit == "newton":
        m = counts.shape[1]
        fit = _run_genes(
            _k_disp_newton,
            gene_args,
            shared,
            shard=shard,
            lower=math.log(opts.min_disp),
            upper=math.log(max(10.0, m)),
        )
    elif opts.dispersion_fit == "deseq2":
        fit = _run_genes(
            _k_line_search,
            gene_args,
            shared,
            shard=shard,
            min_log_alpha=math.log(opts.min_disp / 10.0),
            kappa_0=opts.kappa_0,
            tol=opts.disp_tol,
            max_iter=opts.disp_maxit,
        )
    else:
        raise ValueError(f"dispersion_fit: expected 'deseq2' or 'newton', got {opts.dispersion_fit!r}")
    return fit


def _grid(counts, mu, design, prior_mean, prior_var, use_prior, opts, shard):
    m = counts.shape[1]
    grid = np.linspace(math.log(1e-8), math.log(max(10.0, m)), 20)
    shp = _Shape.of(design, counts.shape[0])
    la = _run_genes(
        _k_grid,
        (shp.samples(counts, 0.0), shp.samples(mu, 1.0), prior_mean),
        (shp.design(design), float(prior_var), grid, bool(use_prior), shp.sample_mask, shp.coef_mask),
        shard=shard,
    )
    return np.exp(la)


def _gene_wise(counts, design, sf, base_mean, base_var, opts, shard):
    """DESeq2 ``estimateDispersionsGeneEst`` (niter = 1) on non-all-zero genes."""
    g, m = counts.shape
    p = design.shape[1]
    if m == p:
        raise ValueError(
            "design: the number of samples equals the number of coefficients; there are no replicates "
            "to estimate the dispersion"
        )
    norm = counts / sf
    min_disp = opts.min_disp
    max_disp = max(10.0, m)
    # rough estimate from a linear model fit of normalised counts, and moments
    mu_lm = np.maximum(_linear_model_mu(norm, design), 1.0)
    rough = np.maximum(np.sum(((norm - mu_lm) ** 2 - mu_lm) / mu_lm**2, axis=1) / (m - p), 0.0)
    xim = np.mean(1.0 / sf)
    moments = (base_var - xim * base_mean) / base_mean**2
    alpha_init = np.clip(np.minimum(rough, moments), min_disp, max_disp)
    if _n_groups(design) == p:
        mu = _linear_model_mu(norm, design) * sf
    else:
        mu = _fit_glm(counts, design, sf, alpha_init, opts, shard=shard)["mu"]
    mu = np.maximum(mu, opts.min_mu)
    log_init = np.log(alpha_init)
    fit = _fit_disp(counts, mu, design, log_init, log_init, 1.0, False, opts, shard)
    disp = np.minimum(np.exp(fit.log_alpha), max_disp)
    no_increase = fit.last_lp < fit.initial_lp + np.abs(fit.initial_lp) / 1e6
    disp = np.where(no_increase, alpha_init, disp)
    n_iter = np.asarray(fit.n_iter)
    if opts.dispersion_fit == "deseq2":
        conv = (n_iter < opts.disp_maxit) & (n_iter != 1)
    else:
        conv = n_iter < 50
    refit = ~conv & (disp > min_disp * 10)
    if refit.any():
        disp[refit] = _grid(counts[refit], mu[refit], design, np.zeros(refit.sum()), 1.0, False, opts, shard)
    disp = np.clip(disp, min_disp, max_disp)
    return disp, n_iter, mu


@dataclasses.dataclass
class _Trend:
    kind: str  # "parametric" | "mean"
    coefs: np.ndarray
    var_log_disp_ests: float = float("nan")
    prior_var: float = float("nan")

    def __call__(self, means):
        means = np.asarray(means, dtype=float)
        if self.kind == "parametric":
            return self.coefs[0] + self.coefs[1] / means
        return np.full(means.shape, self.coefs[0])


def _fit_trend(base_mean, disp_gene, opts) -> _Trend:
    use = disp_gene > 100 * opts.min_disp
    if not use.any():
        raise ValueError(
            "all gene-wise dispersion estimates are within 2 orders of magnitude of the minimum value; "
            "the dispersion trend cannot be fitted"
        )
    kind = opts.fit_type
    if kind not in ("parametric", "mean"):
        raise ValueError(f"fit_type: expected 'parametric' or 'mean', got {kind!r}")
    if kind == "parametric":
        try:
            return _Trend("parametric", rstats.parametric_dispersion_fit(base_mean[use], disp_gene[use]))
        except rstats.ParametricFitError as exc:
            warnings.warn(
                f"the parametric dispersion trend failed ({exc}); using the mean of gene-wise dispersions "
                "(R DESeq2 substitutes a local regression here, which is not implemented)",
                RuntimeWarning,
                stacklevel=3,
            )
    use_mean = disp_gene > 10 * opts.min_disp
    return _Trend("mean", np.array([rstats.r_trimmed_mean(disp_gene[use_mean], 0.001)]))


def _prior_var(disp_gene, disp_fit, m, p, var_log, opts) -> float:
    above = disp_gene >= opts.min_disp * 100
    resid = np.log(disp_gene) - np.log(disp_fit)
    if (m - p) <= 3 and m > p:
        return rstats.disp_prior_var_small_df(resid[above], m - p)
    if m > p:
        return float(max(var_log - special.polygamma(1, (m - p) / 2.0), 0.25))
    return float(var_log)


def _map(counts, mu, design, disp_gene, disp_fit, trend: _Trend, opts, shard):
    """DESeq2 ``estimateDispersionsMAP`` (with the dispersion-outlier rule)."""
    m = counts.shape[1]
    max_disp = max(10.0, m)
    init = np.where(disp_gene > 0.1 * disp_fit, disp_gene, disp_fit)
    fit = _fit_disp(
        counts, mu, design, np.log(init), np.log(disp_fit), trend.prior_var, True, opts, shard
    )
    disp_map = np.exp(fit.log_alpha)
    n_iter = np.asarray(fit.n_iter)
    refit = ~(n_iter < (opts.disp_maxit if opts.dispersion_fit == "deseq2" else 50))
    if refit.any():
        disp_map[refit] = _grid(
            counts[refit], mu[refit], design, np.log(disp_fit[refit]), trend.prior_var, True, opts, shard
        )
    disp_map = np.clip(disp_map, opts.min_disp, max_disp)
    outlier = np.log(disp_gene) > np.log(disp_fit) + opts.outlier_sd * math.sqrt(trend.var_log_disp_ests)
    final = np.where(outlier, disp_gene, disp_map)
    return final, disp_map, outlier, n_iter


def _dispersions(counts, design, sf, opts, shard, trend: _Trend | None = None):
    """Gene-wise -> trend -> MAP for non-all-zero genes. With ``trend`` given, reuse it (refit)."""
    norm = counts / sf
    base_mean = norm.mean(axis=1)
    base_var = norm.var(axis=1, ddof=1)
    m, p = design.shape
    disp_gene, gene_iter, mu = _gene_wise(counts, design, sf, base_mean, base_var, opts, shard)
    new_trend = trend is None
    if new_trend:
        trend = _fit_trend(base_mean, disp_gene, opts)
    disp_fit = trend(base_mean)
    if new_trend:
        above = disp_gene >= opts.min_disp * 100
        trend.var_log_disp_ests = (
            rstats.r_mad(np.log(disp_gene[above]) - np.log(disp_fit[above])) ** 2 if above.any() else float("nan")
        )
        if not above.any():
            # R: every gene-wise estimate near the minimum -> dispersion = 10 minDisp, prior var 0.25
            trend.prior_var = 0.25
            final = np.full(counts.shape[0], opts.min_disp * 10)
            return {
                "dispGeneEst": disp_gene, "dispGeneIter": gene_iter, "dispFit": disp_fit,
                "dispersion": final, "dispMAP": final, "dispOutlier": np.zeros_like(final, bool),
                "dispIter": np.zeros(counts.shape[0], int), "mu": mu, "trend": trend,
                "baseMean": base_mean, "baseVar": base_var,
            }
        trend.prior_var = _prior_var(disp_gene, disp_fit, m, p, trend.var_log_disp_ests, opts)
    final, disp_map, outlier, map_iter = _map(counts, mu, design, disp_gene, disp_fit, trend, opts, shard)
    return {
        "dispGeneEst": disp_gene,
        "dispGeneIter": gene_iter,
        "dispFit": disp_fit,
        "dispersion": final,
        "dispMAP": disp_map,
        "dispOutlier": outlier,
        "dispIter": map_iter,
        "mu": mu,
        "trend": trend,
        "baseMean": base_mean,
        "baseVar": base_var,
    }


# ------------------------------------------------------------------------------------------
# Tests and Cook's distances.
# ------------------------------------------------------------------------------------------


def _max_cooks(cooks: np.ndarray, design: np.ndarray) -> np.ndarray:
    m, p = design.shape
    samples = rstats.n_or_more_in_cell(design, 3)
    if m > p and samples.any():
        return np.max(cooks[:, samples], axis=1)
    return np.full(cooks.shape[0], np.nan)


def _test(counts, design, sf, disp, opts, shard, test, reduced_design):
    fit = _fit_glm(counts, design, sf, disp, opts, shard=shard)
    norm = counts / sf
    p = design.shape[1]
    alpha_rob = rstats.robust_method_of_moments_disp(norm, design)
    cooks = np.asarray(core.cooks_distance(counts, fit["mu"], fit["hat"], alpha_rob, p))
    out = {
        "fit": fit,
        "cooks": cooks,
        "maxCooks": _max_cooks(cooks, design),
    }
    if test == "wald":
        stat = fit["beta"] / fit["se"]
        out["stat"] = stat
        out["pvalue"] = 2.0 * stats.norm.sf(np.abs(stat))
    else:
        red = _fit_glm(counts, reduced_design, sf, disp, opts, shard=shard)
        lrt = 2.0 * (fit["loglik"] - red["loglik"])
        df = design.shape[1] - reduced_design.shape[1]
        out["lrt_stat"] = lrt
        out["lrt_pvalue"] = stats.chi2.sf(lrt, df)
        out["reduced_conv"] = red["conv"]
    return out


# ------------------------------------------------------------------------------------------
# The fitted object and results().
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DESeq2Fit:
    """What ``DESeq()`` leaves in a DESeqDataSet, as arrays (natural-log coefficients inside,
    DESeq2's log2 names and scales in :meth:`gene_table`).

    Attributes:
        genes, samples: names.
        counts: ``(G, N)`` original counts (genes x samples).
        design: the :class:`~diffbio_prob.workflows.deseq2.design.Design`.
        reduced: reduced design for the LRT (or ``None``).
        test: ``"wald"`` or ``"lrt"``.
        size_factors: ``(N,)``.
        gene: per-gene columns under DESeq2's names (``baseMean``, ``baseVar``, ``allZero``,
            ``dispGeneEst``, ``dispGeneIter``, ``dispFit``, ``dispersion``, ``dispIter``,
            ``dispOutlier``, ``dispMAP``, ``betaConv``, ``betaIter``, ``deviance``, ``maxCooks``,
            ``replace``), each ``(G,)``.
        beta, sigma: ``(G, P)`` natural-log coefficients and ``(G, P, P)`` their covariances.
        stat, pvalue: Wald statistics/p-values per coefficient ``(G, P)`` or LRT ``(G,)``.
        cooks: ``(G, N)`` Cook's distances of the first fit.
        replace_counts: counts used for the refit (``None`` if no replacement happened).
        trend: dispersion trend (``kind``, ``coefs``, ``var_log_disp_ests``, ``prior_var``).
        options: the :class:`DESeq2Options`.
    """

    genes: pd.Index
    samples: pd.Index
    counts: np.ndarray
    design: Design
    reduced: Design | None
    test: str
    size_factors: np.ndarray
    gene: dict
    beta: np.ndarray
    sigma: np.ndarray
    stat: np.ndarray
    pvalue: np.ndarray
    cooks: np.ndarray
    replace_counts: np.ndarray | None
    trend: Any
    options: DESeq2Options
    mu: np.ndarray | None = None

    @property
    def coef_names(self) -> list:
        return list(self.design.names)

    def gene_table(self) -> pd.DataFrame:
        """Per-gene intermediate values under DESeq2's ``mcols(dds)`` names (log2 coefficients)."""
        cols = dict(self.gene)
        for k, name in enumerate(self.coef_names):
            cols[name] = self.beta[:, k] * LOG2E
        for k, name in enumerate(self.coef_names):
            cols[f"SE_{name}"] = np.sqrt(np.maximum(self.sigma[:, k, k], 0.0)) * LOG2E
        if self.test == "wald":
            for k, name in enumerate(self.coef_names):
                cols[f"WaldStatistic_{name}"] = self.stat[:, k]
                cols[f"WaldPvalue_{name}"] = self.pvalue[:, k]
        else:
            cols["LRTStatistic"] = self.stat
            cols["LRTPvalue"] = self.pvalue
        return pd.DataFrame(cols, index=self.genes)

    def dispersions(self) -> pd.DataFrame:
        """DESeq2's dispersion columns (``alpha``): dispGeneEst, dispFit, dispMAP, dispersion, dispOutlier."""
        keys = ["baseMean", "dispGeneEst", "dispFit", "dispMAP", "dispersion", "dispOutlier"]
        return pd.DataFrame({k: self.gene[k] for k in keys}, index=self.genes)

    def results(
        self,
        contrast=None,
        *,
        alpha: float = 0.1,
        independent_filtering: bool = True,
        cooks_cutoff: float | bool | None = None,
        lfc_threshold: float = 0.0,
        alt_hypothesis: str = "greaterAbs",
    ) -> pd.DataFrame:
        """R DESeq2's ``results()``: one table with ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj``.

        Args:
            contrast: ``[factor, numerator, denominator]``, a coefficient name, a numeric vector, or
                ``None`` for the last coefficient.
            alpha: FDR level for independent filtering (R's default 0.1).
            independent_filtering: filter on the mean of normalised counts before BH.
            cooks_cutoff: ``None``/``True`` for ``qf(0.99, p, m - p)``, a number, or ``False``.
            lfc_threshold, alt_hypothesis: R's ``lfcThreshold`` and ``altHypothesis``
                (``greaterAbs``, ``lessAbs``, ``greater``, ``less``; Wald only).

        Returns:
            ``pandas.DataFrame`` indexed by gene; ``attrs`` holds the contrast label and the
            filtering threshold.
        """
        check_results_args(alpha=alpha, lfc_threshold=lfc_threshold, alt_hypothesis=alt_hypothesis,
                           cooks_cutoff=cooks_cutoff, independent_filtering=independent_filtering)
        if self.test != "wald" and not (lfc_threshold == 0 and alt_hypothesis == "greaterAbs"):
            raise ValueError("lfc_threshold / alt_hypothesis: tests against a threshold must be Wald tests")
        con: Contrast = resolve_contrast(contrast, self.design)
        g = self.gene
        all_zero = g["allZero"]
        c = con.vector
        lfc = self.beta @ c * LOG2E
        if con.coefficient is not None:
            k = con.coefficient
            se = np.sqrt(np.maximum(self.sigma[:, k, k], 0.0)) * LOG2E
        else:
            se = np.sqrt(np.maximum(np.einsum("p,gpq,q->g", c, self.sigma, c), 0.0)) * LOG2E
        if self.test == "wald":
            if con.coefficient is not None:
                stat = self.stat[:, con.coefficient].copy()
                pval = self.pvalue[:, con.coefficient].copy()
            else:
                stat = lfc / se
                pval = 2.0 * stats.norm.sf(np.abs(stat))
        else:
            stat = self.stat.copy()
            pval = self.pvalue.copy()
        # contrasts whose two levels are all zero: LFC 0, stat 0, p 1 (contrastAllZero*)
        cz = self._contrast_all_zero(con) & ~all_zero
        if cz.any():
            lfc[cz] = 0.0
            if self.test == "wald":
                stat[cz] = 0.0
                pval[cz] = 1.0
        if not (lfc_threshold == 0 and alt_hypothesis == "greaterAbs"):
            if self.test != "wald":
                raise ValueError("lfc_threshold / alt_hypothesis: tests against a threshold must be Wald tests")
            t = lfc_threshold
            sf_ = stats.norm.sf
            if alt_hypothesis == "greaterAbs":
                stat = np.sign(lfc) * np.maximum((np.abs(lfc) - t) / se, 0)
                pval = np.minimum(1.0, 2 * sf_((np.abs(lfc) - t) / se))
            elif alt_hypothesis == "lessAbs":
                above = np.maximum((t - lfc) / se, 0)
                below = np.maximum((lfc + t) / se, 0)
                stat = np.minimum(above, below)
                pval = np.maximum(sf_((t - lfc) / se), sf_((lfc + t) / se))
            elif alt_hypothesis == "greater":
                stat = np.maximum((lfc - t) / se, 0)
                pval = sf_((lfc - t) / se)
            else:
                stat = np.minimum((lfc + t) / se, 0)
                pval = sf_((-t - lfc) / se)
        m, p = self.design.matrix.shape
        if cooks_cutoff is None or cooks_cutoff is True:
            cutoff = stats.f.ppf(0.99, p, m - p) if m > p else None
        elif cooks_cutoff is False:
            cutoff = None
        else:
            cutoff = float(cooks_cutoff)
        if cutoff is not None:
            with np.errstate(invalid="ignore"):
                outlier = g["maxCooks"] > cutoff
            outlier = self._cooks_heuristic(outlier)
            pval = np.where(outlier, np.nan, pval)
        for arr in (lfc, se, stat, pval):
            arr[all_zero] = np.nan
        if np.nansum(g["replace"]) > 0:
            # genes whose counts became all zero by replacement: LFC 0, SE 0, stat 0, p 1 (as R)
            now_zero = g["replace"] & (g["baseMean"] == 0)
            lfc[now_zero], se[now_zero], stat[now_zero], pval[now_zero] = 0.0, 0.0, 0.0, 1.0
        info = {"contrast": con.label, "alpha": alpha}
        if independent_filtering:
            padj, finfo = rstats.independent_filtering(pval, g["baseMean"], alpha)
            info.update({"filterThreshold": finfo["filterThreshold"], "filterTheta": finfo["filterTheta"]})
        else:
            padj = rstats.p_adjust_bh(pval)
        res = pd.DataFrame(
            {
                "baseMean": g["baseMean"],
                "log2FoldChange": lfc,
                "lfcSE": se,
                "stat": stat,
                "pvalue": pval,
                "padj": padj,
            },
            index=self.genes,
        )
        res.attrs.update(info)
        return res

    def _contrast_all_zero(self, con: Contrast) -> np.ndarray:
        counts = self.counts
        if con.factor is not None:
            col = self.design.data[con.factor].astype(str).to_numpy()
            use = np.isin(col, list(con.levels))
            return np.all(counts[:, use] == 0, axis=1)
        c = con.vector
        if np.all(c >= 0) or np.all(c <= 0):
            return np.zeros(counts.shape[0], bool)
        which = (self.design.matrix @ (c != 0).astype(float)) != 0
        return (counts @ which.astype(float)) == 0

    def _cooks_heuristic(self, outlier: np.ndarray) -> np.ndarray:
        # R results(): for a design with one 2-level factor, keep genes where 3 or more counts
        # exceed the count at the sample with the largest Cook's distance.
        outlier = np.asarray(outlier, bool).copy()
        if not outlier.any():
            return outlier
        variables = self.design.variables
        if len(variables) == 1 and variables[0] in self.design.factors and len(self.design.factors[variables[0]]) == 2:
            for i in np.flatnonzero(outlier):
                row = self.cooks[i]
                j = int(np.nanargmax(row))
                if np.sum(self.counts[i] > self.counts[i, j]) >= 3:
                    outlier[i] = False
        return outlier


# ------------------------------------------------------------------------------------------
# Inputs.
# ------------------------------------------------------------------------------------------


def _is_real(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def check_results_args(
    *,
    alpha=0.1,
    lfc_threshold=0.0,
    alt_hypothesis="greaterAbs",
    cooks_cutoff=None,
    independent_filtering=True,
) -> None:
    """Check :meth:`DESeq2Fit.results`' scalar arguments (also run before a fit, so a bad one fails at once).

    Raises:
        TypeError / ValueError naming the argument and what it must be.
    """
    if not _is_real(alpha) or not (0 < alpha < 1):
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    if alt_hypothesis not in ("greaterAbs", "lessAbs", "greater", "less"):
        raise ValueError(f"alt_hypothesis: expected greaterAbs, lessAbs, greater or less, got {alt_hypothesis!r}")
    if not _is_real(lfc_threshold) or not (np.isfinite(lfc_threshold) and lfc_threshold >= 0):
        raise ValueError(f"lfc_threshold: expected a finite non-negative number, got {lfc_threshold!r}")
    if lfc_threshold == 0 and alt_hypothesis == "lessAbs":
        raise ValueError("alt_hypothesis='lessAbs' needs a positive lfc_threshold")
    if cooks_cutoff is not None and not isinstance(cooks_cutoff, (bool, np.bool_)):
        if not _is_real(cooks_cutoff) or np.isnan(cooks_cutoff) or cooks_cutoff <= 0:
            raise ValueError(
                f"cooks_cutoff: expected None/True (R's default), False (no filtering) or a positive number, "
                f"got {cooks_cutoff!r}"
            )
    if not isinstance(independent_filtering, (bool, np.bool_)):
        raise TypeError(f"independent_filtering: expected True or False, got {independent_filtering!r}")


def check_fit_args(
    *,
    test="wald",
    reduced=None,
    size_factors="ratio",
    fit_type="parametric",
    min_replicates_for_replace=7,
    dispersion_fit="deseq2",
    precision="float64",
) -> None:
    """Check :func:`fit_deseq2`'s option arguments before any work.

    Raises:
        TypeError / ValueError naming the argument and what it must be.
    """
    if test not in ("wald", "lrt"):
        raise ValueError(f"test: expected 'wald' or 'lrt', got {test!r}")
    if test == "lrt" and reduced is None:
        raise ValueError("reduced: the likelihood-ratio test needs a reduced design such as '~ 1'")
    if test == "wald" and reduced is not None:
        raise ValueError("reduced: only used with test='lrt'")
    if isinstance(size_factors, str) and size_factors not in ("ratio", "poscounts", "iterate"):
        raise ValueError(f"size_factors: expected 'ratio', 'poscounts', 'iterate' or an array, got {size_factors!r}")
    if fit_type not in ("parametric", "mean"):
        raise ValueError(f"fit_type: expected 'parametric' or 'mean', got {fit_type!r}")
    if dispersion_fit not in ("deseq2", "newton"):
        raise ValueError(f"dispersion_fit: expected 'deseq2' or 'newton', got {dispersion_fit!r}")
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision: expected 'float64' or 'float32', got {precision!r}")
    m = min_replicates_for_replace
    if not _is_real(m) or np.isnan(m) or m < 3:
        raise ValueError(
            "min_replicates_for_replace: expected a number >= 3 (DESeq2 needs at least 3 replicates to call a "
            f"count an outlier) or inf to never replace, got {m!r}"
        )


def prepare_inputs(counts, metadata=None, *, layer: str | None = None):
    """Counts as a genes x samples DataFrame aligned to the metadata (DataFrames or AnnData).

    Returns:
        ``(counts_df, metadata_df)`` with samples in the metadata's order.
    """
    if hasattr(counts, "obs") and hasattr(counts, "var") and hasattr(counts, "X"):
        counts_df, obs = from_anndata(counts, layer=layer)
        metadata = obs if metadata is None else metadata
    elif isinstance(counts, pd.DataFrame):
        counts_df = counts
    elif isinstance(counts, np.ndarray):
        raise TypeError(
            "counts: a bare array has no gene or sample names; pass a pandas DataFrame (either orientation) "
            "or an AnnData"
        )
    else:
        raise TypeError(f"counts: expected a pandas DataFrame or an AnnData, got {type(counts).__name__}")
    if metadata is None:
        raise ValueError("metadata: a sample table (index = sample names) is required for the design")
    aligned, meta, _ = align_counts(counts_df, metadata)
    values = validate_counts(aligned.to_numpy(), name="counts")
    return pd.DataFrame(values, index=aligned.index, columns=aligned.columns), meta


@contextlib.contextmanager
def _precision(precision: str):
    if precision == "float64":
        with jax.enable_x64(True):
            yield
    elif precision == "float32":
        with jax.enable_x64(False):
            yield
    else:
        raise ValueError(f"precision: expected 'float64' or 'float32', got {precision!r}")


def _reduced_design(des: Design, reduced: str, meta: pd.DataFrame) -> Design:
    """The LRT's reduced design, which must use only the full design's variables and be smaller."""
    red = build_design(reduced, meta)
    missing = [v for v in red.variables if v not in des.variables]
    if missing:
        raise ValueError(f"reduced: variables {missing} are not in the full design {des.formula!r}")
    if red.n_coef >= des.n_coef:
        raise ValueError(
            f"reduced: {reduced!r} has {red.n_coef} coefficients, the full design {des.n_coef}; "
            "the reduced design must be smaller"
        )
    return red


def fit_deseq2(
    counts,
    metadata=None,
    design: str = "~ condition",
    *,
    test: str = "wald",
    reduced: str | None = None,
    size_factors="ratio",
    fit_type: str = "parametric",
    min_replicates_for_replace: float = 7,
    dispersion_fit: str = "deseq2",
    layer: str | None = None,
    shard: bool = True,
    precision: str = "float64",
    options: DESeq2Options | None = None,
) -> DESeq2Fit:
    """Run R DESeq2's ``DESeq()`` and return the fitted state (call ``.results()`` on it).

    Args:
        counts: count table as a pandas DataFrame in either orientation (samples matched to
            ``metadata.index`` by name) or an AnnData (obs = samples).
        metadata: sample table (index = sample names); defaults to ``adata.obs`` for AnnData.
        design: formula such as ``"~ group + condition"``.
        test: ``"wald"`` or ``"lrt"``.
        reduced: reduced formula for the LRT (e.g. ``"~ 1"``).
        size_factors: ``"ratio"``, ``"poscounts"``, ``"iterate"`` or an array of ``N`` positive
            factors.
        fit_type: dispersion trend, ``"parametric"`` (falls back to ``"mean"``) or ``"mean"``.
        min_replicates_for_replace: replace outlier counts in cells with at least this many samples
            and refit (``float("inf")`` to never replace).
        dispersion_fit: ``"deseq2"`` reproduces R's line search (R's numbers); ``"newton"`` goes to
            the exact optimum (faster, ~1e-4 from R in ``alpha``).
        layer: AnnData layer holding the counts.
        shard: shard genes across JAX devices when there are several.
        precision: ``"float64"`` (default; R's numbers) or ``"float32"``.
        options: further :class:`DESeq2Options`.

    Returns:
        :class:`DESeq2Fit`.
    """
    check_fit_args(test=test, reduced=reduced, size_factors=size_factors, fit_type=fit_type,
                   min_replicates_for_replace=min_replicates_for_replace, dispersion_fit=dispersion_fit,
                   precision=precision)
    if options is not None and not isinstance(options, DESeq2Options):
        raise TypeError(f"options: expected a DESeq2Options, got {type(options).__name__}")
    opts = options or DESeq2Options()
    opts = dataclasses.replace(
        opts, fit_type=fit_type, min_replicates_for_replace=min_replicates_for_replace, dispersion_fit=dispersion_fit
    )
    counts_df, meta = prepare_inputs(counts, metadata, layer=layer)
    des = build_design(design, meta)
    red = _reduced_design(des, reduced, meta) if test == "lrt" else None
    y = counts_df.to_numpy(dtype=float)
    n = y.shape[1]
    if isinstance(size_factors, str):
        sf_method = size_factors
        sf = None
    else:
        sf_method = None
        sf = np.asarray(size_factors, dtype=float)
        if sf.shape != (n,):
            raise ValueError(f"size_factors: expected {n} values (one per sample), got shape {sf.shape}")
        if not np.all(np.isfinite(sf)) or np.any(sf <= 0):
            raise ValueError("size_factors: expected finite positive values")
    with _precision(precision):
        if sf is None:
            sf = estimate_size_factors(y, sf_method, opts=opts)
        return _deseq(y, counts_df.index, counts_df.columns, des, red, test, sf, opts, shard)


def _deseq(y, genes, samples, des: Design, red: Design | None, test, sf, opts, shard) -> DESeq2Fit:
    x = des.matrix
    xr = red.matrix if red is not None else None
    g_all, m = y.shape
    p = x.shape[1]
    norm_all = y / sf
    all_zero = y.sum(axis=1) == 0
    nz = ~all_zero
    if nz.sum() == 0:
        raise ValueError("counts: every gene has only zero counts")
    yz = y[nz]
    st = _dispersions(yz, x, sf, opts, shard)
    res = _test(yz, x, sf, st["dispersion"], opts, shard, test, xr)

    def full(v, fill=np.nan, dtype=float):
        out = np.full((g_all,) + np.shape(v)[1:], fill, dtype=dtype)
        out[nz] = v
        return out

    gene = {
        "baseMean": norm_all.mean(axis=1),
        "baseVar": norm_all.var(axis=1, ddof=1),
        "allZero": all_zero,
        "dispGeneEst": full(st["dispGeneEst"]),
        "dispGeneIter": full(st["dispGeneIter"], 0, int),
        "dispFit": full(st["dispFit"]),
        "dispersion": full(st["dispersion"]),
        "dispIter": full(st["dispIter"], 0, int),
        "dispOutlier": full(st["dispOutlier"], False, bool),
        "dispMAP": full(st["dispMAP"]),
        "betaConv": full(res["fit"]["conv"], False, bool),
        "betaIter": full(res["fit"]["n_iter"], 0, int),
        "deviance": full(-2.0 * res["fit"]["loglik"]),
        "maxCooks": full(res["maxCooks"]),
        "replace": np.zeros(g_all, bool),
    }
    beta = full(res["fit"]["beta"])
    sigma = full(res["fit"]["sigma"])
    mu = full(res["fit"]["mu"])
    if test == "wald":
        stat, pval = full(res["stat"]), full(res["pvalue"])
    else:
        stat, pval = full(res["lrt_stat"]), full(res["lrt_pvalue"])
    cooks = full(res["cooks"])
    trend = st["trend"]
    replace_counts = None
    # ---- outlier replacement and refit (DESeq2 refitWithoutOutliers / replaceOutliers)
    replaceable = rstats.n_or_more_in_cell(x, opts.min_replicates_for_replace)
    if replaceable.any() and m > p:
        cutoff = stats.f.ppf(0.99, p, m - p)
        with np.errstate(invalid="ignore"):
            is_out = np.nan_to_num(cooks, nan=0.0) > cutoff
        replace = is_out.any(axis=1)
        trim_mean = rstats.r_trimmed_mean(norm_all, 0.2, axis=1)
        replacement = np.trunc(trim_mean[:, None] * sf[None, :])
        new = y.copy()
        sel = is_out & replaceable[None, :]
        new[sel] = replacement[sel]
        nrefit = int(replace.sum())
        if nrefit > 0:
            norm_new = new / sf
            gene["baseMean"] = norm_new.mean(axis=1)
            gene["baseVar"] = norm_new.var(axis=1, ddof=1)
            new_all_zero = new.sum(axis=1) == 0
            gene["allZero"] = new_all_zero
            gene["replace"] = replace
            became_zero = replace & new_all_zero
            refit = replace & ~new_all_zero
            if refit.any():
                st2 = _dispersions(new[refit], x, sf, opts, shard, trend=trend)
                r2 = _test(new[refit], x, sf, st2["dispersion"], opts, shard, test, xr)
                for k in ("dispGeneEst", "dispGeneIter", "dispFit", "dispersion", "dispIter", "dispOutlier", "dispMAP"):
                    gene[k][refit] = st2[k]
                gene["betaConv"][refit] = r2["fit"]["conv"]
                gene["betaIter"][refit] = r2["fit"]["n_iter"]
                gene["deviance"][refit] = -2.0 * r2["fit"]["loglik"]
                beta[refit] = r2["fit"]["beta"]
                sigma[refit] = r2["fit"]["sigma"]
                mu[refit] = r2["fit"]["mu"]
                if test == "wald":
                    stat[refit], pval[refit] = r2["stat"], r2["pvalue"]
                else:
                    stat[refit], pval[refit] = r2["lrt_stat"], r2["lrt_pvalue"]
            for arr in (beta, sigma, stat, pval):
                arr[became_zero] = np.nan
            gene["deviance"][became_zero] = np.nan
            if replaceable.all():
                gene["maxCooks"] = np.full(g_all, np.nan)
            else:
                rc = cooks.copy()
                rc[:, replaceable] = 0.0
                gene["maxCooks"] = _max_cooks(rc, x)
                gene["maxCooks"][all_zero] = np.nan
            replace_counts = new
    return DESeq2Fit(
        genes=pd.Index(genes),
        samples=pd.Index(samples),
        counts=y,
        design=des,
        reduced=red,
        test=test,
        size_factors=sf,
        gene=gene,
        beta=beta,
        sigma=sigma,
        stat=stat,
        pvalue=pval,
        cooks=cooks,
        replace_counts=replace_counts,
        trend=trend,
        options=opts,
        mu=mu,
    )


def deseq2(
    counts,
    metadata=None,
    design: str = "~ condition",
    *,
    contrast=None,
    alpha: float = 0.1,
    test: str = "wald",
    reduced: str | None = None,
    independent_filtering: bool = True,
    lfc_threshold: float = 0.0,
    alt_hypothesis: str = "greaterAbs",
    cooks_cutoff=None,
    **fit_kwargs,
) -> pd.DataFrame:
    """``results(DESeq(dds), contrast=...)`` in one call; see :func:`fit_deseq2` and :meth:`DESeq2Fit.results`.

    Returns:
        DESeq2's results table: ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj`` by gene.
    """
    check_results_args(alpha=alpha, lfc_threshold=lfc_threshold, alt_hypothesis=alt_hypothesis,
                       cooks_cutoff=cooks_cutoff, independent_filtering=independent_filtering)
    fit = fit_deseq2(counts, metadata, design, test=test, reduced=reduced, **fit_kwargs)
    return fit.results(
        contrast,
        alpha=alpha,
        independent_filtering=independent_filtering,
        lfc_threshold=lfc_threshold,
        alt_hypothesis=alt_hypothesis,
        cooks_cutoff=cooks_cutoff,
    )


def run_de(
    counts_path,
    metadata_path,
    design: str,
    out,
    *,
    contrast=None,
    test: str = "wald",
    reduced: str | None = None,
    alpha: float = 0.1,
    size_factors: str = "ratio",
    fit_type: str = "parametric",
    independent_filtering: bool = True,
    min_replicates_for_replace: float = 7,
    plots=None,
    quiet: bool = False,
) -> pd.DataFrame:
    """The ``diffbio-prob de`` command: read files, run DESeq2, write the table (and plots) atomically.

    Args:
        counts_path: CSV/TSV count table (either orientation).
        metadata_path: CSV/TSV sample table (first column = sample names).
        design, contrast, test, reduced, alpha, size_factors, fit_type, independent_filtering,
            min_replicates_for_replace: as :func:`fit_deseq2` and :meth:`DESeq2Fit.results`.
        out: results CSV (``.tsv`` for tab-separated).
        plots: folder for ``ma.png`` and ``volcano.png`` (or ``None``).
        quiet: no progress lines on stderr.

    Returns:
        The results table.
    """
    import sys
    import time
    from pathlib import Path

    from diffbio_prob.io.atomic import check_output_path
    from diffbio_prob.io.counts import read_counts, read_metadata, write_results

    def say(msg):
        if not quiet:
            print(msg, file=sys.stderr)

    # Every argument, output path and input is checked before the fit: a mistake fails in a second, not
    # after the whole pipeline, and leaves no partial output.
    check_fit_args(test=test, reduced=reduced, size_factors=size_factors, fit_type=fit_type,
                   min_replicates_for_replace=min_replicates_for_replace)
    check_results_args(alpha=alpha, independent_filtering=independent_filtering)
    check_output_path(out, "out", "file")
    if plots is not None:
        check_output_path(plots, "plots", "dir")
        for name in ("ma.png", "volcano.png"):
            check_output_path(Path(plots) / name, "plots", "file")
    counts = read_counts(counts_path)
    meta = read_metadata(metadata_path)
    try:
        _, meta_aligned = prepare_inputs(counts, meta)
    except ValueError as exc:
        raise ValueError(f"{counts_path} / {metadata_path}: {exc}") from None
    des = build_design(design, meta_aligned)
    if test == "lrt":
        _reduced_design(des, reduced, meta_aligned)
    resolve_contrast(contrast, des)
    start = time.perf_counter()
    fit = fit_deseq2(
        counts,
        meta,
        design,
        test=test,
        reduced=reduced,
        size_factors=size_factors,
        fit_type=fit_type,
        min_replicates_for_replace=min_replicates_for_replace,
    )
    res = fit.results(contrast, alpha=alpha, independent_filtering=independent_filtering)
    say(
        f"diffbio-prob de: {len(res)} genes, {fit.counts.shape[1]} samples, {res.attrs['contrast']}: "
        f"{int((res['padj'] < alpha).sum())} with padj < {alpha} ({time.perf_counter() - start:.1f} s)"
    )
    write_results(res, out)
    say(f"diffbio-prob de: wrote {out}")
    if plots is not None:
        from pathlib import Path

        from diffbio_prob.plots import save_figure
        from diffbio_prob.plots.de import ma_plot, volcano_plot

        folder = Path(plots)
        save_figure(ma_plot(res, alpha=alpha), folder / "ma.png")
        save_figure(volcano_plot(res, alpha=alpha), folder / "volcano.png")
        say(f"diffbio-prob de: wrote {folder / 'ma.png'} and {folder / 'volcano.png'}")
    return res
