"""Bayesian log fold changes: ``nb_glm_model`` fitted by SVI or NUTS, summarised per gene.

An answer to DESeq2's ``lfcShrink`` that keeps the whole posterior: the coefficients get a normal or
Cauchy prior, each gene's dispersion a log-normal prior centred on DESeq2's fitted trend with
DESeq2's prior width, and the posterior of every log2 fold change is summarised by its mean, sd,
highest-density interval and the probability that ``|LFC|`` exceeds a threshold (the quantity a
``lfcThreshold`` test asks about, answered directly).

Example:
    >>> fit = fit_deseq2(counts, meta, "~ condition")                              # doctest: +SKIP
    >>> table, result = bayesian_lfc(fit, ["condition", "B", "A"], method="svi")   # doctest: +SKIP
    >>> table[["log2FoldChange", "lfcSE", "hdi_lower", "hdi_upper", "prob_abs_lfc_gt"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["hdi", "posterior_lfc_summary", "bayesian_lfc"]

LOG2E = 1.0 / math.log(2.0)


def hdi(draws: np.ndarray, prob: float = 0.94) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval of each column of ``draws`` ``(S, ...)``: the shortest interval
    holding ``ceil(prob * S)`` sorted draws (ArviZ's definition for unimodal samples).

    Example:
        >>> lo, hi = hdi(np.arange(100.0)[:, None], 0.9)
        >>> float(hi[0] - lo[0])
        89.0
    """
    if not 0 < prob < 1:
        raise ValueError(f"hdi_prob: expected a number in (0, 1), got {prob}")
    x = np.sort(np.asarray(draws, dtype=float), axis=0)
    s = x.shape[0]
    k = int(math.ceil(prob * s))
    if k >= s:
        return x[0], x[-1]
    widths = x[k - 1 :] - x[: s - k + 1]
    start = np.argmin(widths, axis=0)
    lower = np.take_along_axis(x, start[None], axis=0)[0]
    upper = np.take_along_axis(x, (start + k - 1)[None], axis=0)[0]
    return lower, upper


def posterior_lfc_summary(
    result,
    contrast,
    genes,
    *,
    lfc_threshold: float = 1.0,
    hdi_prob: float = 0.94,
    base_mean=None,
    site: str = "beta",
) -> pd.DataFrame:
    """Per-gene posterior of the log2 fold change ``c' beta_g * log2(e)`` from a ``FitResult``.

    Args:
        result: a ``FitResult`` of :func:`~diffbio_prob.models.nb_glm.nb_glm_model` (``beta`` draws
            ``(chain, draw, C, G)``).
        contrast: ``(C,)`` numeric contrast over the design columns.
        genes: ``G`` gene names.
        lfc_threshold: the threshold ``T`` of ``P(|LFC| > T)`` (log2 scale).
        hdi_prob: HDI mass.
        base_mean: optional ``(G,)`` DESeq2 baseMean to put in the table.
        site: the coefficient site.

    Returns:
        DataFrame by gene: ``baseMean``, ``log2FoldChange`` (posterior mean), ``lfcSE`` (posterior sd),
        ``hdi_lower``, ``hdi_upper``, ``prob_abs_lfc_gt`` (``attrs`` holds the threshold and HDI mass).
    """
    beta = np.asarray(result.samples[site], dtype=float)
    if beta.ndim != 4:
        raise ValueError(f"{site}: expected draws of shape (chain, draw, C, G), got {beta.shape}")
    c = np.asarray(contrast, dtype=float)
    if c.shape != (beta.shape[2],):
        raise ValueError(f"contrast: expected {beta.shape[2]} values, got shape {c.shape}")
    if lfc_threshold < 0:
        raise ValueError(f"lfc_threshold: expected a non-negative number, got {lfc_threshold}")
    lfc = np.einsum("k,sdkg->sdg", c, beta).reshape(-1, beta.shape[3]) * LOG2E
    lower, upper = hdi(lfc, hdi_prob)
    table = pd.DataFrame(
        {
            "baseMean": np.full(lfc.shape[1], np.nan) if base_mean is None else np.asarray(base_mean, float),
            "log2FoldChange": lfc.mean(axis=0),
            "lfcSE": lfc.std(axis=0, ddof=1),
            "hdi_lower": lower,
            "hdi_upper": upper,
            "prob_abs_lfc_gt": np.mean(np.abs(lfc) > lfc_threshold, axis=0),
        },
        index=pd.Index(genes),
    )
    table.attrs.update({"lfc_threshold": lfc_threshold, "hdi_prob": hdi_prob, "method": result.method})
    return table


