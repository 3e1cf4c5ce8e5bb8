## fishpond 2.4.1 swish on the small synthetic data of tests/de/test_swish.py::synth (n = 6 and 8 samples):
## the inputs counts<n>.csv, length<n>.csv, reps<n>.csv are written by that function (reps: features x (sample, replicate), row-major).
## Covers getPerms with sample(720, 50) (n = 6) and replicate(50, sample(8)) (n = 8) after set.seed(3).
suppressPackageStartupMessages({library(fishpond); library(SummarizedExperiment)})
for (n in c(6, 8)) {
  cts <- as.matrix(read.csv(sprintf("counts%d.csv", n), header=FALSE)); len <- as.matrix(read.csv(sprintf("length%d.csv", n), header=FALSE))
  r <- as.matrix(read.csv(sprintf("reps%d.csv", n), header=FALSE)); nr <- ncol(r)/n
  dimnames(cts) <- dimnames(len) <- list(paste0("f", 1:nrow(cts)), paste0("s", 1:n))
  reps <- lapply(1:nr, function(k) { m <- r[, (0:(n-1))*nr + k, drop=FALSE]; dimnames(m) <- dimnames(cts); m })
  names(reps) <- paste0("infRep", 1:nr)
  cd <- data.frame(condition = factor(rep(c("ctl","trt"), each=n/2)), row.names=colnames(cts))
  y <- SummarizedExperiment(assays=c(list(counts=cts, length=len), reps), colData=cd)
  y <- scaleInfReps(y); y <- labelKeep(y); set.seed(3); y <- swish(y, x="condition", nperms=50)
  m <- mcols(y)
  out <- data.frame(feature=rownames(y), keep=m$keep, log10mean=sprintf("%.17g", m$log10mean), stat=sprintf("%.17g", m$stat), log2FC=sprintf("%.17g", m$log2FC), pvalue=sprintf("%.17g", m$pvalue), qvalue=sprintf("%.17g", m$qvalue), locfdr=sprintf("%.17g", m$locfdr))
  write.csv(out, sprintf("swish_synth%d.csv", n), row.names=FALSE, quote=FALSE)
}
