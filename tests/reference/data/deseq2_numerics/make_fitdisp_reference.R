# DESeq2 1.38.3 / R 4.2.2: gene-wise dispersion internals on marioni genes whose answer R's rounding
# decides, and size factors of a random table, for tests/de/test_deseq2_numerics.py.
# Usage: Rscript make_fitdisp_reference.R /work/shared/deseq2_real/marioni
suppressMessages(library(DESeq2))
args <- commandArgs(TRUE)
D <- if (length(args)) args[1] else "/work/shared/deseq2_real/marioni"
cts <- as.matrix(read.csv(file.path(D, "counts.csv"), row.names = 1, check.names = FALSE))
meta <- read.csv(file.path(D, "metadata.csv"), row.names = 1, stringsAsFactors = TRUE)
cts <- cts[, rownames(meta)]
dds <- DESeqDataSetFromMatrix(cts, meta, ~condition)
dds <- estimateSizeFactors(dds)
obj <- DESeq2:::getBaseMeansAndVariances(dds)
mm <- model.matrix(~condition, meta)
# ENSG00000189229: fitDisp stops after 2 iterations (a rejected first step), so R keeps alpha_init;
# the others: no convergence in 100 iterations, then fitDispGrid on a flat likelihood near 1e-8
genes <- c("ENSG00000189229", "ENSG00000177133", "ENSG00000116815", "ENSG00000198821")
norm <- counts(obj, normalized = TRUE)[genes, , drop = FALSE]
rough <- DESeq2:::roughDispEstimate(norm, mm)
mom <- DESeq2:::momentsDispEstimate(obj[genes, ])
init <- pmin(pmax(1e-8, pmin(rough, mom)), 10)
mu <- DESeq2:::linearModelMuNormalized(obj[genes, ], mm)
mu[mu < 0.5] <- 0.5
fd <- DESeq2:::fitDisp(ySEXP = counts(obj)[genes, , drop = FALSE], xSEXP = mm, mu_hatSEXP = mu,
  log_alphaSEXP = log(init), log_alpha_prior_meanSEXP = log(init), log_alpha_prior_sigmasqSEXP = 1,
  min_log_alphaSEXP = log(1e-9), kappa_0SEXP = 1, tolSEXP = 1e-6, maxitSEXP = 100, usePriorSEXP = FALSE,
  weightsSEXP = matrix(1, length(genes), ncol(cts)), useWeightsSEXP = FALSE, weightThresholdSEXP = 0.01,
  useCRSEXP = TRUE)
grid <- DESeq2:::fitDispGridWrapper(y = counts(obj)[genes, , drop = FALSE], x = mm, mu = mu,
  logAlphaPriorMean = rep(0, length(genes)), logAlphaPriorSigmaSq = 1, usePrior = FALSE,
  weightsSEXP = matrix(1, length(genes), ncol(cts)), useWeightsSEXP = FALSE, weightThresholdSEXP = 0.01,
  useCRSEXP = TRUE)
f17 <- function(v) sprintf("%.17g", v)
out <- data.frame(gene = genes, init = f17(init), log_alpha = f17(fd$log_alpha), iter = fd$iter,
                  initial_lp = f17(fd$initial_lp), last_lp = f17(fd$last_lp), grid = f17(grid))
for (j in seq_len(ncol(cts))) out[[paste0("k", j)]] <- counts(obj)[genes, j]
for (j in seq_len(ncol(cts))) out[[paste0("mu", j)]] <- f17(mu[, j])
write.csv(out, "fitdisp_reference.csv", row.names = FALSE, quote = FALSE)
write.csv(data.frame(sample = colnames(cts), condition = meta$condition, sizeFactor = f17(sizeFactors(dds))),
          "fitdisp_design.csv", row.names = FALSE, quote = FALSE)
# size factors (estimateSizeFactorsForMatrix, ratio and poscounts) of a random table
set.seed(3)
m <- matrix(rnbinom(300 * 7, mu = rep(exp(rnorm(300, 4, 2)), 7) * rep(exp(rnorm(7, 0, 0.4)), each = 300), size = 4), 300, 7)
m[1:20, 2] <- 0
write.csv(m, "sizefactor_counts.csv", row.names = FALSE, quote = FALSE)
write.csv(data.frame(ratio = f17(estimateSizeFactorsForMatrix(m)),
                     poscounts = f17(sizeFactors(estimateSizeFactors(DESeqDataSetFromMatrix(m, data.frame(s = factor(1:7)), ~1), type = "poscounts")))),
          "sizefactor_reference.csv", row.names = FALSE, quote = FALSE)
