"""Simulation-based calibration (Talts et al. 2018) of hmm_model, nb_glm_model and em_model under NUTS.

Not a test. For each model (the small set-ups of ``diffbio_prob.inference.sbc``): R prior draws, data
simulated from each, NUTS on every replicate (one compiled program, replicates vmapped in batches),
the rank of each true scalar parameter among L thinned posterior draws, and Pearson's chi-square test of
uniform ranks per parameter with Holm's correction over the model's parameters. Prints the table
(parameter, p, Holm-adjusted p, pass/fail at 1%) and writes one rank-histogram figure per model
(``--out DIR``; grey band: the central 99% of a bin's count under uniform ranks).

Goal (issue 13): no parameter rejects uniformity at the 1% level after correction. Float64.

Run:  .venv/bin/python bench/sbc.py [--replicates 200] [--models hmm,nb_glm,em] [--out bench/out/sbc]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from diffbio_prob.inference import sbc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = {"hmm": sbc.hmm_problem, "nb_glm": sbc.nb_glm_problem, "em": sbc.em_problem}


def plot(name: str, result: sbc.SBCResult, path: Path, level: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    params = list(result.ranks)
    cols = min(4, len(params))
    rows = -(-len(params) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    r = len(next(iter(result.ranks.values())))
    width = (result.num_draws + 1) // result.bins
    lo, hi = stats.binom.interval(0.99, r, 1 / result.bins)
    for ax, k in zip(axes.flat, params):
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        ax.hist(result.ranks[k], bins=np.arange(0, result.num_draws + 2, width), color="C0" if
                result.adjusted[k] > level else "C3", edgecolor="white")
        ax.set_title(f"{k}\nHolm p = {result.adjusted[k]:.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.suptitle(f"SBC {name}: {r} replicates, L = {result.num_draws}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--draws", type=int, default=99, help="L, posterior draws per replicate the ranks use")
    ap.add_argument("--thinning", type=int, default=4, help="NUTS keeps thinning * L draws, every thinning-th used")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=20, help="replicates run in lock step")
    ap.add_argument("--models", default="hmm,nb_glm,em")
    ap.add_argument("--level", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "sbc"), help="folder for the rank histograms")
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in PROBLEMS]
    if unknown or not names:
        ap.error(f"--models: expected names from {', '.join(PROBLEMS)}, got {args.models!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float64; R={args.replicates}, L={args.draws}, "
          f"thinning {args.thinning}, warm-up {args.warmup}, level {args.level} (Holm within each model)")
    all_pass = True
    total = time.perf_counter()
    for i, name in enumerate(names):
        problem = PROBLEMS[name]()
        result = problem.run(args.replicates, num_draws=args.draws, thinning=args.thinning, num_warmup=args.warmup,
                             rng_key=args.seed + i, batch_size=args.batch_size)
        print(f"\n{problem.description}")
        print(f"  {result.elapsed_s:.0f} s; divergences after warm-up: {int(result.divergences.sum())} in "
              f"{int((result.divergences > 0).sum())} of {args.replicates} replicates; mean leapfrog steps "
              f"{result.mean_steps.mean():.1f}; chi-square over {result.bins} bins")
        print(f"  {'parameter':<22s} {'p':>8s} {'Holm p':>8s} {'min ESS':>8s}  result")
        for k, p, adj, ok in result.table(args.level):
            print(f"  {k:<22s} {p:8.4f} {adj:8.4f} {result.min_ess[k]:8.1f}  {'pass' if ok else 'FAIL'}")
        all_pass &= result.passed(args.level)
        path = out / f"sbc_{name}.png"
        plot(name, result, path, args.level)
        print(f"  ranks: {path}")
    print(f"\n{'all parameters pass' if all_pass else 'some parameter FAILS'} at {args.level} after Holm's "
          f"correction; total {time.perf_counter() - total:.0f} s")
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
