"""DESeq2's dispersion trends (``estimateDispersionsFit``) and the prior variance around them
(``estimateDispersionsPriorVar``).

Three trends, as R's ``fitType``: ``parametric`` (``asymptDisp + extraPois / mean``, a gamma-family GLM
fitted iteratively), ``local`` (locfit's local regression of log dispersions on log means, weighted by
the means) and ``mean`` (the 0.1%-trimmed mean). When the parametric fit fails R substitutes the local
fit with a message; so do we (a warning naming what happened, ``Trend.fallback`` set).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
from scipy import special

from diffbio_prob.workflows.deseq2 import rstats
from diffbio_prob.workflows.deseq2.options import FIT_TYPES, DESeq2Options

__all__ = ["Trend", "fit_trend", "prior_variance"]


@dataclasses.dataclass
class Trend:
    """A fitted dispersion trend, callable on means, and the spread of gene-wise estimates around it.

    Attributes:
        kind: ``"parametric"``, ``"local"`` or ``"mean"`` (R's ``attr(dispersionFunction(dds), "fitType")``).
        coefs: ``[asymptDisp, extraPois]`` (parametric), ``[mean]`` (mean), empty (local).
        var_log_disp_ests: ``varLogDispEsts``, the squared MAD of log residuals.
        prior_var: ``dispPriorVar``, the prior variance of log dispersions around the trend.
        fallback: ``True`` when R's parametric -> local substitution happened.
        local: the local fit (:mod:`~diffbio_prob.workflows.deseq2.locfit`) for ``kind == "local"``.
    """

    kind: str
    coefs: np.ndarray
    var_log_disp_ests: float = float("nan")
    prior_var: float = float("nan")
    fallback: bool = False
    local: Any = None

    def __call__(self, means):
        means = np.asarray(means, dtype=float)
        if self.kind == "parametric":
            return self.coefs[0] + self.coefs[1] / means
        if self.kind == "local":
            return np.asarray(self.local(means), dtype=float)
        return np.full(means.shape, self.coefs[0])


def fit_trend(base_mean: np.ndarray, disp_gene: np.ndarray, opts: DESeq2Options) -> Trend:
    """R's ``estimateDispersionsFit`` on gene-wise estimates (``dispGeneEst``) of non-all-zero genes."""
    use = disp_gene > 100 * opts.min_disp
    if not use.any():
        raise ValueError(
            "all gene-wise dispersion estimates are within 2 orders of magnitude of the minimum value; "
            "the dispersion trend cannot be fitted (R: use a gene-wise estimate as final dispersion)"
        )
    kind = opts.fit_type
    if kind not in FIT_TYPES:
        raise ValueError(f"fit_type: expected one of {', '.join(FIT_TYPES)}, got {kind!r}")
    fallback = False
    if kind == "parametric":
        try:
            return Trend("parametric", rstats.parametric_dispersion_fit(base_mean[use], disp_gene[use]))
        except rstats.ParametricFitError as exc:
            warnings.warn(
                f"fit_type='parametric', but the dispersion trend was not well captured by a/x + b ({exc}); "
                "a local regression fit was substituted, as R DESeq2 does. Pass fit_type='local' or 'mean' "
                "to avoid this warning.",
                RuntimeWarning,
                stacklevel=3,
            )
            kind, fallback = "local", True
    if kind == "local":
        from diffbio_prob.workflows.deseq2.locfit import local_dispersion_fit

        return Trend("local", np.zeros(0), fallback=fallback,
                     local=local_dispersion_fit(base_mean[use], disp_gene[use], opts.min_disp))
    use_mean = disp_gene > 10 * opts.min_disp
    return Trend("mean", np.array([rstats.r_trimmed_mean(disp_gene[use_mean], 0.001)]))


def prior_variance(disp_gene: np.ndarray, disp_fit: np.ndarray, m: int, p: int, opts: DESeq2Options):
    """``(varLogDispEsts, dispPriorVar)`` as R's ``estimateDispersionsPriorVar`` computes them.

    With 1-3 residual degrees of freedom R estimates the prior variance by a simulation seeded inside the
    function (``set.seed(2)``), so its value is a fixed function of the residuals:
    ``opts.small_df_prior_var = "r"`` (the default) reproduces it exactly from R's simulated histograms
    (:mod:`~diffbio_prob.workflows.deseq2.small_df`); ``"exact"`` computes the same criterion from the exact
    densities instead, without R's Monte Carlo noise (:func:`~diffbio_prob.workflows.deseq2.rstats.disp_prior_var_small_df`).

    Returns ``(nan, 0.25)`` when every gene-wise estimate is within two orders of the minimum (R then
    gives every gene ``10 * minDisp``; see the caller).
    """
    above = disp_gene >= opts.min_disp * 100
    if not above.any():
        return float("nan"), 0.25
    resid = np.log(disp_gene[above]) - np.log(disp_fit[above])
    var_log = float(rstats.r_mad(resid) ** 2)
    if (m - p) <= 3 and m > p:
        if opts.small_df_prior_var == "r":
            from diffbio_prob.workflows.deseq2.small_df import r_prior_var_small_df

            return var_log, float(r_prior_var_small_df(resid, m - p))
        return var_log, float(rstats.disp_prior_var_small_df(resid, m - p))
    if m > p:
        return var_log, float(max(var_log - special.polygamma(1, (m - p) / 2.0), 0.25))
    return var_log, var_log

