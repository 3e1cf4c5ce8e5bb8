"""``diffbio-prob demo``: every model on data with a known truth, fitted three ways, in one report.

Three small problems whose answers are known, so every number on the page can be checked:

* **HMM** — the dishonest casino (Durbin et al. 1998): a fair and a loaded die, rolls simulated with
  :func:`simulate_casino`. Fitted by Baum-Welch EM, by gradient (the NNX operator + optax), by SVI and
  by NUTS on :func:`diffbio_prob.models.hmm_model`; decoded with the posterior state track and Viterbi.
* **Differential expression** — a counts table simulated by DESeq2's ``makeExampleDESeqDataSet`` recipe
  with a known log fold change per gene (:func:`simulate_de_counts`). DESeq2's pipeline gives the
  frequentist answer; the Bayesian NB-GLM (gradient, SVI, NUTS) gives each gene's posterior LFC.
* **Quantification** — salmon's sample equivalence classes with the simulated true counts, shipped in
  the package (:func:`load_quant_sample`). EM (the operator), gradient through unrolled EM, SVI and NUTS
  on :func:`diffbio_prob.models.em_model` give estimates and posterior intervals per transcript.

Outputs (all written atomically) go into one folder: ``report.html`` (self-contained), and per model a
sub-folder with the posteriors as netCDF (``az.from_netcdf`` reopens them), tables as CSV (and
``quant.sf``) and the figures as PNG.

Example:
    >>> from diffbio_prob.workflows.demo import run_demo
    >>> folder = run_demo("/tmp/diffbio-prob-demo", quick=True, quiet=True)   # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())                               # doctest: +SKIP
    ['de', 'hmm', 'quant', 'report.html']
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from diffbio_prob.io.atomic import atomic_path, atomic_write

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

# ---------------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoSizes:
    """How big the demo's problems are and how long each fit runs.

    Attributes:
        casino_steps: length of the simulated casino sequence.
        de_genes, de_samples: size of the simulated counts table (samples split in two groups).
        gradient_steps: optax steps of each gradient fit.
        svi_steps, svi_draws: SVI steps and draws from the fitted guide.
        nuts_warmup, nuts_draws, nuts_chains: NUTS sizes (the HMM and the quantifier).
        de_nuts_warmup, de_nuts_draws: NUTS sizes for the NB-GLM (one parameter block per gene).
        track_draws: posterior draws averaged for the HMM's posterior state track.
    """

    casino_steps: int
    de_genes: int
    de_samples: int
    gradient_steps: int
    svi_steps: int
    svi_draws: int
    nuts_warmup: int
    nuts_draws: int
    nuts_chains: int
    de_nuts_warmup: int
    de_nuts_draws: int
    track_draws: int


FULL = DemoSizes(
    casino_steps=2000,
    de_genes=500,
    de_samples=12,
    gradient_steps=500,
    svi_steps=2000,
    svi_draws=1000,
    nuts_warmup=500,
    nuts_draws=500,
    nuts_chains=2,
    de_nuts_warmup=300,
    de_nuts_draws=300,
    track_draws=100,
)
QUICK = DemoSizes(
    casino_steps=1500,
    de_genes=200,
    de_samples=8,
    gradient_steps=200,
    svi_steps=500,
    svi_draws=200,
    nuts_warmup=150,
    nuts_draws=150,
    nuts_chains=2,
    de_nuts_warmup=100,
    de_nuts_draws=100,
    track_draws=30,
)

# ---------------------------------------------------------------------------------------------------
# Data: simulated or shipped, with the truth
# ---------------------------------------------------------------------------------------------------

#: The dishonest casino (Durbin et al. 1998, ch. 3): state 0 = fair die, state 1 = loaded die.
CASINO = {
    "initial_probs": np.array([0.5, 0.5]),
    "transition_probs": np.array([[0.95, 0.05], [0.10, 0.90]]),
    "emission_probs": np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]]),
}
CASINO_STATES = ("fair", "loaded")
#: Where the HMM fits start: sticky transitions, as a user who expects long runs of one die would say.
#: From a symmetric random start, EM and gradient ascent often stop at a worse local maximum.
STICKY = np.array([[0.9, 0.1], [0.1, 0.9]])


def _rng(seed: int, stream: int) -> np.random.Generator:
    """One independent numpy stream per simulator, so changing one model's sizes leaves the others."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), stream])


