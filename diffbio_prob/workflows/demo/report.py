"""The demo's report page (``report.html``) assembled from the parts, and the listing printed at the end."""

from __future__ import annotations

import io
import platform
from pathlib import Path

import pandas as pd

from diffbio_prob.workflows.demo.outputs import Outputs, Part


def _environment() -> dict:
    import jax

    dev = jax.devices()[0]
    return {
        "JAX": f"{jax.__version__} on {dev.platform.upper()} ({len(jax.devices())} device(s))",
        "precision": "float64" if jax.config.jax_enable_x64 else "float32 (DESeq2 and NB-GLM steps in float64)",
        "Python": platform.python_version(),
    }


def build_report(parts: list[Part], out: Outputs, *, seed: int, quick: bool, elapsed: float,
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


def print_listing(root: Path, html_path: Path, outputs: Outputs, elapsed: float) -> None:
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
