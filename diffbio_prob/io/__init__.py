"""Readers and writers: count tables, salmon/kallisto equivalence classes, quant.sf, sequences, atomic output.

* ``base.py``: what the eq-class readers share (``EqClassTable``, ``LengthTable``, ``FormatError``,
  ``EqFormat``, ``open_text``, field parsers); imports nothing from the package.
* ``salmon.py`` / ``kallisto.py``: each tool's files; they import ``base`` (and ``atomic``) only.
* ``eqclasses.py``: the format registry (``EQ_FORMATS``), ``read_eq_classes``, ``detect_eq_format``,
  ``read_lengths``; it imports the two format modules and re-exports ``base``'s names.
* ``counts.py`` (count tables, AnnData objects, sample tables, result tables), ``sequences.py`` (FASTA /
  integer sequences), ``atomic.py``.
* ``count_formats.py``: ``read_count_input(paths, *, layer=None, sample_names=None) -> CountInput``, the
  count inputs told apart by their content: AnnData ``.h5ad``, featureCounts tables, htseq-count files
  (one per sample), else a ``counts.py`` table; it imports ``base`` and ``counts``.
* ``tximport.py``: ``tximport(paths, type="salmon", tx2gene=None, ...) -> TximportResult``, R tximport 1.26
  for salmon output (gene/transcript counts, abundance, length, inferential replicates). Import it as
  ``from diffbio_prob.io.tximport import tximport``: the package does not re-export it, because a package
  attribute ``tximport`` holding the function would shadow the submodule (``import
  diffbio_prob.io.tximport as m`` would then bind the function) and would load numpy and pandas on every
  ``diffbio_prob.io`` import (``diffbio-prob --help`` imports ``diffbio_prob.io.atomic``).

Every bad input file raises a ``ValueError`` naming the file (and the line where there is one).
"""
