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
    de_genes=1000,
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
    casino_steps=600,
    de_genes=200,
    de_samples=8,
    gradient_steps=200,
    svi_steps=500,
    svi_draws=200,
    nuts_warmup=150,
    nuts_draws=150,
    nuts_chains=1,
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

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.done = total, quiet, 0
        self.bars = not quiet and sys.stderr.isatty()

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.done += 1
        prefix = f"[{self.done:>2}/{self.total}] {label}"
        if not self.quiet:
            # On a terminal the line is finished in place; elsewhere (logs, pipes) one line per step.
            print(prefix + (" ..." if self.bars else ""), file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        if not self.quiet:
            print(f"{' ' * 8}done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


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

    def netcdf(self, rel: str, result, what: str, coords=None, dims=None) -> Path:
        p = self.path(rel)
        dt = result.to_arviz(coords=coords, dims=dims)
        with atomic_path(p) as tmp:
            dt.to_netcdf(tmp, engine="h5netcdf")
        return self._record(p, what)

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


def _hdi(draws: np.ndarray, prob: float = 0.94) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval of every column of ``(n_draws, K)`` draws (ArviZ's definition)."""
    import arviz as az

    out = np.asarray(az.hdi(draws[None], prob=prob))  # (K, 2) for a (chain, draw, K) input
    out = out.reshape(-1, 2) if out.ndim != 2 or out.shape[-1] != 2 else out
    return out[:, 0], out[:, 1]


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
# HMM: the dishonest casino
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Part:
    """What a model's part hands to the report: text, facts, tables, figures (PNG bytes)."""

    title: str
    intro: str
    facts: dict
    comparison: pd.DataFrame
    comparison_caption: str
    summary: pd.DataFrame
    summary_caption: str
    divergences: int
    num_draws: int
    figures: list[tuple[str, bytes, str]]  # (subsection, png, caption)
    tables: list[tuple[str, pd.DataFrame, str]] = dataclasses.field(default_factory=list)
    headline: dict = dataclasses.field(default_factory=dict)


def _casino_relabel(samples: dict) -> dict:
    from diffbio_prob.models.hmm import relabel_states

    # Order the states by P(six): fair (1/6) first, loaded (1/2) second, as in CASINO.
    return relabel_states(samples, symbol=5)


def _hmm_loglik(op, params: dict, observations) -> float:
    op.load_model_params({k: np.asarray(v, float) for k, v in params.items()})
    return float(op.forward_pass(observations))


def run_hmm_part(sizes: DemoSizes, seed: int, out: _Outputs, progress: _Progress) -> _Part:
    """Fit the dishonest casino four ways (Baum-Welch, gradient, SVI, NUTS), decode, write outputs."""
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
    timings: dict[str, float] = {}

    with progress.step(f"HMM: Baum-Welch EM on {obs_np.size:,} rolls"):
        start = time.perf_counter()
        bw = baum_welch(obs_np, 2, 6, num_iters=200, tol=1e-6, seed=seed)
        timings["Baum-Welch EM"] = time.perf_counter() - start
        bw_params = {k: v[0, 0] for k, v in _casino_relabel({k: v[None, None] for k, v in bw.params.items()}).items()}

    with progress.step(f"HMM: gradient fit of the NNX operator ({sizes.gradient_steps} Adam steps)"):
        op = DifferentiableHMM(HMMConfig(**kw), rngs=nnx.Rngs(seed))
        grad = fit_gradient(
            op, {"observations": obs}, optimizer=optax.adam(0.05), num_steps=sizes.gradient_steps, progress=progress.bars
        )
        grad = _relabel_result(grad, _casino_relabel)

    # Both samplers start at the gradient fit: every chain then explores the same one of the two
    # label-symmetric modes, and the relabelling below only has to fix the rare draw that crosses.
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

    with progress.step("HMM: decoding (posterior state track, Viterbi) and figures"):
        # Posterior state track averaged over posterior draws (parameter uncertainty included), not
        # the plug-in track of one point estimate.
        flat = nuts.flat_samples()
        pick = np.linspace(0, flat["emission_probs"].shape[0] - 1, min(sizes.track_draws, flat["emission_probs"].shape[0]))
        pick = pick.astype(int)

        def smoothed(pi, a, b):
            ll = hmm_core.categorical_log_likelihoods(jnp.log(b), obs)
            return hmm_core.state_posteriors(hmm_core.HMMParams(jnp.log(pi), jnp.log(a)), ll)

        track = np.asarray(
            jax.lax.map(
                lambda args: smoothed(*args),
                tuple(jnp.asarray(flat[k][pick]) for k in ("initial_probs", "transition_probs", "emission_probs")),
            )
        ).mean(0)
        decoder = DifferentiableHMM(HMMConfig(**kw))
        decoder.load_model_params(nuts.posterior_mean())
        path = np.asarray(decoder.viterbi(obs)[0])
        viterbi_acc = float(np.mean(path == truth))
        track_acc = float(np.mean(track.argmax(1) == truth))

        # What each path estimated, side by side with the truth.
        lls = {}
        point = {"Baum-Welch EM": bw_params, "gradient (NNX + optax)": grad.params}
        for label, fit in (("SVI (mean-field)", svi), ("NUTS", nuts)):
            point[label] = fit.posterior_mean()
        scorer = DifferentiableHMM(HMMConfig(**kw))
        for label, p in point.items():
            lls[label] = _hmm_loglik(scorer, {k: p[k] for k in CASINO}, obs)
        lls["truth"] = _hmm_loglik(scorer, CASINO, obs)
        timings["gradient (NNX + optax)"] = grad.elapsed_s
        timings["SVI (mean-field)"] = svi.elapsed_s
        timings["NUTS"] = nuts.elapsed_s

        def entries(p, draws=None):
            keys = {
                "P(fair→fair)": ("transition_probs", (0, 0)),
                "P(loaded→loaded)": ("transition_probs", (1, 1)),
                "P(six | fair)": ("emission_probs", (0, 5)),
                "P(six | loaded)": ("emission_probs", (1, 5)),
            }
            row = {}
            for name, (site, idx) in keys.items():
                if draws is not None:
                    row[name] = _mean_sd(draws[site][(slice(None),) + idx])
                else:
                    row[name] = f"{float(np.asarray(p[site])[idx]):.3f}"
            return row

        rows = {"truth": {**entries(CASINO), "log-likelihood": lls["truth"], "time (s)": np.nan}}
        for label, p in point.items():
            draws = {"SVI (mean-field)": svi.flat_samples(), "NUTS": flat}.get(label)
            rows[label] = {**entries(p, draws), "log-likelihood": lls[label], "time (s)": timings[label]}
        comparison = pd.DataFrame(rows).T
        comparison.index.name = "fit"
        comparison["log-likelihood"] = comparison["log-likelihood"].astype(float)
        comparison["time (s)"] = comparison["time (s)"].astype(float)

        names = {"initial_probs": ["state"], "transition_probs": ["from_state", "to_state"],
                 "emission_probs": ["state", "face"]}
        coords = {"state": list(CASINO_STATES), "from_state": list(CASINO_STATES), "to_state": list(CASINO_STATES),
                  "face": [str(f) for f in range(1, 7)]}
        out.netcdf("hmm/posterior_nuts.nc", nuts, "HMM posterior (NUTS), ArviZ netCDF", coords, names)
        out.netcdf("hmm/posterior_svi.nc", svi, "HMM posterior (SVI), ArviZ netCDF", coords, names)
        dt = nuts.to_arviz(coords=coords, dims=names)
        summary = nuts.summary()
        out.csv("hmm/summary_nuts.csv", summary, "ArviZ summary of the NUTS posterior")
        out.csv("hmm/fit_comparison.csv", comparison, "HMM: the fit paths compared")
        out.csv(
            "hmm/casino.csv",
            pd.DataFrame(
                {
                    "roll": obs_np + 1,
                    "true_state": np.asarray(CASINO_STATES)[truth],
                    "viterbi": np.asarray(CASINO_STATES)[path],
                    "p_loaded": track[:, 1],
                },
                index=pd.RangeIndex(1, obs_np.size + 1, name="t"),
            ),
            "HMM: rolls, true states, Viterbi path, posterior P(loaded)",
        )

        shown = min(obs_np.size, 500)
        figures = [
            (
                "Decoding",
                out.png(
                    "hmm/posterior_track.png",
                    posterior_track_plot(
                        track[:shown], truth[:shown], path[:shown], obs_np[:shown] + 1,
                        state_names=list(CASINO_STATES),
                        title=f"First {shown} of {obs_np.size:,} rolls",
                    ),
                    "HMM posterior state track vs true states and Viterbi",
                ),
                f"Posterior probability of each state along the first {shown} rolls (averaged over "
                f"{pick.size} NUTS draws), with the true states and the Viterbi path of the posterior mean "
                f"below. Over all {obs_np.size:,} rolls the Viterbi path agrees with the truth at "
                f"{viterbi_acc:.1%} of positions, the posterior argmax at {track_acc:.1%}.",
            ),
            (
                "Posterior",
                out.png("hmm/trace.png", trace_plot(dt, ["transition_probs", "emission_probs"]), "HMM trace plot"),
                "Trace and marginal posterior of the transition and emission probabilities (NUTS); "
                "divergent transitions, if any, are marked.",
            ),
            (
                "Posterior",
                out.png(
                    "hmm/posterior.png",
                    posterior_plot(dt, ["transition_probs", "emission_probs"], ref_values=CASINO),
                    "HMM posterior with true values",
                ),
                "Posterior means with 50% and 94% HDIs (NUTS); the true values in red.",
            ),
            (
                "Fit paths",
                out.png(
                    "hmm/loss.png",
                    _loss_figure(
                        [
                            ("gradient: NNX operator + Adam", grad.loss_history, "−log-likelihood"),
                            ("SVI: hmm_model", svi.loss_history, "−ELBO"),
                        ],
                        "Optimiser fits of the casino HMM",
                    ),
                    "HMM loss curves",
                ),
                "Loss curves of the two optimiser fits (the first 20% of steps are off the scale).",
            ),
        ]
    total_draws = nuts.num_chains * nuts.num_draws
    return _Part(
        title="Hidden Markov model: the dishonest casino",
        intro=(
            "A casino switches between a **fair** die and a **loaded** one that shows a six half of the time "
            "(Durbin et al. 1998). We simulate the rolls, hide the dice, and fit a 2-state categorical HMM "
            "with Dirichlet(1) priors on every probability row (`hmm_model`; the hidden states are "
            "marginalised by the same forward pass the NNX operator `DifferentiableHMM` uses).\n\n"
            "- **Baum-Welch EM**: closed-form M-step, the classical maximum-likelihood fit.\n"
            "- **gradient**: the NNX operator's logits trained with Adam on −log-likelihood (`fit_gradient`).\n"
            "- **SVI**: a mean-field normal guide on `hmm_model` (`fit_svi`).\n"
            "- **NUTS**: the posterior (`fit_nuts`), every chain started at the gradient fit.\n\n"
            "The likelihood does not change when the two states swap names (label switching); every draw is "
            "relabelled so that the state with the smaller P(six) is `fair`."
        ),
        facts={
            "rolls": f"{obs_np.size:,} (faces 1-6), seed {seed}",
            "time in the loaded state": f"{np.mean(truth == 1):.1%}",
            "NUTS": f"{nuts.num_chains} chain(s) × {sizes.nuts_warmup} warm-up + {nuts.num_draws} draws",
            "Viterbi agreement with the true states": f"{viterbi_acc:.1%}",
            "posterior-argmax agreement": f"{track_acc:.1%}",
        },
        comparison=comparison,
        comparison_caption=(
            "Estimates of each fit path (SVI and NUTS: posterior mean ± sd), the log-likelihood of the data "
            "at the estimate (posterior mean for SVI and NUTS), and wall time including JIT compilation."
        ),
        summary=summary,
        summary_caption="ArviZ summary of the NUTS posterior (mean, sd, 94% HDI, ESS, R-hat).",
        divergences=nuts.num_divergences,
        num_draws=total_draws,
        figures=figures,
        headline={
            "model": "HMM (casino)",
            "data": f"{obs_np.size:,} rolls",
            "gradient (s)": grad.elapsed_s,
            "SVI (s)": svi.elapsed_s,
            "NUTS (s)": nuts.elapsed_s,
            "divergences": nuts.num_divergences,
            "max R-hat": float(np.nanmax(summary["r_hat"])) if "r_hat" in summary else np.nan,
            "accuracy": f"Viterbi {viterbi_acc:.1%} of states",
        },
    )
