"""Readers and writers: count tables, salmon/kallisto equivalence classes, quant.sf, sequences, atomic output.

* ``base.py``: what the eq-class readers share (``EqClassTable``, ``LengthTable``, ``FormatError``,
  ``EqFormat``, ``open_text``, field parsers); imports nothing from the package.
* ``salmon.py`` / ``kallisto.py``: each tool's files; they import ``base`` (and ``atomic``) only.
* ``eqclasses.py``: the format registry (``EQ_FORMATS``), ``read_eq_classes``, ``detect_eq_format``,
  ``read_lengths``; it imports the two format modules and re-exports ``base``'s names.
* ``counts.py`` (count tables, AnnData), ``sequences.py`` (FASTA / integer sequences), ``atomic.py``.

Every bad input file raises a ``ValueError`` naming the file (and the line where there is one).
"""
