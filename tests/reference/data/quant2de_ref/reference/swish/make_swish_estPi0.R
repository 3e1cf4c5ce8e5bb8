## fishpond 2.4.1 swish(estPi0 = TRUE) at transcript level on shared/quant2de_ref (as make_reference.R, set.seed(1)):
## writes swish_tx_estPi0.csv (kept transcripts only); qvalue::pi0est gives pi0 = 0.6696733.
suppressPackageStartupMessages({library(tximport); library(fishpond); library(SummarizedExperiment)})
b <- "/work/main/tests/reference/data/quant2de_ref"
s <- c("A1","A2","B1","B2")
## tximport needs uncompressed quant.sf: use the shared fixture
files <- file.path("/work/shared/quant2de_ref/salmon", s, "quant.sf"); names(files) <- s
txi <- tximport(files, type="salmon", txOut=TRUE)
nb <- ncol(txi$infReps[[1]])
reps <- lapply(seq_len(nb), function(k) { m <- sapply(txi$infReps, function(x) x[, k]); dimnames(m) <- dimnames(txi$counts); m })
names(reps) <- paste0("infRep", seq_len(nb))
y <- SummarizedExperiment(assays=c(list(counts=txi$counts, length=txi$length), reps), colData=data.frame(condition=factor(c("A","A","B","B")), row.names=s))
y <- labelKeep(scaleInfReps(y)); y <- y[mcols(y)$keep, ]
set.seed(1); y <- swish(y, x="condition", estPi0=TRUE)
m <- mcols(y)
write.csv(data.frame(transcript=rownames(y), stat=sprintf("%.17g", m$stat), pvalue=sprintf("%.17g", m$pvalue), locfdr=sprintf("%.17g", m$locfdr), qvalue=sprintf("%.17g", m$qvalue)), "swish_tx_estPi0.csv", row.names=FALSE, quote=FALSE)
cat(qvalue::pi0est(m$pvalue)$pi0, "\n")
