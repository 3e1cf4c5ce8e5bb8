"""R DESeq2's differential-expression pipeline on the JAX NB-GLM core, giving R's answers.

The package follows DESeq2's own structure: one data object (:mod:`.data`), DESeq2's named steps
(:mod:`.steps`), the dispersion trends (:mod:`.trend`), the transformations (:mod:`.transform`), the
shrinkage estimators (:mod:`.shrink`), formulaic designs (:mod:`.design`) and R's numerics (:mod:`.rstats`).
:func:`fit_deseq2` runs ``DESeq()``; :meth:`DESeq2Fit.results` is ``results()``.
"""

from diffbio_prob.workflows.deseq2.design import Contrast, Design, build_design, resolve_contrast
from diffbio_prob.workflows.deseq2.pipeline import (
    DESeq2Fit,
    DESeq2Options,
    check_fit_args,
    check_results_args,
    deseq2,
    estimate_size_factors,
    fit_deseq2,
    prepare_inputs,
    run_de,
)

__all__ = [
    "Contrast",
    "DESeq2Fit",
    "DESeq2Options",
    "Design",
    "build_design",
    "check_fit_args",
    "check_results_args",
    "deseq2",
    "estimate_size_factors",
    "fit_deseq2",
    "prepare_inputs",
    "resolve_contrast",
    "run_de",
]
