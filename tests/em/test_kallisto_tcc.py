"""kallisto's TCC matrix (``matrix.tcc.mtx``: MatrixMarket, cells/samples x ECs) with its ``matrix.ec``:
one ``EqClassTable`` per row, and a one-row matrix as ``quant --ec-counts``."""

from __future__ import annotations

import numpy as np
import pytest

from diffbio_prob.cli import main
from diffbio_prob.io.kallisto import (
    read_kallisto_eq_classes,
    read_kallisto_tcc,
    read_matrix_market,
    write_kallisto_ec,
    write_pseudoalignments_tsv,
)
from diffbio_prob.io.salmon import read_quant_sf, read_salmon_eq_classes


@pytest.fixture
def kallisto_files(tmp_path, em_ref):
    d = em_ref / "salmon_1.10.1" / "vbem"
    table = read_salmon_eq_classes(d / "aux_info" / "eq_classes.txt.gz")
    ec = write_kallisto_ec(tmp_path / "matrix.ec", table)
    (tmp_path / "transcripts.txt").write_text("\n".join(table.names) + "\n")
    quant = read_quant_sf(d / "quant.sf")
    (tmp_path / "eff.tsv").write_text("".join(f"{n}\t{e}\n" for n, e in zip(quant.names, quant.effective_lengths)))
    return table, ec, tmp_path


def _write_mtx(path, rows, n_cols, field="integer"):
    entries = [(i + 1, j + 1, v) for i, row in enumerate(rows) for j, v in enumerate(row) if v]
    body = "".join(f"{i} {j} {int(v) if field == 'integer' else v}\n" for i, j, v in entries)
    path.write_text(f"%%MatrixMarket matrix coordinate {field} general\n% written by a test\n"
                    f"{len(rows)} {n_cols} {len(entries)}\n{body}")
    return path


def test_one_table_per_row(kallisto_files):
    table, ec, tmp = kallisto_files
    second = np.roll(table.counts, 3)
    mtx = _write_mtx(tmp / "matrix.tcc.mtx", [table.counts, second], table.n_classes)
    (tmp / "matrix.cells").write_text("s1\ns2\n")
    tables = read_kallisto_tcc(mtx, ec, tmp / "transcripts.txt", samples=tmp / "matrix.cells")
    assert len(tables) == 2
    np.testing.assert_array_equal(tables[0].counts, table.counts)
    np.testing.assert_array_equal(tables[1].counts, second)
    assert tables[1].source.endswith("#s2") and tables[0].names == table.names
    np.testing.assert_array_equal(tables[0].transcript_ids, table.transcript_ids)
    (n_rows, n_cols), r, c, _ = read_matrix_market(mtx)
    assert (n_rows, n_cols) == (2, table.n_classes) and r.min() == 0 and c.max() < n_cols


def test_fewer_columns_than_ecs_and_real_field(kallisto_files):
    table, ec, tmp = kallisto_files
    mtx = _write_mtx(tmp / "m.mtx", [[2.0, 0, 5.0]], 3, field="real")
    (t,) = read_kallisto_tcc(mtx, ec)
    assert t.counts.shape == (table.n_classes,) and t.counts[:3].tolist() == [2.0, 0.0, 5.0] and t.counts[3:].sum() == 0


def test_one_row_matrix_as_ec_counts_quantifies_like_the_tsv(kallisto_files, capsys):
    table, ec, tmp = kallisto_files
    mtx = _write_mtx(tmp / "matrix.tcc.mtx", [table.counts], table.n_classes)
    tsv = write_pseudoalignments_tsv(tmp / "pseudoalignments.tsv", table)
    common = ["--eq-classes", str(ec), "--transcripts", str(tmp / "transcripts.txt"), "--lengths", str(tmp / "eff.tsv"),
              "--quiet"]
    assert main(["quant", *common, "--ec-counts", str(mtx), "--out", str(tmp / "m.sf")]) == 0
    assert main(["quant", *common, "--ec-counts", str(tsv), "--out", str(tmp / "t.sf")]) == 0
    assert (tmp / "m.sf").read_text() == (tmp / "t.sf").read_text()
    np.testing.assert_array_equal(read_kallisto_eq_classes(ec, tsv).counts, read_kallisto_tcc(mtx, ec)[0].counts)


def test_many_rows_as_ec_counts_is_one_line_error(kallisto_files, capsys):
    table, ec, tmp = kallisto_files
    mtx = _write_mtx(tmp / "matrix.tcc.mtx", [table.counts, table.counts], table.n_classes)
    code = main(["quant", "--eq-classes", str(ec), "--ec-counts", str(mtx), "--lengths", str(tmp / "eff.tsv"),
                 "--transcripts", str(tmp / "transcripts.txt"), "--out", str(tmp / "q.sf")])
    err = capsys.readouterr().err
    assert code == 2 and "holds 2 cells/samples" in err and err.count("\n") == 1
    assert not (tmp / "q.sf").exists()


@pytest.mark.parametrize("text,message", [
    ("%%MatrixMarket matrix array integer general\n1 2\n3\n4\n", "coordinate"),
    ("%%MatrixMarket matrix coordinate pattern general\n1 2 1\n1 1\n", "pattern"),
    ("%%MatrixMarket matrix coordinate integer general\n1 2 3\n1 1 4\n", "declares 3 entries"),
    ("%%MatrixMarket matrix coordinate integer general\n1 2 1\n2 1 4\n", "outside"),
    ("%%MatrixMarket matrix coordinate integer general\n1 2 1\n1 1 -4\n", "non-negative"),
    ("%%MatrixMarket matrix coordinate integer general\n1 2 2\n1 1 4\n1 1 5\n", "twice"),
    ("1 2 1\n1 1 4\n", "header"),
])
def test_malformed_matrix(tmp_path, text, message):
    (tmp_path / "m.mtx").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_matrix_market(tmp_path / "m.mtx")


def test_transposed_matrix_is_named(kallisto_files):
    table, ec, tmp = kallisto_files
    n_ec = table.n_classes
    mtx = tmp / "t.mtx"
    mtx.write_text(f"%%MatrixMarket matrix coordinate integer general\n{n_ec} {n_ec + 5} 1\n1 1 3\n")
    with pytest.raises(ValueError, match="transposed"):
        read_kallisto_tcc(mtx, ec)
