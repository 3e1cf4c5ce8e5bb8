"""One Bayesian model from quantification uncertainty to fold changes.

:func:`bayes_de_from_quant` reads salmon's quantifications with their inferential replicates (through
:func:`diffbio_prob.io.tximport.tximport`), summarises each sample's replicates per feature as the mean
and variance of ``log(count + 0.5)``, and fits :func:`diffbio_prob.models.quant_de.quant_de_model`
(biological log-normal variation with a hierarchical, trended prior on its sd; the replicates'
variance as a measurement error; an adaptive-shrinkage scale mixture on the log fold change) by SVI
(default) or NUTS. The result is a table of posterior log2 fold changes with local false sign rates and
Bayesian q-values.

Why a mean-field guide (``AutoNormal``) is enough: the model is collapsed (the model module's
docstring), so the guide only covers each feature's noise-sd latent and a handful of hyperparameters;
``b1`` is never in the guide but drawn from its exact conditional posterior (a normal mixture) per draw.
Features are conditionally independent given the hyperparameters, so the only posterior correlations a
mean-field guide drops are between one feature's sd and the shared hyperparameters, which 1000s of
features pin down. Checked: NUTS on the same model gives the same calls on quant2de_ref at gene level
(FDR 0.116 vs 0.134, 199 vs 202 calls) and ``tests/de/test_bayes_de_from_quant.py`` compares the two.
``guide="lowrank"`` (AutoLowRankMultivariateNormal, rank 4) is there for checking.

Calls: ``pvalue`` is the local false sign rate ``min(P(b1 >= 0), P(b1 <= 0))`` with the prior's point
mass at zero counted on both sides (ashr's lfsr, so it is at least the probability of "no change");
``padj`` is the Bayesian q-value, the running mean of the sorted lfsr: the expected false sign rate of
calling this feature and every more certain one. Known limit, measured: when the true effects have a
gap around zero (simulations drawing ``|log2FC| >= 1``) the unimodal prior leaves features at
``|z| ~ 2`` with ``P(null) ~ 0.5``, and the realised FDR at ``padj < 0.1`` is ~0.13-0.17 rather than 0.1.

Example:
    >>> table, fit = bayes_de_from_quant(paths, meta, level="transcript")          # doctest: +SKIP
    >>> table.loc[table.padj < 0.1, ["log2FoldChange", "lfcSD", "pvalue", "padj"]]  # doctest: +SKIP
    >>> fit.to_arviz()                                                              # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "b1_posterior", "bayes_de_from_quant", "lfsr_from_draws", "prepare_quant_de", "qvalues_from_lfsr", "run_bayes_de",
]

LN2 = math.log(2.0)
_LEVELS = ("transcript", "gene")
_METHODS = ("svi", "nuts")


def lfsr_from_draws(draws: np.ndarray) -> np.ndarray:
    """Local false sign rate per column of ``draws`` ``(S, T)``: ``min(P(b >= 0), P(b <= 0))``."""
    d = np.asarray(draws, dtype=float)
    pos = np.mean(d > 0, axis=0)
    neg = np.mean(d < 0, axis=0)
    return np.clip(1.0 - np.maximum(pos, neg), 0.0, 1.0)


def qvalues_from_lfsr(lfsr, tiebreak=None) -> np.ndarray:
    """Bayesian q-values: for each feature, the expected false sign rate among it and every feature
    more certain than it (the cumulative mean of the sorted ``lfsr``). NaN stays NaN.

    ``tiebreak`` (e.g. ``-|stat|``) orders features of equal lfsr; the q-values of tied features are
    made equal (their largest), so the q-value is a monotone function of the lfsr.
    """
    s = np.asarray(lfsr, dtype=float)
    q = np.full(s.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(s))
    if ok.size == 0:
        return q
    tb = np.zeros(ok.size) if tiebreak is None else np.asarray(tiebreak, dtype=float)[ok]
    order = np.lexsort((tb, s[ok]))
    cm = np.cumsum(s[ok][order]) / np.arange(1, ok.size + 1)
    # equal lfsr -> equal q (the largest of the tie group keeps q monotone non-decreasing in lfsr)
    sv = s[ok][order]
    last = np.r_[np.flatnonzero(np.diff(sv) != 0), sv.size - 1]
    group_end = np.repeat(last, np.diff(np.r_[-1, last]))
    cm = cm[group_end]
    out = np.empty(ok.size)
    out[order] = cm
    q[ok] = np.clip(out, 0.0, 1.0)
    return q


def _as_txi(txi_or_paths, level, tx2gene):
    from diffbio_prob.io.tximport import TximportResult, tximport

    if isinstance(txi_or_paths, TximportResult):
        txi = txi_or_paths
        if txi.inf_reps is None:
            raise ValueError("txi_or_paths: the TximportResult has no inferential replicates; import with "
                             "drop_inf_reps=False (and var_reduce=False)")
        if txi.level != level:
            raise ValueError(f"level: {level!r} asked for, but the TximportResult is at {txi.level!r} level")
        return txi
    if not isinstance(txi_or_paths, (str, bytes, Mapping, Sequence)) and not hasattr(txi_or_paths, "__fspath__"):
        raise TypeError("txi_or_paths: expected a TximportResult, or salmon folders (a sequence or a mapping "
                        f"sample -> path), got {type(txi_or_paths).__name__}")
    if level == "gene":
        if tx2gene is None:
            raise ValueError("tx2gene: needed at level='gene'")
        txi = tximport(txi_or_paths, type="salmon", tx2gene=tx2gene, drop_inf_reps=False)
    else:
        txi = tximport(txi_or_paths, type="salmon", tx_out=True, drop_inf_reps=False)
    if txi.inf_reps is None:
        raise ValueError("txi_or_paths: the salmon outputs hold no inferential replicates (run salmon with "
                         "--numBootstraps or --numGibbsSamples)")
    return txi


def _design(metadata, samples, condition, reference):
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(f"metadata: expected a pandas DataFrame indexed by sample, got {type(metadata).__name__}")
    if condition not in metadata.columns:
        raise ValueError(f"condition: {condition!r} is not a column of metadata (columns: {list(metadata.columns)})")
    idx = metadata.index.astype(str)
    missing = [s for s in samples if s not in set(idx)]
    if missing:
        raise ValueError(f"metadata: no row for samples {missing} (index: {list(idx)})")
    col = pd.Series(metadata[condition].to_numpy(), index=idx).loc[samples]
    if col.isna().any():
        raise ValueError(f"condition: missing values in metadata[{condition!r}]")
    if isinstance(metadata[condition].dtype, pd.CategoricalDtype):
        levels = [lv for lv in metadata[condition].cat.categories if lv in set(col)]
    else:
        levels = sorted(set(col), key=str)
    if len(levels) != 2:
        raise ValueError(f"condition: expected exactly 2 levels among the samples, got {levels}")
    if reference is not None:
        if reference not in levels:
            raise ValueError(f"reference: {reference!r} is not a level of {condition!r} ({levels})")
        levels = [reference] + [lv for lv in levels if lv != reference]
    ind = (col.to_numpy() == levels[1]).astype(float)
    return ind, levels


def _size_factors(counts: np.ndarray) -> np.ndarray:
    """DESeq2's median-of-ratios on ``counts`` (T, N) over features positive in every sample."""
    pos = np.all(counts > 0, axis=1)
    if pos.sum() == 0:
        raise ValueError("txi_or_paths: no feature is positive in every sample; cannot estimate size factors")
    lc = np.log(counts[pos])
    sf = np.exp(np.median(lc - lc.mean(axis=1, keepdims=True), axis=0))
    return sf / np.exp(np.mean(np.log(sf)))


