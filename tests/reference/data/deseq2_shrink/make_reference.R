#!/usr/bin/env Rscript
## R lfcShrink references (DESeq2 1.38.3) on the real-data cases of ../deseq2_real, for
## tests/de/test_deseq2_shrink.py.
##
## Usage, from this folder:  R_LIBS=<lib with apeglm> Rscript make_reference.R <case> [...]
##   case: marioni | marioni_2v2 | marioni_2v3 | marioni_3v3_run | tagseq_2v2
## apeglm is not packaged for Debian; the files here were made with apeglm 1.27.0 (github azhu513/apeglm
## 0abaccb, emdbook import dropped: it only serves the beta-binomial) built against RcppNumerical 0.4-0
## (github yixuan/RcppNumerical ec5a9ec, Dec 2019, the L-BFGS that made the PyDESeq2 apeglm fixtures in
## ../deseq2_ref: this build reproduces ../deseq2_ref/single_factor/r_test_lfc_shrink_res.csv, checked below).
##
## marioni_2v2_apeglm_rcppnumerical_0.7-0.csv.gz is marioni_2v2_apeglm.csv.gz made by this script with apeglm
## built against RcppNumerical 0.7-0 (github yixuan/RcppNumerical f8d0e99, Feb 2026, LBFGS++ 0.4.0), whose
## L-BFGS stops elsewhere (lfc_shrink(rcppnumerical = "0.7-0")).
##
## Input: ../deseq2_real/<dataset>/counts.csv.gz and ../deseq2_real/<case>/metadata.csv (or the dataset's).
## Output, <case>_*.csv[.gz] here (17 significant digits, NA for missing):
##   <case>_mle.csv.gz          gene, the MLE coefficients (log2, mcols(dds) names), dispersion, dispFit
##   <case>_prior.csv           name, value: betaPriorVar_<coef> (normal), apeglm prior.var and prior.scale
##                              (apeAdapt = TRUE; natural-log scale)
##   <case>_apeglm.csv.gz       lfcShrink(dds, coef = "condition_B_vs_A", type = "apeglm", svalue = TRUE):
##                              gene, log2FoldChange, lfcSE, svalue
##   <case>_apeglm_no_adapt.csv.gz   the same with apeAdapt = FALSE (only where it differs)
##   tagseq_shrink_normal.csv.gz  gene, log2FoldChange, lfcSE of ../../../../shared/deseq2_real/tagseq/r_shrink_normal.csv
##                              (lfcShrink(type = "normal") on the full tagseq table; copied, not made here)
## (normal shrinkage outputs: ../deseq2_real/<case>/r_shrink_normal.csv.gz)
args <- commandArgs(trailingOnly = TRUE)
options(digits = 17, warn = 1)
suppressPackageStartupMessages({library(DESeq2); library(apeglm)})
cat("apeglm", as.character(packageVersion("apeglm")), "RcppNumerical", as.character(packageVersion("RcppNumerical")), "\n")
fmt <- function(x) { y <- sprintf("%.17g", x); y[is.na(x)] <- "NA"; y }
write_df <- function(df, name, gz = TRUE) {
  df[-1] <- lapply(df[-1], function(c) if (is.numeric(c)) fmt(c) else c)
  if (gz) {
    con <- gzfile(name, "w"); write.csv(df, con, row.names = FALSE, quote = FALSE); close(con)
  } else write.csv(df, name, row.names = FALSE, quote = FALSE)
  cat("wrote", name, "\n")
}
## the build check: PyDESeq2's synthetic single-factor fixture
ref <- "../deseq2_ref"
cts <- as.matrix(read.csv(file.path(ref, "synthetic/test_counts.csv"), row.names = 1))
meta <- read.csv(file.path(ref, "synthetic/test_metadata.csv"), row.names = 1)
meta$condition <- factor(meta$condition)
dds <- DESeq(DESeqDataSetFromMatrix(cts, meta, ~condition), quiet = TRUE)
s <- lfcShrink(dds, coef = "condition_B_vs_A", type = "apeglm", quiet = TRUE)
fx <- read.csv(file.path(ref, "single_factor/r_test_lfc_shrink_res.csv"), row.names = 1)
err <- max(abs(s$log2FoldChange - fx$log2FoldChange) / abs(fx$log2FoldChange))
cat("build check vs deseq2_ref/single_factor apeglm: max rel. error", err, "\n")
stopifnot(err < 1e-8)

CASES <- list(marioni = list(ds = "marioni", design = ~condition),
              marioni_2v2 = list(ds = "marioni", design = ~condition),
              marioni_2v3 = list(ds = "marioni", design = ~condition),
              marioni_3v3_run = list(ds = "marioni", design = ~run + condition),
              tagseq_2v2 = list(ds = "tagseq", design = ~condition))
