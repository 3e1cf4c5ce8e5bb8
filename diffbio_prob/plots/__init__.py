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

from importlib import import_module

# Lazy (PEP 562): matplotlib and ArviZ load with the first figure, not with the package (so
# ``diffbio_prob.plots.pca``'s numbers need no matplotlib). Name -> submodule.
_MODULES = {
    "figure_to_png": "_common",
    "save_figure": "_common",
    "dispersion_plot": "de",
    "ma_plot": "de",
    "pca_plot": "de",
    "sample_distance_heatmap": "de",
    "volcano_plot": "de",
    "posterior_plot": "diagnostics",
    "trace_plot": "diagnostics",
    "posterior_track_plot": "hmm",
    "pca_of_transformed": "pca",
    "sample_distances": "pca",
    "counts_vs_truth_plot": "quant",
    "mard": "quant",
}

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


def __getattr__(name):
    if name in _MODULES:
        return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
