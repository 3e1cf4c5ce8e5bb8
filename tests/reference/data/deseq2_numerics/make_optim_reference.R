# R's fitNbinomGLMsOptim objective and optim() call (DESeq2 1.38.3, R 4.2.2) on the tagseq genes whose
# IRLS fit diverges (a group of zeros). Writes optim_reference.csv: counts, size factors, dispersion,
# optim's start (log2) and R's optimum (log2), the objective at it and optim's counts.
# Usage: Rscript make_optim_reference.R /work/shared/deseq2_real/tagseq
args <- commandArgs(TRUE)
D <- if (length(args)) args[1] else "/work/shared/deseq2_real/tagseq"
cts <- as.matrix(read.csv(file.path(D, "counts.csv"), row.names = 1, check.names = FALSE))
meta <- read.csv(file.path(D, "metadata.csv"), row.names = 1, stringsAsFactors = TRUE)
cts <- cts[, rownames(meta)]
disp <- read.csv(file.path(D, "r_dispersions.csv"), row.names = 1)
sf <- read.csv(file.path(D, "r_size_factors.csv"), row.names = 1)[, 1]
x <- model.matrix(~condition, meta)
genes <- c("Gene_10387", "Gene_00343", "Gene_16517", "Gene_03574", "Gene_03806")
y <- cts[genes, ]
norm <- t(t(y) / sf)
qrx <- qr(x); Q <- qr.Q(qrx); R <- qr.R(qrx)
beta_mat <- t(solve(R, t(Q) %*% t(log(norm + 0.1))))  # fitNbinomGLMs' start (natural log)
lambda <- rep(1e-6, ncol(x))
out <- NULL
for (i in seq_along(genes)) {
  k <- y[i, ]; alpha <- disp[genes[i], "dispersion"]
  # IRLS diverges for these rows (|beta| > 30), so optim starts from beta_mat, as fitNbinomGLMsOptim
  start <- beta_mat[i, ]
  fn <- function(p) {
    mu_row <- as.numeric(sf * 2^(x %*% p))
    ll <- sum(dnbinom(k, mu = mu_row, size = 1 / alpha, log = TRUE))
    v <- -(ll + sum(dnorm(p, 0, sqrt(1 / lambda), log = TRUE)))
    if (is.finite(v)) v else 10^300
  }
  o <- optim(start, fn, method = "L-BFGS-B", lower = -30, upper = 30)
  row <- c(k, sf, alpha, start, o$par, o$value, o$counts[1], o$convergence)
  out <- rbind(out, row)
}
colnames(out) <- c(paste0("k", 1:6), paste0("sf", 1:6), "alpha", "start0", "start1", "par0", "par1",
                   "value", "fn_count", "convergence")
rownames(out) <- genes
write.csv(data.frame(gene = genes, format(as.data.frame(out), digits = 17), check.names = FALSE),
          "optim_reference.csv", row.names = FALSE, quote = FALSE)
cat(paste(names(meta$condition), collapse = " "), "\n")
cat("condition:", as.character(meta$condition), "\n")
