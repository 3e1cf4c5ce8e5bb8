#!/usr/bin/env Rscript
## R DESeq2 1.38.3 references for DESeq2's transformations (tests/de/test_deseq2_transform.py):
## counts(dds, normalized = TRUE), varianceStabilizingTransformation(), vst() (nsub = 1000) and rlog().
##
## Usage (from this folder): Rscript make_transform_reference.R
##
## Input: ../deseq2_real/marioni/counts.csv.gz and metadata.csv (NOISeq 2.42.0 data(Marioni); genes x samples,
## condition A = Kidney, B = Liver, run R1/R2).
##
## Cases (each DESeq() with R's defaults unless noted):
##   run  : all 10 samples, design ~ run + condition (R's parametric trend fits: the closed-form VST)
##   2v2  : R1L1Kidney, R1L3Kidney, R1L2Liver, R1L4Liver, design ~ condition (parametric fails, R falls back
##          to the local trend; 2 residual df)
## Output <case>_<what>.csv.gz: first column gene, then one column per sample, 12 significant digits, for a
## subset of genes (every 6th gene, the first 5 all-zero genes, the gene with the largest count); the
## transformations themselves are computed on ALL genes (the local VST, vst()'s subsample and rlog's prior
## depend on every gene).
##   normalized            counts(dds, normalized = TRUE)
##   vsd_blind[_local|_mean]   assay(varianceStabilizingTransformation(dds, blind = TRUE[, fitType = ...]))
##   vsd                   assay(varianceStabilizingTransformation(dds, blind = FALSE)) (the fit's own trend)
##   vsd_fit_local / vsd_fit_mean  ... blind = FALSE on DESeq(dds, fitType = "local" / "mean")
##   vstfast_blind / vstfast       assay(vst(dds, blind = TRUE / FALSE)) (nsub = 1000)
##   vstfast_blind_mean    assay(vst(dds, blind = TRUE, fitType = "mean"))
##   rlog_blind / rlog     assay(rlog(dds, blind = TRUE / FALSE))
##   rlog_blind_mean       assay(rlog(dds, blind = TRUE, fitType = "mean"))
##   rlog_intercept        (2v2) assay(rlog(dds, blind = FALSE, intercept = mcols(rld)$rlogIntercept,
##                         betaPriorVar = attr(rld, "betaPriorVar"))) with rld = rlog(dds, blind = TRUE) (R's documented
##                         use); the intercepts (all genes) are in <case>_rlog_intercept_in.csv.gz
## <case>_summary.csv: per output, the dispersion trend R used (fitType, asymptDisp, extraPois, mean; "fit" is
## DESeq()'s own; NA for the rlog rows, whose blind trend R does not return) and rlog's betaPriorVar;
## <case>_size_factors.csv. r_log.txt, r_sessionInfo.txt: R's messages and session.

options(digits = 17, warn = 1)
suppressPackageStartupMessages(library(DESeq2))

counts <- as.matrix(read.csv(gzfile("../deseq2_real/marioni/counts.csv.gz"), row.names = 1, check.names = FALSE))
coldata <- read.csv("../deseq2_real/marioni/metadata.csv", row.names = 1, stringsAsFactors = FALSE)
stopifnot(identical(colnames(counts), rownames(coldata)))
coldata$condition <- factor(coldata$condition, levels = c("A", "B"))
coldata$run <- factor(coldata$run)

CASES <- list(
  run = list(samples = colnames(counts), design = ~run + condition),
  "2v2" = list(samples = c("R1L1Kidney", "R1L3Kidney", "R1L2Liver", "R1L4Liver"), design = ~condition)
)

fmt <- function(x) { y <- sprintf("%.12g", x); y[is.na(x)] <- "NA"; y }
rows_of <- function(cts) {
  az <- which(rowSums(cts) == 0)
  sort(unique(c(seq(1, nrow(cts), by = 6), head(az, 5), which.max(apply(cts, 1, max)))))
}
no_trend <- function(what, bpv)  # rlog(blind = TRUE) re-fits a trend it does not return: only betaPriorVar
  data.frame(output = what, fitType = NA, asymptDisp = NA, extraPois = NA, mean = NA, betaPriorVar = bpv)
trend_info <- function(obj, what) {
  f <- dispersionFunction(obj)
  co <- attr(f, "coefficients")
  data.frame(output = what, fitType = attr(f, "fitType"),
             asymptDisp = if (is.null(co)) NA else unname(co["asymptDisp"]),
             extraPois = if (is.null(co)) NA else unname(co["extraPois"]),
             mean = if (is.null(attr(f, "mean"))) NA else attr(f, "mean"),
             betaPriorVar = NA, stringsAsFactors = FALSE)
}

