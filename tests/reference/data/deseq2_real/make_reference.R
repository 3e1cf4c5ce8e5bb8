#!/usr/bin/env Rscript
## R DESeq2 reference outputs on REAL count tables, for the full tables and for small designs
## cut from them (1-3 residual degrees of freedom). Adapted from ../shared/deseq2_real/make_reference.R.
##
## Usage (one Rscript run per case, from this folder or with [root] = this folder):
##   Rscript make_reference.R <case> [root]
##   case: marioni | marioni_2v2 | marioni_2v3 | marioni_3v3_run | marioni_1v2 | tagseq | tagseq_2v2
##
## Input: <root>/<dataset>/counts.csv.gz and metadata.csv (dataset = marioni | tagseq), copies of the
## shared tables (genes x samples, first column "gene"; metadata: sample, condition A/B[, run]).
## A case keeps ALL genes of its dataset (all-zero ones included) and the samples listed below.
##
## Output, <root>/<case>/ (17 significant digits, "NA" for missing; files over 100 KB gzipped, -n -9):
##   metadata.csv                 the case's samples (the counts are <dataset>/counts.csv.gz, those columns)
##   r_results.csv                DESeq(dds); results(dds, contrast = c("condition","B","A"))
##   r_results_no_independent_filtering.csv   gene, padj only (all other columns equal r_results.csv; checked)
##   r_results_lrt.csv            DESeq(dds, test = "LRT", reduced = ~1 [~run for *_run]); results():
##                                gene, stat, pvalue, padj (baseMean, log2FoldChange, lfcSE equal r_results.csv; checked)
##   r_size_factors.csv, r_dispersions.csv, r_dispersion_function.csv
##   r_shrink_normal.csv          lfcShrink(dds, coef = "condition_B_vs_A", type = "normal"):
##                                gene, log2FoldChange, lfcSE (other columns equal r_results.csv; checked)
##   r_vst_blind.csv, r_vst.csv   assay(vst(dds, blind = TRUE)), assay(vst(dds, blind = FALSE))
##   r_rlog_blind.csv             assay(rlog(dds, blind = TRUE))
##   r_normalized_counts.csv      counts(dds, normalized = TRUE)
##   *_fit_local / *_fit_mean     (cases in FIT_VARIANTS) DESeq(dds, fitType = ...): results, dispersions,
##                                dispersion function and assay(vst(dds, blind = FALSE, fitType = ...));
##                                results and dispersions are not written when the parametric run fell back
##                                to that fitType (they equal r_results.csv / r_dispersions.csv; checked)
## To keep the repo small: tagseq (full table) has no shrinkage/transform files (tagseq_2v2 has them), and
## tagseq_2v2 no rlog / normalized counts (the marioni cases have them).
##   r_prior_var_seeds[_fit_*].csv (1 <= m - p <= 3) R's estimateDispersionsPriorVar simulation re-run on the
##                                same residuals with set.seed(1..20): the spread of R's own estimate
##   r_prior_var_kl[_fit_*].csv, r_prior_var_loess[_fit_*].csv  (same cases) R's KL scores on the 200-point
##                                grid and loess(span = 0.2)'s fitted values on the 1000-point grid (seed 2)
##   r_prior_var_sim_counts_df<m-p>.csv  R's simulated histogram counts (seed 2), one row per grid point:
##                                they depend on m - p only (the same in every case with that m - p)
##   r_na_summary.csv, r_log.txt (R's messages), r_sessionInfo.txt
## marioni also: the ~ run + condition design (r_results_run.csv, r_results_run_lrt.csv vs ~run,
## r_dispersions_run.csv, r_dispersion_function_run.csv), as in the shared folder (LRT file: stat, pvalue, padj).

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1) stop("usage: Rscript make_reference.R <case> [root]")
case <- args[1]
root <- if (length(args) >= 2) args[2] else "."

