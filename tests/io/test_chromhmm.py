"""ChromHMM's binarized reader and table/segment writers, against ChromHMM 1.27's own files
(tests/reference/data/chromhmm_ref, see its README)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from diffbio_prob.io.chromhmm import (
    MISSING,
    binarized_files,
    emission_order,
    looks_like_binarized,
    read_binarized,
    read_table,
    write_emissions,
    write_segments,
    write_transitions,
)
from pathlib import Path

REF = Path(__file__).resolve().parents[1] / "reference" / "data" / "chromhmm_ref"
MARKS = ["H3K4me3", "H3K27ac", "H3K36me3", "H3K27me3"]


def test_reads_the_reference_folder():
    b = read_binarized(REF / "binary")
    assert b.cells == ["sim", "sim"] and b.chroms == ["chr1", "chr2"] and b.marks == MARKS
    assert [x.shape for x in b.data] == [(2500, 4), (2000, 4)]
    assert set(np.unique(b.data[0])) <= {0, 1} and (b.data[1][100:110, 1] == MISSING).all()
    assert (b.data[1] == MISSING).sum() == 10
    # the same numbers as a plain parse of the text
    rows = gzip.open(REF / "binary" / "sim_chr1_binary.txt.gz", "rt").read().splitlines()[2:]
    assert (b.data[0] == np.array([[int(v) for v in r.split("\t")] for r in rows])).all()


def test_folder_picks_binary_files_sorted(tmp_path):
    for name in ("c_chr2_binary.txt", "c_chr1_binary.txt", ".hidden_binary.txt", "notes.txt"):
        (tmp_path / name).write_text("c\tchrX\nm\n1\n")
    assert [f.name for f in binarized_files(tmp_path)] == ["c_chr1_binary.txt", "c_chr2_binary.txt"]
    with pytest.raises(ValueError, match="no files whose name contains '_binary'"):
        binarized_files(tmp_path / "..")  # the parent has folders, no binarized files
    with pytest.raises(FileNotFoundError, match="nope_binary.txt: no such file"):
        binarized_files(tmp_path / "nope_binary.txt")


@pytest.mark.parametrize(
    "text, match",
    [
        ("", r"x_binary\.txt:1: expected 'cell<TAB>chrom'"),
        ("K562 chr1\nm1\tm2\n0\t1\n", r"x_binary\.txt:1: expected 'cell<TAB>chrom' \(2 tab-separated fields\)"),
        ("K562\tchr1\n", r"x_binary\.txt:2: expected the mark names"),
        ("K562\tchr1\nm1\t\n0\t1\n", r"x_binary\.txt:2: an empty mark name"),
        ("K562\tchr1\nm1\tm1\n0\t1\n", r"x_binary\.txt:2: mark 'm1' is listed twice"),
        ("K562\tchr1\nm1\tm2\n", r"x_binary\.txt: no bins"),
        ("K562\tchr1\nm1\tm2\n0\t1\n0\n", r"x_binary\.txt:4: expected 2 tab-separated values \(one per mark\), got 1"),
        ("K562\tchr1\nm1\tm2\n0\t1\n0\t3\n", r"x_binary\.txt:4: mark 'm2': expected 0, 1 or 2 \(missing\), got '3'"),
        ("K562\tchr1\nm1\tm2\n0.5\t1\n", r"x_binary\.txt:3: mark 'm1': expected 0, 1 or 2 \(missing\), got '0.5'"),
    ],
)
def test_malformed_files(tmp_path, text, match):
    p = tmp_path / "x_binary.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_binarized(p)


def test_mismatched_marks_and_repeated_chromosome(tmp_path):
    (tmp_path / "a_chr1_binary.txt").write_text("a\tchr1\nm1\tm2\n0\t1\n")
    (tmp_path / "a_chr2_binary.txt").write_text("a\tchr2\nm2\tm1\n0\t1\n")
    with pytest.raises(ValueError, match=r"a_chr2_binary\.txt:2: marks \['m2', 'm1'\] differ from \['m1', 'm2'\]"):
        read_binarized(tmp_path)
    (tmp_path / "a_chr2_binary.txt").write_text("a\tchr1\nm1\tm2\n0\t1\n")
    with pytest.raises(ValueError, match=r"a_chr2_binary\.txt:1: cell 'a' chromosome 'chr1' was already read"):
        read_binarized(tmp_path)


def test_sniffing():
    lines = gzip.open(REF / "binary" / "sim_chr1_binary.txt.gz", "rt").read().splitlines()[:3]
    assert looks_like_binarized(lines)
    assert not looks_like_binarized(["chr1\t0\t100\t3", "chr1\t100\t200\t3", "chr1\t200\t300\t3"])
    assert not looks_like_binarized([">a", "ACGT", "ACGT"])


def test_tables_in_chromhmm_layout(tmp_path):
    """Our writers reproduce ChromHMM's emission and transition files byte for byte from its numbers."""
    corner, cols, labels, emis = read_table(REF / "model" / "emissions_3.txt")
    assert corner == "State (Emission order)" and cols == MARKS and labels == ["1", "2", "3"]
    write_emissions(tmp_path / "emissions_3.txt", cols, emis)
    assert (tmp_path / "emissions_3.txt").read_text() == (REF / "model" / "emissions_3.txt").read_text()
    corner, cols, labels, trans = read_table(REF / "model" / "transitions_3.txt")
    assert corner == "State (from\\to) (Emission order)" and cols == labels == ["1", "2", "3"]
    write_transitions(tmp_path / "transitions_3.txt", trans)
    assert (tmp_path / "transitions_3.txt").read_text() == (REF / "model" / "transitions_3.txt").read_text()
    with pytest.raises(ValueError, match=r"present_probs: expected shape \(K, 4\)"):
        write_emissions(tmp_path / "e.txt", MARKS, emis[:, :2])
    with pytest.raises(ValueError, match="transition_probs: expected a square"):
        write_transitions(tmp_path / "t.txt", trans[:2])


