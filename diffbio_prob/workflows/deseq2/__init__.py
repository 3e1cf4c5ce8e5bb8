"""R DESeq2's differential-expression pipeline on the JAX NB-GLM core, giving R's answers.

The package follows DESeq2's own structure: one data object (:mod:`.data`), DESeq2's named steps
(:mod:`.steps`) over the estimators (:mod:`.glm`, :mod:`.dispersion`, :mod:`.trend`, :mod:`.size_factors`,
jitted in :mod:`.kernels`), the fitted state and ``results()`` (:mod:`.fit`), the entry points
(:mod:`.api`), formulaic designs (:mod:`.design`) and R's numerics (:mod:`.rstats`).
:func:`fit_deseq2` runs ``DESeq()``; :meth:`DESeq2Fit.results` is ``results()``.
"""

from diffbio_prob.workflows.deseq2.design import Contrast, Design, build_design, resolve_contrast
from diffbio_prob.workflows.deseq2.api import deseq2, fit_deseq2, prepare_inputs
from diffbio_prob.workflows.deseq2.checks import check_fit_args, check_results_args
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.fit import DESeq2Fit
from diffbio_prob.workflows.deseq2.options import DESeq2Options
from diffbio_prob.workflows.deseq2.run import run_de
from diffbio_prob.workflows.deseq2.steps import estimate_size_factors

__all__ = [
    "Contrast",
    "DESeq2Data",
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
