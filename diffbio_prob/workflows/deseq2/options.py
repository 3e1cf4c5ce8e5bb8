"""DESeq2's control parameters, with R's defaults."""

from __future__ import annotations

import dataclasses

__all__ = ["DESeq2Options", "FIT_TYPES"]

FIT_TYPES = ("parametric", "local", "mean")


@dataclasses.dataclass(frozen=True)
class DESeq2Options:
    """DESeq2's control parameters (R defaults).

    ``fit_type`` is R's ``fitType``: ``"parametric"`` (``a0 + a1 / mean``; R's automatic fallback to the
    local fit when it fails), ``"local"`` (locfit) or ``"mean"``. ``dispersion_fit`` is ``"deseq2"`` (R's
    line search, R's numbers) or ``"newton"`` (the exact optimum). ``small_df_prior_var`` is how the prior
    variance of log dispersions is found for 1-3 residual degrees of freedom: ``"r"`` (R's seeded
    simulation, R's numbers) or ``"exact"`` (the same criterion from exact densities, no Monte Carlo noise).
    """

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
    dispersion_fit: str = "deseq2"
    small_df_prior_var: str = "r"

    def __post_init__(self):
        if self.small_df_prior_var not in ("r", "exact"):
            raise ValueError(f"small_df_prior_var: expected 'r' or 'exact', got {self.small_df_prior_var!r}")
