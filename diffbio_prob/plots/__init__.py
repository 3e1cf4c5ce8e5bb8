"""Figures for the models' results, as matplotlib Figures (never shown; saved with :func:`save_figure`).

- :func:`trace_plot`, :func:`posterior_plot`: MCMC/SVI diagnostics through ArviZ 1.x.
- :func:`ma_plot`, :func:`volcano_plot`: differential expression on DESeq2-shaped tables.
- :func:`dispersion_plot`, :func:`pca_plot`, :func:`sample_distance_heatmap`: DESeq2's diagnostics
  (``plotDispEsts``, ``plotPCA``, the vignette's sample-distance heatmap); :func:`pca_of_transformed`
  and :func:`sample_distances` compute plotPCA's and the heatmap's numbers.
- :func:`posterior_track_plot`: HMM state posteriors along a sequence against truth and Viterbi.
- :func:`counts_vs_truth_plot`: quantification estimates against true counts with intervals.

Example:
    >>> import pandas as pd
    >>> from diffbio_prob.plots import ma_plot, save_figure
    >>> res = pd.DataFrame({"baseMean": [5.0, 50.0], "log2FoldChange": [0.2, 1.5], "padj": [0.7, 0.01]})
    >>> path = save_figure(ma_plot(res), "/tmp/diffbio_prob_ma.png")
"""

from diffbio_prob.plots._common import figure_to_png, save_figure
from diffbio_prob.plots.de import dispersion_plot, ma_plot, pca_plot, sample_distance_heatmap, volcano_plot
from diffbio_prob.plots.diagnostics import posterior_plot, trace_plot
from diffbio_prob.plots.hmm import posterior_track_plot
from diffbio_prob.plots.pca import pca_of_transformed, sample_distances
from diffbio_prob.plots.quant import counts_vs_truth_plot, mard

__all__ = [
    "trace_plot",
    "posterior_plot",
    "ma_plot",
    "volcano_plot",
    "dispersion_plot",
    "pca_plot",
    "pca_of_transformed",
    "sample_distance_heatmap",
    "sample_distances",
    "posterior_track_plot",
    "counts_vs_truth_plot",
    "mard",
    "save_figure",
    "figure_to_png",
]
