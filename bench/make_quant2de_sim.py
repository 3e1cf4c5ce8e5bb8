"""A second quant2de simulation (another design seed) through real salmon, for bench/quant_de_accuracy.py.

Not a test. Runs ``../shared/quant2de_ref/make_samples.py --design-seed SEED`` (same transcriptome as
quant2de_ref, a fresh draw of biological noise, DE genes, DTU genes, library sizes and reads), then
salmon 1.10.1 exactly as ``run_salmon.sh`` does (``salmon index -k 31``; ``salmon quant -l A
--validateMappings --numBootstraps 20``), and keeps only what tximport reads (``quant.sf``,
``cmd_info.json``, ``aux_info/meta_info.json``, ``aux_info/bootstrap/``) plus the truth tables. Reads,
index and eq classes stay in a temporary folder that is deleted. About 1-2 minutes on 2 cores.

Run:  .venv/bin/python bench/make_quant2de_sim.py --design-seed 11 --out /tmp/quant2de_sim11
Then: .venv/bin/python bench/quant_de_accuracy.py --ref /tmp/quant2de_sim11
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIMULATOR = [ROOT.parent / "shared" / "quant2de_ref" / "make_samples.py",
             Path("/work/shared/quant2de_ref/make_samples.py")]
SAMPLES = ["A1", "A2", "B1", "B2"]
KEEP = ["quant.sf", "cmd_info.json", "aux_info/meta_info.json", "aux_info/bootstrap/bootstraps.gz",
        "aux_info/bootstrap/names.tsv.gz"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design-seed", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bootstraps", type=int, default=20)
    args = ap.parse_args(argv)
    sim = next((p for p in SIMULATOR if p.exists()), None)
    if sim is None:
        sys.exit("make_quant2de_sim: ../shared/quant2de_ref/make_samples.py not found")
    if shutil.which("salmon") is None:
        sys.exit("make_quant2de_sim: salmon is not on PATH (apt-get install salmon)")
    out = args.out
    (out / "truth").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quant2de_sim_") as work:
        w = Path(work)
        subprocess.run([sys.executable, str(sim), "--work-dir", str(w), "--truth-dir", str(out / "truth"),
                        "--design-seed", str(args.design_seed)], check=True)
        subprocess.run(["salmon", "index", "-t", str(w / "transcripts.fa.gz"), "-i", str(w / "idx"), "-k", "31",
                        "-p", str(args.threads)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for s in SAMPLES:
            q = w / "quant" / s
            subprocess.run(["salmon", "quant", "-i", str(w / "idx"), "-l", "A", "-1", str(w / f"{s}_1.fq.gz"),
                            "-2", str(w / f"{s}_2.fq.gz"), "-p", str(args.threads), "--validateMappings",
                            "--numBootstraps", str(args.bootstraps), "-o", str(q)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for rel in KEEP:
                dst = out / "salmon" / s / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(q / rel, dst)
            print(f"make_quant2de_sim: {s} quantified", flush=True)
    print(f"make_quant2de_sim: wrote {out}")


if __name__ == "__main__":
    main()