CASES <- list(
  marioni = list(ds = "marioni", samples = NULL, design = ~condition, reduced = ~1),
  marioni_2v2 = list(ds = "marioni", samples = c("R1L1Kidney", "R1L3Kidney", "R1L2Liver", "R1L4Liver"),
                     design = ~condition, reduced = ~1),
  marioni_2v3 = list(ds = "marioni", samples = c("R1L1Kidney", "R1L3Kidney", "R1L2Liver", "R1L4Liver", "R1L6Liver"),
                     design = ~condition, reduced = ~1),
  marioni_3v3_run = list(ds = "marioni",
                         samples = c("R1L1Kidney", "R1L3Kidney", "R2L2Kidney", "R1L2Liver", "R1L4Liver", "R2L3Liver"),
                         design = ~run + condition, reduced = ~run),
  marioni_1v2 = list(ds = "marioni", samples = c("R1L1Kidney", "R1L2Liver", "R1L4Liver"),
                     design = ~condition, reduced = ~1, transforms = FALSE),
  tagseq = list(ds = "tagseq", samples = NULL, design = ~condition, reduced = ~1, transforms = FALSE),
  tagseq_2v2 = list(ds = "tagseq", samples = c("N1", "N2", "T1a", "T1b"), design = ~condition, reduced = ~1,
                    skip = c("rlog", "normalized_counts"))
)
FIT_VARIANTS <- c("marioni", "marioni_2v2")
if (!case %in% names(CASES)) stop("unknown case ", case, "; one of ", paste(names(CASES), collapse = ", "))
cs <- CASES[[case]]
if (is.null(cs$transforms)) cs$transforms <- TRUE
if (is.null(cs$skip)) cs$skip <- character(0)
outdir <- file.path(root, case)
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

logcon <- file(file.path(outdir, "r_log.txt"), open = "wt")
sink(logcon, split = TRUE)
sink(logcon, type = "message")

options(digits = 17, warn = 1)
suppressPackageStartupMessages(library(DESeq2))

fmt <- function(x) {
  if (is.numeric(x)) {
    y <- sprintf("%.17g", x)
    y[is.na(x)] <- "NA"
    y
  } else if (is.logical(x)) {
    y <- ifelse(x, "TRUE", "FALSE"); y[is.na(x)] <- "NA"; y
  } else as.character(x)
}
write_df <- function(df, name) {
  path <- file.path(outdir, name)
  df[] <- lapply(df, fmt)
  write.csv(df, path, row.names = FALSE, quote = FALSE)
  if (file.size(path) > 100 * 1024) {
    system2("gzip", c("-n", "-9", "-f", shQuote(path)))
    path <- paste0(path, ".gz")
  }
  cat("wrote", path, "\n")
}
res_df <- function(res, cols = c("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj")) {
  df <- data.frame(gene = rownames(res), stringsAsFactors = FALSE)
  for (col in cols) if (col %in% colnames(res)) df[[col]] <- as.numeric(res[[col]])
  df
}
mat_df <- function(m) data.frame(gene = rownames(m), m, check.names = FALSE, stringsAsFactors = FALSE)
same_cols <- function(a, b, cols) {
  for (col in cols) stopifnot(identical(as.numeric(a[[col]]), as.numeric(b[[col]])))
}

## ---------------------------------------------------------------- data
dsdir <- file.path(root, cs$ds)
counts <- as.matrix(read.csv(gzfile(file.path(dsdir, "counts.csv.gz")), row.names = 1, check.names = FALSE))
coldata <- read.csv(file.path(dsdir, "metadata.csv"), row.names = 1, stringsAsFactors = FALSE)
stopifnot(identical(colnames(counts), rownames(coldata)))
if (!is.null(cs$samples)) {
  stopifnot(all(cs$samples %in% colnames(counts)))
  counts <- counts[, cs$samples, drop = FALSE]
  coldata <- coldata[cs$samples, , drop = FALSE]
  meta_out <- data.frame(sample = rownames(coldata), coldata, check.names = FALSE, stringsAsFactors = FALSE)
  write.csv(meta_out, file.path(outdir, "metadata.csv"), row.names = FALSE, quote = FALSE)
}
coldata$condition <- factor(coldata$condition, levels = c("A", "B"))
if ("run" %in% colnames(coldata)) coldata$run <- factor(coldata$run)
cat("case:", case, "| dataset", cs$ds, "| samples", paste(colnames(counts), collapse = ","),
    "| design", deparse(cs$design), "| dims", nrow(counts), "x", ncol(counts), "\n")