def simulate_casino(num_steps: int = 2000, seed: int = 0, params: dict | None = None) -> dict[str, np.ndarray]:
    """Roll the dishonest casino's dice: hidden fair/loaded states and the die faces.

    Args:
        num_steps: number of rolls ``T``.
        seed: random seed (numpy), so the sequence is reproducible.
        params: ``{"initial_probs", "transition_probs", "emission_probs"}`` (default :data:`CASINO`).

    Returns:
        ``{"states": Int[T] (0 fair, 1 loaded), "observations": Int[T] (face - 1, 0..5)}``.

    Example:
        >>> d = simulate_casino(100, seed=1)
        >>> d["observations"].shape, int(d["observations"].max()) <= 5
        ((100,), True)
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 2:
        raise ValueError(f"num_steps: expected an integer >= 2, got {num_steps!r}")
    p = CASINO if params is None else params
    pi, a, b = (np.asarray(p[k], float) for k in ("initial_probs", "transition_probs", "emission_probs"))
    rng = _rng(seed, 1)
    states = np.empty(num_steps, np.int32)
    states[0] = rng.choice(len(pi), p=pi)
    for t in range(1, num_steps):
        states[t] = rng.choice(len(pi), p=a[states[t - 1]])
    # Inverse-CDF draw of every roll at once from its state's emission row.
    cdf = np.cumsum(b, axis=1)[states]
    obs = (rng.random(num_steps)[:, None] > cdf).sum(1).astype(np.int32)
    return {"states": states, "observations": np.minimum(obs, b.shape[1] - 1)}


def simulate_de_counts(
    n_genes: int = 1000,
    n_samples: int = 12,
    seed: int = 0,
    *,
    de_fraction: float = 0.1,
    interval: tuple[float, float] = (1.0, 3.0),
    size_factor_sd: float = 0.2,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A counts table with known log fold changes, by DESeq2's ``makeExampleDESeqDataSet`` recipe.

    As in DESeq2 (``R/AllClasses.R``): log2 intercepts ``~ N(4, 2)``, dispersion trend
    ``alpha = 4 / mean + 0.1`` of the baseline mean ``2^intercept``, two groups A and B of equal size,
    ``K ~ NB(mean = s_j 2^(x_j' beta), size = 1 / alpha)``. Two departures make the truth interesting:
    a fraction ``de_fraction`` of the genes gets a log2 fold change of random sign and magnitude uniform
    in ``interval`` (DESeq2's default is ``betaSD = 0``: no DE at all), the rest exactly 0; and the size
    factors vary (log-normal, sd ``size_factor_sd``) instead of all being 1.

    Args:
        n_genes, n_samples: table size (``n_samples`` even, at least 4).
        seed: random seed.
        de_fraction: fraction of genes with a non-zero log fold change.
        interval: range of ``|log2 fold change|`` of those genes.
        size_factor_sd: sd of the log size factors (0 gives DESeq2's all-ones).

    Returns:
        ``(counts, samples, truth)``: counts genes x samples (``gene1..``, ``sample1..``); the sample
        table (``condition`` A/B, ``size_factor``); the truth per gene (``log2FoldChange``,
        ``intercept_log2``, ``dispersion`` (DESeq2's alpha), ``is_de``).

    Example:
        >>> counts, samples, truth = simulate_de_counts(50, 6, seed=2)
        >>> counts.shape, list(samples["condition"]), int(truth["is_de"].sum()) > 0
        ((50, 6), ['A', 'A', 'A', 'B', 'B', 'B'], True)
    """
    if isinstance(n_genes, bool) or not isinstance(n_genes, (int, np.integer)) or n_genes < 2:
        raise ValueError(f"n_genes: expected an integer >= 2, got {n_genes!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 4:
        raise ValueError(f"n_samples: expected an even integer >= 4, got {n_samples!r}")
    if n_samples % 2:
        raise ValueError(f"n_samples: expected an even number (two equal groups), got {n_samples}")
    if not 0 < de_fraction < 1:
        raise ValueError(f"de_fraction: expected a number in (0, 1), got {de_fraction!r}")
    lo, hi = interval
    if not 0 < lo <= hi:
        raise ValueError(f"interval: expected (low, high) with 0 < low <= high, got {interval!r}")
    if size_factor_sd < 0:
        raise ValueError(f"size_factor_sd: expected a non-negative number, got {size_factor_sd!r}")
    rng = _rng(seed, 2)
    intercept = rng.normal(4.0, 2.0, n_genes)
    is_de = rng.random(n_genes) < de_fraction
    is_de[rng.integers(n_genes)] = True  # at least one DE gene whatever the seed
    lfc = np.where(is_de, rng.choice([-1.0, 1.0], n_genes) * rng.uniform(lo, hi, n_genes), 0.0)
    alpha = 4.0 / 2.0**intercept + 0.1
    group = np.repeat([0, 1], n_samples // 2)
    sf = np.exp(rng.normal(0.0, size_factor_sd, n_samples))
    sf /= np.exp(np.mean(np.log(sf)))
    mu = sf[None, :] * 2.0 ** (intercept[:, None] + lfc[:, None] * group[None, :])
    size = 1.0 / alpha[:, None]
    counts = rng.negative_binomial(size, size / (size + mu))
    genes = pd.Index([f"gene{i + 1}" for i in range(n_genes)], name="gene")
    samples = pd.Index([f"sample{j + 1}" for j in range(n_samples)], name="sample")
    counts_df = pd.DataFrame(counts.astype(np.int64), index=genes, columns=samples)
    sample_df = pd.DataFrame({"condition": np.where(group == 1, "B", "A"), "size_factor": sf}, index=samples)
    truth = pd.DataFrame(
        {"log2FoldChange": lfc, "intercept_log2": intercept, "dispersion": alpha, "is_de": is_de}, index=genes
    )
    return counts_df, sample_df, truth


def load_quant_sample():
    """salmon's sample data shipped with the package: 15 transcripts, 28 equivalence classes, truth.

    Returns:
        :class:`diffbio_prob.io.salmon.SampleData` (``table``, ``names``, ``lengths``,
        ``effective_lengths``, ``salmon_num_reads``, ``true_counts``).
    """
    from diffbio_prob.io.salmon import load_sample_data

    return load_sample_data()


# ---------------------------------------------------------------------------------------------------
# Progress and outputs
# ---------------------------------------------------------------------------------------------------


class _Progress:
    """Numbered progress lines on stderr (``[3/13] HMM: NUTS ... 8.1 s``); silent when quiet.

    Progress bars of the fits themselves (tqdm/numpyro) are only shown on a terminal.
    """

    def __init__(self, total: int, quiet: bool, *, first: int = 1, bars: bool | None = None):
        self.total, self.quiet, self.done = total, quiet, first - 1
        self.bars = not quiet and (sys.stderr.isatty() if bars is None else bars)

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.done += 1
        number = self.done
        prefix = f"[{number:>2}/{self.total}] {label}"
        if not self.quiet:
            # On a terminal the line is finished in place; elsewhere (logs, pipes) one line per step.
            print(prefix + (" ..." if self.bars else ""), file=sys.stderr, flush=True)
        start, cpu = time.perf_counter(), time.process_time()
        yield
        if not self.quiet:
            extra = f" (CPU {time.process_time() - cpu:.1f} s)" if os.environ.get("DIFFBIO_PROB_TIMING") else ""
            tag = f"[{number:>2}/{self.total}]" if not self.bars else " " * 7
            print(f"{tag} done in {time.perf_counter() - start:.1f} s{extra}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class _Outputs:
    """The output folder: every writer goes through ``diffbio_prob.io.atomic``; paths are recorded."""

    root: Path
    files: list[tuple[Path, str]] = dataclasses.field(default_factory=list)

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _record(self, p: Path, what: str) -> Path:
        self.files.append((p, what))
        return p

    def csv(self, rel: str, frame: pd.DataFrame, what: str, *, index: bool = True) -> Path:
        p = self.path(rel)
        with atomic_write(p, "w", newline="") as fh:
            frame.to_csv(fh, index=index, float_format="%.6g", na_rep="NA")
        return self._record(p, what)

    def png(self, rel: str, fig, what: str) -> bytes:
        """Render a figure once: the PNG bytes go to the file and, returned, into the report."""
        from diffbio_prob.plots import figure_to_png

        data = figure_to_png(fig)
        p = self.path(rel)
        with atomic_write(p, "wb") as fh:
            fh.write(data)
        self._record(p, what)
        return data

    def netcdf(self, rel: str, result, what: str, coords=None, dims=None):
        """Write ``result.to_arviz(coords, dims)``; the DataTree is returned for the summary and plots."""
        p = self.path(rel)
        dt = result.to_arviz(coords=coords, dims=dims)
        with atomic_path(p) as tmp:
            dt.to_netcdf(tmp, engine="h5netcdf")
        self._record(p, what)
        return dt

    def record(self, p: Path, what: str) -> Path:
        return self._record(Path(p), what)


def _relabel_result(result, relabel: Callable[[dict], dict]):
    """A copy of a FitResult with ``relabel`` applied to its draws and its point estimate."""
    samples = relabel(result.samples)
    params = relabel({k: v[None, None] for k, v in result.params.items()}) if result.params else {}
    return dataclasses.replace(
        result,
        samples=samples,
        params={k: v[0, 0] for k, v in params.items()},
    )


def _mean_sd(draws: np.ndarray) -> str:
    return f"{np.mean(draws):.3f} ± {np.std(draws, ddof=1):.3f}"


def _loss_figure(curves: list[tuple[str, np.ndarray, str]], title: str):
    """Loss histories of the optimiser fits side by side (negative log-likelihood, negative ELBO)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 2.8), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (label, loss, ylabel) in zip(axes, curves):
        loss = np.asarray(loss, float)
        ax.plot(np.arange(1, loss.size + 1), loss, lw=1.0, color="#0072B2")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        tail = loss[loss.size // 5 :]
        if tail.size > 2 and np.ptp(tail) > 0:
            # Zoom on the last 80%: the first steps would squash the converged part to a flat line.
            pad = 0.05 * np.ptp(tail)
            ax.set_ylim(tail.min() - pad, min(tail.max() + pad, loss.max() + pad))
    fig.suptitle(title, fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------------
# What a model's part hands to the report
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Part:
    """One model's results for the report: prose, facts and an ordered list of blocks.

    Each block is ``(subsection, kind, payload, caption)`` with kind ``"table"`` (a DataFrame),
    ``"summary"`` (``(az.summary DataFrame, divergences, total draws)``), ``"figure"`` (PNG bytes) or
    ``"text"``. ``headline`` is this model's row of the overview table.
    """

    title: str
    intro: str
    facts: dict
    blocks: list[tuple[str, str, Any, str]]
    headline: dict


def _summary(dt, var_names, order=None):
    """ArviZ summary (mean, sd, 94% HDI, ESS, R-hat) with labels from the DataTree's coordinates."""
    import arviz as az

    table = az.summary(dt, var_names=var_names, ci_kind="hdi", ci_prob=0.94, round_to="none")
    if order is not None:
        table = table.loc[[i for i in order if i in table.index] + [i for i in table.index if i not in set(order)]]
    return table


def _max_rhat(summary: pd.DataFrame) -> float:
    return float(np.nanmax(summary["r_hat"].to_numpy(float))) if "r_hat" in summary and len(summary) else np.nan


# ---------------------------------------------------------------------------------------------------
# HMM: the dishonest casino
# ---------------------------------------------------------------------------------------------------


def _casino_relabel(samples: dict) -> dict:
    from diffbio_prob.models.hmm import relabel_states

    # Order the states by P(six): fair (1/6) first, loaded (1/2) second, as in CASINO.
    return relabel_states(samples, symbol=5)


def _hmm_loglik(op, params: dict, observations) -> float:
    op.load_model_params({k: np.asarray(params[k], float) for k in CASINO})
    return float(op.forward_pass(observations))


def run_hmm_part(sizes: DemoSizes, seed: int, out: _Outputs, progress: _Progress) -> _Part:
    """The dishonest casino fitted four ways (Baum-Welch, gradient, SVI, NUTS), decoded, written out."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from diffbio_prob.cores import hmm as hmm_core
    from diffbio_prob.inference import fit_gradient, fit_nuts, fit_svi
    from diffbio_prob.inference.baum_welch import baum_welch
    from diffbio_prob.models import hmm_model
    from diffbio_prob.operators.statistical import DifferentiableHMM, HMMConfig
    from diffbio_prob.plots import posterior_plot, posterior_track_plot, trace_plot

    data = simulate_casino(sizes.casino_steps, seed)
    obs_np, truth = data["observations"], data["states"]
    obs = jnp.asarray(obs_np)
    kw = {"num_states": 2, "num_emissions": 6}

    with progress.step(f"HMM: Baum-Welch EM on {obs_np.size:,} rolls"):
        start = time.perf_counter()
        start_emission = _rng(seed, 3).dirichlet(np.full(6, 5.0), size=2)
        bw = baum_welch(obs_np, 2, 6, num_iters=200, tol=1e-6, init={
            "initial_probs": np.full(2, 0.5), "transition_probs": STICKY, "emission_probs": start_emission})
        bw_time = time.perf_counter() - start
        bw_params = {k: v[0, 0] for k, v in _casino_relabel({k: v[None, None] for k, v in bw.params.items()}).items()}

    with progress.step(f"HMM: gradient fit of the NNX operator ({sizes.gradient_steps} Adam steps)"):
        op = DifferentiableHMM(HMMConfig(**kw), rngs=nnx.Rngs(seed))  # emission logits ~ N(0, 0.1^2)
        op.load_model_params({"transition_probs": STICKY})
        grad = fit_gradient(
            op, {"observations": obs}, optimizer=optax.adam(0.05), num_steps=sizes.gradient_steps,
            progress=progress.bars,
        )
        grad = _relabel_result(grad, _casino_relabel)

    # Both samplers start at the gradient fit: every chain then explores the same one of the two
    # label-symmetric modes, and the relabelling only has to fix a draw that crosses over.
    init = {k: np.asarray(v) for k, v in grad.params.items()}
    with progress.step(f"HMM: SVI on hmm_model ({sizes.svi_steps} steps, mean-field normal guide)"):
        svi = fit_svi(
            hmm_model, obs, **kw, num_steps=sizes.svi_steps, num_samples=sizes.svi_draws, rng_key=seed,
            init_params=init, progress=progress.bars,
        )
        svi = _relabel_result(svi, _casino_relabel)
    with progress.step(
        f"HMM: NUTS on hmm_model ({sizes.nuts_chains} chain(s) x {sizes.nuts_warmup}+{sizes.nuts_draws} draws)"
    ):
        nuts = fit_nuts(
            hmm_model, obs, **kw, num_warmup=sizes.nuts_warmup, num_samples=sizes.nuts_draws,
            num_chains=sizes.nuts_chains, rng_key=seed + 1, init_params=init, progress=progress.bars,
        )
        nuts = _relabel_result(nuts, _casino_relabel)

    with progress.step("HMM: decoding (posterior state track, Viterbi), tables and figures"):
        # The posterior state track averaged over posterior draws (parameter uncertainty included),
        # not the plug-in track of one point estimate.
        flat = nuts.flat_samples()
        n_flat = flat["emission_probs"].shape[0]
        pick = np.unique(np.linspace(0, n_flat - 1, min(sizes.track_draws, n_flat)).astype(int))

        def smoothed(args):
            pi, a, b = args
            ll = hmm_core.categorical_log_likelihoods(jnp.log(b), obs)
            return hmm_core.state_posteriors(hmm_core.HMMParams(jnp.log(pi), jnp.log(a)), ll)

        sites = ("initial_probs", "transition_probs", "emission_probs")
        track = np.asarray(jax.lax.map(smoothed, tuple(jnp.asarray(flat[k][pick]) for k in sites))).mean(0)
        decoder = DifferentiableHMM(HMMConfig(**kw))
        decoder.load_model_params({k: v for k, v in nuts.posterior_mean().items() if k in sites})
        path = np.asarray(decoder.viterbi(obs)[0])
        viterbi_acc = float(np.mean(path == truth))
        track_acc = float(np.mean(track.argmax(1) == truth))

        point = {
            "Baum-Welch EM": (bw_params, None, bw_time),
            "gradient (NNX + optax)": (grad.params, None, grad.elapsed_s),
            "SVI (mean-field normal)": (svi.posterior_mean(), svi.flat_samples(), svi.elapsed_s),
            "NUTS": (nuts.posterior_mean(), flat, nuts.elapsed_s),
        }
        picks = {
            "P(fair→fair)": ("transition_probs", (0, 0)),
            "P(loaded→loaded)": ("transition_probs", (1, 1)),
            "P(six | fair)": ("emission_probs", (0, 5)),
            "P(six | loaded)": ("emission_probs", (1, 5)),
        }
        scorer = DifferentiableHMM(HMMConfig(**kw))
        rows = {"truth": {k: f"{CASINO[s][i]:.3f}" for k, (s, i) in picks.items()}}
        rows["truth"].update({"log-likelihood": _hmm_loglik(scorer, CASINO, obs), "time (s)": np.nan})
        for label, (p, draws, elapsed) in point.items():
            row = {
                k: _mean_sd(draws[s][(slice(None),) + i]) if draws is not None else f"{float(np.asarray(p[s])[i]):.3f}"
                for k, (s, i) in picks.items()
            }
            rows[label] = {**row, "log-likelihood": _hmm_loglik(scorer, p, obs), "time (s)": elapsed}
        comparison = pd.DataFrame.from_dict(rows, orient="index")
        comparison.index.name = "fit"
        comparison = comparison.astype({"log-likelihood": float, "time (s)": float})

        dims = {"initial_probs": ["state"], "transition_probs": ["from_state", "to_state"],
                "emission_probs": ["state", "face"], "observations": []}
        coords = {"state": list(CASINO_STATES), "from_state": list(CASINO_STATES),
                  "to_state": list(CASINO_STATES), "face": [str(f) for f in range(1, 7)]}
        dt = out.netcdf("hmm/posterior_nuts.nc", nuts, "HMM posterior draws (NUTS), ArviZ netCDF", coords, dims)
        out.netcdf("hmm/posterior_svi.nc", svi, "HMM posterior draws (SVI), ArviZ netCDF", coords, dims)
        summary = _summary(dt, list(sites))
        out.csv("hmm/summary_nuts.csv", summary, "HMM: ArviZ summary of the NUTS posterior")
        out.csv("hmm/fit_comparison.csv", comparison, "HMM: the fit paths compared")
        out.csv(
            "hmm/decoding.csv",
            pd.DataFrame(
                {"roll": obs_np + 1, "true_state": np.asarray(CASINO_STATES)[truth],
                 "viterbi": np.asarray(CASINO_STATES)[path], "p_loaded": track[:, 1]},
                index=pd.RangeIndex(1, obs_np.size + 1, name="t"),
            ),
            "HMM: rolls, true states, Viterbi path, posterior P(loaded)",
        )

        shown = min(obs_np.size, 400)
        fig_track = out.png(
            "hmm/posterior_track.png",
            posterior_track_plot(
                track[:shown], truth[:shown], path[:shown], obs_np[:shown] + 1, state_names=list(CASINO_STATES),
                title=f"First {shown} of {obs_np.size:,} rolls",
            ),
            "HMM: posterior state track vs true states and Viterbi",
        )
        fig_trace = out.png("hmm/trace.png", trace_plot(dt, ["transition_probs", "emission_probs"]), "HMM: trace plot")
        fig_post = out.png(
            "hmm/posterior.png",
            posterior_plot(
                dt, ["transition_probs", "emission_probs"],
                ref_values={k: CASINO[k] for k in ("transition_probs", "emission_probs")},
            ),
            "HMM: posteriors with the true values",
        )
        fig_loss = out.png(
            "hmm/loss.png",
            _loss_figure(
                [("gradient: NNX operator + Adam", grad.loss_history, "−log-likelihood"),
                 ("SVI: hmm_model", svi.loss_history, "−ELBO")],
                "Optimiser fits of the casino HMM",
            ),
            "HMM: loss curves",
        )

    total_draws = nuts.num_chains * nuts.num_draws
    blocks = [
        ("Fit paths compared", "table", comparison,
         "Estimates of each fit path (SVI and NUTS: posterior mean ± sd), the log-likelihood of the rolls at the "
         "estimate (posterior mean for SVI and NUTS), and wall time including JIT compilation."),
        ("Fit paths compared", "figure", fig_loss,
         "Loss curves of the two optimiser fits (the y axis zooms on the last 80% of steps)."),
        ("Posterior (NUTS)", "summary", (summary, nuts.num_divergences, total_draws),
         "ArviZ summary of the NUTS posterior: mean, sd, 94% HDI, bulk and tail ESS, R-hat."),
        ("Posterior (NUTS)", "figure", fig_trace,
         "Trace and marginal posterior of the transition and emission probabilities; chains overlaid, "
         "divergent transitions (if any) marked."),
        ("Posterior (NUTS)", "figure", fig_post, "Posterior means with 50% and 94% HDIs; the true values in red."),
        ("Decoding", "figure", fig_track,
         f"Posterior probability of each state along the first {shown} rolls (averaged over {pick.size} NUTS "
         "draws, so parameter uncertainty is included), with the true states and the Viterbi path of the "
         f"posterior mean below. Over all {obs_np.size:,} rolls the Viterbi path agrees with the truth at "
         f"**{viterbi_acc:.1%}** of positions, the posterior argmax at **{track_acc:.1%}**."),
    ]
    return _Part(
        title="Hidden Markov model: the dishonest casino",
        intro=(
            "A casino switches between a **fair** die and a **loaded** one that shows a six half of the time "
            "(Durbin et al. 1998). We simulate the rolls, hide the dice, and fit a 2-state categorical HMM. "
            "The hidden states are marginalised by one forward pass (`cores/hmm.py`) that both the NNX operator "
            "`DifferentiableHMM` and the NumPyro model `hmm_model` (Dirichlet(1) priors on every probability "
            "row) call.\n\n"
            "- **Baum-Welch EM**: closed-form M-step, the classical maximum-likelihood fit.\n"
            "- **gradient**: the operator's logits trained by Adam on −log-likelihood (`fit_gradient`).\n"
            "- **SVI**: a mean-field normal guide on `hmm_model` (`fit_svi`).\n"
            "- **NUTS**: the posterior (`fit_nuts`), every chain started at the gradient fit.\n\n"
            "EM and gradient ascent start from sticky transitions (0.9 on the diagonal) and random emission "
            "rows; from a symmetric random start both often stop at a worse local maximum. Swapping the two states' names does not change the likelihood (label switching); every draw is "
            "relabelled so that the state with the smaller P(six) is `fair`."
        ),
        facts={
            "rolls": f"{obs_np.size:,} (seed {seed})",
            "time spent with the loaded die": f"{np.mean(truth == 1):.1%}",
            "NUTS": f"{nuts.num_chains} chain(s) × ({sizes.nuts_warmup} warm-up + {nuts.num_draws} draws)",
            "SVI": f"{sizes.svi_steps:,} steps, {svi.num_draws:,} draws from the guide",
            "Viterbi agreement with the true states": f"{viterbi_acc:.1%}",
        },
        blocks=blocks,
        headline={
            "model": "HMM (casino)",
            "data": f"{obs_np.size:,} rolls",
            "gradient (s)": grad.elapsed_s,
            "SVI (s)": svi.elapsed_s,
            "NUTS (s)": nuts.elapsed_s,
            "divergences": nuts.num_divergences,
            "max R-hat": _max_rhat(summary),
            "recovered": f"Viterbi {viterbi_acc:.1%} right",
        },
    )


# ---------------------------------------------------------------------------------------------------
# Differential expression
# ---------------------------------------------------------------------------------------------------


def _lfc_truth_figure(truth: pd.DataFrame, bayes: pd.DataFrame, deseq: pd.DataFrame):
    """Posterior LFC (mean and 94% HDI) against the true LFC, DESeq2's MLE behind it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.add_subplot()
    t = truth.loc[bayes.index, "log2FoldChange"].to_numpy()
    mle = deseq.loc[bayes.index, "log2FoldChange"].to_numpy()
    jitter = np.random.default_rng(0).normal(0, 0.03, t.size) * (t == 0)  # spread the null genes a little
    ax.scatter(t + jitter, mle, s=6, color="#9a9a9a", linewidths=0, label="DESeq2 MLE", zorder=1)
    de = truth.loc[bayes.index, "is_de"].to_numpy()
    for mask, color, label in ((~de, "#56B4E9", "null genes"), (de, "#D55E00", "DE genes")):
        m = bayes["log2FoldChange"].to_numpy()[mask]
        lo, hi = bayes["hdi_lower"].to_numpy()[mask], bayes["hdi_upper"].to_numpy()[mask]
        # The mean of a skewed posterior can sit just outside its HDI: clip the bar lengths at 0.
        yerr = [np.maximum(m - lo, 0.0), np.maximum(hi - m, 0.0)]
        ax.errorbar(t[mask] + jitter[mask], m, yerr=yerr, fmt="o", ms=2.5, color=color, ecolor=color,
                    elinewidth=0.6, alpha=0.6, label=f"posterior mean, 94% HDI ({label})", zorder=2)
    lim = np.nanmax(np.abs(np.concatenate([t, bayes["hdi_lower"], bayes["hdi_upper"]]))) * 1.05
    lim = min(lim, 8.0)
    ax.plot([-lim, lim], [-lim, lim], color="#333333", lw=0.8, zorder=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("true log2 fold change")
    ax.set_ylabel("estimated log2 fold change")
    inside = np.mean((bayes["hdi_lower"].to_numpy() <= t) & (t <= bayes["hdi_upper"].to_numpy()))
    ax.set_title(f"Posterior LFC vs truth: 94% HDIs cover the truth for {inside:.1%} of genes", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


CALL_PROB = 0.9


def _calls(table: pd.DataFrame) -> np.ndarray:
    """A Bayesian call: a more than 2-fold change with posterior probability above ``CALL_PROB``.

    "The 94% HDI excludes 0" would be the obvious rule, but it is a per-gene 6% error rate with no
    multiplicity control: with hundreds of unchanged genes it calls dozens of them.
    """
    return table["prob_abs_lfc_gt"].to_numpy() > CALL_PROB


def _de_metrics(est: np.ndarray, true: np.ndarray, called: np.ndarray | None, is_de: np.ndarray) -> dict:
    ok = np.isfinite(est)
    row = {
        "RMSE vs truth": float(np.sqrt(np.mean((est[ok] - true[ok]) ** 2))),
        "r vs truth": float(np.corrcoef(est[ok], true[ok])[0, 1]),
    }
    if called is None:
        row.update({"calls": None, "false calls": None, "wrong sign": None, "DE genes found": ""})
    else:
        row.update({
            "calls": int(called.sum()),
            "false calls": int((called & ~is_de).sum()),
            "wrong sign": int((called & is_de & (np.sign(est) != np.sign(true))).sum()),
            "DE genes found": f"{int((called & is_de).sum())} of {int(is_de.sum())}",
        })
    return row


def run_de_part(sizes: DemoSizes, seed: int, out: _Outputs, progress: _Progress) -> _Part:
    """Simulated counts: DESeq2 (frequentist), then the Bayesian NB-GLM by gradient, SVI and NUTS."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from diffbio_prob.inference import fit_gradient
    from diffbio_prob.io.counts import write_results
    from diffbio_prob.operators.statistical import DifferentiableNBGLM, NBGLMConfig
    from diffbio_prob.plots import ma_plot, trace_plot, volcano_plot
    from diffbio_prob.workflows.de_bayes import bayesian_lfc
    from diffbio_prob.workflows.deseq2 import fit_deseq2

    counts, samples, truth = simulate_de_counts(sizes.de_genes, sizes.de_samples, seed)
    contrast = ["condition", "B", "A"]
    with progress.step(f"DE: DESeq2 pipeline on {counts.shape[0]:,} genes x {counts.shape[1]} samples"):
        start = time.perf_counter()
        dfit = fit_deseq2(counts, samples[["condition"]], "~ condition")
        deseq = dfit.results(contrast)
        deseq_time = time.perf_counter() - start
    keep = ~np.asarray(dfit.gene["allZero"], bool)
    genes = counts.index[keep]
    is_de = truth.loc[genes, "is_de"].to_numpy()
    true_lfc = truth.loc[genes, "log2FoldChange"].to_numpy()

    with progress.step(f"DE: gradient fit of the NNX NB-GLM ({sizes.gradient_steps} Adam steps)"):
        design = np.asarray(dfit.design.matrix, float)
        y = counts.loc[genes].to_numpy(float).T  # (N, G)
        op = DifferentiableNBGLM(NBGLMConfig(n_features=int(keep.sum()), n_covariates=design.shape[1]),
                                 rngs=nnx.Rngs(seed))
        # Start the intercepts at the log mean normalised count (the coefficients' scale is set by the
        # data, not by the N(0, 0.1) initialisation); the fold changes start at 0.
        beta0 = np.zeros((design.shape[1], y.shape[1]))
        beta0[0] = np.log(np.mean(y / dfit.size_factors[:, None], axis=0) + 0.5)
        op.load_model_params({"beta": beta0})
        data = {"counts": jnp.asarray(y), "design": jnp.asarray(design),
                "size_factors": jnp.asarray(dfit.size_factors)}
        grad = fit_gradient(op, data, optimizer=optax.adam(0.05), num_steps=sizes.gradient_steps,
                            progress=progress.bars)
        grad_lfc = np.asarray(grad.params["beta"])[1] / np.log(2.0)

    fits = {}
    for method, label in (("svi", f"{sizes.svi_steps} steps"), ("nuts",
                          f"{sizes.nuts_chains} chain(s) x {sizes.de_nuts_warmup}+{sizes.de_nuts_draws} draws")):
        with progress.step(f"DE: {method.upper()} on nb_glm_model, every gene ({label})"):
            fits[method] = bayesian_lfc(
                # log2-scale prior sd 2 on the fold change; the intercept gets nb_glm_model's wide default
                dfit, contrast, method=method, prior="normal", prior_scale=2.0,
                num_steps=sizes.svi_steps, num_samples=sizes.svi_draws if method == "svi" else sizes.de_nuts_draws,
                num_warmup=sizes.de_nuts_warmup, num_chains=sizes.nuts_chains, rng_key=seed, progress=progress.bars,
            )
    bayes, nuts = fits["nuts"]
    svi_table, svi = fits["svi"]

    with progress.step("DE: tables and figures"):
        gene_list = list(genes)
        order = deseq.loc[genes].sort_values("padj", na_position="last").index
        rows = {
            "truth": {"time (s)": np.nan, **_de_metrics(true_lfc, true_lfc, is_de, is_de)},
            "DESeq2 (IRLS + Wald test)": {
                "time (s)": deseq_time,
                **_de_metrics(deseq.loc[genes, "log2FoldChange"].to_numpy(), true_lfc,
                              (deseq.loc[genes, "padj"] < 0.1).to_numpy(), is_de),
            },
            "gradient (NNX + optax, MLE)": {"time (s)": grad.elapsed_s,
                                            **_de_metrics(grad_lfc, true_lfc, None, is_de)},
        }
        for label, (table, fit) in (("SVI (mean-field normal)", fits["svi"]), ("NUTS", fits["nuts"])):
            rows[label] = {
                "time (s)": fit.elapsed_s,
                **_de_metrics(table["log2FoldChange"].to_numpy(), true_lfc,
                              _calls(table), is_de),
            }
        comparison = pd.DataFrame.from_dict(rows, orient="index")
        comparison.index.name = "fit"
        comparison.loc["truth", ["RMSE vs truth", "r vs truth"]] = np.nan
        comparison = comparison.astype({"calls": "Int64", "false calls": "Int64", "wrong sign": "Int64"})

        per_gene = pd.DataFrame(
            {
                "baseMean": deseq.loc[genes, "baseMean"],
                "true_log2FoldChange": true_lfc,
                "is_de": is_de,
                "deseq2_log2FoldChange": deseq.loc[genes, "log2FoldChange"],
                "deseq2_lfcSE": deseq.loc[genes, "lfcSE"],
                "deseq2_padj": deseq.loc[genes, "padj"],
                "gradient_log2FoldChange": grad_lfc,
                "svi_mean": svi_table["log2FoldChange"],
                "svi_sd": svi_table["lfcSE"],
                "nuts_mean": bayes["log2FoldChange"],
                "nuts_sd": bayes["lfcSE"],
                "nuts_hdi94_lower": bayes["hdi_lower"],
                "nuts_hdi94_upper": bayes["hdi_upper"],
                "nuts_prob_abs_lfc_gt_1": bayes["prob_abs_lfc_gt"],
            },
            index=genes,
        )
        out.csv("de/counts.csv", counts, "DE: simulated counts (genes x samples)")
        out.csv("de/samples.csv", samples, "DE: sample table (condition, true size factor)")
        out.csv("de/truth.csv", truth, "DE: true log2 fold change, intercept and dispersion per gene")
        out.record(write_results(deseq, out.path("de/deseq2_results.csv")), "DE: DESeq2 results table")
        out.csv("de/posterior_lfc.csv", per_gene, "DE: per-gene LFC by every path, NUTS posterior summary")
        out.csv("de/fit_comparison.csv", comparison, "DE: the fit paths compared")

        # netCDF with named dimensions; the log2 fold change itself is added as a variable.
        dims = {"beta": ["coefficient", "gene"], "alpha": ["gene"], "log2_fold_change": ["gene"],
                "counts": ["sample_name", "gene"]}
        coords = {"gene": gene_list, "coefficient": list(dfit.coef_names), "sample_name": list(counts.columns)}
        trees = {}
        for method, fit in (("nuts", nuts), ("svi", svi)):
            fit.samples["log2_fold_change"] = fit.samples["beta"][:, :, 1, :] / np.log(2.0)
            trees[method] = out.netcdf(f"de/posterior_{method}.nc", fit,
                                       f"DE posterior draws ({method.upper()}), ArviZ netCDF", coords, dims)
        dt = trees["nuts"]
        labels = [f"log2_fold_change[{g}]" for g in order]
        summary = _summary(dt, ["log2_fold_change"], order=labels)
        out.csv("de/summary_nuts.csv", summary, "DE: ArviZ summary of the NUTS posterior LFCs")

        shown = deseq.loc[genes].copy()
        shown["log2FoldChange"] = bayes["log2FoldChange"]
        fig_ma = out.png(
            "de/ma_plot.png", ma_plot(shown, lfc_sd=bayes["lfcSE"], title="MA plot: posterior LFC ± 1 sd"),
            "DE: MA plot (posterior LFC)",
        )
        fig_volcano = out.png(
            "de/volcano_plot.png",
            volcano_plot(shown, lfc_sd=bayes["lfcSE"], label_top=5, title="Volcano plot: posterior LFC ± 1 sd"),
            "DE: volcano plot (posterior LFC)",
        )
        fig_truth = out.png("de/lfc_vs_truth.png", _lfc_truth_figure(truth, bayes, deseq), "DE: LFC vs truth")
        top = list(order[:4])
        fig_trace = out.png(
            "de/trace.png", trace_plot(dt, ["log2_fold_change"], coords={"gene": top}),
            "DE: trace plot of the top genes",
        )
        fig_loss = out.png(
            "de/loss.png",
            _loss_figure(
                [("gradient: NNX NB-GLM + Adam", grad.loss_history, "−log-likelihood"),
                 ("SVI: nb_glm_model", svi.loss_history, "−ELBO")],
                "Optimiser fits of the NB-GLM",
            ),
            "DE: loss curves",
        )
        top_table = per_gene.loc[order[:12], ["baseMean", "true_log2FoldChange", "deseq2_log2FoldChange",
                                              "deseq2_padj", "nuts_mean", "nuts_hdi94_lower", "nuts_hdi94_upper"]]

    n_draws = nuts.num_chains * nuts.num_draws
    sig = int((deseq["padj"] < 0.1).sum())
    called = _calls(bayes)
    deseq_row = comparison.loc["DESeq2 (IRLS + Wald test)"]
    blocks = [
        ("Fit paths compared", "table", comparison,
         "Each path's log2 fold changes against the simulated truth. Calls: DESeq2 padj < 0.1 (a test of "
         f"LFC ≠ 0); SVI and NUTS posterior P(|LFC| > 1) > {CALL_PROB:g} (a more than 2-fold change, the size "
         "of every simulated change); the gradient fit is a point estimate (no calls). Times include JIT "
         "compilation."),
        ("Fit paths compared", "figure", fig_loss,
         "Loss curves of the two optimiser fits (the y axis zooms on the last 80% of steps)."),
        ("Results", "figure", fig_ma,
         "MA plot: the NUTS posterior mean of each gene's log2 fold change with ±1 posterior sd, against "
         "DESeq2's mean of normalised counts; coloured: DESeq2 padj < 0.1. Low counts give wide posteriors."),
        ("Results", "figure", fig_volcano,
         "Volcano plot: posterior mean LFC ± 1 posterior sd (NUTS) against DESeq2's Wald p-value; "
         "coloured: padj < 0.1."),
        ("Results", "figure", fig_truth,
         "Estimated against true log2 fold changes: posterior means with 94% HDIs (colour), DESeq2's maximum-"
         "likelihood estimates (grey). The prior pulls noisy low-count genes towards 0."),
        ("Results", "table", top_table, "The 12 genes with the smallest DESeq2 padj: truth, DESeq2 and NUTS."),
        ("Posterior (NUTS)", "summary", (summary, nuts.num_divergences, n_draws),
         "ArviZ summary of the posterior log2 fold changes, genes ordered by DESeq2's padj (badges count "
         "every gene)."),
        ("Posterior (NUTS)", "figure", fig_trace, "Trace and marginal posterior of the four top genes' LFCs."),
    ]
    return _Part(
        title="Differential expression: NB-GLM",
        intro=(
            "A counts table simulated by DESeq2's `makeExampleDESeqDataSet` recipe (log2 intercepts N(4, 2), "
            "dispersion 4/mean + 0.1, two groups), except that 10% of the genes get a true log2 fold change "
            "of ±1 to ±3 and the size factors vary. "
            "**DESeq2's pipeline** (size factors, Cox-Reid dispersions, trend, MAP, IRLS, Wald test, "
            "independent filtering, BH) gives the frequentist answer. The **Bayesian NB-GLM** "
            "(`nb_glm_model`: N(0, 2²) prior on each log2 fold change, log-normal dispersion prior around "
            "DESeq2's trend with DESeq2's width) gives the whole posterior of every gene's log fold change.\n\n"
            "- **gradient**: the NNX operator `DifferentiableNBGLM` (maximum likelihood, Adam).\n"
            "- **SVI**: mean-field normal guide (`fit_svi`), started at DESeq2's estimates.\n"
            "- **NUTS**: every gene's coefficients and dispersion (`fit_nuts`), started at DESeq2's estimates."
        ),
        facts={
            "genes × samples": f"{counts.shape[0]:,} × {counts.shape[1]} (seed {seed}); "
                               f"{int(truth['is_de'].sum())} truly DE",
            "DESeq2 calls (padj < 0.1)": f"{sig}, {deseq_row['false calls']} false, {deseq_row['wrong sign']} "
                                          "with the wrong sign",
            f"NUTS calls (P(|LFC| > 1) > {CALL_PROB:g})": f"{int(called.sum())}, "
                                                          f"{int((called & ~is_de).sum())} false",
            "NUTS": f"{nuts.num_chains} chain(s) × ({sizes.de_nuts_warmup} warm-up + {nuts.num_draws} draws), "
                    f"{3 * len(genes):,} parameters",
        },
        blocks=blocks,
        headline={
            "model": "NB-GLM (DE)",
            "data": f"{counts.shape[0]:,} × {counts.shape[1]} counts",
            "gradient (s)": grad.elapsed_s,
            "SVI (s)": svi.elapsed_s,
            "NUTS (s)": nuts.elapsed_s,
            "divergences": nuts.num_divergences,
            "max R-hat": _max_rhat(summary),
            "recovered": f"LFC RMSE {comparison.loc['NUTS', 'RMSE vs truth']:.2f} "
                         f"(DESeq2 {deseq_row['RMSE vs truth']:.2f})",
        },
    )


# ---------------------------------------------------------------------------------------------------
# Quantification
# ---------------------------------------------------------------------------------------------------


def run_quant_part(sizes: DemoSizes, seed: int, out: _Outputs, progress: _Progress) -> _Part:
    """salmon's sample eq classes: EM (operator), gradient through unrolled EM, SVI, NUTS; vs the truth."""
    import jax.numpy as jnp
    import optax

    from diffbio_prob.cores import em as em_core
    from diffbio_prob.inference import fit_gradient, fit_nuts, fit_svi
    from diffbio_prob.io.salmon import write_quant_sf
    from diffbio_prob.models import em_model
    from diffbio_prob.operators.statistical import DifferentiableEMQuantifier, EMQuantifierConfig
    from diffbio_prob.plots import counts_vs_truth_plot, mard, posterior_plot, trace_plot
    from diffbio_prob.workflows.de_bayes import hdi
    from diffbio_prob.workflows.quant import to_eq_classes

    sample = load_quant_sample()
    eqc = to_eq_classes(sample.table)
    n_tx = eqc.n_transcripts
    lengths = jnp.asarray(sample.effective_lengths, eqc.counts.dtype)
    data = {"equivalence_classes": eqc, "counts": eqc.counts, "effective_lengths": lengths}
    names = list(sample.names)
    truth = sample.true_counts

    with progress.step(f"Quant: EM with the NNX operator ({n_tx} transcripts, {eqc.n_classes} classes)"):
        start = time.perf_counter()
        em_op = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=n_tx, n_iterations=100,
                                                              until_converged=True))
        em_out = em_op.apply(data, {}, None)[0]
        em_counts = np.asarray(em_out["estimated_counts"], float)
        em_time = time.perf_counter() - start

    with progress.step(f"Quant: gradient through 10 unrolled EM steps ({sizes.gradient_steps} Adam steps)"):
        # The operator's learnable start (softmax logits) is trained so that 10 EM iterations from it
        # reach the highest likelihood: gradients flow through the unrolled EM.
        op = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=n_tx, n_iterations=10))
        grad = fit_gradient(op, data, optimizer=optax.adam(0.05), num_steps=sizes.gradient_steps,
                            progress=progress.bars)
        grad_counts = np.asarray(op.apply(data, {}, None)[0]["estimated_counts"], float)

    init = em_op.to_model_params(data)
    with progress.step(f"Quant: SVI on em_model ({sizes.svi_steps} steps)"):
        svi = fit_svi(em_model, eqc, lengths, num_steps=sizes.svi_steps, num_samples=sizes.svi_draws,
                      rng_key=seed, init_params=init, progress=progress.bars)
    with progress.step(
        f"Quant: NUTS on em_model ({sizes.nuts_chains} chain(s) x {sizes.nuts_warmup}+{sizes.nuts_draws} draws)"
    ):
        nuts = fit_nuts(em_model, eqc, lengths, num_warmup=sizes.nuts_warmup, num_samples=sizes.nuts_draws,
                        num_chains=sizes.nuts_chains, rng_key=seed + 1, init_params=init, progress=progress.bars)

    with progress.step("Quant: tables and figures"):
        def loglik(counts):
            a = np.asarray(counts, float) / np.sum(counts)
            return float(em_core.log_likelihood(eqc, lengths, jnp.asarray(a, eqc.counts.dtype)))

        ests = {
            "salmon 1.10.1 (VBEM, shipped)": (sample.salmon_num_reads, None, np.nan),
            "EM (NNX operator, to convergence)": (em_counts, None, em_time),
            "gradient (NNX + optax through EM)": (grad_counts, None, grad.elapsed_s),
            "SVI (mean-field normal)": (None, svi, svi.elapsed_s),
            "NUTS": (None, nuts, nuts.elapsed_s),
        }
        rows, intervals = {}, {}
        for label, (counts, fit, elapsed) in ests.items():
            row = {"time (s)": elapsed}
            if fit is not None:
                draws = fit.flat_samples()["estimated_counts"]
                counts = draws.mean(0)
                lo, hi = hdi(draws, 0.94)
                intervals[label] = (lo, hi)
                row["94% HDI covers truth"] = f"{int(np.sum((lo <= truth) & (truth <= hi)))} of {n_tx}"
            else:
                row["94% HDI covers truth"] = ""
            row.update({
                "Spearman vs truth": float(pd.Series(counts).corr(pd.Series(truth), method="spearman")),
                "MARD vs truth": mard(counts, truth),
                "log-likelihood": loglik(counts),
            })
            rows[label] = row
            ests[label] = (counts, fit, elapsed)
        comparison = pd.DataFrame.from_dict(rows, orient="index")
        comparison.index.name = "fit"

        lo, hi = intervals["NUTS"]
        table = pd.DataFrame(
            {
                "Length": sample.lengths,
                "EffectiveLength": sample.effective_lengths,
                "true_count": truth,
                "salmon_vbem": sample.salmon_num_reads,
                "em": em_counts,
                "gradient": grad_counts,
                "svi_mean": ests["SVI (mean-field normal)"][0],
                "nuts_mean": ests["NUTS"][0],
                "nuts_sd": nuts.flat_samples()["estimated_counts"].std(0, ddof=1),
                "nuts_hdi94_lower": lo,
                "nuts_hdi94_upper": hi,
            },
            index=pd.Index(names, name="Name"),
        )
        out.record(
            write_quant_sf(out.path("quant/quant.sf"), names, sample.lengths, sample.effective_lengths,
                           np.asarray(em_out["tpm"], float), em_counts),
            "Quant: quant.sf of the EM fit (salmon's format)",
        )
        out.csv("quant/posterior_counts.csv", table, "Quant: counts per transcript by every path, NUTS intervals")
        out.csv("quant/fit_comparison.csv", comparison, "Quant: the fit paths compared")
        dims = {"abundances": ["transcript"], "estimated_counts": ["transcript"], "tpm": ["transcript"],
                "class_counts": ["eq_class"]}
        coords = {"transcript": names}
        dt = out.netcdf("quant/posterior_nuts.nc", nuts, "Quant posterior draws (NUTS), ArviZ netCDF", coords, dims)
        out.netcdf("quant/posterior_svi.nc", svi, "Quant posterior draws (SVI), ArviZ netCDF", coords, dims)
        summary = _summary(dt, ["estimated_counts"])
        out.csv("quant/summary_nuts.csv", summary, "Quant: ArviZ summary of the NUTS posterior counts")

        fig_truth = out.png(
            "quant/counts_vs_truth.png",
            counts_vs_truth_plot(pd.Series(ests["NUTS"][0], index=names), truth, lo, hi, label_top=3,
                                 title="NUTS posterior mean and 94% HDI vs true counts"),
            "Quant: estimated vs true counts",
        )
        fig_trace = out.png("quant/trace.png", trace_plot(dt, ["abundances"]), "Quant: trace plot")
        fig_post = out.png(
            "quant/posterior.png",
            posterior_plot(dt, ["estimated_counts"], kind="forest", ref_values={"estimated_counts": truth},
                           max_elements=n_tx),
            "Quant: posterior counts with the truth",
        )
        fig_loss = out.png(
            "quant/loss.png",
            _loss_figure(
                [("gradient: EM operator + Adam", grad.loss_history, "−log-likelihood"),
                 ("SVI: em_model", svi.loss_history, "−ELBO")],
                "Optimiser fits of the quantifier",
            ),
            "Quant: loss curves",
        )

    n_draws = nuts.num_chains * nuts.num_draws
    rho = comparison.loc["NUTS", "Spearman vs truth"]
    blocks = [
        ("Fit paths compared", "table", comparison,
         "Estimated counts (NumReads) against the simulated truth; SVI and NUTS: posterior mean, and how many "
         "transcripts' true count lies in the 94% HDI. Log-likelihood of the equivalence classes at each "
         "estimate. salmon's own VBEM run is shipped with the data (no time)."),
        ("Fit paths compared", "figure", fig_loss,
         "Loss curves of the two optimiser fits (the y axis zooms on the last 80% of steps)."),
        ("Results", "figure", fig_truth,
         "Posterior mean counts with 94% HDIs (NUTS) against the true counts, log-log (count + 1)."),
        ("Results", "table", table[["true_count", "salmon_vbem", "em", "nuts_mean", "nuts_hdi94_lower",
                                    "nuts_hdi94_upper"]],
         "Counts per transcript: truth, salmon, our EM and the NUTS posterior."),
        ("Posterior (NUTS)", "summary", (summary, nuts.num_divergences, n_draws),
         "ArviZ summary of the posterior counts per transcript."),
        ("Posterior (NUTS)", "figure", fig_post, "Posterior counts (50% and 94% HDIs) with the true counts in red."),
        ("Posterior (NUTS)", "figure", fig_trace, "Trace and marginal posterior of the read fractions."),
    ]
    return _Part(
        title="Transcript quantification: EM",
        intro=(
            "salmon's sample data, shipped with the package: 15 RefSeq transcripts, 10,000 simulated read pairs "
            f"collapsed into {eqc.n_classes} weighted equivalence classes, and the true number of fragments per "
            "transcript. The likelihood of the classes (`cores/em.py`) is shared by the NNX operator "
            "`DifferentiableEMQuantifier` and the NumPyro model `em_model` (flat Dirichlet prior on the read "
            "fractions).\n\n"
            "- **EM**: the operator run to salmon's convergence rule (`--useEM`).\n"
            "- **gradient**: the operator's starting abundances trained by Adam so that 10 unrolled EM steps "
            "reach the highest likelihood (gradients through EM).\n"
            "- **SVI**: mean-field normal guide on the Dirichlet's unconstrained space (`fit_svi`).\n"
            "- **NUTS**: the posterior of the read fractions (`fit_nuts`), started at the EM estimate."
        ),
        facts={
            "transcripts / classes / fragments": f"{n_tx} / {eqc.n_classes} / {int(np.sum(eqc.counts)):,}",
            "NUTS": f"{nuts.num_chains} chain(s) × ({sizes.nuts_warmup} warm-up + {nuts.num_draws} draws)",
            "Spearman (NUTS posterior mean vs truth)": f"{rho:.3f}",
        },
        blocks=blocks,
        headline={
            "model": "EM (quant)",
            "data": f"{n_tx} transcripts",
            "gradient (s)": grad.elapsed_s,
            "SVI (s)": svi.elapsed_s,
            "NUTS (s)": nuts.elapsed_s,
            "divergences": nuts.num_divergences,
            "max R-hat": _max_rhat(summary),
            "recovered": f"Spearman {rho:.3f}",
        },
    )


# ---------------------------------------------------------------------------------------------------
# The report and the driver
# ---------------------------------------------------------------------------------------------------


def _environment() -> dict:
    import jax

    dev = jax.devices()[0]
    return {
        "JAX": f"{jax.__version__} on {dev.platform.upper()} ({len(jax.devices())} device(s))",
        "precision": "float64" if jax.config.jax_enable_x64 else "float32 (DESeq2 steps in float64)",
        "Python": platform.python_version(),
    }


def build_report(parts: list[_Part], out: _Outputs, *, seed: int, quick: bool, elapsed: float,
                 layout: str = "1 process"):
    """Assemble the self-contained HTML page from the parts (nothing written here)."""
    from diffbio_prob.workflows.report import Report

    report = Report(
        "diffbio-prob demo",
        subtitle="Three models of bioinformatics, each written once in JAX and fitted three ways: by gradient "
        "(Flax NNX operator + optax), by SVI and by NUTS (NumPyro), on data whose truth is known.",
    )
    report.add_facts(
        {"mode": "quick (small sizes, few draws)" if quick else "full", "seed": seed,
         "total time": f"{elapsed:.0f} s", "ran in": layout, **_environment()}
    )
    overview = pd.DataFrame([p.headline for p in parts]).set_index("model")
    report.add_table(overview, "At a glance: wall time of each fit path (JIT compilation included), NUTS "
                     "diagnostics and how close the answer came to the truth (HMM: Viterbi path vs the true dice; "
                     "DE: error of the posterior mean log2 fold change; quantification: rank correlation of "
                     "the posterior mean counts with the true counts).")
    for part in parts:
        report.section(part.title, part.intro)
        report.add_facts(part.facts)
        current = None
        for sub, kind, payload, caption in part.blocks:
            if sub != current:
                report.section(sub, level=3)
                current = sub
            if kind == "table":
                report.add_table(payload, caption, max_rows=30)
            elif kind == "summary":
                summary, divergences, n_draws = payload
                report.add_summary(summary, caption, divergences=divergences, num_draws=n_draws, max_rows=20)
            elif kind == "figure":
                report.add_figure(payload, caption)
            else:
                report.add_text(payload)
    report.section(
        "Files",
        "Everything on this page is also on disk, next to `report.html`. Reopen a posterior with "
        "`arviz.from_netcdf(\"hmm/posterior_nuts.nc\")` (groups `posterior`, `log_likelihood`, "
        "`sample_stats`), e.g. for `arviz.loo`.",
    )
    files = pd.DataFrame(
        [
            {"file": str(p.relative_to(out.root)), "contents": what, "size (kB)": p.stat().st_size / 1024}
            for p, what in out.files
        ]
    )
    report.add_table(files, "Files written by this run.", index=False, max_rows=100,
                     formats={"size (kB)": "{:,.1f}"})
    return report


def _check_out(out) -> Path:
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out: expected a folder path, got {type(out).__name__}")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out: {str(path)!r} exists and is not a folder")
    return path