def prepare_quant_de(txi, ind, *, min_count=10.0, min_samples=None, use_length=True, pseudocount=0.5,
                     var_floor=1e-3):
    """The model's data from a ``TximportResult`` with replicates.

    Returns a dict: ``keep`` (bool per feature), and for the kept features ``m``, ``v`` (N, T), ``x``
    (N,), ``offset`` (N, T), ``z``, ``m0`` (T,), plus ``size_factors`` (N,).
    """
    samples = txi.samples
    counts = txi.counts.to_numpy(float)
    if min_samples is None:
        min_samples = int(min(ind.sum(), (1 - ind).sum()))
    keep = np.sum(counts >= min_count, axis=1) >= min_samples
    if keep.sum() == 0:
        raise ValueError(f"min_count: no feature has a count >= {min_count} in {min_samples} samples")
    if use_length:
        length = txi.length.to_numpy(float)
        with np.errstate(divide="ignore"):
            ll = np.log(np.where(length > 0, length, np.nan))
        ll = ll - np.nanmean(ll, axis=1, keepdims=True)
        ll = np.nan_to_num(ll, nan=0.0)
    else:
        ll = np.zeros_like(counts)
    sf = _size_factors(counts[keep] / np.exp(ll[keep]))
    reps = [np.asarray(txi.inf_reps[s].to_numpy(float))[keep] for s in samples]
    lr = [np.log(r + pseudocount) for r in reps]
    m = np.stack([r.mean(axis=1) for r in lr])
    v = np.stack([r.var(axis=1, ddof=1) if r.shape[1] > 1 else np.zeros(r.shape[0]) for r in lr]) + var_floor
    offset = np.log(sf)[:, None] + ll[keep].T
    x = ind - 0.5
    m0 = (m - offset).mean(axis=0)
    z = (m0 - m0.mean()) / (m0.std() if m0.std() > 0 else 1.0)
    return {"keep": keep, "m": m, "v": v, "x": x, "offset": offset, "z": z, "m0": m0, "size_factors": sf}


