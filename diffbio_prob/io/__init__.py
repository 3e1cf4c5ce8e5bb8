"""Readers and writers: count tables, salmon/kallisto equivalence classes, quant.sf, netCDF posteriors."""