def test_segments_round_trip_chromhmm_bed(tmp_path):
    """ChromHMM's segmentation, expanded to bins and written again, is the same file."""
    lines = (REF / "model" / "sim_3_segments.bed").read_text().splitlines()
    per_chrom: dict[str, list[int]] = {}
    for line in lines:
        chrom, start, end, label = line.split("\t")
        assert int(start) % 200 == 0 and int(end) % 200 == 0 and label[0] == "E"
        per_chrom.setdefault(chrom, []).extend([int(label[1:]) - 1] * ((int(end) - int(start)) // 200))
    assert {c: len(s) for c, s in per_chrom.items()} == {"chr1": 2500, "chr2": 2000}
    write_segments(tmp_path / "s.bed", list(per_chrom), [np.array(s) for s in per_chrom.values()], 200)
    assert (tmp_path / "s.bed").read_text().splitlines() == lines


def _brute_force_order(p):
    """ChromHMM's rule spelled out: every start, greedy next-nearest by sqrt(1 - r), least total first."""
    k = len(p)
    r = np.corrcoef(p)
    d = np.sqrt(np.maximum(1 - r, 0))
    best = None
    for first in range(k):
        chain, total = [first], 0.0
        while len(chain) < k:
            rest = [s for s in range(k) if s not in chain]
            nxt = min(rest, key=lambda s: d[s, chain[-1]])
            total += d[nxt, chain[-1]]
            chain.append(nxt)
        if best is None or total < best[0] - 1e-12:
            best = (total, chain)
    return best


def test_emission_order_is_chromhmms_greedy_chain():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.random((5, 4))
        total, chain = _brute_force_order(p)
        order = emission_order(p).tolist()
        # a chain and its reverse have the same total up to rounding, which ChromHMM's strict '<' then decides
        assert order in (chain, chain[::-1])
        assert abs(sum(np.sqrt(1 - np.corrcoef(p))[a, b] for a, b in zip(order, order[1:])) - total) < 1e-12
    # a constant row has correlation 0 with every row (ChromHMM's Util.correlation)
    assert sorted(emission_order(np.array([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]])).tolist()) == [0, 1, 2]


def test_numbers_print_as_java_does():
    """Every number ChromHMM printed into model_3.txt (Java's Double.toString) comes back the same."""
    from diffbio_prob.io.chromhmm import java_double

    tokens = [t for line in (REF / "model" / "model_3.txt").read_text().splitlines()[1:]
              for t in line.split("\t") if "." in t]
    assert len(tokens) > 30 and any("E" in t for t in tokens)
    assert [java_double(float(t)) for t in tokens] == tokens
