"""``diffbio-prob demo``: every model on data with a known truth, fitted three ways, in one report.

Three small problems whose answers are known, so every number on the page can be checked:

* **HMM** — the dishonest casino (Durbin et al. 1998): a fair and a loaded die, rolls simulated with
  :func:`simulate_casino`. Fitted by Baum-Welch EM, by gradient (the NNX operator + optax), by SVI and
  by NUTS on :func:`diffbio_prob.models.hmm_model` (:func:`diffbio_prob.workflows.hmm.fit_hmm`); decoded
  with the posterior state track and Viterbi (:func:`diffbio_prob.workflows.hmm.decode_hmm`).
* **Differential expression** — a counts table simulated by DESeq2's ``makeExampleDESeqDataSet`` recipe
  with a known log fold change per gene (:func:`simulate_de_counts`). DESeq2's pipeline gives the
  frequentist answer (:func:`diffbio_prob.workflows.deseq2.fit_deseq2`); the NB-GLM by gradient, SVI and
  NUTS (:func:`diffbio_prob.workflows.de_bayes.bayesian_lfc`) gives each gene's posterior LFC.
* **Quantification** — salmon's sample equivalence classes with the simulated true counts, shipped in
  the package (:func:`load_quant_sample`). EM and gradient through unrolled EM
  (:func:`diffbio_prob.workflows.quant.quantify`), SVI and NUTS on :func:`diffbio_prob.models.em_model`
  (:func:`diffbio_prob.workflows.quant.posterior`) give estimates and posterior intervals per transcript.

Outputs (all written atomically) go into one folder: ``report.html`` (self-contained), and per model a
sub-folder with the posteriors as netCDF (``az.from_netcdf`` reopens them), tables as CSV (and
``quant.sf``) and the figures as PNG.

The demo calls the workflows and nothing below them: the package holds the data and simulators
(``data.py``), one module per model (``hmm.py``, ``de.py``, ``quant.py``), what the parts share
(``outputs.py``), the report page (``report.py``) and the process runner (``runner.py``).

Example:
    >>> from diffbio_prob.workflows.demo import run_demo
    >>> folder = run_demo("/tmp/diffbio-prob-demo", quick=True, quiet=True)   # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())                               # doctest: +SKIP
    ['de', 'hmm', 'quant', 'report.html']
"""

from diffbio_prob.workflows.demo.data import (
    CASINO,
    FULL,
    QUICK,
    DemoSizes,
    load_quant_sample,
    simulate_casino,
    simulate_de_counts,
)
from diffbio_prob.workflows.demo.runner import run_demo

__all__ = [
    "DemoSizes",
    "FULL",
    "QUICK",
    "CASINO",
    "run_demo",
    "simulate_casino",
    "simulate_de_counts",
    "load_quant_sample",
]