for (case in args) {
  cs <- CASES[[case]]
  real <- "../deseq2_real"
  counts <- as.matrix(read.csv(gzfile(file.path(real, cs$ds, "counts.csv.gz")), row.names = 1, check.names = FALSE))
  mpath <- file.path(real, case, "metadata.csv")
  if (!file.exists(mpath)) mpath <- file.path(real, cs$ds, "metadata.csv")
  coldata <- read.csv(mpath, row.names = 1, stringsAsFactors = FALSE)
  counts <- counts[, rownames(coldata), drop = FALSE]
  coldata$condition <- factor(coldata$condition, levels = c("A", "B"))
  if ("run" %in% colnames(coldata)) coldata$run <- factor(coldata$run)
  dds <- DESeq(DESeqDataSetFromMatrix(counts, coldata, cs$design), quiet = TRUE)
  rn <- resultsNames(dds)
  mc <- mcols(dds)
  mle <- data.frame(gene = rownames(dds), stringsAsFactors = FALSE)
  for (n in rn) mle[[n]] <- mc[[n]]
  mle$dispersion <- mc$dispersion
  mle$dispFit <- mc$dispFit
  write_df(mle, paste0(case, "_mle.csv.gz"))
  nrm <- lfcShrink(dds, coef = "condition_B_vs_A", type = "normal", quiet = TRUE)
  bpv <- priorInfo(nrm)$betaPriorVar
  ape <- lfcShrink(dds, coef = "condition_B_vs_A", type = "apeglm", svalue = TRUE, quiet = TRUE)
  pc <- priorInfo(ape)$prior.control
  prior <- data.frame(name = c(paste0("betaPriorVar_", rn), "apeglm_prior_var", "apeglm_prior_scale"),
                      value = c(as.numeric(bpv), pc$prior.var, pc$prior.scale), stringsAsFactors = FALSE)
  write_df(prior, paste0(case, "_prior.csv"), gz = FALSE)
  out <- data.frame(gene = rownames(ape), log2FoldChange = ape$log2FoldChange, lfcSE = ape$lfcSE,
                    svalue = ape$svalue, stringsAsFactors = FALSE)
  write_df(out, paste0(case, "_apeglm.csv.gz"))
  ape0 <- lfcShrink(dds, coef = "condition_B_vs_A", type = "apeglm", svalue = TRUE, apeAdapt = FALSE, quiet = TRUE)
  out0 <- data.frame(gene = rownames(ape0), log2FoldChange = ape0$log2FoldChange, lfcSE = ape0$lfcSE,
                     svalue = ape0$svalue, stringsAsFactors = FALSE)
  ## apeAdapt = FALSE uses scale 1 on every non-intercept coefficient: with one such coefficient and an
  ## adapted scale of 1 (prior.var >= 1) the tables are the same, and only <case>_apeglm.csv.gz is kept
  if (identical(out, out0)) cat(case, ": apeAdapt = FALSE gives the same table, not written\n") else
    write_df(out0, paste0(case, "_apeglm_no_adapt.csv.gz"))
}
## threshold block: marioni_2v2 with lfcThreshold = 1 (marioni_2v2_lfc_threshold_1.csv.gz)
if ("marioni_2v2" %in% args) {
  real <- "../deseq2_real"
  counts <- as.matrix(read.csv(gzfile(file.path(real, "marioni", "counts.csv.gz")), row.names = 1, check.names = FALSE))
  coldata <- read.csv(file.path(real, "marioni_2v2", "metadata.csv"), row.names = 1, stringsAsFactors = FALSE)
  counts <- counts[, rownames(coldata)]
  coldata$condition <- factor(coldata$condition, levels = c("A", "B"))
  dds <- DESeq(DESeqDataSetFromMatrix(counts, coldata, ~condition), quiet = TRUE)
  n <- lfcShrink(dds, coef = "condition_B_vs_A", type = "normal", lfcThreshold = 1, quiet = TRUE)
  a <- lfcShrink(dds, coef = "condition_B_vs_A", type = "apeglm", lfcThreshold = 1, quiet = TRUE)
  df <- data.frame(gene = rownames(n), normal_log2FoldChange = n$log2FoldChange, normal_lfcSE = n$lfcSE,
                   normal_stat = n$stat, normal_pvalue = n$pvalue, normal_padj = n$padj,
                   apeglm_log2FoldChange = a$log2FoldChange, apeglm_lfcSE = a$lfcSE, apeglm_svalue = a$svalue,
                   stringsAsFactors = FALSE)
  write_df(df, "marioni_2v2_lfc_threshold_1.csv.gz")
}
