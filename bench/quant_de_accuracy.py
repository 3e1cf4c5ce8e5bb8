"""Accuracy of ``bayes_de_from_quant`` against the simulation truth on quant2de_ref (2 vs 2).

Not a test. Fits the Bayesian quantification-uncertainty model at transcript and gene level on the
four salmon samples (20 bootstraps each) in ``tests/reference/data/quant2de_ref`` and scores the calls
``padj < 0.1`` exactly as ``../shared/quant2de_ref/evaluate.py`` scored the peers (fdr = FP / called,
sensitivity = TP / every true feature, tested or not; transcript truth = ``Changed``, gene truth =
``DE``), then prints the peers' rows of ``accuracy.tsv`` beside ours. The truth is read only here, after
the fit: nothing of it reaches the model.

Run:  .venv/bin/python bench/quant_de_accuracy.py [--levels transcript,gene] [--method svi] [--steps 4000]
      [--ref DIR]   another simulation laid out like quant2de_ref (salmon/<s>/, truth/), e.g. one written by
                    bench/make_quant2de_sim.py; the peers' rows are then left out (they were run on quant2de_ref)
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REF = ROOT / "tests" / "reference" / "data" / "quant2de_ref"
SAMPLES = ["A1", "A2", "B1", "B2"]
ALPHA = 0.1
PEER_ACCURACY = [ROOT.parent / "shared" / "quant2de_ref" / "accuracy.tsv",
                 Path("/work/shared/quant2de_ref/accuracy.tsv")]
# the peers' numbers (from accuracy.tsv), used when the shared folder is not at hand
PEERS = {
    ("deseq2_tximport", "gene"): {"n_called": 147, "n_tp": 142, "n_fp": 5, "fdr": 0.0340136, "sensitivity": 0.522059},
    ("swish_bootstraps", "gene"): {"n_called": 206, "n_tp": 130, "n_fp": 76, "fdr": 0.368932, "sensitivity": 0.477941},
    ("swish_bootstraps", "transcript"): {"n_called": 227, "n_tp": 171, "n_fp": 56, "fdr": 0.246696, "sensitivity": 0.176471},
    ("swish_makeInfReps", "transcript"): {"n_called": 212, "n_tp": 169, "n_fp": 43, "fdr": 0.20283, "sensitivity": 0.174407},
}


def peer_rows():
    for p in PEER_ACCURACY:
        if p.exists():
            out = {}
            with open(p) as fh:
                for r in csv.DictReader(fh, delimiter="\t"):
                    if r["section"] == "de" and r["subset"] == "all":
                        out.setdefault((r["method"], r["level"]), {})[r["metric"]] = float(r["value"])
            return out, str(p)
    return PEERS, "built-in copy of accuracy.tsv"


def read_truth(ref, name, **kw):
    """``truth/<name>.csv`` or ``.csv.gz`` (the fixture stores them compressed, make_samples.py does not)."""
    p = ref / "truth" / f"{name}.csv"
    return pd.read_csv(p if p.exists() else p.with_name(p.name + ".gz"), **kw)


def score(table, truth, true_lfc, alpha=ALPHA):
    padj = table["padj"].reindex(truth.index).to_numpy(float)
    tested = ~np.isnan(padj)
    called = tested & (padj < alpha)
    t = truth.to_numpy(bool)
    tp, fp = called & t, called & ~t
    nc = int(called.sum())
    est = table["log2FoldChange"].reindex(truth.index).to_numpy(float)
    out = {"n_tested": int(tested.sum()), "n_true": int(t.sum()), "n_called": nc, "n_tp": int(tp.sum()),
               "n_fp": int(fp.sum()), "fdr": float(fp.sum() / nc) if nc else float("nan"),
               "sensitivity": float(tp.sum() / t.sum())}
    if tp.sum() > 1:
        out["sign_agree_tp"] = float(np.mean(np.sign(est[tp]) == np.sign(true_lfc[tp])))
        out["pearson_lfc_tp"] = float(np.corrcoef(est[tp], true_lfc[tp])[0, 1])
    # calibration: the mean q-value of the calls is the model's own estimate of its FDR
    out["expected_fdr"] = float(np.mean(table["pvalue"].reindex(truth.index).to_numpy(float)[called])) if nc else \
        float("nan")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="transcript,gene")
    ap.add_argument("--method", default="svi", choices=["svi", "nuts"])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guide", default="normal", choices=["normal", "lowrank"])
    ap.add_argument("--ref", type=Path, default=REF)
    args = ap.parse_args(argv)
    ref = args.ref.resolve()
    own_fixture = ref == REF.resolve()

    from diffbio_prob.workflows.bayes_de_from_quant import bayes_de_from_quant

    paths = {s: ref / "salmon" / s for s in SAMPLES}
    meta = pd.read_csv(ref / "truth" / "samples.csv", index_col="sample")
    tt = read_truth(ref, "truth_transcripts", index_col="Name")
    tg = read_truth(ref, "truth_genes", index_col="gene")
    t2g = ref / "truth" / "tx2gene.csv"
    t2g = t2g if t2g.exists() else t2g.with_name("tx2gene.csv.gz")
    peers, src = peer_rows() if own_fixture else ({}, f"none (peers were run on quant2de_ref, not {ref})")
    rows = []
    for level in args.levels.split(","):
        t0 = time.perf_counter()
        table, _fit = bayes_de_from_quant(paths, meta, condition="condition", level=level,
                                         tx2gene=t2g, method=args.method,
                                         num_steps=args.steps, num_samples=args.samples, seed=args.seed,
                                         guide=args.guide)
        wall = time.perf_counter() - t0
        if level == "transcript":
            truth, tl = tt["Changed"].astype(bool), tt["log2FC"].to_numpy(float)
        else:
            truth, tl = tg["DE"].astype(bool), tg["log2FC"].to_numpy(float)
        s = score(table, truth, tl)
        if level == "transcript":
            called = table["padj"].reindex(tt.index).to_numpy(float) < ALPHA
            for sub, m in (("dtu", tt["DTU"].to_numpy(bool)), ("de_gene", (tt["GeneDE"] & tt["Changed"]).to_numpy(bool))):
                s[f"tp_{sub}"] = f"{int((called & m).sum())}/{int(m.sum())}"
        else:
            called = table["padj"].reindex(tg.index).to_numpy(float) < ALPHA
            s["fp_dtu_genes"] = int((called & ~tg["DE"].to_numpy(bool) & tg["DTU"].to_numpy(bool)).sum())
        s["at_q0.05"] = "{n_called} called, {n_tp} TP, FDR {fdr:.3f}".format(**score(table, truth, tl, 0.05))
        peer = ("swish_bootstraps", "transcript") if level == "transcript" else ("deseq2_tximport", "gene")
        if own_fixture:
            n_peer = int(peers.get(peer, PEERS[peer])["n_called"])
            top = table["padj"].reindex(truth.index).sort_values(kind="stable").index[:n_peer]
            s[f"top_{n_peer}_like_{peer[0]}"] = f"{int(truth.loc[top].sum())} TP"
        rows.append((f"bayes_de_from_quant ({args.method}, {args.guide})", level, s, wall))
        a = table.attrs
        print(f"[{level}] {wall:.1f} s  tested {a['n_tested']}/{a['n_features']}  sig_mu {a['sig_mu']:.3f} "
              f"sig_slope {a['sig_slope']:.3f} sig_tau {a['sig_tau']:.3f} v_scale {a['v_scale']:.3f}  mix weights "
              + " ".join(f"{sc:.3g}:{w:.3f}" for sc, w in zip(a["mix_scales_log2"], a["mix_weights"])), flush=True)
    print(f"\nCalls at padj < {ALPHA} on {ref}; peers from {src}\n")
    print("| method | level | called | TP | FP | FDR | sensitivity | model's expected FDR | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, level, s, wall in rows:
        notes = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in s.items() if k.startswith(("tp_", "fp_dtu", "pearson", "sign", "at_", "top_")))
        print(f"| {name} | {level} | {s['n_called']} | {s['n_tp']} | {s['n_fp']} | {s['fdr']:.3f} | "
              f"{s['sensitivity']:.3f} | {s['expected_fdr']:.3f} | {notes}; {wall:.0f} s |")
    for (method, level), p in sorted(peers.items()):
        if "n_called" not in p:
            continue
        print(f"| {method} | {level} | {int(p['n_called'])} | {int(p['n_tp'])} | {int(p['n_fp'])} | "
              f"{p['fdr']:.3f} | {p['sensitivity']:.3f} | | |")


if __name__ == "__main__":
    main()