def bayesian_lfc(
    fit,
    contrast=None,
    *,
    method: str = "svi",
    genes=None,
    prior: str = "normal",
    prior_scale: float = 1.0,
    lfc_threshold: float = 1.0,
    hdi_prob: float = 0.94,
    num_steps: int = 2000,
    num_samples: int = 1000,
    num_warmup: int = 500,
    num_chains: int = 2,
    chain_method: str = "sequential",
    learning_rate: float | None = None,
    rng_key: int = 0,
    progress: bool = False,
):
    """Fit :func:`~diffbio_prob.models.nb_glm.nb_glm_model` to a DESeq2 fit's genes and summarise LFCs.

    The dispersion prior is DESeq2's: median ``dispFit`` (the trend), sd ``sqrt(dispPriorVar)`` on the
    log scale; size factors and the design are the fit's. Both samplers start from DESeq2's estimates
    (coefficients and final dispersions). ``method="gradient"`` is the maximum-likelihood counterpart:
    the NNX operator :class:`~diffbio_prob.operators.statistical.DifferentiableNBGLM` (coefficients and
    dispersions, no prior) trained by Adam from intercepts at each gene's log mean normalised count and
    fold changes at 0; its table has the estimate and NaN for every posterior column.

    Args:
        fit: a :class:`~diffbio_prob.workflows.deseq2.DESeq2Fit`.
        contrast: as :meth:`DESeq2Fit.results` (default: the last coefficient).
        method: ``"svi"`` (mean-field normal guide; all genes), ``"nuts"`` (exact; for up to a few
            hundred genes) or ``"gradient"`` (maximum likelihood, no posterior; ``num_steps`` Adam steps).
        genes: gene names or a boolean mask to fit (default: all genes that are not all zero).
        prior, prior_scale: coefficient prior (``"normal"`` or ``"cauchy"``) and its log2-scale
            scale; the intercept gets a wide prior.
        lfc_threshold, hdi_prob: as :func:`posterior_lfc_summary`.
        num_steps, num_samples, learning_rate: SVI settings (``num_steps`` and ``learning_rate`` also
            the gradient fit's; ``learning_rate`` defaults to 0.02 for SVI, 0.05 for the gradient fit);
            ``num_warmup``, ``num_samples``,
            ``num_chains``, ``chain_method``: NUTS settings (see :func:`~diffbio_prob.inference.fit_nuts`;
            sequential chains without a progress bar share one compiled program).
        rng_key: seed.
        progress: progress bars.

    Returns:
        ``(table, fit_result)``: the per-gene table and the ``FitResult`` (``to_arviz()`` works).
    """
    import jax
    import optax

    from diffbio_prob.inference import fit_nuts, fit_svi
    from diffbio_prob.models.nb_glm import nb_glm_model
    from diffbio_prob.workflows.deseq2.design import resolve_contrast

    if method not in ("svi", "nuts", "gradient"):
        raise ValueError(f"method: expected 'svi', 'nuts' or 'gradient', got {method!r}")
    if learning_rate is not None and not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    con = resolve_contrast(contrast, fit.design)
    keep = ~np.asarray(fit.gene["allZero"], bool)
    if genes is not None:
        g = np.asarray(genes)
        if g.dtype == bool:
            if g.shape != keep.shape:
                raise ValueError(f"genes: a mask needs {keep.size} entries, got {g.size}")
            sel = g
        else:
            missing = [x for x in g if x not in fit.genes]
            if missing:
                raise ValueError(f"genes: not in the fit: {missing[:5]}")
            sel = fit.genes.isin(g)
        keep = keep & sel
    if not keep.any():
        raise ValueError("genes: no gene with non-zero counts selected")
    counts = (fit.counts if fit.replace_counts is None else fit.replace_counts)[keep].T
    design = fit.design.matrix
    trend = np.asarray(fit.gene["dispFit"])[keep]
    prior_sd = math.sqrt(float(fit.trend.prior_var))
    init = {
        "beta": np.asarray(fit.beta)[keep].T,
        "alpha": np.asarray(fit.gene["dispersion"])[keep],
    }
    model_kwargs = dict(
        prior=prior,
        prior_scale=prior_scale,
        dispersion_trend=trend,
        dispersion_prior_sd=prior_sd,
    )
    with jax.enable_x64(True):
        args = (np.asarray(counts, float), np.asarray(design, float), np.asarray(fit.size_factors, float))
        if method == "gradient":
            return _gradient_lfc(fit, con, keep, args, num_steps, 0.05 if learning_rate is None else learning_rate,
                                 rng_key, progress)
        if method == "svi":
            result = fit_svi(
                nb_glm_model,
                *args,
                optimizer=optax.adam(0.02 if learning_rate is None else learning_rate),
                num_steps=num_steps,
                num_samples=num_samples,
                rng_key=rng_key,
                init_params=init,
                progress=progress,
                **model_kwargs,
            )
        else:
            result = fit_nuts(
                nb_glm_model,
                *args,
                num_warmup=num_warmup,
                num_samples=num_samples,
                chain_method=chain_method,
                num_chains=num_chains,
                rng_key=rng_key,
                init_params=init,
                progress=progress,
                **model_kwargs,
            )
    table = posterior_lfc_summary(
        result,
        con.vector,
        fit.genes[keep],
        lfc_threshold=lfc_threshold,
        hdi_prob=hdi_prob,
        base_mean=np.asarray(fit.gene["baseMean"])[keep],
    )
    table.attrs["contrast"] = con.label
    return table, result


