"""R DESeq2's differential-expression pipeline on the JAX NB-GLM core, giving R's answers.

The package follows DESeq2's own structure: one data object (:mod:`.data`), DESeq2's named steps
(:mod:`.steps`) over the estimators (:mod:`.glm`, :mod:`.dispersion`, :mod:`.trend` with :mod:`.locfit`,
:mod:`.size_factors`, jitted in :mod:`.kernels`), the fitted state and ``results()`` (:mod:`.fit`), the
transformations (:mod:`.transform`: normalized counts, vst, rlog), ``lfcShrink`` (:mod:`.shrink`: normal,
apeglm), the tximport route (:mod:`.tximport`), the AnnData write-back (:mod:`.anndata`), the entry points
(:mod:`.api`, :mod:`.run`), formulaic designs (:mod:`.design`) and R's numerics (:mod:`.rstats`).
:func:`fit_deseq2` runs ``DESeq()``; :meth:`DESeq2Fit.results` is ``results()``.
"""

from diffbio_prob.workflows.deseq2.anndata import write_to_anndata
from diffbio_prob.workflows.deseq2.api import deseq2, fit_deseq2, prepare_inputs
from diffbio_prob.workflows.deseq2.checks import check_fit_args, check_results_args
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.design import Contrast, Design, build_design, resolve_contrast
from diffbio_prob.workflows.deseq2.fit import DESeq2Fit
from diffbio_prob.workflows.deseq2.options import DESeq2Options
from diffbio_prob.workflows.deseq2.run import run_de
from diffbio_prob.workflows.deseq2.shrink import lfc_shrink
from diffbio_prob.workflows.deseq2.steps import estimate_size_factors
from diffbio_prob.workflows.deseq2.transform import normalized_counts, rlog, vst
from diffbio_prob.workflows.deseq2.tximport import deseq2_inputs_from_tximport

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
    "deseq2_inputs_from_tximport",
    "estimate_size_factors",
    "fit_deseq2",
    "lfc_shrink",
    "normalized_counts",
    "prepare_inputs",
    "resolve_contrast",
    "rlog",
    "run_de",
    "vst",
    "write_to_anndata",
]