#: The parts in report order, with their number of progress steps.
_PART_STEPS = (("hmm", 5), ("de", 5), ("quant", 5))
#: Worker parts that yield the CPU to the others (Unix nice increment): quantification needs about half
#: the CPU of the HMM or DE, so while the three share two cores it would otherwise finish early and
#: leave the longest part to run alone at the end.
_LOW_PRIORITY = {"quant": 5}
#: JAX settings a worker process must share with the parent (precision, compilation cache).
_JAX_SETTINGS = (
    "jax_enable_x64",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def _run_part(name: str, sizes: DemoSizes, seed: int, out: _Outputs, progress: _Progress) -> _Part:
    runner = {"hmm": run_hmm_part, "de": run_de_part, "quant": run_quant_part}[name]
    with _quiet_libraries():
        return runner(sizes, seed, out, progress)


def _part_in_worker(name: str, sizes: DemoSizes, seed: int, root: str, quiet: bool, first: int, total: int,
                    jax_settings: dict) -> tuple[_Part, list]:
    """One part in a worker process: same JAX settings, its own numbered progress lines, no bars."""
    import jax

    for key, value in jax_settings.items():
        jax.config.update(key, value)
    if name in _LOW_PRIORITY and hasattr(os, "nice"):
        os.nice(_LOW_PRIORITY[name])
    out = _Outputs(Path(root))
    part = _run_part(name, sizes, seed, out, _Progress(total, quiet, first=first, bars=False))
    return part, out.files


def _jax_settings() -> dict:
    import jax

    return {k: getattr(jax.config, k) for k in _JAX_SETTINGS if getattr(jax.config, k, None) is not None}


#: What the parts import (some of it lazily): loaded once before worker processes are forked, so
#: they start with it (each import of this stack costs ~4.5 s of CPU on a 2-core machine).
_PRELOAD = (
    "arviz", "h5netcdf", "optax", "xarray", "flax.nnx", "numpyro.infer", "matplotlib.figure",
    "diffbio_prob.inference", "diffbio_prob.inference.baum_welch", "diffbio_prob.models",
    "diffbio_prob.operators.statistical", "diffbio_prob.plots", "diffbio_prob.io.counts",
    "diffbio_prob.workflows.de_bayes", "diffbio_prob.workflows.deseq2", "diffbio_prob.workflows.report",
)


def _fork_context():
    """A "fork" multiprocessing context when forking is safe here, else ``None``.

    JAX is not fork-safe once its backend runs (threads, device buffers), but a process that has only
    imported it may fork: JAX itself only warns after its backends start. Linux only (macOS system
    frameworks are not fork-safe either).
    """
    import multiprocessing

    try:
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # a JAX without this private check: do not risk it
        started = True
    if started or not sys.platform.startswith("linux"):
        return None
    return multiprocessing.get_context("fork")


def _run_parts(sizes: DemoSizes, seed: int, outputs: _Outputs, progress: _Progress,
               parallel: bool) -> tuple[list[_Part], str]:
    """The three parts, in worker processes with ``parallel``; the report keeps the fixed order.

    Most of a demo's time is XLA compiling programs and matplotlib drawing, one thing at a time per
    process: on two cores, parallel processes finish in a little more than half the time. Where this
    process can fork (JAX imported, not started), it imports the stack once and forks the HMM and
    quantification into workers while it runs DE (the three parts' CPU times are ~2:1:2). Otherwise
    one spawned worker (which imports everything again) runs the HMM and this process DE, then
    quantification. Also returns how the work was laid out (for the report).
    """
    starts = np.cumsum([0] + [k for _, k in _PART_STEPS])[:-1] + 1
    firsts = {name: int(first) for (name, _), first in zip(_PART_STEPS, starts)}
    if not parallel:
        return [_run_part(name, sizes, seed, outputs, progress) for name, _ in _PART_STEPS], "1 process"
    import concurrent.futures
    import importlib
    import multiprocessing
    import warnings

    ctx = _fork_context()
    if ctx is not None:
        for module in _PRELOAD:
            importlib.import_module(module)
        workers, here = ("hmm", "quant"), ("de",)
        layout = "3 processes (HMM and quantification in forked workers)"
    else:
        ctx, workers, here = multiprocessing.get_context("spawn"), ("hmm",), ("de", "quant")
        layout = "2 processes (HMM in a spawned worker)"
    parts = {}
    with warnings.catch_warnings():
        # Python 3.12 warns on any fork of a process with threads; the only ones here are the BLAS
        # libraries' own pools, which re-create themselves after a fork (pthread_atfork).
        warnings.filterwarnings("ignore", message=".*use of fork\\(\\) may lead to deadlocks.*",
                                category=DeprecationWarning)
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=len(workers), mp_context=ctx)
        with pool:
            futures = {name: pool.submit(_part_in_worker, name, sizes, seed, str(outputs.root), progress.quiet,
                                         firsts[name], progress.total, _jax_settings())
                       for name in workers}
            for name in here:
                progress.done = firsts[name] - 1
                parts[name] = _run_part(name, sizes, seed, outputs, progress)
            for name, future in futures.items():
                parts[name], worker_files = future.result()
                outputs.files.extend(worker_files)
    order = {name: i for i, (name, _) in enumerate(_PART_STEPS)}
    outputs.files.sort(key=lambda f: order.get(f[0].relative_to(outputs.root).parts[0], len(order)))
    progress.done = sum(k for _, k in _PART_STEPS)
    return [parts[name] for name, _ in _PART_STEPS], layout


