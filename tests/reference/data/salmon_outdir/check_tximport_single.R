suppressPackageStartupMessages(library(tximport))
for (d in commandArgs(TRUE)) {
  f <- file.path(d, "quant.sf"); names(f) <- basename(dirname(d))
  txi <- tximport(f, type = "salmon", txOut = TRUE, dropInfReps = FALSE)
  r <- txi$infReps[[1]]
  cat(d, ": infReps", dim(r), "; colSums range", range(colSums(r)), "; any NA", anyNA(r), "\n")
}
