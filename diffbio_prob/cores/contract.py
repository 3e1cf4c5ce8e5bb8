"""What an operator and its NumPyro twin agree on, declared once: each core's site names, and one way to
move a point estimate off the simplex's boundary.

Operators never import models and models never import operators (docs/design.md), so the names both
sides use live here, below both. The HMM emission families declare their own sites
(:attr:`diffbio_prob.cores.hmm.Emission.site_names`); :data:`HMM_SITES` holds the hidden chain's.

Example:
    >>> HMM_SITES.transition, NB_GLM_SITES.dispersion, EM_SITES.abundances
    ('transition_probs', 'alpha', 'abundances')
    >>> interior(np.array([1.0, 0.0]), mix=0.1).tolist()
    [0.95, 0.05]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["HMMSites", "NBGLMSites", "EMSites", "HMM_SITES", "NB_GLM_SITES", "EM_SITES", "interior"]


class HMMSites(NamedTuple):
    """Sites of ``hmm_model``: the chain's probabilities, the categorical emission, the data."""

    initial: str = "initial_probs"
    transition: str = "transition_probs"
    emission: str = "emission_probs"  # the categorical family's (Categorical().site_names[0])
    observations: str = "observations"


class NBGLMSites(NamedTuple):
    """Sites of ``nb_glm_model``: natural-log coefficients (C, G), DESeq2 dispersions ``alpha = 1 / r``."""

    coefficients: str = "beta"
    dispersion: str = "alpha"
    counts: str = "counts"


class EMSites(NamedTuple):
    """Sites of ``em_model``: the latent read fractions, its deterministic outputs and its factor."""

    abundances: str = "abundances"
    estimated_counts: str = "estimated_counts"
    tpm: str = "tpm"
    class_counts: str = "class_counts"


HMM_SITES = HMMSites()
NB_GLM_SITES = NBGLMSites()
EM_SITES = EMSites()


def interior(p, mix: float = 1e-3, axis: int = -1) -> np.ndarray:
    """``(1 - mix) p + mix / K`` along ``axis``: probability vectors moved off the simplex's boundary.

    A point estimate often has exact zeros (Baum-Welch's ``initial_probs = [1, 0]`` on one sequence, an EM
    abundance of 0); NUTS works in unconstrained coordinates (stick-breaking), where such a point lies at
    infinity ("Cannot find valid initial parameters"). Rows summing to one keep summing to one; the move is
    at most ``mix`` per entry.

    Args:
        p: probability vectors (any leading axes), entries in [0, 1] summing to 1 along ``axis``.
        mix: weight of the uniform distribution, in (0, 1).
        axis: the simplex axis.

    Raises:
        ValueError: ``mix`` outside (0, 1), or ``p`` not finite and non-negative.
    """
    if isinstance(mix, bool) or not isinstance(mix, (int, float, np.floating)) or not 0 < mix < 1:
        raise ValueError(f"mix: expected a number in (0, 1), got {mix!r}")
    q = np.asarray(p, dtype=float)
    if q.ndim == 0:
        raise ValueError("p: expected probability vectors, got a scalar")
    if not np.isfinite(q).all() or (q < 0).any():
        raise ValueError("p: expected finite non-negative probabilities")
    return (1.0 - mix) * q + mix / q.shape[axis]
