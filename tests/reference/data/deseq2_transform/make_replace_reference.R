#!/usr/bin/env Rscript
## R DESeq2 1.38.3: transformations after DESeq()'s outlier replacement (refitWithoutOutliers), where R keeps the
## original counts in counts(dds) but baseMean / allZero / dispFit come from the replaced counts.
## Input: ../deseq2_ref/synthetic/test_counts.csv (PyDESeq2's synthetic set, 10 genes x 100 samples, 50 A / 50 B),
## with counts["gene1", "sample1"] <- 2000 and counts["gene7", "sample11"] <- 1000 (as PyDESeq2's outlier test);
## design ~ condition (50 replicates per cell >= minReplicatesForReplace = 7: outliers are replaced and refitted).
## Usage (from this folder): Rscript make_replace_reference.R
## Output (17 significant digits): replace_mcols.csv (gene, baseMean, allZero, dispFit, replace),
##   replace_normalized.csv.gz, replace_vsd.csv.gz (varianceStabilizingTransformation(dds, blind = FALSE)),
##   replace_rlog.csv.gz (rlog(dds, blind = FALSE)), replace_rlog_blind.csv.gz, replace_summary.csv (fitType, betaPriorVar)
options(digits = 17, warn = 1)
suppressPackageStartupMessages(library(DESeq2))
fmt <- function(x) { y <- sprintf("%.17g", x); y[is.na(x)] <- "NA"; y }
counts <- as.matrix(read.csv("../deseq2_ref/synthetic/test_counts.csv", row.names = 1, check.names = FALSE))
meta <- read.csv("../deseq2_ref/synthetic/test_metadata.csv", row.names = 1, stringsAsFactors = TRUE)
counts["gene1", "sample1"] <- 2000L
counts["gene7", "sample11"] <- 1000L
dds <- DESeq(DESeqDataSetFromMatrix(counts, meta, ~condition), quiet = TRUE)
stopifnot(any(mcols(dds)$replace))
mat <- function(m, name) {
  df <- data.frame(gene = rownames(m), check.names = FALSE)
  for (j in colnames(m)) df[[j]] <- fmt(m[, j])
  write.csv(df, name, row.names = FALSE, quote = FALSE)
  system2("gzip", c("-n", "-9", "-f", name))
}
mc <- mcols(dds)
write.csv(data.frame(gene = rownames(dds), baseMean = fmt(mc$baseMean), allZero = mc$allZero, dispFit = fmt(mc$dispFit),
                     replace = mc$replace), "replace_mcols.csv", row.names = FALSE, quote = FALSE)
mat(counts(dds, normalized = TRUE), "replace_normalized.csv")
mat(assay(varianceStabilizingTransformation(dds, blind = FALSE)), "replace_vsd.csv")
r1 <- rlog(dds, blind = FALSE)
mat(assay(r1), "replace_rlog.csv")
r2 <- rlog(dds, blind = TRUE)
mat(assay(r2), "replace_rlog_blind.csv")
write.csv(data.frame(fitType = attr(dispersionFunction(dds), "fitType"), betaPriorVar_rlog = fmt(attr(r1, "betaPriorVar")),
                     betaPriorVar_rlog_blind = fmt(attr(r2, "betaPriorVar"))), "replace_summary.csv", row.names = FALSE,
          quote = FALSE)
print(mc[mc$replace, c("baseMean", "dispFit")])
cat("done\n")