## ---------------------------------------------------------------- helpers
write_dispersions <- function(dds, suffix, write_genes = TRUE) {
  mc <- mcols(dds)
  df <- data.frame(gene = rownames(dds), baseMean = mc$baseMean, allZero = mc$allZero,
                   dispGeneEst = mc$dispGeneEst, dispGeneIter = mc$dispGeneIter,
                   dispFit = mc$dispFit, dispMAP = mc$dispMAP,
                   dispersion = mc$dispersion, dispOutlier = mc$dispOutlier,
                   maxCooks = mc$maxCooks, stringsAsFactors = FALSE)
  if ("replace" %in% colnames(mc)) df$replace <- mc$replace
  if (write_genes) write_df(df, paste0("r_dispersions", suffix, ".csv"))
  dfun <- dispersionFunction(dds)
  co <- attr(dfun, "coefficients")      # NULL when DESeq2 fell back to fitType "local"
  if (is.null(co)) co <- numeric(0)
  h <- data.frame(name = c(if (length(co)) paste0("coef_", names(co)) else character(0),
                           "dispPriorVar", "varLogDispEsts", "fitType"),
                  value = c(fmt(as.numeric(co)), fmt(attr(dfun, "dispPriorVar")),
                            fmt(attr(dfun, "varLogDispEsts")),
                            if (is.null(attr(dfun, "fitType"))) "NA" else attr(dfun, "fitType")),
                  stringsAsFactors = FALSE)
  write.csv(h, file.path(outdir, paste0("r_dispersion_function", suffix, ".csv")),
            row.names = FALSE, quote = FALSE)
  cat("dispersion function", suffix, ": fitType", attr(dfun, "fitType"), "dispPriorVar",
      fmt(attr(dfun, "dispPriorVar")), "\n")
}
na_summary <- function(res, dds, label) {
  az <- mcols(dds)$allZero
  np <- is.na(res$pvalue); nq <- is.na(res$padj)
  thr <- metadata(res)$filterThreshold
  s <- data.frame(result = label, n_genes = nrow(res),
                  allZero = sum(az),
                  na_pvalue = sum(np),
                  na_pvalue_not_allZero_cooks = sum(np & !az),
                  na_padj = sum(nq),
                  na_padj_with_finite_pvalue_filtered = sum(nq & !np),
                  filterThreshold_baseMean = if (is.null(thr)) NA else as.numeric(thr),
                  filter_quantile = if (is.null(thr)) NA else as.numeric(sub("%", "", names(thr))) / 100,
                  padj_lt_0.1 = sum(res$padj < 0.1, na.rm = TRUE),
                  stringsAsFactors = FALSE)
  print(s)
  s
}
## estimateDispersionsPriorVar's simulation branch (DESeq2 1.38.3), seed as an argument; with detail = TRUE
## also the simulated histogram counts per grid point (they depend on the residual df only), the KL
## scores and loess's fitted curve on the fine grid
prior_var_sim <- function(dds, seed, detail = FALSE) {
  objectNZ <- dds[!mcols(dds)$allZero, , drop = FALSE]
  above <- mcols(objectNZ)$dispGeneEst >= 1e-8 * 100
  resid <- log(mcols(objectNZ)$dispGeneEst) - log(mcols(objectNZ)$dispFit)
  mm <- model.matrix(design(dds), colData(dds))
  df <- nrow(mm) - ncol(mm)
  set.seed(seed)
  obsDist <- resid[above]
  brks <- -20:20 / 2
  obsDist <- obsDist[obsDist > min(brks) & obsDist < max(brks)]
  obsVarGrid <- seq(from = 0, to = 8, length = 200)
  obsDistHist <- hist(obsDist, breaks = brks, plot = FALSE)
  randCounts <- matrix(NA_integer_, length(obsVarGrid), length(brks) - 1)
  klDivs <- numeric(length(obsVarGrid))
  for (i in seq_along(obsVarGrid)) {
    x <- obsVarGrid[i]
    randDist <- log(rchisq(10000, df = df)) + rnorm(10000, 0, sqrt(x)) - log(df)
    randDist <- randDist[randDist > min(brks) & randDist < max(brks)]
    randDistHist <- hist(randDist, breaks = brks, plot = FALSE)
    randCounts[i, ] <- randDistHist$counts
    z <- c(obsDistHist$density, randDistHist$density)
    small <- min(z[z > 0])
    klDivs[i] <- sum(obsDistHist$density * (log(obsDistHist$density + small) - log(randDistHist$density + small)))
  }
  lofit <- loess(klDivs ~ obsVarGrid, span = 0.2)
  fine <- seq(from = 0, to = 8, length = 1000)
  fitted <- predict(lofit, fine)
  out <- c(argminKL = fine[which.min(fitted)], dispPriorVar = max(fine[which.min(fitted)], 0.25))
  if (detail) attr(out, "detail") <- list(df = df, randCounts = randCounts, klDivs = klDivs, fine = fine,
                                          fitted = fitted, grid = obsVarGrid)
  out
}
contrast <- c("condition", "B", "A")
summ <- list()
dds0 <- DESeqDataSetFromMatrix(countData = counts, colData = coldata, design = cs$design)

