## Reference predictions of R locfit (and DESeq2's localDispersionFit) for tests/de/test_locfit.py.
## Usage (from the repository root):
##   Rscript tests/reference/data/locfit/make_locfit_reference.R REAL OUT [DESIGNS]
## REAL: a deseq2_real folder (marioni/, tagseq/ with R's r_dispersions*.csv[.gz]); OUT: this folder;
## DESIGNS (optional, default REAL): a deseq2_real folder holding marioni_1v2, marioni_2v2, marioni_2v3.
## For each case NAME it writes
##   NAME_input.csv     x, y, w            (the data given to locfit, %.17g)
##   NAME_vertices.csv  xev, coef, slope, h (fit$eva: tree vertices, value and slope minus the
##                                           parametric component, nearest-neighbour bandwidth)
##   NAME_pc.csv        name, value         (fit$eva$pc[1:(deg+2)]: xbar then the parametric coefficients)
##   NAME_pred.csv      x, fit              (predict(fit, data.frame(x = x)), inside and outside the range)
## plus cases.csv (NAME, alpha, deg, cut, kind) and, for the DESeq2 wrapper,
##   deseq2_marioni_all_input.csv (means, disps) and deseq2_marioni_all_pred.csv (means, dispFit),
## and dispfit_CASE.csv: R DESeq()'s own baseMean, allZero, dispGeneEst, dispFit for the designs where
## DESeq2 fell back to the local trend (copied from DESeq2's output, checked here to be reproduced by
## localDispersionFit on the genes estimateDispersionsFit passes it).
## Files above 50 KB are gzipped.
suppressPackageStartupMessages({ library(locfit); library(DESeq2) })
args <- commandArgs(trailingOnly = TRUE)
real <- if (length(args) >= 1) args[1] else "/work/shared/deseq2_real"
out <- if (length(args) >= 2) args[2] else "tests/reference/data/locfit"
designs <- if (length(args) >= 3) args[3] else real
read_disp <- function(dir, case) {
  f <- file.path(dir, case, "r_dispersions.csv")
  read.csv(if (file.exists(f)) f else paste0(f, ".gz"))
}
dir.create(out, showWarnings = FALSE, recursive = TRUE)

fmt <- function(v) if (is.numeric(v)) sprintf("%.17g", v) else v
write_csv <- function(df, name) {
  df[] <- lapply(df, fmt)
  path <- file.path(out, name)
  write.csv(df, path, row.names = FALSE, quote = FALSE)
  if (file.size(path) > 50 * 1024) {
    con <- gzfile(paste0(path, ".gz"), "w"); writeLines(readLines(path), con); close(con)
    invisible(file.remove(path))
  }
}

cases <- data.frame(name = character(0), alpha = numeric(0), deg = integer(0), cut = numeric(0),
                    kind = character(0))
run_case <- function(name, x, y, w, alpha = 0.7, deg = 2, cut = 0.8, kind = "synthetic",
                     xpred = NULL) {
  d <- data.frame(x = x, y = y)
  fit <- if (is.null(w)) locfit(y ~ x, data = d, alpha = alpha, deg = deg, ev = rbox(cut = cut))
         else locfit(y ~ x, data = d, weights = w, alpha = alpha, deg = deg, ev = rbox(cut = cut))
  rg <- range(x); span <- diff(rg)
  grid <- seq(rg[1] - 0.5 * span, rg[2] + 0.5 * span, length.out = 201)
  if (is.null(xpred)) xpred <- c(x, grid) else xpred <- c(xpred, grid)
  xpred <- sort(unique(xpred))
  pr <- predict(fit, data.frame(x = xpred))
  co <- fit$eva$coef
  nv <- fit$nvc["nv"]
  vert <- data.frame(xev = fit$eva$xev[1:nv], coef = co[, 1],
                     slope = if (deg >= 1) co[, 2] else rep(0, nv), h = co[, 3 * 1 + 7])
  write_csv(data.frame(x = x, y = y, w = if (is.null(w)) rep(1, length(x)) else w),
            paste0(name, "_input.csv"))
  write_csv(vert, paste0(name, "_vertices.csv"))
  pcv <- fit$eva$pc[1:(deg + 2)]
  write_csv(data.frame(name = c("xbar", paste0("coef", 0:deg)), value = pcv), paste0(name, "_pc.csv"))
  write_csv(data.frame(x = xpred, fit = pr), paste0(name, "_pred.csv"))
  cases[nrow(cases) + 1, ] <<- list(name, alpha, as.integer(deg), cut, kind)
  invisible(fit)
}

