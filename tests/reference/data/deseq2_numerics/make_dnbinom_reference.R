# R 4.2.2's dnbinom(x, mu = mu, size = size, log = TRUE) on a spread of (count, size, mu), the targets of
# rstats.r_dnbinom_mu_log (bit for bit) and cores.nb_glm_fit.nb_log_pmf_accurate (to rounding), and
# DESeq2 1.38.3 on a gene with ~1e9 counts. Usage: Rscript make_dnbinom_reference.R
set.seed(1)
k <- c(0, 0, 1, 2, 3, 5, 10, 100, 1969, 0, 7, 50, 1.9e9, 1.5e9, 2e9, 3, 7, 11)
mu <- c(0.5, 1e-6, 3.2, 0.001, 250, 4.9, 10.2, 99.5, 1e-5, 1e3, 7.000001, 1e-9, 1.8e9, 1.5e9, 2.1e9, 0.3, 4.4, 123.4)
size <- c(0.1, 10, 2.5, 1 / 0.38, 1e7, 1e11, 0.8, 13.3, 0.1, 5, 1 / 1e-8, 3, 30.4, 30.4, 1e5, 1e11, 3.3e12, 7.7e13)
for (i in 1:200) {
  k <- c(k, rpois(1, 20)); mu <- c(mu, exp(rnorm(1, 2, 3))); size <- c(size, exp(rnorm(1, 0, 3)))
}
out <- data.frame(k = k, size = size, mu = mu, logpmf = dnbinom(k, mu = mu, size = size, log = TRUE))
write.csv(format(out, digits = 17), "dnbinom_reference.csv", row.names = FALSE, quote = FALSE)
