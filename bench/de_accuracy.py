"""Agreement with R DESeq2 1.38.3 on real count tables: diffbio-prob and PyDESeq2 0.5.4 in one run.

Not a test (the tests hold diffbio-prob to the bar in ``tests/de/test_deseq2_real.py``; this script also
measures the peer). For every case of that test module (marioni and tagseq, and the small designs cut from
them, Wald and LRT, parametric / local / mean trends) it fits both tools and prints a Markdown table: the
number of genes whose pvalue / padj is NaN in one tool and not in R, and the max relative error
``max |ours - R| / |R|`` over genes finite in both, on log2FoldChange, pvalue and padj.

PyDESeq2 0.5.4 has no likelihood-ratio test and no local trend (its parametric fit falls back to the mean);
those cells read "n/a". Its run uses ``n_cpus=1`` and ``refit_cooks=True`` (R's default).

Run:  .venv/bin/python bench/de_accuracy.py [--cases marioni,tagseq_2v2] [--no-peer]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parents[1]


def _cases_module():
    spec = importlib.util.spec_from_file_location("deseq2_real_cases", ROOT / "tests" / "de" / "test_deseq2_real.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def _errors(ours: pd.DataFrame, ref: pd.DataFrame, compare) -> dict:
    ours = ours.reindex(ref.index)
    out = {}
    for col in ("log2FoldChange", "pvalue", "padj"):
        if col in ref.columns:
            out[col] = compare(ours[col].to_numpy(float), ref[col].to_numpy(float))
    return out


def _pydeseq2(counts: pd.DataFrame, meta: pd.DataFrame, run) -> pd.DataFrame | None:
    if run.test != "wald" or run.fit_type == "local":
        return None
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(counts=counts.T.astype(int), metadata=meta, design=run.design.replace(" ", ""),
                           fit_type=run.fit_type, refit_cooks=True, n_cpus=1, quiet=True)
        dds.deseq2()
        ds = DeseqStats(dds, contrast=["condition", "B", "A"], quiet=True, n_cpus=1)
        ds.summary()
    return ds.results_df


def _cell(errs: dict | None, ref_cols) -> str:
    if errs is None:
        return "n/a | n/a | n/a | n/a"
    nan_p = errs.get("pvalue", (0, 0.0))[0]
    nan_q = errs.get("padj", (0, 0.0))[0]
    return " | ".join([
        f"{nan_p}/{nan_q}",
        f"{errs['log2FoldChange'][1]:.1e}" if "log2FoldChange" in errs else "-",
        f"{errs['pvalue'][1]:.1e}",
        f"{errs['padj'][1]:.1e}",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=None, help="comma-separated run names (default: all)")
    ap.add_argument("--no-peer", action="store_true", help="skip PyDESeq2")
    args = ap.parse_args()
    cases = _cases_module()
    names = list(cases.RUNS) if args.cases is None else args.cases.split(",")
    print("| case | design | test | trend | ours NaN p/padj | ours LFC | ours p | ours padj "
          "| PyDESeq2 NaN p/padj | PyDESeq2 LFC | PyDESeq2 p | PyDESeq2 padj |")
    print("|" + "---|" * 12)
    for name in names:
        run = cases.RUNS[name]
        ref = cases._read(cases.REAL / run.case / run.results)
        t0 = time.perf_counter()
        fit = cases.fit_run(run)
        ours = fit.results(cases.CONTRAST)
        t_ours = time.perf_counter() - t0
        e_ours = _errors(ours, ref, cases.compare)
        e_peer = None
        t_peer = float("nan")
        if not args.no_peer:
            counts, meta = cases.load_inputs(run.case)
            t0 = time.perf_counter()
            peer = _pydeseq2(counts, meta, run)
            t_peer = time.perf_counter() - t0
            e_peer = None if peer is None else _errors(peer, ref, cases.compare)
        print(f"| {name} | `{run.design}` | {run.test} | {run.fit_type} | {_cell(e_ours, ref.columns)} | "
              f"{_cell(e_peer, ref.columns)} |", flush=True)
        print(f"<!-- {name}: ours {t_ours:.1f} s, PyDESeq2 {t_peer:.1f} s -->", flush=True)


if __name__ == "__main__":
    main()