def _gradient_lfc(fit, con, keep, args, num_steps, learning_rate, rng_key, progress):
    """``bayesian_lfc(method="gradient")``: the NNX NB-GLM's maximum-likelihood fit, as a table."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from diffbio_prob.inference import fit_gradient
    from diffbio_prob.operators.statistical import DifferentiableNBGLM, NBGLMConfig

    y, design, sf = args  # (N, G), (N, C), (N,)
    op = DifferentiableNBGLM(NBGLMConfig(n_features=y.shape[1], n_covariates=design.shape[1]),
                             rngs=nnx.Rngs(rng_key))
    # The coefficients' scale is set by the data, not by the N(0, 0.1) initialisation: intercepts start
    # at the log mean normalised count, the other coefficients at 0.
    beta0 = np.zeros((design.shape[1], y.shape[1]))
    beta0[0] = np.log(np.mean(y / sf[:, None], axis=0) + 0.5)
    op.load_model_params({"beta": beta0})
    data = {"counts": jnp.asarray(y), "design": jnp.asarray(design), "size_factors": jnp.asarray(sf)}
    result = fit_gradient(op, data, optimizer=optax.adam(learning_rate), num_steps=num_steps, progress=progress)
    beta = np.asarray(result.params["beta"], float)  # (C, G)
    lfc = np.asarray(con.vector, float) @ beta * LOG2E
    nan = np.full(lfc.shape, np.nan)
    table = pd.DataFrame(
        {"baseMean": np.asarray(fit.gene["baseMean"])[keep], "log2FoldChange": lfc, "lfcSE": nan,
         "hdi_lower": nan, "hdi_upper": nan, "prob_abs_lfc_gt": nan},
        index=pd.Index(fit.genes[keep]),
    )
    table.attrs.update({"method": "gradient", "contrast": con.label})
    return table, result
