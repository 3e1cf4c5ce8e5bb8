#!/usr/bin/env Rscript
## Small R references for transform.py's helpers (R 4.2.2, DESeq2 1.38.3). Usage: Rscript make_helper_reference.R
##   splinefun_fmm.csv   x, y knots (uneven) and splinefun(x, y, method = "fmm") at points u inside and outside the knots
##   wtd_quantile.csv.gz DESeq2:::matchWeightedUpperQuantileForVariance(x, w) for vectors with and without ties
options(digits = 17)
suppressPackageStartupMessages(library(DESeq2))
fmt <- function(x) sprintf("%.17g", x)
set.seed(42)
x <- cumsum(runif(12, 0.1, 1.5)); y <- sin(x) + 0.1 * x^2
f <- splinefun(x, y, method = "fmm")
u <- c(x[1] - 0.7, x[1], seq(x[1], x[12], length.out = 37), x[5], x[12], x[12] + 0.9)
write.csv(data.frame(kind = c(rep("knot", 12), rep("eval", length(u))), x = fmt(c(x, u)), y = fmt(c(y, f(u)))),
          "splinefun_fmm.csv", row.names = FALSE, quote = FALSE)
rows <- list()
for (case in 1:4) {
  n <- c(50, 200, 1000, 7)[case]
  x <- rnorm(n, 0, 2)
  if (case %in% c(2, 3)) x <- round(x, 1)          # many ties
  w <- rexp(n)
  if (case == 4) w <- rep(1, n)                     # equal weights
  v <- DESeq2:::matchWeightedUpperQuantileForVariance(x, w)
  rows[[case]] <- data.frame(case = case, x = fmt(x), w = fmt(w), result = fmt(v))
}
write.csv(do.call(rbind, rows), "wtd_quantile.csv", row.names = FALSE, quote = FALSE)
system2("gzip", c("-n", "-9", "-f", "wtd_quantile.csv"))
cat("done\n")
