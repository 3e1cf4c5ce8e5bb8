# R DESeq2 with a gene x sample normalizationFactors matrix (the tximport route), on marioni's first
# 1500 genes, 3 vs 3 (R1 kidney vs R1 liver).
# Rscript make_reference.R /work/shared/deseq2_real/marioni  (writes into the current folder)
suppressPackageStartupMessages(library(DESeq2))
args <- commandArgs(trailingOnly = TRUE)
src <- args[1]
counts <- as.matrix(read.csv(file.path(src, "counts.csv"), row.names = 1, check.names = FALSE))
meta <- read.csv(file.path(src, "metadata.csv"), row.names = 1, stringsAsFactors = TRUE)
keep <- c("R1L1Kidney", "R1L3Kidney", "R1L7Kidney", "R1L2Liver", "R1L4Liver", "R1L6Liver")
counts <- counts[1:1500, keep]
meta <- droplevels(meta[keep, , drop = FALSE])
set.seed(1)
# normalisation factors as tximport gives them: per-gene length effects times library size, geometric mean 1 per gene
len <- matrix(exp(rnorm(length(counts), 0, 0.3)), nrow(counts))
lib <- colSums(counts) / exp(mean(log(colSums(counts))))
nf <- t(t(len) * lib)
nf <- nf / exp(rowMeans(log(nf)))
dimnames(nf) <- dimnames(counts)
write.csv(counts, "counts.csv", quote = FALSE)
write.csv(meta, "metadata.csv", quote = FALSE)
write.csv(format(nf, digits = 17), "normalization_factors.csv", quote = FALSE)
dds <- DESeqDataSetFromMatrix(counts, meta, ~condition)
normalizationFactors(dds) <- nf
dds <- DESeq(dds, quiet = TRUE)
res <- results(dds, contrast = c("condition", "B", "A"))
out <- data.frame(gene = rownames(res), as.data.frame(res))
write.csv(format(out, digits = 17), "r_results.csv", quote = FALSE, row.names = FALSE, na = "NA")
d <- mcols(dds)
disp <- data.frame(gene = rownames(dds), baseMean = d$baseMean, dispGeneEst = d$dispGeneEst, dispFit = d$dispFit,
                   dispMAP = d$dispMAP, dispersion = d$dispersion)
write.csv(format(disp, digits = 17), "r_dispersions.csv", quote = FALSE, row.names = FALSE, na = "NA")
writeLines(c(paste("fitType:", attr(dispersionFunction(dds), "fitType")),
             paste("dispPriorVar:", format(attr(dispersionFunction(dds), "dispPriorVar"), digits = 17)),
             paste(R.version.string), paste("DESeq2", packageVersion("DESeq2"))), "r_info.txt")
