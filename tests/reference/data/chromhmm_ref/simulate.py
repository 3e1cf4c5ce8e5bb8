"""Simulate the binarized input of chromhmm_ref (see README.md); run in this folder, then gzip the state files."""
import numpy as np, gzip, os
rng = np.random.default_rng(13)
K, marks = 3, ["H3K4me3", "H3K27ac", "H3K36me3", "H3K27me3"]
B = np.array([[0.90, 0.80, 0.05, 0.02],   # active promoter
              [0.03, 0.05, 0.85, 0.04],   # transcribed
              [0.02, 0.02, 0.03, 0.70]])  # polycomb
A = np.array([[0.95, 0.03, 0.02], [0.02, 0.96, 0.02], [0.02, 0.02, 0.96]])
pi = np.array([0.3, 0.3, 0.4])
os.makedirs("binary", exist_ok=True)
for chrom, T in (("chr1", 2500), ("chr2", 2000)):
    z = np.empty(T, int); z[0] = rng.choice(K, p=pi)
    for t in range(1, T): z[t] = rng.choice(K, p=A[z[t-1]])
    x = (rng.random((T, len(marks))) < B[z]).astype(int)
    if chrom == "chr2": x[100:110, 1] = 2   # a few missing calls
    lines = ["sim\t" + chrom, "\t".join(marks)] + ["\t".join(map(str, r)) for r in x]
    with gzip.open(f"binary/sim_{chrom}_binary.txt.gz", "wt") as fh: fh.write("\n".join(lines) + "\n")
    np.savetxt(f"sim_{chrom}_states.txt", z, fmt="%d")
