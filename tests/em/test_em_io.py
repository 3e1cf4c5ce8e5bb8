"""Readers and writers: round trips, format detection, effective-length formulas, and every bad input."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from diffbio_prob.io.eqclasses import EqClassTable, FormatError, detect_eq_format, read_eq_classes, read_lengths
from diffbio_prob.io.kallisto import (
    kallisto_effective_lengths,
    read_kallisto_eq_classes,
    write_kallisto_ec,
    write_pseudoalignments_tsv,
)
from diffbio_prob.io.salmon import (
    load_sample_data,
    read_fld,
    read_quant_sf,
    read_salmon_eq_classes,
    salmon_effective_lengths,
    write_quant_sf,
    write_salmon_eq_classes,
)


def small_table(weighted=True):
    return EqClassTable(
        names=["tA", "tB", "tC"],
        class_ids=np.array([0, 1, 1, 2, 2, 2]),
        transcript_ids=np.array([0, 0, 1, 0, 1, 2]),
        weights=np.array([1.0, 0.25, 0.75, 0.1, 0.2, 0.7]) if weighted else None,
        counts=np.array([5.0, 12.0, 3.0]),
        weights_include_length=weighted,
    )


def same_table(a, b):
    assert a.names == b.names
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_array_equal(a.transcript_ids, b.transcript_ids)
    np.testing.assert_array_equal(a.counts, b.counts)
    if a.weights is None:
        assert b.weights is None
    else:
        np.testing.assert_array_equal(a.weights, b.weights)


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("suffix", [".txt", ".txt.gz"])
def test_salmon_eq_round_trip(tmp_path, weighted, suffix):
    table = small_table(weighted)
    path = write_salmon_eq_classes(tmp_path / f"eq{suffix}", table)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == suffix.endswith(".gz")
    back = read_salmon_eq_classes(path)
    same_table(table, back)
    assert back.weights_include_length == weighted and back.lengths is None
    assert detect_eq_format(path) == "salmon"
    same_table(table, read_eq_classes(path))


def test_salmon_eq_trailing_lengths_round_trip(tmp_path):
    path = write_salmon_eq_classes(tmp_path / "eq.txt", small_table(), effective_lengths=[100.5, 2000.0, 33.25])
    assert path.read_text().splitlines()[-1] == "tC\t33.25"
    np.testing.assert_array_equal(read_salmon_eq_classes(path).lengths, [100.5, 2000.0, 33.25])


def test_salmon_reference_dump_round_trip(em_ref, tmp_path):
    src = em_ref / "salmon_1.10.1" / "em" / "aux_info" / "eq_classes.txt.gz"
    table = read_salmon_eq_classes(src)
    same_table(table, read_salmon_eq_classes(write_salmon_eq_classes(tmp_path / "eq.txt.gz", table)))
    # the plain text salmon wrote reads the same as our rewrite of it
    plain = tmp_path / "plain.txt"
    plain.write_bytes(gzip.decompress(src.read_bytes()))
    same_table(table, read_salmon_eq_classes(plain))


def test_kallisto_round_trip(tmp_path):
    table = small_table(weighted=False)
    ec = write_kallisto_ec(tmp_path / "matrix.ec", table)
    tsv = write_pseudoalignments_tsv(tmp_path / "pseudoalignments.tsv", table)
    names = tmp_path / "transcripts.txt"
    names.write_text("tA\ntB\ntC\n")
    assert ec.read_text().splitlines() == ["0\t0", "1\t0,1", "2\t0,1,2"]
    assert detect_eq_format(ec) == "kallisto"
    back = read_eq_classes(ec, counts=tsv, transcripts=names)
    same_table(table, back)
    assert back.format == "kallisto" and not back.weights_include_length


def test_kallisto_unlisted_ecs_have_zero_count_and_drop(tmp_path):
    (tmp_path / "p.ec").write_text("0\t0\n1\t1\n2\t0,1\n3\t1,2\n")
    (tmp_path / "p.tsv").write_text("2\t7\n0\t3\n")
    table = read_kallisto_eq_classes(tmp_path / "p.ec", tmp_path / "p.tsv")
    assert table.names == ["t0", "t1", "t2"]
    np.testing.assert_array_equal(table.counts, [3, 0, 7, 0])
    kept = table.drop_empty()
    np.testing.assert_array_equal(kept.counts, [3, 7])
    np.testing.assert_array_equal(kept.class_ids, [0, 1, 1])
    np.testing.assert_array_equal(kept.transcript_ids, [0, 0, 1])


def test_quant_sf_round_trip_and_salmon_formats(tmp_path, em_ref):
    src = read_quant_sf(em_ref / "salmon_1.10.1" / "em" / "quant.sf")
    out = write_quant_sf(tmp_path / "q" / "quant.sf", src.names, src.lengths, src.effective_lengths, src.tpm,
                         src.num_reads)
    # same bytes as salmon's own file (salmon's number formats)
    assert out.read_text() == (em_ref / "salmon_1.10.1" / "em" / "quant.sf").read_text()
    back = read_quant_sf(out)
    assert back.names == src.names
    np.testing.assert_array_equal(back.num_reads, src.num_reads)
    assert list(back.to_frame().columns) == ["Length", "EffectiveLength", "TPM", "NumReads"]


def test_write_quant_sf_is_atomic_on_bad_values(tmp_path):
    path = tmp_path / "quant.sf"
    path.write_text("old\n")
    with pytest.raises(ValueError, match="num_reads: contains non-finite"):
        write_quant_sf(path, ["a", "b"], [1, 2], [1, 2], [1, 2], [1.0, np.nan])
    assert path.read_text() == "old\n"
    with pytest.raises(ValueError, match=r"tpm: expected shape \(2,\)"):
        write_quant_sf(path, ["a", "b"], [1, 2], [1, 2], [1], [1, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quant.sf"]


def test_fld_formats(tmp_path):
    counts = np.zeros(1001, np.int32)
    counts[[100, 200]] = [1, 3]
    (tmp_path / "fld.gz").write_bytes(gzip.compress(counts.astype("<i4").tobytes()))
    np.testing.assert_array_equal(read_fld(tmp_path / "fld.gz"), counts)
    (tmp_path / "flenDist.txt").write_text("\t".join(["0.5", "0.25", "0.25"]) + "\n")
    np.testing.assert_array_equal(read_fld(tmp_path / "flenDist.txt"), [0.5, 0.25, 0.25])
    (tmp_path / "flens.txt").write_text(" ".join(["0", "1", "2"]) + "\n" + " ".join(["3", "0", "1"]) + "\n")
    with pytest.raises(ValueError, match="sample: .* holds 2 distributions"):
        read_fld(tmp_path / "flens.txt")
    np.testing.assert_array_equal(read_fld(tmp_path / "flens.txt", sample=1), [3, 0, 1])


def test_effective_length_formulas_closed_form():
    masses = np.zeros(1000)
    masses[[100, 200, 300]] = [1, 2, 1]  # mu(L) = 100 (L<200), 166.67 (200<=L<300), 200 (L>=300)
    L = np.array([150, 250, 5000, 60])
    mu = np.array([100.0, 500 / 3, 200.0, 0.0])
    np.testing.assert_allclose(salmon_effective_lengths(L, masses), [50, 250 - 500 / 3, 4800, 60])
    np.testing.assert_allclose(kallisto_effective_lengths(L, masses), [51, 251 - 500 / 3, 4801, 61])
    # a transcript shorter than every fragment: L - mu(L) < 1 falls back to L in both tools
    masses2 = np.zeros(1000)
    masses2[[10, 90]] = 1
    np.testing.assert_allclose(salmon_effective_lengths([50.0, 95.0, 10.0], masses2), [40.0, 45.0, 10.0])
    np.testing.assert_allclose(kallisto_effective_lengths([50.0, 95.0, 10.0], masses2), [41.0, 46.0, 1.0])
    np.testing.assert_allclose(kallisto_effective_lengths([9.0], masses2), [10.0])  # no mass yet: mu = 0
    assert mu.shape == L.shape


def test_read_lengths_variants(tmp_path, em_ref):
    run = em_ref / "salmon_1.10.1" / "em"
    q = read_quant_sf(run / "quant.sf")
    t = read_lengths(run / "quant.sf")
    np.testing.assert_array_equal(t.effective_lengths, q.effective_lengths)
    # two-column table, other order, aligned to the classes' names
    rows = list(zip(q.names, q.effective_lengths))[::-1]
    (tmp_path / "eff.tsv").write_text("".join(f"{n}\t{e}\n" for n, e in rows))
    np.testing.assert_array_equal(read_lengths(tmp_path / "eff.tsv", names=q.names).effective_lengths,
                                  q.effective_lengths)
    # transcript lengths + salmon's FLD give salmon's effective lengths
    (tmp_path / "len.tsv").write_text("".join(f"{n}\t{int(L)}\n" for n, L in zip(q.names, q.lengths)))
    t = read_lengths(tmp_path / "len.tsv", fld=run / "libParams" / "flenDist.txt")
    np.testing.assert_allclose(t.effective_lengths, q.effective_lengths, atol=0.05)
    t_k = read_lengths(tmp_path / "len.tsv", fld=run / "libParams" / "flenDist.txt", formula="kallisto")
    np.testing.assert_allclose(t_k.effective_lengths - t.effective_lengths, 1.0)
    # FASTA lengths
    (tmp_path / "tx.fa").write_text(">tA desc\nACGT\nAC\n>tB\nAAAAAAAAAA\n")
    masses = np.zeros(10)
    masses[2] = 1
    t = read_lengths(tmp_path / "tx.fa", fld=masses)
    np.testing.assert_array_equal(t.lengths, [6, 10])
    np.testing.assert_array_equal(t.effective_lengths, [4, 8])
    with pytest.raises(ValueError, match="no length for 1 transcript"):
        read_lengths(tmp_path / "eff.tsv", names=q.names + ["missing"])
    with pytest.raises(ValueError, match="fld: .* FASTA"):
        read_lengths(tmp_path / "tx.fa")


def test_sample_data_loads_from_package():
    d = load_sample_data()
    assert d.table.n_classes == 28 and d.table.weights is not None
    assert d.names[0] == "NM_001168316" and d.true_counts.sum() == 10_000
    assert d.effective_lengths.shape == (15,) and np.all(d.effective_lengths > 0)


# ---- bad input: one clear error naming the file and the line --------------------------------------
SALMON_OK = "2\n2\ntA\ntB\n1\t0\t5\n2\t0\t1\t7\n"


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "line 1: file ends before the header"),
        ("2\n", "line 2: file ends before the header"),
        ("x\n1\n", "line 1: expected an integer number of transcripts"),
        ("2\n2\ntA\n", "line 4: file ends after 1 of 2 transcript names"),
        ("2\n2\ntA\ntB\n1\t0\t5\n", r"line 6: file ends after 1 of 2 equivalence classes \(truncated"),
        ("2\n2\ntA\ntB\n1\t0\t5\n2\t0\t1\t7\t9\n", "line 6: class of size 2 needs 4 fields"),
        ("2\n2\ntA\ntB\n1\t0\t5\n2\t0\t3\t7\n", r"line 6: transcript id 3 out of range \[0, 2\)"),
        ("2\n2\ntA\ntB\n1\t0\t5\n2\t0\t1\t0.5\t0.5\t7\n", "line 6: weighted and unweighted classes are mixed"),
        ("2\n2\ntA\ntB\n1\t0\t5\n2\t0\t1\t-7\n", "line 6: expected a finite non-negative count"),
        ("2\n2\ntA\ntB\n0\t5\n2\t0\t1\t7\n", "line 5: expected class size >= 1"),
        ("2\n2\ntA\ntA\n1\t0\t5\n2\t0\t1\t7\n", "line 3: duplicate transcript name 'tA'"),
        (SALMON_OK + "tA\t100\ntZ\t3\n", "line 8: unknown transcript 'tZ'"),
        (SALMON_OK + "tA\t100\n", "trailing effective lengths miss transcript 'tB'"),
        (SALMON_OK + "tA\t100\ntB\t0\n", "line 8: effective length must be positive"),
    ],
)
def test_salmon_eq_bad_input(tmp_path, text, match):
    path = tmp_path / "eq.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        read_salmon_eq_classes(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path, em_ref):
    src = em_ref / "salmon_1.10.1" / "em" / "aux_info" / "eq_classes.txt.gz"
    path = tmp_path / "eq_classes.txt.gz"
    path.write_bytes(src.read_bytes()[:200])
    with pytest.raises(FormatError, match="gzip stream ends early.*truncated") as err:
        read_eq_classes(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "ec,tsv,match",
    [
        ("0\t0\n1\t0,x\n", "0\t1\n", "p.ec, line 2: expected integers"),
        ("0\t0\n1\n", "0\t1\n", "p.ec, line 2: expected 'ec_id<TAB>t1,t2,...'"),
        ("0\t0\n0\t1\n", "0\t1\n", "duplicate EC id 0"),
        ("0\t0\n1\t1\n", "0\t-1\n", "p.tsv, line 1: expected a non-negative id and count"),
        ("0\t0\n1\t1\n", "7\t1\n", "EC id 7 is not in"),
        ("0\t0\n1\t1\n", "0\t1\t2\n", "p.tsv, line 1: expected 'ec_id<TAB>count'"),
    ],
)
def test_kallisto_bad_input(tmp_path, ec, tsv, match):
    (tmp_path / "p.ec").write_text(ec)
    (tmp_path / "p.tsv").write_text(tsv)
    with pytest.raises(ValueError, match=match):
        read_eq_classes(tmp_path / "p.ec", counts=tmp_path / "p.tsv")


def test_detection_and_argument_errors(tmp_path):
    (tmp_path / "x.txt").write_text("hello world\n")
    with pytest.raises(FormatError, match="x.txt, line 1: not a salmon eq_classes file"):
        read_eq_classes(tmp_path / "x.txt")
    (tmp_path / "p.ec").write_text("0\t0\n")
    with pytest.raises(ValueError, match="counts: .* kallisto .ec file"):
        read_eq_classes(tmp_path / "p.ec")
    (tmp_path / "s.txt").write_text(SALMON_OK)
    with pytest.raises(ValueError, match="counts: salmon"):
        read_eq_classes(tmp_path / "s.txt", counts=tmp_path / "p.ec")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_eq_classes(tmp_path / "nope.txt")
    (tmp_path / "names.txt").write_text("a\n")
    (tmp_path / "k.ec").write_text("0\t0\n1\t0,1\n")
    (tmp_path / "k.tsv").write_text("1\t4\n")
    with pytest.raises(ValueError, match="transcript id 1 out of range for 1 names"):
        read_eq_classes(tmp_path / "k.ec", counts=tmp_path / "k.tsv", transcripts=tmp_path / "names.txt")


@pytest.mark.parametrize(
    "text,match",
    [
        ("Name\tLength\tEffectiveLength\tTPM\n", "line 1: expected the quant.sf header"),
        ("Name\tLength\tEffectiveLength\tTPM\tNumReads\ntA\t10\t5\t1\n", "line 2: expected 5 columns"),
        ("Name\tLength\tEffectiveLength\tTPM\tNumReads\ntA\t10\tabc\t1\t2\n", "line 2: expected a number"),
    ],
)
def test_quant_sf_bad_input(tmp_path, text, match):
    (tmp_path / "quant.sf").write_text(text)
    with pytest.raises(FormatError, match=match):
        read_quant_sf(tmp_path / "quant.sf")


@pytest.mark.parametrize(
    "text,match",
    [
        ("tA\t100\ntB\n", "line 2: expected 2 columns"),
        ("tA\t100\ntB\tabc\n", "line 2: expected a number for value"),
        ("tA\t100\ntB\t-3\n", "effective length of 'tB' must be positive"),
        ("tA\t100\ntA\t3\n", "duplicate transcript name 'tA'"),
        ("a\tb\tc\nx\t1\t2\n", "no length column"),
        ("Name\tLength\n", "no rows"),
    ],
)
def test_length_table_bad_input(tmp_path, text, match):
    (tmp_path / "len.tsv").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_lengths(tmp_path / "len.tsv")


def test_fld_bad_input(tmp_path):
    (tmp_path / "fld.gz").write_bytes(gzip.compress(b"\x01\x00\x00"))
    with pytest.raises(FormatError, match="not a whole number of int32"):
        read_fld(tmp_path / "fld.gz")
    (tmp_path / "f.txt").write_text("0.1 x 0.3\n")
    with pytest.raises(FormatError, match="f.txt, line 1: expected a number"):
        read_fld(tmp_path / "f.txt")
    (tmp_path / "z.txt").write_text("0 0 0\n")
    with pytest.raises(FormatError, match="no mass"):
        read_fld(tmp_path / "z.txt")


def test_reading_a_copy_of_the_packaged_file_works_anywhere(tmp_path):
    from diffbio_prob.io.salmon import sample_data_dir

    shutil.copy(sample_data_dir() / "eq_classes.txt.gz", tmp_path / "renamed.dat")  # gzip found by content
    assert read_eq_classes(tmp_path / "renamed.dat").n_classes == 28


# ---- the format registry and the one-way imports ---------------------------------------------------
def test_registry_detects_and_dispatches(tmp_path):
    from diffbio_prob.io import eqclasses
    from diffbio_prob.io.base import EqFormat

    assert list(eqclasses.EQ_FORMATS) == ["salmon", "kallisto"]
    seen = []

    def read(path, counts, transcripts):
        seen.append((path, counts, transcripts))
        return small_table()

    fmt = EqFormat("toy", "toy file (first line: TOY)", lambda fields: fields == ["TOY"], read)
    eqclasses.register_eq_format(fmt)
    try:
        (tmp_path / "t.toy").write_text("TOY\n1 2 3\n")
        assert detect_eq_format(tmp_path / "t.toy") == "toy"
        same_table(small_table(), read_eq_classes(tmp_path / "t.toy", counts="c"))
        assert seen == [(tmp_path / "t.toy", "c", None)]
        (tmp_path / "x.txt").write_text("hello world\n")
        with pytest.raises(FormatError, match="nor a toy file"):  # the error lists every registered format
            detect_eq_format(tmp_path / "x.txt")
        with pytest.raises(ValueError, match="'toy' is already registered"):
            eqclasses.register_eq_format(fmt)
    finally:
        del eqclasses.EQ_FORMATS["toy"]
    with pytest.raises(TypeError, match="expected an EqFormat"):
        eqclasses.register_eq_format("salmon")


def test_public_names_still_importable_from_eqclasses():
    from diffbio_prob.io import base, eqclasses

    for name in ("EqClassTable", "FormatError", "LengthTable", "open_text", "read_all_lines", "EqFormat"):
        assert getattr(eqclasses, name) is getattr(base, name)
    assert issubclass(FormatError, ValueError)


# ---- bad input, round two: every reader on damaged gzip, fractional counts, duplicates ---------------
EQ_TEXT = "2\n2\ntA\ntB\n1\t0\t5\n2\t0\t1\t7\n" * 1
QUANT_TEXT = "Name\tLength\tEffectiveLength\tTPM\tNumReads\n" + "".join(
    f"t{i}\t{100 + i}\t{50 + i}\t1\t2\n" for i in range(200))
EC_TEXT = "".join(f"{i}\t{i}\n" for i in range(200)) + "200\t0,1\n"
TSV_TEXT = "".join(f"{i}\t{i + 1}\n" for i in range(200))
NAMES_TEXT = "".join(f"t{i}\n" for i in range(200))
FLD_TEXT = " ".join(str(i % 7) for i in range(1001)) + "\n"


def _read_kallisto_ec_file(p):
    from diffbio_prob.io.kallisto import read_kallisto_ec

    return read_kallisto_ec(p)


def _read_tsv_file(p):
    from diffbio_prob.io.kallisto import read_pseudoalignments_tsv

    return read_pseudoalignments_tsv(p)


def _read_names_file(p):
    from diffbio_prob.io.kallisto import read_transcript_names

    return read_transcript_names(p)


READERS = {
    "salmon eq classes": (lambda p: read_eq_classes(p), EQ_TEXT * 1),
    "quant.sf": (read_quant_sf, QUANT_TEXT),
    "lengths": (lambda p: read_lengths(p), QUANT_TEXT),
    "kallisto .ec": (_read_kallisto_ec_file, EC_TEXT),
    "pseudoalignments.tsv": (_read_tsv_file, TSV_TEXT),
    "transcripts.txt": (_read_names_file, NAMES_TEXT),
    "fld": (read_fld, FLD_TEXT),
}


def _damaged(text: str, how: str) -> bytes:
    packed = gzip.compress(text.encode() * 20)
    if how == "truncated":
        return packed[: len(packed) // 2]
    if how == "corrupt":  # valid header, garbage deflate stream
        return packed[:10] + bytes([0xFF] * 40) + packed[50:]
    return bytes(range(128, 256)) * 8  # "not gzip": binary bytes under a .gz name


@pytest.mark.parametrize("how,match", [
    ("truncated", "gzip stream ends early"),
    ("corrupt", "corrupt gzip data"),
    ("binary", "neither gzip nor UTF-8 text|neither a gzipped int32 FLD nor a text FLD"),
])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_damaged_gzip_is_one_clear_error_naming_the_file(tmp_path, reader, how, match):
    fn, text = READERS[reader]
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(text.encode()))
    fn(good)  # the intact file reads
    path = tmp_path / f"damaged_{how}.gz"
    path.write_bytes(_damaged(text, how))
    with pytest.raises(FormatError, match=match) as err:
        fn(path)
    assert str(err.value).startswith(str(path))


def test_plain_text_under_a_gz_name_still_reads(tmp_path):
    """Gzip is detected from the content, not the name: a text file called .gz is read as text."""
    (tmp_path / "eq.txt.gz").write_text(EQ_TEXT)
    assert read_eq_classes(tmp_path / "eq.txt.gz").counts.tolist() == [5.0, 7.0]


@pytest.mark.parametrize(
    "text,match",
    [
        ("2\n2\ntA\ntB\n1\t0\t5.5\n2\t0\t1\t7\n", "line 5: expected a whole number of fragments for count, got '5.5'"),
        ("2\n1\ntA\ntB\n2\t0\t1\t0.5\t0.5\t7.25\n", "line 5: expected a whole number of fragments"),
        ("2\n2\ntA\ntB\n1\t0\t5\n2\t1\t1\t7\n", "line 6: transcript id 1 listed twice in one class"),
        ("3\n2\ntA\ntB\n1\t0\t5\n2\t0\t1\t7\n", r"line 5: expected one transcript name \(line 1 declares 3"),
        ("2\n1\ntA\ntB\n1\t0\t5\n2\t0\t1\t7\n", r"line 6: .*is the class count on line 2 \(1\) too small"),
        ("2\n3\ntA\ntB\n1\t0\t5\n2\t0\t1\t7\ntA\t10\ntB\t20\n",
         r"line 7: expected an integer class size \(class 3 of the 3 that line 2 declares\), got 'tA'"),
        ("2\n2\ntA\ntB\n1\t0\t5\n2\t0\t1\t-7\n", "line 6: expected a finite non-negative count"),
        ("2\n2\ntA\ntB\n1\t0\tnan\n2\t0\t1\t7\n", "line 5: expected a finite non-negative count, got 'nan'"),
        ("2\n2\ntA\ntB\n1\t-1\t5\n2\t0\t1\t7\n", "line 5: expected transcript id >= 0"),
        (EQ_TEXT + "tA\tnan\ntB\t3\n", "line 7: expected a finite non-negative effective length, got 'nan'"),
    ],
)
def test_salmon_eq_bad_counts_and_headers(tmp_path, text, match):
    path = tmp_path / "eq.txt"
    path.write_text(text)
    with pytest.raises(FormatError, match=match) as err:
        read_eq_classes(path)
    assert str(err.value).startswith(str(path))


def test_whole_counts_written_as_floats_still_read(tmp_path):
    (tmp_path / "eq.txt").write_text("2\n2\ntA\ntB\n1\t0\t5.0\n2\t0\t1\t7\n")
    assert read_eq_classes(tmp_path / "eq.txt").counts.tolist() == [5.0, 7.0]


def test_writers_refuse_fractional_counts(tmp_path):
    table = small_table().with_counts(np.array([5.0, 12.5, 3.0]))
    with pytest.raises(ValueError, match="whole, non-negative fragment counts"):
        write_salmon_eq_classes(tmp_path / "eq.txt", table)
    with pytest.raises(ValueError, match="whole, non-negative fragment counts"):
        write_pseudoalignments_tsv(tmp_path / "p.tsv", table)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "ec,tsv,names,match",
    [
        ("0\t0\n1\t1\n", "0\t1.5\n", None, "p.tsv, line 1: expected a whole number of fragments for the count of EC 0"),
        ("0\t0\n1\t1\n", "0\t1\n0\t2\n", None, r"p.tsv, line 2: EC id 0 listed twice \(first at line 1\)"),
        ("0\t0\n1\t0,1,0\n", "0\t1\n", None, "p.ec, line 2: transcript id 0 listed twice in EC 1"),
        ("0\t0\n1\t1\n", "0\t1\n", "tA\ntA\n", r"names.txt, line 2: duplicate transcript name 'tA' \(first at line 1\)"),
        ("0\t0\n1\t5\n", "0\t1\n", "tA\ntB\n", "p.ec: transcript id 5 out of range for 2 names"),
    ],
)
def test_kallisto_bad_counts_and_ids(tmp_path, ec, tsv, names, match):
    (tmp_path / "p.ec").write_text(ec)
    (tmp_path / "p.tsv").write_text(tsv)
    transcripts = None
    if names is not None:
        (tmp_path / "names.txt").write_text(names)
        transcripts = tmp_path / "names.txt"
    with pytest.raises(ValueError, match=match):
        read_eq_classes(tmp_path / "p.ec", counts=tmp_path / "p.tsv", transcripts=transcripts)


def test_kallisto_duplicate_names_in_a_list(tmp_path):
    (tmp_path / "p.ec").write_text("0\t0\n1\t1\n")
    (tmp_path / "p.tsv").write_text("0\t1\n")
    with pytest.raises(ValueError, match="transcripts: duplicate transcript name 'a'"):
        read_eq_classes(tmp_path / "p.ec", counts=tmp_path / "p.tsv", transcripts=["a", "a"])


QUANT_HEAD = "Name\tLength\tEffectiveLength\tTPM\tNumReads\n"


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "line 1: expected the quant.sf header"),
        (QUANT_HEAD + "tA\t10\t5\t1\t2\ntA\t10\t5\t1\t2\n", r"line 3: duplicate transcript name 'tA' \(first at line 2\)"),
        (QUANT_HEAD + "tA\t10\tnan\t1\t2\n", "line 2: expected a finite non-negative EffectiveLength, got 'nan'"),
        (QUANT_HEAD + "tA\t10\t5\t1\t-2\n", "line 2: expected a finite non-negative NumReads"),
        (QUANT_HEAD, "no transcripts"),
    ],
)
def test_quant_sf_more_bad_input(tmp_path, text, match):
    (tmp_path / "quant.sf").write_text(text)
    with pytest.raises(FormatError, match=match) as err:
        read_quant_sf(tmp_path / "quant.sf")
    assert str(err.value).startswith(str(tmp_path / "quant.sf"))


@pytest.mark.parametrize(
    "name,text,fld,match",
    [
        ("len.tsv", "", None, "line 1: empty file, expected lengths"),
        ("quant.sf", QUANT_HEAD + "tA\t10\tnan\t1\t2\n", None, "line 2: expected a finite EffectiveLength, got 'nan'"),
        ("quant.sf", QUANT_HEAD + "tA\t10\t0\t1\t2\n", None, "line 2: effective length of 'tA' must be positive"),
        ("len.tsv", "tA\t100\ntB\tinf\n", None, "line 2: expected a finite value, got 'inf'"),
        ("len.tsv", "tA\t100\ntB\t0\n", [0, 0, 1.0], "line 2: length of 'tB' must be positive, got '0'"),
        ("len.tsv", "tA\t100\ntA\t3\n", None, r"line 2: duplicate transcript name 'tA' \(first at line 1\)"),
        ("tx.fa", ">tA\nACGT\n>tB\n>tC\nAC\n", [0, 0, 1.0], "line 3: FASTA record 'tB' has no sequence"),
        ("tx.fa", ">tA\nACGT\n>tA\nAC\n", [0, 0, 1.0], r"line 3: duplicate transcript name 'tA' \(first at line 1\)"),
        ("tx.fa", "ACGT\n>tA\nAC\n", [0, 0, 1.0], r"line 1: expected a length table .* or FASTA .*got one column"),
    ],
)
def test_lengths_more_bad_input(tmp_path, name, text, fld, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FormatError, match=match) as err:
        read_lengths(path, fld=None if fld is None else np.asarray(fld))
    assert str(err.value).startswith(str(path))


def _bootstrap_dir(tmp_path, names: bytes, draws: bytes):
    folder = tmp_path / "aux_info" / "bootstrap"
    folder.mkdir(parents=True)
    (folder / "names.tsv.gz").write_bytes(gzip.compress(names))
    (folder / "bootstraps.gz").write_bytes(draws)
    return tmp_path / "aux_info"


def test_salmon_bootstraps_read_and_bad_input(tmp_path):
    from diffbio_prob.io.salmon import read_salmon_bootstraps

    draws = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 5.0]])
    good = _bootstrap_dir(tmp_path / "ok", b"tA\ttB\n", gzip.compress(draws.astype("<f8").tobytes()))
    names, back = read_salmon_bootstraps(good)
    assert names == ["tA", "tB"]
    np.testing.assert_array_equal(back, draws)
    empty = _bootstrap_dir(tmp_path / "empty", b"", gzip.compress(draws.tobytes()))
    with pytest.raises(FormatError, match="names.tsv.gz, line 1: no transcript names"):
        read_salmon_bootstraps(empty)
    nan = _bootstrap_dir(tmp_path / "nan", b"tA\ttB\n", gzip.compress(np.array([1.0, np.nan]).tobytes()))
    with pytest.raises(FormatError, match="bootstraps.gz: draw 0 of 'tB' is nan"):
        read_salmon_bootstraps(nan)
    cut = _bootstrap_dir(tmp_path / "cut", b"tA\ttB\n", gzip.compress(draws.tobytes() * 50)[:40])
    with pytest.raises(FormatError, match="bootstraps.gz: the gzip stream ends early; the file is truncated"):
        read_salmon_bootstraps(cut)


def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path):
    (tmp_path / "eq.txt").write_bytes(b"\xef\xbb\xbf" + EQ_TEXT.encode())
    assert read_eq_classes(tmp_path / "eq.txt").n_transcripts == 2
    (tmp_path / "quant.sf").write_bytes(b"\xef\xbb\xbf" + QUANT_TEXT.encode())
    assert read_quant_sf(tmp_path / "quant.sf").names[0] == "t0"