## ---------------------------------------------------------------- Wald, parametric
dds <- DESeq(dds0)
res <- results(dds, contrast = contrast)
print(resultsNames(dds))
write_df(res_df(res), "r_results.csv")
write_df(data.frame(sample = colnames(dds), sizeFactor = sizeFactors(dds)), "r_size_factors.csv")
write_dispersions(dds, "")
summ[[length(summ) + 1]] <- na_summary(res, dds, "r_results.csv")
if (identical(attr(dispersionFunction(dds), "fitType"), "local"))
  cat("NOTE: case", case, ": parametric dispersion trend replaced by a local fit\n")

res_nf <- results(dds, contrast = contrast, independentFiltering = FALSE)
same_cols(res, res_nf, c("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue"))
write_df(res_df(res_nf, "padj"), "r_results_no_independent_filtering.csv")
summ[[length(summ) + 1]] <- na_summary(res_nf, dds, "r_results_no_independent_filtering.csv")

prior_var_seeds <- function(dds, suffix) {
  m <- ncol(dds); p <- ncol(model.matrix(design(dds), colData(dds)))
  if (m - p <= 3 && m > p) {
    pv <- t(sapply(1:20, function(s) c(seed = s, prior_var_sim(dds, s))))
    d2 <- prior_var_sim(dds, 2, detail = TRUE)
    stopifnot(isTRUE(all.equal(unname(d2[2]), attr(dispersionFunction(dds), "dispPriorVar"))))
    write_df(as.data.frame(pv), paste0("r_prior_var_seeds", suffix, ".csv"))
    det <- attr(d2, "detail")
    write_df(data.frame(v = det$grid, klDiv = det$klDivs), paste0("r_prior_var_kl", suffix, ".csv"))
    write_df(data.frame(v = det$fine, loess = det$fitted), paste0("r_prior_var_loess", suffix, ".csv"))
    hc <- data.frame(v = det$grid, det$randCounts)
    colnames(hc) <- c("v", paste0("bin_", format(-20:19 / 2), "_", format(-19:20 / 2)))
    colnames(hc) <- gsub(" ", "", colnames(hc))
    write_df(hc, paste0("r_prior_var_sim_counts_df", det$df, ".csv"))
    cat("residual df", m - p, suffix, ": R's dispPriorVar over seeds 1..20: min", min(pv[, 3]), "median",
        median(pv[, 3]), "max", max(pv[, 3]), "| argminKL min", min(pv[, 2]), "max", max(pv[, 2]), "\n")
  }
}
prior_var_seeds(dds, "")

