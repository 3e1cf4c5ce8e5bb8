## R's simulated histograms in DESeq2:::estimateDispersionsPriorVar (DESeq2 1.38.3, R 4.2.2), the branch
## for 1 <= m - p <= 3 residual degrees of freedom. The function calls set.seed(2) itself and then, for
## each x of seq(0, 8, length = 200), draws
##     randDist <- log(rchisq(10000, df = m - p)) + rnorm(10000, 0, sqrt(x)) - log(m - p)
## keeps the draws strictly inside (-10, 10) and takes hist(randDist, breaks = -20:20/2)$counts.
## Those counts are therefore constants of R's RNG (Mersenne-Twister, Inversion, Rejection sampling),
## one 200 x 40 table per df. This script writes them for df = 1, 2, 3, plus the number of draws kept
## (hist's density is counts / (n_kept * 0.5)), into deseq2_prior_var_sim.npz's source CSVs, then
## Python packs them (see the end of this file).
##
##   cd diffbio_prob/data && Rscript make_deseq2_prior_var_sim.R
##
## writes deseq2_prior_var_sim_df{1,2,3}.csv (temporary; the npz is made from them by the python
## snippet below and the CSVs removed).
stopifnot(getRversion() >= "3.6.0")  # sample.kind "Rejection" default; rchisq/rnorm unchanged since
brks <- -20:20 / 2
obsVarGrid <- seq(from = 0, to = 8, length = 200)
for (df in 1:3) {
  set.seed(2)  # as DESeq2 does, inside the function
  counts <- matrix(NA_integer_, length(obsVarGrid), length(brks) - 1)
  kept <- integer(length(obsVarGrid))
  for (i in seq_along(obsVarGrid)) {
    x <- obsVarGrid[i]
    randDist <- log(rchisq(10000, df = df)) + rnorm(10000, 0, sqrt(x)) - log(df)
    randDist <- randDist[randDist > min(brks) & randDist < max(brks)]
    h <- hist(randDist, breaks = brks, plot = FALSE)
    stopifnot(sum(h$counts) == length(randDist),
              isTRUE(all.equal(h$density, h$counts / (length(randDist) * 0.5), tolerance = 0)))
    counts[i, ] <- h$counts
    kept[i] <- length(randDist)
  }
  out <- data.frame(kept = kept, counts)
  write.csv(out, sprintf("deseq2_prior_var_sim_df%d.csv", df), row.names = FALSE)
}
cat(R.version.string, "\n")
## Packing (run from the repo root after the R part):
##   .venv/bin/python - <<'PY'
##   import numpy as np, pandas as pd, os
##   t = [pd.read_csv(f"diffbio_prob/data/deseq2_prior_var_sim_df{d}.csv") for d in (1, 2, 3)]
##   np.savez_compressed("diffbio_prob/data/deseq2_prior_var_sim.npz",
##       counts=np.stack([x.iloc[:, 1:].to_numpy() for x in t]).astype(np.int16),
##       n_kept=np.stack([x["kept"].to_numpy() for x in t]).astype(np.int16),
##       df=np.array([1, 2, 3], dtype=np.int8))
##   [os.remove(f"diffbio_prob/data/deseq2_prior_var_sim_df{d}.csv") for d in (1, 2, 3)]
##   PY