def _init_values(data):
    m, x, off = data["m"], data["x"], data["offset"]
    r = m - off
    b1 = (r[x > 0].mean(axis=0) - r[x < 0].mean(axis=0))
    k = len(_scales())
    return {"sig_raw": np.zeros_like(b1), "sig_mu": np.log(0.2), "sig_slope": 0.0, "sig_tau": 0.3, "v_scale": 1.0,
            "mix_weights": np.full(k, 1.0 / k)}


def bayes_de_from_quant(
    txi_or_paths,
    metadata: pd.DataFrame,
    condition: str = "condition",
    level: str = "transcript",
    tx2gene=None,
    method: str = "svi",
    num_steps: int = 4000,
    num_samples: int = 1000,
    seed: int = 0,
    lfc_threshold: float = 0.0,
    *,
    reference=None,
    guide: str = "normal",
    learning_rate: float = 0.02,
    num_warmup: int = 500,
    num_chains: int = 2,
    chain_method: str = "sequential",
    min_count: float = 10.0,
    min_samples: int | None = None,
    hdi_prob: float = 0.94,
    progress: bool = False,
):
    """Bayesian DE of salmon quantifications with their bootstrap / Gibbs uncertainty.

    Args:
        txi_or_paths: a ``TximportResult`` with ``inf_reps`` (``drop_inf_reps=False``) at ``level``, or
            salmon output folders / ``quant.sf`` paths (a sequence, or a mapping sample -> path).
        metadata: DataFrame indexed by sample name with the ``condition`` column (2 levels).
        condition: the column of ``metadata``; the fold change is the second level over the first
            (categorical order, else sorted; ``reference`` picks the first).
        level: ``"transcript"`` or ``"gene"`` (replicates summed per gene by tximport; needs ``tx2gene``).
        tx2gene: transcript -> gene table (anything :func:`~diffbio_prob.io.tximport.read_tx2gene` takes).
        method: ``"svi"`` (``fit_svi``, mean-field ``AutoNormal`` by default) or ``"nuts"`` (``fit_nuts``).
        num_steps: SVI steps. num_samples: posterior draws (per chain for NUTS).
        seed: random seed. lfc_threshold: ``T`` of ``prob_lfc_gt = P(|log2FC| > T)``.
        reference: the reference level. guide: ``"normal"`` or ``"lowrank"`` (AutoLowRankMultivariateNormal).
        learning_rate: Adam's step size for SVI. num_warmup, num_chains: NUTS sizes.
        chain_method: how NUTS runs its chains, as ``fit_nuts``'s (``"auto"`` spreads them over the
            devices, of every process in a multi-process job, when there are several); unused by SVI.
        min_count, min_samples: features are tested when at least ``min_samples`` samples (default: the
            smaller group's size) have ``count >= min_count``; the others get NaN.
        hdi_prob: HDI mass. progress: progress bar.

    Returns:
        ``(table, fit)``: the table indexed by feature with ``baseMean``, ``log2FoldChange`` (posterior
        mean of ``b1 / ln 2``), ``lfcSD``, ``hdi_low``, ``hdi_high``, ``prob_lfc_gt``, ``stat``
        (mean / sd), ``pvalue`` (the local false sign rate), ``padj`` (the Bayesian q-value),
        ``sigma`` (posterior mean biological sd, natural log) and ``tested``; ``table.attrs`` has the fit
        summary. ``fit`` is the :class:`~diffbio_prob.inference.FitResult` (``fit.to_arviz()``).

    Raises:
        ValueError / TypeError naming the bad argument.
    """
    if level not in _LEVELS:
        raise ValueError(f"level: expected 'transcript' or 'gene', got {level!r}")
    if method not in _METHODS:
        raise ValueError(f"method: expected 'svi' or 'nuts', got {method!r}")
    from diffbio_prob.inference.chains import check_chain_method

    check_chain_method(chain_method)
    for name, val in (("num_steps", num_steps), ("num_samples", num_samples)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name}: expected a positive integer, got {val!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    if not isinstance(lfc_threshold, (int, float, np.floating, np.integer)) or not np.isfinite(lfc_threshold) \
            or lfc_threshold < 0:
        raise ValueError(f"lfc_threshold: expected a finite number >= 0, got {lfc_threshold!r}")
    if guide not in ("normal", "lowrank"):
        raise ValueError(f"guide: expected 'normal' or 'lowrank', got {guide!r}")
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob: expected a number in (0, 1), got {hdi_prob!r}")
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(f"metadata: expected a pandas DataFrame indexed by sample, got {type(metadata).__name__}")
    if condition not in metadata.columns:
        raise ValueError(f"condition: {condition!r} is not a column of metadata (columns: {list(metadata.columns)})")

    txi = _as_txi(txi_or_paths, level, tx2gene)
    samples = txi.samples
    ind, levels = _design(metadata, samples, condition, reference)
    if min(ind.sum(), (1 - ind).sum()) < 1:
        raise ValueError("condition: each level needs at least one sample")
    data = prepare_quant_de(txi, ind, min_count=min_count, min_samples=min_samples, use_length=(level == "gene"))

    import optax

    from diffbio_prob.inference import fit_nuts, fit_svi
    from diffbio_prob.models.quant_de import quant_de_model

    args = (data["m"], data["v"], data["x"], data["offset"], data["z"], data["m0"])
    init = _init_values(data)
    if method == "svi":
        if guide == "lowrank":
            from numpyro.infer.autoguide import AutoLowRankMultivariateNormal
            from numpyro.infer.initialization import init_to_value

            g = AutoLowRankMultivariateNormal(quant_de_model, init_loc_fn=init_to_value(values=init), rank=4)
        else:
            g = "normal"
        fit = fit_svi(quant_de_model, *args, guide=g, optimizer=optax.adam(learning_rate), num_steps=int(num_steps),
                      num_samples=int(num_samples), rng_key=int(seed), init_params=init if g == "normal" else None,
                      progress=progress, posterior_predictive=False)
    else:
        fit = fit_nuts(quant_de_model, *args, num_warmup=int(num_warmup), num_samples=int(num_samples),
                       num_chains=int(num_chains), chain_method=chain_method, rng_key=int(seed), init_params=init,
                       progress=progress, posterior_predictive=False)

    from diffbio_prob.workflows.de_bayes import hdi

    post = b1_posterior(fit, data, seed=int(seed), lfc_threshold=float(lfc_threshold))
    fit.samples["b1"] = post["draws"][None] * LN2      # natural-log draws (chain, draw, T), for ArviZ
    b1 = post["draws"]
    mean, sd = post["mean"], post["sd"]
    lo, hi = hdi(b1, hdi_prob)
    lfsr = post["lfsr"]
    stat = mean / np.where(sd > 0, sd, np.nan)
    feats = txi.counts.index
    keep = data["keep"]
    n_all = len(feats)

    def full(vals):
        out = np.full(n_all, np.nan)
        out[keep] = vals
        return out

    sigma = np.asarray(fit.samples["sigma"], dtype=float).reshape(-1, int(keep.sum())).mean(axis=0)
    table = pd.DataFrame({
        "baseMean": (txi.counts.to_numpy(float)).mean(axis=1),
        "log2FoldChange": full(mean),
        "lfcSD": full(sd),
        "hdi_low": full(lo),
        "hdi_high": full(hi),
        "prob_lfc_gt": full(post["prob_lfc_gt"]),
        "stat": full(stat),
        "pvalue": full(lfsr),
        "sigma": full(sigma),
        "tested": keep,
    }, index=feats)
    table["padj"] = qvalues_from_lfsr(table["pvalue"].to_numpy(), tiebreak=-np.abs(table["stat"].to_numpy()))
    table = table[["baseMean", "log2FoldChange", "lfcSD", "hdi_low", "hdi_high", "prob_lfc_gt", "stat", "pvalue",
                   "padj", "sigma", "tested"]]
    w = np.asarray(fit.samples["mix_weights"], dtype=float).reshape(-1, len(_scales())).mean(axis=0)
    table.attrs.update({
        "method": method,
        "level": level,
        "contrast": [condition, str(levels[1]), str(levels[0])],
        "n_features": int(n_all),
        "n_tested": int(keep.sum()),
        "lfc_threshold": float(lfc_threshold),
        "hdi_prob": float(hdi_prob),
        "size_factors": dict(zip(samples, map(float, data["size_factors"]))),
        "mix_scales_log2": [float(s / LN2) for s in _scales()],
        "mix_weights": [float(a) for a in w],
        "sig_mu": float(np.mean(fit.samples["sig_mu"])),
        "sig_slope": float(np.mean(fit.samples["sig_slope"])),
        "sig_tau": float(np.mean(fit.samples["sig_tau"])),
        "v_scale": float(np.mean(fit.samples["v_scale"])),
        "elapsed_s": float(fit.elapsed_s),
        "final_loss": float(fit.loss_history[-1]) if fit.loss_history is not None else None,
        "pvalue": "local false sign rate (lfsr)",
        "padj": "Bayesian q-value: cumulative mean of the sorted lfsr",
    })
    return table, fit


def b1_posterior(fit, data, *, seed=0, lfc_threshold=0.0, scales=None):
    """The posterior of each feature's log2 fold change, Rao-Blackwellised over the fit's draws.

    For every draw of the noise sds and mixture weights, ``b1`` given them is a K-component normal
    mixture (:func:`~diffbio_prob.models.quant_de.collapsed_terms`); the summaries average the
    mixtures' exact moments and tail probabilities over the draws, and one ``b1`` is drawn per draw.

    Returns a dict of log2-scale arrays: ``mean``, ``sd``, ``lfsr``, ``prob_lfc_gt`` (``(T,)``) and
    ``draws`` ``(S, T)``.
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import ndtr

    from diffbio_prob.models.quant_de import collapsed_terms

    sc = jnp.asarray(_scales() if scales is None else scales, dtype=float)
    sig = np.asarray(fit.samples["sigma"], dtype=float).reshape(-1, data["m"].shape[1])
    w = np.asarray(fit.samples["mix_weights"], dtype=float).reshape(-1, sc.shape[0])
    y = jnp.asarray((data["m"] - data["offset"]).T)
    vs = np.asarray(fit.samples["v_scale"], dtype=float).reshape(-1)
    v = jnp.asarray(data["v"].T)
    x = jnp.asarray(data["x"], dtype=float)
    m0 = jnp.asarray(data["m0"])
    c = float(lfc_threshold) * LN2

    def one(carry, inp):
        s, lw, vsc, key = inp
        _, lp, mu, sd = collapsed_terms(y, vsc * v, x, m0, s, lw, sc)
        p = jnp.exp(lp)
        m1 = (p * mu).sum(-1)
        m2 = (p * (mu ** 2 + sd ** 2)).sum(-1)
        spike = sd <= 0.0
        sd_safe = jnp.where(spike, 1.0, sd)
        (p * spike).sum(-1)                       # P(b1 = 0): counted on both sides (ash's lfsr)
        ppos = (p * jnp.where(spike, 0.0, ndtr(mu / sd_safe))).sum(-1)
        pneg = (p * jnp.where(spike, 0.0, ndtr(-mu / sd_safe))).sum(-1)
        pgt = (p * jnp.where(spike, 0.0, ndtr((mu - c) / sd_safe) + ndtr((-c - mu) / sd_safe))).sum(-1)
        k1, k2 = jax.random.split(key)
        comp = jax.random.categorical(k1, lp, axis=-1)
        mu_k = jnp.take_along_axis(mu, comp[:, None], axis=-1)[:, 0]
        sd_k = jnp.take_along_axis(sd, comp[:, None], axis=-1)[:, 0]
        draw = mu_k + sd_k * jax.random.normal(k2, mu_k.shape)
        return carry, (m1, m2, ppos, pneg, pgt, draw)

    keys = jax.random.split(jax.random.key(seed + 1), sig.shape[0])
    _, (m1, m2, ppos, pneg, pgt, draws) = jax.lax.scan(one, None, (jnp.asarray(sig), jnp.log(jnp.asarray(w)), jnp.asarray(vs), keys))
    m1, m2, ppos, pneg, pgt = (np.asarray(a, dtype=float).mean(axis=0) for a in (m1, m2, ppos, pneg, pgt))
    var = np.maximum(m2 - m1 ** 2, 0.0)
    # min(P(b1 >= 0), P(b1 <= 0)), the zero mass on both sides
    lfsr = np.clip(1.0 - np.maximum(ppos, pneg), 0.0, 1.0)
    return {"mean": m1 / LN2, "sd": np.sqrt(var) / LN2, "lfsr": lfsr, "prob_lfc_gt": np.clip(pgt, 0.0, 1.0),
            "draws": np.asarray(draws, dtype=float) / LN2}


def _scales():
    from diffbio_prob.models.quant_de import DEFAULT_LFC_SCALES

    return DEFAULT_LFC_SCALES


def run_bayes_de(salmon_dirs, metadata, out, *, level: str = "transcript", tx2gene=None, condition: str = "condition",
                 reference=None, seed: int = 0, quiet: bool = False) -> pd.DataFrame:
    """``diffbio-prob de --salmon ... --method bayes``: :func:`bayes_de_from_quant` by SVI, one table written.

    Args:
        salmon_dirs: salmon output folders with inferential replicates (bootstraps or Gibbs draws).
        metadata: sample table: a CSV/TSV path (first column = sample names) or a DataFrame indexed by sample.
        out: results table (CSV; ``.tsv`` tab-separated, ``.gz`` compressed), written atomically.
        level, tx2gene, condition, reference, seed: as :func:`bayes_de_from_quant`.
        quiet: no summary line on stderr.

    Returns:
        The table written (``log2FoldChange, lfcSD, hdi_low, hdi_high, prob_lfc_gt, stat, pvalue`` = lfsr,
        ``padj`` = Bayesian q-value, ...).
    """
    import sys

    from diffbio_prob.io.atomic import check_output_path
    from diffbio_prob.io.counts import read_metadata, write_table

    check_output_path(out, "out", "file")
    meta = metadata if isinstance(metadata, pd.DataFrame) else read_metadata(metadata)
    table, _ = bayes_de_from_quant(salmon_dirs, meta, condition=condition, level=level, tx2gene=tx2gene,
                                   seed=seed, reference=reference)
    write_table(table.rename_axis(level), out)
    if not quiet:
        n = int((table["padj"] < 0.1).sum())
        print(f"diffbio-prob de: bayes ({level} level), {int(table['tested'].sum())} of {len(table)} tested: "
              f"{n} with Bayesian q < 0.1; wrote {out}", file=sys.stderr)
    return table