## ---------------------------------------------------------------- LRT
ddsL <- DESeq(dds0, test = "LRT", reduced = cs$reduced)
resL <- results(ddsL)
same_cols(res, resL, c("baseMean", "log2FoldChange", "lfcSE"))
write_df(res_df(resL, c("stat", "pvalue", "padj")), "r_results_lrt.csv")
summ[[length(summ) + 1]] <- na_summary(resL, ddsL, "r_results_lrt.csv")

## ---------------------------------------------------------------- shrinkage and transforms
if (cs$transforms) {
  shr <- lfcShrink(dds, coef = "condition_B_vs_A", type = "normal")
  same_cols(res, shr, c("baseMean", "stat", "pvalue", "padj"))
  write_df(res_df(shr, c("log2FoldChange", "lfcSE")), "r_shrink_normal.csv")
  if (!"normalized_counts" %in% cs$skip) write_df(mat_df(counts(dds, normalized = TRUE)), "r_normalized_counts.csv")
  write_df(mat_df(assay(vst(dds, blind = TRUE))), "r_vst_blind.csv")
  write_df(mat_df(assay(vst(dds, blind = FALSE))), "r_vst.csv")
  if (!"rlog" %in% cs$skip) write_df(mat_df(assay(rlog(dds, blind = TRUE))), "r_rlog_blind.csv")
}

## ---------------------------------------------------------------- fitType local / mean
if (case %in% FIT_VARIANTS) {
  for (ft in c("local", "mean")) {
    ddsF <- DESeq(dds0, fitType = ft)
    resF <- results(ddsF, contrast = contrast)
    if (identical(attr(dispersionFunction(dds), "fitType"), ft)) {
      ## the parametric run already fell back to this fit: same numbers, not written twice
      stopifnot(identical(res_df(resF), res_df(res)),
                identical(as.data.frame(mcols(ddsF)), as.data.frame(mcols(dds))))
      cat("NOTE: fitType", ft, "gives exactly r_results.csv and r_dispersions.csv (parametric fell back to it)\n")
    } else {
      write_df(res_df(resF), paste0("r_results_fit_", ft, ".csv"))
    }
    write_dispersions(ddsF, paste0("_fit_", ft), write_genes = !identical(attr(dispersionFunction(dds), "fitType"), ft))
    prior_var_seeds(ddsF, paste0("_fit_", ft))
    write_df(mat_df(assay(vst(ddsF, blind = FALSE, fitType = ft))), paste0("r_vst_fit_", ft, ".csv"))
    summ[[length(summ) + 1]] <- na_summary(resF, ddsF, paste0("r_results_fit_", ft, ".csv"))
  }
}

## ---------------------------------------------------------------- marioni: ~ run + condition
if (case == "marioni") {
  dds0b <- DESeqDataSetFromMatrix(countData = counts, colData = coldata, design = ~run + condition)
  ddsb <- DESeq(dds0b)
  resb <- results(ddsb, contrast = contrast)
  write_df(res_df(resb), "r_results_run.csv")
  write_dispersions(ddsb, "_run")
  summ[[length(summ) + 1]] <- na_summary(resb, ddsb, "r_results_run.csv")
  ddsbL <- DESeq(dds0b, test = "LRT", reduced = ~run)
  resbL <- results(ddsbL)
  same_cols(resb, resbL, c("baseMean", "log2FoldChange", "lfcSE"))
  write_df(res_df(resbL, c("stat", "pvalue", "padj")), "r_results_run_lrt.csv")
  summ[[length(summ) + 1]] <- na_summary(resbL, ddsbL, "r_results_run_lrt.csv")
}

write.csv(do.call(rbind, summ), file.path(outdir, "r_na_summary.csv"), row.names = FALSE, quote = FALSE)
writeLines(capture.output(sessionInfo()), file.path(outdir, "r_sessionInfo.txt"))
cat("done", case, "\n")
sink(type = "message")
sink()
close(logcon)
