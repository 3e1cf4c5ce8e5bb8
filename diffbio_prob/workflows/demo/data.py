"""The demo's data: problem sizes, and four problems whose truth is known (simulated or shipped)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

__all__ = ["DemoSizes", "FULL", "QUICK", "CASINO", "CASINO_STATES", "STICKY", "simulate_casino",
           "simulate_de_counts", "load_quant_sample", "QuantDESample", "simulate_quant_de"]


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
        qde_genes, qde_per_group: the simulated transcriptome of the quantification -> DE part (genes,
            samples per condition).
        qde_bootstraps: salmon-style bootstrap replicates per sample.
        qde_svi_steps, qde_draws: SVI steps and posterior draws of the Bayesian quantification -> DE fits.
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
    qde_genes: int
    qde_per_group: int
    qde_bootstraps: int
    qde_svi_steps: int
    qde_draws: int


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
    qde_genes=150,
    qde_per_group=3,
    qde_bootstraps=30,
    qde_svi_steps=3000,
    qde_draws=1000,
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
    qde_genes=80,
    qde_per_group=3,
    qde_bootstraps=20,
    qde_svi_steps=1500,
    qde_draws=400,
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



@dataclasses.dataclass(frozen=True)
class QuantDESample:
    """A simulated RNA-seq experiment at the level of equivalence classes, with its truth.

    Attributes:
        tables: sample -> :class:`~diffbio_prob.io.base.EqClassTable` (the fragments' compatible sets).
        lengths, effective_lengths: ``(T,)`` transcript lengths and ``L - F + 1`` (``F`` the fragment length).
        samples: sample table (``condition`` A/B, ``size_factor``), indexed by sample name.
        tx2gene: ``tx, gene`` table.
        true_counts: transcripts x samples, the fragments simulated from each transcript.
        transcripts: per transcript ``gene``, ``kind`` (``null``/``DE``/``DTU``), ``log2FoldChange`` (true, B
            vs A, in molecules), ``changed``, ``exons``.
        genes: per gene ``kind``, ``log2FoldChange`` (true, in molecules: 0 for DTU), ``is_de``, ``n_isoforms``.
    """

    tables: dict
    lengths: np.ndarray
    effective_lengths: np.ndarray
    samples: pd.DataFrame
    tx2gene: pd.DataFrame
    true_counts: pd.DataFrame
    transcripts: pd.DataFrame
    genes: pd.DataFrame


def _gene_structure(rng, n_iso: int, frag_len: int):
    """Exon lengths and isoforms (exon index lists): isoform 0 has every exon, isoform ``k`` skips exon ``k``."""
    n_exons = n_iso + 2
    # exons longer than a fragment: no fragment spans three exons, and every exon has fragments of its own
    exon_len = rng.integers(frag_len + 100, 3 * frag_len, n_exons)
    isoforms = [list(range(n_exons))] + [[e for e in range(n_exons) if e != k] for k in range(1, n_iso)]
    return exon_len, isoforms


def _fragment_classes(exon_len, isoforms, frag_len: int, first_id: int = 0) -> list[tuple[list[tuple], np.ndarray]]:
    """Where a fragment of length ``F`` from each isoform of a gene can start, grouped by its class.

    A fragment covering the exon chain ``e_i..e_j`` is compatible with every isoform that holds that
    chain consecutively, and each such isoform has the same number of start positions for it: so the
    class likelihood ``sum_t alpha_t n_c / l_t`` is the eq-class EM's exactly (``l_t = L_t - F + 1``).

    Returns, per isoform, the classes its fragments fall in (sorted transcript ids, the gene's isoforms
    numbered from ``first_id``) and the fraction of its start positions that give each.
    """
    def holds(iso, chain):
        m = len(chain)
        return any(tuple(iso[i:i + m]) == chain for i in range(len(iso) - m + 1))

    out = []
    for exons in isoforms:
        ends = np.cumsum(exon_len[exons])
        pos = np.arange(int(ends[-1]) - frag_len + 1)
        first = np.searchsorted(ends, pos, side="right")
        last = np.searchsorted(ends, pos + frag_len - 1, side="right")
        pairs, n = np.unique(np.stack([first, last], 1), axis=0, return_counts=True)
        chains = [tuple(exons[a:b + 1]) for a, b in pairs]
        keys = [tuple(first_id + k for k, iso in enumerate(isoforms) if holds(iso, c)) for c in chains]
        out.append((keys, n / n.sum()))
    return out


def simulate_quant_de(
    n_genes: int = 60,
    n_per_group: int = 3,
    seed: int = 0,
    *,
    de_fraction: float = 0.25,
    dtu_fraction: float = 0.25,
    frag_len: int = 200,
    dispersion: float = 0.05,
    mean_range: tuple[float, float] = (30.0, 3000.0),
) -> QuantDESample:
    """Samples of a small transcriptome with known differential expression (DE) and transcript usage (DTU),
    simulated down to each fragment's equivalence class (no reads, no aligner).

    Each gene has 1-3 isoforms by exon skipping (:func:`_gene_structure`); a gene's expression in
    molecules is log-uniform in ``mean_range`` (per sample size factor around 1), split between its
    isoforms (shares at least ``1 / (n + 3)``). A fraction ``de_fraction`` of the genes changes by ``±0.5..2``
    log2 units in condition B, every isoform alike; a fraction ``dtu_fraction`` of the multi-isoform genes swaps the
    shares of its two main isoforms (the gene's total unchanged). Fragments per transcript are
    ``NB(mean = s_j m_t l_t / mean(l), size = 1 / dispersion)`` (molecules times effective length);
    each fragment's start is uniform on the transcript, and the exons it covers decide its class
    (:func:`_fragment_classes`). As polyester / RSEM simulate, only without sequences.

    Returns:
        :class:`QuantDESample`.

    Example:
        >>> sim = simulate_quant_de(12, 2, seed=1)
        >>> sorted(sim.tables), sim.true_counts.shape[1]
        (['A1', 'A2', 'B1', 'B2'], 4)
    """
    from diffbio_prob.io.base import EqClassTable

    for name, value, low in (("n_genes", n_genes, 4), ("n_per_group", n_per_group, 2), ("frag_len", frag_len, 20)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    for name, value in (("de_fraction", de_fraction), ("dtu_fraction", dtu_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"{name}: expected a number in (0, 1), got {value!r}")
    if not dispersion > 0:
        raise ValueError(f"dispersion: expected a positive number, got {dispersion!r}")
    lo, hi = mean_range
    if not 0 < lo <= hi:
        raise ValueError(f"mean_range: expected (low, high) with 0 < low <= high, got {mean_range!r}")
    rng = stream_rng(seed, 3)
    n_iso = rng.choice([1, 2, 3], n_genes, p=[0.3, 0.4, 0.3])
    kind = np.full(n_genes, "null", dtype=object)
    order = rng.permutation(n_genes)
    n_de = max(1, round(de_fraction * n_genes))
    kind[order[:n_de]] = "DE"
    multi = [g for g in order[n_de:] if n_iso[g] > 1]
    kind[multi[: max(1, round(dtu_fraction * len(multi)))]] = "DTU"
    gene_lfc = np.where(kind == "DE", rng.choice([-1.0, 1.0], n_genes) * rng.uniform(0.5, 2.0, n_genes), 0.0)
    gene_mean = np.exp(rng.uniform(np.log(lo), np.log(hi), n_genes))

    genes = [f"gene{g + 1:03d}" for g in range(n_genes)]
    tx_rows, exon_lens, isoforms = [], [], []
    mol = []  # (T, 2) molecules per transcript in A and B
    for g in range(n_genes):
        exon_len, isos = _gene_structure(rng, int(n_iso[g]), frag_len)
        # isoform shares of at least 1 / (n + 3): every class keeps fragments in every sample
        share = (1.0 + 3.0 * rng.dirichlet(np.full(n_iso[g], 2.0))) / (n_iso[g] + 3.0)
        share_b = share.copy()
        if kind[g] == "DTU":
            # the main isoform gets 65-85% of the two in A and swaps with the second in B: |log2FC| >= 0.89
            top = np.argsort(-share, kind="stable")[:2]
            p = rng.uniform(0.65, 0.85)
            rest = share.sum() - share[top].sum()
            share[top] = (1 - rest) * np.array([p, 1 - p])
            share_b = share.copy()
            share_b[top] = share[top[::-1]]
        for k in range(n_iso[g]):
            name = f"{genes[g]}.{k + 1}"
            tx_rows.append({"transcript": name, "gene": genes[g], "kind": kind[g], "exons": len(isos[k])})
            exon_lens.append(exon_len)
            isoforms.append(isos[k])
            mol.append(gene_mean[g] * np.array([share[k], share_b[k] * 2.0 ** gene_lfc[g]]))
    mol = np.array(mol)
    lengths = np.array([int(e[i].sum()) for e, i in zip(exon_lens, isoforms)], float)
    eff = lengths - frag_len + 1
    tx_lfc = np.log2(mol[:, 1] / mol[:, 0])
    tx_lfc[np.abs(tx_lfc) < 1e-12] = 0.0
    names = [r["transcript"] for r in tx_rows]
    tx_gene = np.array([r["gene"] for r in tx_rows])

    first_tx = np.r_[0, np.cumsum(n_iso)[:-1]]
    tx_classes = [c for g in range(n_genes) for c in _fragment_classes(
        exon_lens[first_tx[g]], isoforms[first_tx[g]:first_tx[g] + n_iso[g]], frag_len, int(first_tx[g]))]

    groups = ["A"] * n_per_group + ["B"] * n_per_group
    sample_names = [f"{c}{i + 1}" for c in "AB" for i in range(n_per_group)]
    sf = np.exp(rng.normal(0.0, 0.2, len(sample_names)))
    sf /= np.exp(np.mean(np.log(sf)))
    size = 1.0 / dispersion
    true = np.zeros((len(names), len(sample_names)), np.int64)
    tables = {}
    for j, (s, c) in enumerate(zip(sample_names, groups)):
        mu = sf[j] * mol[:, int(c == "B")] * eff / eff.mean()
        true[:, j] = rng.negative_binomial(size, size / (size + mu))
        counts: dict[tuple, int] = {}
        for t, (keys, p) in enumerate(tx_classes):
            for key, n in zip(keys, rng.multinomial(true[t, j], p)):
                if n:
                    counts[key] = counts.get(key, 0) + int(n)
        keys = sorted(counts)
        tables[s] = EqClassTable(
            names=list(names),
            class_ids=np.repeat(np.arange(len(keys)), [len(k) for k in keys]).astype(np.int64),
            transcript_ids=np.array([t for k in keys for t in k], np.int64),
            weights=None,
            counts=np.array([counts[k] for k in keys], float),
            source=f"simulated sample {s}",
            format="salmon",
        )
    tx_index = pd.Index(names, name="transcript")
    transcripts = pd.DataFrame({
        "gene": tx_gene, "kind": [r["kind"] for r in tx_rows], "log2FoldChange": tx_lfc,
        "changed": tx_lfc != 0, "exons": [r["exons"] for r in tx_rows], "Length": lengths,
        "EffectiveLength": eff,
    }, index=tx_index)
    gene_table = pd.DataFrame({"kind": kind.astype(str), "log2FoldChange": gene_lfc, "is_de": gene_lfc != 0,
                               "n_isoforms": n_iso}, index=pd.Index(genes, name="gene"))
    return QuantDESample(
        tables=tables, lengths=lengths, effective_lengths=eff,
        samples=pd.DataFrame({"condition": groups, "size_factor": sf}, index=pd.Index(sample_names, name="sample")),
        tx2gene=pd.DataFrame({"tx": names, "gene": tx_gene}),
        true_counts=pd.DataFrame(true, index=tx_index, columns=pd.Index(sample_names, name="sample")),
        transcripts=transcripts, genes=gene_table,
    )