## Real DESeq2 trends: log(dispGeneEst) ~ log(baseMean), weights baseMean, genes as
## estimateDispersionsFit passes them (non-all-zero, dispGeneEst > 100 * minDisp, minDisp = 1e-8).
deseq2_case <- function(name, file) {
  r <- read.csv(file)
  r <- r[!r$allZero, ]
  u <- r$dispGeneEst > 100 * 1e-8
  run_case(name, log(r$baseMean[u]), log(r$dispGeneEst[u]), r$baseMean[u], kind = "deseq2",
           xpred = log(r$baseMean))
}
deseq2_case("marioni_condition", file.path(real, "marioni/r_dispersions.csv"))
deseq2_case("marioni_run", file.path(real, "marioni/r_dispersions_run.csv"))
deseq2_case("tagseq", file.path(real, "tagseq/r_dispersions.csv"))

## Synthetic sets.
set.seed(20261202)
x <- runif(200, 0, 10); run_case("sine_weighted", x, sin(x) + rnorm(200, sd = 0.3), runif(200, 0.5, 2))
x <- sort(runif(150, -3, 4)); run_case("sorted_unweighted", x, x^3 / 10 - x + rnorm(150, sd = 0.5), NULL)
x <- round(runif(120, 0, 5), 1)  # many ties in x
run_case("ties_weighted", x, exp(-x) + rnorm(120, sd = 0.05), rexp(120) + 0.1)
x <- rnorm(300); y <- 2 * x + rnorm(300)
run_case("linear_deg1_alpha05", x, y, runif(300, 1, 3), alpha = 0.5, deg = 1, kind = "synthetic")
x <- runif(80, 1, 2); run_case("small_alpha03_cut05", x, log(x) + rnorm(80, sd = 0.02), runif(80), alpha = 0.3, cut = 0.5)
x <- runif(60, 0, 1); run_case("deg0", x, cos(3 * x) + rnorm(60, sd = 0.1), NULL, deg = 0)
x <- runif(40, 0, 1); run_case("deg3_alpha09", x, x^4 + rnorm(40, sd = 0.01), runif(40, 0.2, 1), alpha = 0.9, deg = 3)
x <- c(rnorm(900, 0, 1e-3), runif(100, -100, 100))  # a dense cluster: 93 tree vertices
run_case("clustered_alpha01", x, x + rnorm(1000), NULL, alpha = 0.1)
x <- 1:6 + 0; run_case("six_points", x, x^2 + c(0.1, -0.2, 0.3, 0.1, 0, 0), NULL)  # k = 4 = deg + 2
## Data exactly on a quadratic: locfit misses it by ~1e-7 (its Jacobi eigensolver, eig_dec in
## src/m_eigen.c, treats off-diagonals with x_ij^2 <= 1e-15 |x_ii x_jj| as zero).
x <- runif(150, -2, 3); run_case("quadratic_exact", x, 0.5 - 1.25 * x + 0.75 * x^2, runif(150, 0.5, 2))
write.csv(cases, file.path(out, "cases.csv"), row.names = FALSE, quote = FALSE)

## The same cluster with alpha = 0.7: the tree needs more than locfit's 19 vertices and R stops.
x <- c(rnorm(900, 0, 1e-3), runif(100, -100, 100)); y <- x + rnorm(1000)
err <- try(locfit(y ~ x, data = data.frame(x = x, y = y)), silent = TRUE)
stopifnot(inherits(err, "try-error"), grepl("out of vertex space", err))
write_csv(data.frame(x = x, y = y, w = rep(1, 1000)), "overflow_input.csv")

## DESeq2's own localDispersionFit on every non-all-zero marioni gene (the 1e-8 estimates are
## below 10 * minDisp and dropped inside it), evaluated at every gene's baseMean.
r <- read_disp(real, "marioni")
r <- r[!r$allZero, ]
f <- DESeq2:::localDispersionFit(r$baseMean, r$dispGeneEst, 1e-8)
write_csv(data.frame(means = r$baseMean, disps = r$dispGeneEst), "deseq2_marioni_all_input.csv")
write_csv(data.frame(means = r$baseMean, dispFit = f(r$baseMean)), "deseq2_marioni_all_pred.csv")

for (case in c("marioni", "marioni_1v2", "marioni_2v2", "marioni_2v3")) {
  r <- read_disp(if (case == "marioni") real else designs, case)
  nz <- !r$allZero
  f <- DESeq2:::localDispersionFit(r$baseMean[nz & r$dispGeneEst > 100 * 1e-8],
                                   r$dispGeneEst[nz & r$dispGeneEst > 100 * 1e-8], 1e-8)
  stopifnot(isTRUE(all.equal(f(r$baseMean[nz]), r$dispFit[nz], tolerance = 1e-14)))
  write_csv(data.frame(baseMean = r$baseMean, allZero = r$allZero, dispGeneEst = r$dispGeneEst,
                       dispFit = r$dispFit), paste0("dispfit_", case, ".csv"))
}

writeLines(c(R.version.string, paste("locfit", packageVersion("locfit")),
             paste("DESeq2", packageVersion("DESeq2"))), file.path(out, "versions.txt"))
