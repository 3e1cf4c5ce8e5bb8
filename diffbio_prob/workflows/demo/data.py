"""The demo's data: problem sizes, and three problems whose truth is known (simulated or shipped)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

__all__ = ["DemoSizes", "FULL", "QUICK", "CASINO", "CASINO_STATES", "STICKY", "simulate_casino",
           "simulate_de_counts", "load_quant_sample"]


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


def stream_rng(seed: int, stream: int) -> np.random.Generator:
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
    rng = stream_rng(seed, 1)
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
    rng = stream_rng(seed, 2)
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

