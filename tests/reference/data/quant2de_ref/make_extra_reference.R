## Extra R references for tests/io/test_tximport.py and tests/de/test_deseq2_tximport.py, on this folder's
## copy of the salmon outputs. Run from this folder:  TZ=UTC Rscript make_extra_reference.R
## R 4.2.2, tximport 1.26.1, DESeq2 1.38.3. Writes extra/*.csv.gz (sprintf("%.17g"), NA for missing).
suppressPackageStartupMessages({ library(tximport); library(DESeq2) })
samples <- c("A1", "A2", "B1", "B2")
files <- file.path("salmon", samples, "quant.sf.gz"); names(files) <- samples
tx2gene <- read.csv(gzfile("truth/tx2gene.csv.gz"), stringsAsFactors = FALSE)
fmt <- function(m) { out <- apply(m, 2, function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))); out }
write_mat <- function(m, first, path) {
  df <- data.frame(rownames(m), fmt(m), check.names = FALSE, stringsAsFactors = FALSE)
  names(df)[1] <- first
  con <- gzfile(path, "w"); write.csv(df, con, row.names = FALSE, quote = FALSE); close(con)
}
## 1. dtuScaledTPM (transcript level)
txi_dtu <- tximport(files, type = "salmon", txOut = TRUE, tx2gene = tx2gene, countsFromAbundance = "dtuScaledTPM")
write_mat(txi_dtu$counts, "transcript", "extra/tx_counts_dtuScaledTPM.csv.gz")
## 2. scaledTPM / lengthScaledTPM at transcript level
txi_txs <- tximport(files, type = "salmon", txOut = TRUE, countsFromAbundance = "lengthScaledTPM")
write_mat(txi_txs$counts, "transcript", "extra/tx_counts_lengthScaledTPM.csv.gz")
## 3. every 7th tx2gene row removed, plus duplicated rows (first kept): transcripts missing from tx2gene
keep <- seq_len(nrow(tx2gene)) %% 7 != 0
t2g_missing <- rbind(tx2gene[keep, ], data.frame(TXNAME = tx2gene$TXNAME[2:3], GENEID = c("GX", "GX")))
txi_m <- tximport(files, type = "salmon", tx2gene = t2g_missing, countsFromAbundance = "lengthScaledTPM")
write_mat(txi_m$counts, "gene", "extra/missing_gene_counts_lengthScaledTPM.csv.gz")
write_mat(txi_m$length, "gene", "extra/missing_gene_length.csv.gz")
## 4. integer gene ids: factor levels sorted as numbers
t2g_num <- data.frame(tx = tx2gene$TXNAME, gene = as.integer(sub("^G", "", tx2gene$GENEID)) %% 1500L)
txi_n <- tximport(files, type = "salmon", tx2gene = t2g_num)
write_mat(txi_n$counts, "gene", "extra/intgene_gene_counts.csv.gz")
## 5. DESeq2 estimateSizeFactors(type = "poscounts") with avgTxLength; lengthScaledTPM counts
txi <- tximport(files, type = "salmon", tx2gene = tx2gene)
coldata <- data.frame(condition = factor(c("A", "A", "B", "B")), row.names = samples)
dds <- suppressMessages(DESeqDataSetFromTximport(txi, coldata, ~condition))
dds <- estimateSizeFactors(dds, type = "poscounts")
write_mat(normalizationFactors(dds), "gene", "extra/normalization_factors_poscounts.csv.gz")
txi_l <- tximport(files, type = "salmon", tx2gene = tx2gene, countsFromAbundance = "lengthScaledTPM")
ddl <- suppressMessages(DESeqDataSetFromTximport(txi_l, coldata, ~condition))
ddl <- estimateSizeFactors(ddl)
write_mat(counts(ddl), "gene", "extra/counts_used_lengthScaledTPM.csv.gz")
sf <- sizeFactors(ddl)
con <- gzfile("extra/size_factors_lengthScaledTPM.csv.gz", "w")
write.csv(data.frame(sample = names(sf), sizeFactor = sprintf("%.17g", sf)), con, row.names = FALSE, quote = FALSE)
close(con)
writeLines(capture.output(sessionInfo()), "extra/sessionInfo.txt")
