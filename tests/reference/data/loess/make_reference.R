## R references for diffbio_prob.workflows.deseq2.loess (tests/de/test_loess.py):
## loess(y ~ x, span, degree, weights) with one predictor and R's defaults (family "gaussian",
## surface "interpolate", statistics "approximate", cell 0.2), then predict(fit, newx).
## R 4.2.2 (stats), run from this folder:   Rscript make_reference.R
## Writes per case <case>_data.csv (x, y, w), <case>_pred.csv (newx, fit; NA outside range(x)),
## <case>_kd.csv (fit$kd$vval as value, slope per vertex, in R's vertex order), and cases.csv
## (case, span, degree, weighted, n, nv, nc). 17 significant digits.
options(digits = 17)
w17 <- function(df, file) write.csv(format(df, digits = 17), file, row.names = FALSE, quote = FALSE)
cases <- list()
add <- function(name, x, y, span, degree = 2L, w = NULL, newx) {
  d <- data.frame(x = x, y = y, w = if (is.null(w)) rep(1, length(x)) else w)
  fit <- if (is.null(w)) loess(y ~ x, data = d, span = span, degree = degree)
         else loess(y ~ x, data = d, span = span, degree = degree, weights = w)
  p <- predict(fit, newx)
  kd <- fit$kd
  nv <- kd$parameter[["nv"]]
  vv <- matrix(kd$vval, nrow = 2)
  w17(d, paste0(name, "_data.csv"))
  w17(data.frame(newx = newx, fit = p), paste0(name, "_pred.csv"))
  w17(data.frame(value = vv[1, ], slope = vv[2, ]), paste0(name, "_kd.csv"))
  cases[[length(cases) + 1]] <<- data.frame(case = name, span = span, degree = degree,
                                            weighted = !is.null(w), n = length(x), nv = nv,
                                            nc = kd$parameter[["nc"]])
}
## 1. DESeq2's use: 200-point grid, span 0.2, a bumpy curve
set.seed(1)
g <- seq(0, 8, length = 200)
add("grid200_span02", g, sin(2 * g) + 0.3 * (g - 3)^2 / 8 + rnorm(200, 0, 0.2), 0.2,
    newx = seq(0, 8, length = 1000))
## 2. unsorted uniform x, default span, new points partly outside the data range (NA)
set.seed(2)
x <- runif(100, -3, 5)
add("unif100_default", x, exp(-x^2 / 4) + rnorm(100, 0, 0.1), 0.75,
    newx = c(seq(-3.5, 5.5, length = 301), x[1:5]))
## 3. heavy ties in x, degree 1
set.seed(3)
x <- round(runif(150, 0, 10)) / 2
add("ties150_deg1", x, log1p(x) + rnorm(150, 0, 0.3), 0.3, degree = 1L,
    newx = seq(0, 5, length = 211))
## 4. prior weights
set.seed(4)
x <- sort(rnorm(300))
add("weights300", x, x^3 - x + rnorm(300, 0, 0.5), 0.5, w = rexp(300),
    newx = seq(min(x), max(x), length = 400))
## 5. degree 0 (local constant)
set.seed(5)
x <- runif(80, 0, 1)
add("deg0_80", x, cos(6 * x) + rnorm(80, 0, 0.2), 0.4, degree = 0L, newx = seq(0, 1, length = 157))
## 6. large n, small span: a deeper k-d tree
set.seed(6)
x <- runif(1000, 0, 100)
add("n1000_span01", x, sin(x / 7) * sqrt(x) + rnorm(1000), 0.1, newx = seq(0, 100, length = 777))
## 7. tiny n
set.seed(7)
x <- c(0.5, 1, 1.7, 2, 3.1, 3.3, 4, 5.2, 6, 7.5)
add("tiny10", x, x / 2 + rnorm(10, 0, 0.3), 0.75, newx = seq(0.5, 7.5, length = 50))
w17(do.call(rbind, cases), "cases.csv")
writeLines(capture.output(sessionInfo()), "r_sessionInfo.txt")
