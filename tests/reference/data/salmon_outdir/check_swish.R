suppressPackageStartupMessages({library(tximport); library(fishpond); library(SummarizedExperiment)})
args <- commandArgs(TRUE); root <- args[1]
samples <- c("A1", "A2", "B1", "B2")
files <- file.path(root, samples, "quant.sf"); names(files) <- samples
txi <- tximport(files, type = "salmon", txOut = TRUE, dropInfReps = FALSE)
cat("infReps samples:", names(txi$infReps), "\n")
cat("dim infReps$A1:", dim(txi$infReps$A1), "\n")
cat("colSums infReps$A1 (first 3):", format(colSums(txi$infReps$A1)[1:3], digits = 12), "\n")
cat("dim counts:", dim(txi$counts), " countsFromAbundance:", txi$countsFromAbundance, "\n")
cat("max |rowMeans(infReps$A1) - counts[,A1]|:", max(abs(rowMeans(txi$infReps$A1) - txi$counts[, "A1"])), "\n")
coldata <- data.frame(condition = factor(c("A", "A", "B", "B")), row.names = samples)
reps_by_replicate <- function(infReps, dn) {
  nb <- ncol(infReps[[1]])
  out <- lapply(seq_len(nb), function(k) { m <- sapply(infReps, function(x) x[, k]); dimnames(m) <- dn; m })
  names(out) <- paste0("infRep", seq_len(nb)); out
}
y <- SummarizedExperiment(
  assays = c(list(counts = txi$counts, abundance = txi$abundance, length = txi$length),
             reps_by_replicate(txi$infReps, dimnames(txi$counts))), colData = coldata)
y <- scaleInfReps(y, saveMeanScaled = TRUE)
y <- labelKeep(y)
cat("labelKeep kept:", sum(mcols(y)$keep), "of", nrow(y), "\n")
y <- y[mcols(y)$keep, ]
set.seed(1)
y <- swish(y, x = "condition")
cat("swish: qvalue < 0.1:", sum(mcols(y)$qvalue < 0.1, na.rm = TRUE), "; pvalue distinct values:",
    length(unique(mcols(y)$pvalue)), "\n")
print(summary(as.data.frame(mcols(y)[, c("stat", "log2FC", "pvalue", "qvalue")])))
ref <- read.csv(file.path(args[2], "reference", "swish", "swish_tx.csv"))
truth <- read.csv(file.path(args[2], "truth", "truth_transcripts.csv"))
m <- match(rownames(y), ref$transcript)
cat("overlap of kept sets with salmon-bootstrap swish:", sum(ref$keep[m]), "of", nrow(y), "(salmon kept", sum(ref$keep), ")\n")
cat("cor(stat, salmon stat) on common kept:", cor(mcols(y)$stat, ref$stat[m], use = "complete.obs"), "\n")
called <- rownames(y)[which(mcols(y)$qvalue < 0.1)]
ch <- truth$Changed[match(called, truth$Name)]
cat("called:", length(called), " true (Changed):", sum(ch == "True" | ch == TRUE), "\n")