for (cname in names(CASES)) {
  cs <- CASES[[cname]]
  cts <- counts[, cs$samples, drop = FALSE]
  cd <- coldata[cs$samples, , drop = FALSE]
  rows <- rows_of(cts)
  write_mat <- function(m, what) {
    stopifnot(identical(rownames(m), rownames(cts)), identical(colnames(m), colnames(cts)))
    df <- data.frame(gene = rownames(m)[rows], check.names = FALSE, stringsAsFactors = FALSE)
    for (j in colnames(m)) df[[j]] <- fmt(m[rows, j])
    path <- paste0(cname, "_", what, ".csv")
    write.csv(df, path, row.names = FALSE, quote = FALSE)
    system2("gzip", c("-n", "-9", "-f", shQuote(path)))
    cat("wrote", path, ".gz\n")
  }
  summ <- list()
  dds0 <- DESeqDataSetFromMatrix(countData = cts, colData = cd, design = cs$design)
  dds <- suppressMessages(DESeq(dds0))
  summ[[length(summ) + 1]] <- trend_info(dds, "fit")
  write.csv(data.frame(sample = colnames(dds), sizeFactor = fmt(sizeFactors(dds))),
            paste0(cname, "_size_factors.csv"), row.names = FALSE, quote = FALSE)
  write_mat(counts(dds, normalized = TRUE), "normalized")

  for (ft in c("parametric", "local", "mean")) {
    what <- if (ft == "parametric") "vsd_blind" else paste0("vsd_blind_", ft)
    v <- suppressMessages(varianceStabilizingTransformation(dds, blind = TRUE, fitType = ft))
    write_mat(assay(v), what)
    ## the trend R used (re-run the blind steps to read it)
    b <- dds; design(b) <- ~1
    b <- suppressMessages(estimateDispersionsFit(estimateDispersionsGeneEst(b, quiet = TRUE), ft, quiet = TRUE))
    summ[[length(summ) + 1]] <- trend_info(b, what)
  }
  write_mat(assay(varianceStabilizingTransformation(dds, blind = FALSE)), "vsd")
  summ[[length(summ) + 1]] <- trend_info(dds, "vsd")
  for (ft in c("local", "mean")) {
    ddsF <- suppressMessages(DESeq(dds0, fitType = ft))
    write_mat(assay(varianceStabilizingTransformation(ddsF, blind = FALSE)), paste0("vsd_fit_", ft))
    summ[[length(summ) + 1]] <- trend_info(ddsF, paste0("vsd_fit_", ft))
  }
  write_mat(assay(suppressMessages(vst(dds, blind = TRUE))), "vstfast_blind")
  write_mat(assay(suppressMessages(vst(dds, blind = FALSE))), "vstfast")
  write_mat(assay(suppressMessages(vst(dds, blind = TRUE, fitType = "mean"))), "vstfast_blind_mean")

  rld <- suppressMessages(suppressWarnings(rlog(dds, blind = TRUE)))
  write_mat(assay(rld), "rlog_blind")
  s <- no_trend("rlog_blind", attr(rld, "betaPriorVar"))
  summ[[length(summ) + 1]] <- s
  rl2 <- suppressMessages(suppressWarnings(rlog(dds, blind = FALSE)))
  write_mat(assay(rl2), "rlog")
  s <- trend_info(dds, "rlog"); s$betaPriorVar <- attr(rl2, "betaPriorVar")
  summ[[length(summ) + 1]] <- s
  rl3 <- suppressMessages(suppressWarnings(rlog(dds, blind = TRUE, fitType = "mean")))
  write_mat(assay(rl3), "rlog_blind_mean")
  s <- no_trend("rlog_blind_mean", attr(rl3, "betaPriorVar"))
  summ[[length(summ) + 1]] <- s
  if (cname == "2v2") {
    ## R's documented use: transform with a previous rlog's intercepts and prior variance
    icpt <- mcols(rld)$rlogIntercept
    bpv <- attr(rld, "betaPriorVar")
    rl4 <- suppressMessages(suppressWarnings(rlog(dds, blind = FALSE, intercept = icpt, betaPriorVar = bpv)))
    write_mat(assay(rl4), "rlog_intercept")
    write.csv(data.frame(gene = rownames(dds), intercept = fmt(icpt)),
              paste0(cname, "_rlog_intercept_in.csv"), row.names = FALSE, quote = FALSE)
    system2("gzip", c("-n", "-9", "-f", shQuote(paste0(cname, "_rlog_intercept_in.csv"))))
    s <- trend_info(dds, "rlog_intercept"); s$betaPriorVar <- attr(rl4, "betaPriorVar")
    summ[[length(summ) + 1]] <- s
  }
  sm <- do.call(rbind, summ)
  for (k in c("asymptDisp", "extraPois", "mean", "betaPriorVar")) sm[[k]] <- fmt(sm[[k]])
  write.csv(sm, paste0(cname, "_summary.csv"), row.names = FALSE, quote = FALSE)
  print(sm)
}
writeLines(capture.output(sessionInfo()), "r_sessionInfo.txt")
cat("done\n")