def run_demo(out: str | os.PathLike = "diffbio-prob-demo", quick: bool = False, seed: int = 0,
             quiet: bool = False, parallel: bool | None = None) -> Path:
    """Fit the three models on data with a known truth, three ways each, and write the report.

    Args:
        out: output folder (created; files in it are replaced atomically).
        quick: small sizes and few draws instead of the full demo (2-core CPU, through the CLI: 50-56 s
            on a first run, ~35 s with its compilation cache warm; the full demo ~2 min).
        seed: random seed of the simulated data and the samplers.
        quiet: no progress lines and no final listing.
        parallel: run the parts in parallel processes (default: when the machine has at least two
            cores): the HMM and quantification in forked workers while DE runs here, or, where this
            process cannot fork safely (JAX already running), the HMM in a spawned worker. Results are
            identical either way.

    Returns:
        The output folder (``report.html`` and the sub-folders ``hmm/``, ``de/``, ``quant/``).

    Raises:
        TypeError / ValueError: a bad ``out`` or ``seed``, before anything runs.
    """
    root = _check_out(out)
    _rng(seed, 0)  # validates the seed before any work
    if not isinstance(quick, bool) or not isinstance(quiet, bool):
        raise TypeError(f"quick, quiet: expected booleans, got {quick!r}, {quiet!r}")
    if parallel is None:
        parallel = (os.cpu_count() or 1) >= 2
    elif not isinstance(parallel, bool):
        raise TypeError(f"parallel: expected a boolean or None, got {parallel!r}")
    sizes = QUICK if quick else FULL
    progress = _Progress(total=sum(k for _, k in _PART_STEPS) + 1, quiet=quiet, bars=None if not parallel else False)
    outputs = _Outputs(root)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    progress.line(f"diffbio-prob demo: {'quick' if quick else 'full'} run, seed {seed}, writing to {root}/"
                  + (" (the parts in parallel processes)" if parallel else ""))
    parts, layout = _run_parts(sizes, seed, outputs, progress, parallel)
    with _quiet_libraries(), progress.step("Report: report.html"):
        report = build_report(parts, outputs, seed=seed, quick=quick, elapsed=time.perf_counter() - start,
                              layout=layout)
        html_path = report.write(root / "report.html")
    elapsed = time.perf_counter() - start
    if not quiet:
        _print_listing(root, html_path, outputs, elapsed)
    return root


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Hide warnings that say nothing to a demo user (ArviZ/xarray future changes, small-sample ESS)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*[Ss]hape validation.*")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="arviz.*")
        yield


def _print_listing(root: Path, html_path: Path, outputs: _Outputs, elapsed: float) -> None:
    """Where everything is: the report first, then each folder's files by kind."""
    buf = io.StringIO()
    buf.write(f"\ndiffbio-prob demo finished in {elapsed:.0f} s. Open the report:\n  {html_path.resolve().as_uri()}\n")
    buf.write(f"\nEverything is in {root.resolve()}/\n")
    groups: dict[str, list[str]] = {}
    for p, _ in outputs.files:
        rel = p.relative_to(root)
        groups.setdefault(str(rel.parent), []).append(rel.name)
    kinds = (("posteriors (netCDF)", ".nc"), ("tables", (".csv", ".sf")), ("figures", ".png"))
    for folder, names in groups.items():
        buf.write(f"  {folder}/\n")
        for label, suffix in kinds:
            sel = [n for n in names if n.endswith(suffix)]
            if sel:
                buf.write(f"    {label + ':':<22}{', '.join(sel)}\n")
    buf.write('\nReopen a posterior: python -c "import arviz as az; print(az.from_netcdf(\''
              f"{root / 'hmm' / 'posterior_nuts.nc'}'))\"\n")
    print(buf.getvalue(), end="", flush=True)
