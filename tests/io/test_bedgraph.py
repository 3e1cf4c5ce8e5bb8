"""bedGraph reader, the run merger and the BED writer."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from diffbio_prob.io.bedgraph import looks_like_bedgraph, read_bedgraph, runs, write_bed


def test_read_headers_chromosomes_gzip_and_gaps(tmp_path):
    text = ("browser position chr1:1-1000\ntrack type=bedGraph name=depth\n# a comment\n"
            "chr1 0 100 3\nchr1\t100\t200\t0\n\nchr1 300 400 7\nchr2 0 50 1.0\n")
    p = tmp_path / "d.bg.gz"  # gzip told by its bytes, whatever the name
    p.write_bytes(gzip.compress(text.encode()))
    g = read_bedgraph(p, values="counts")
    assert g.chroms == ["chr1", "chr2"] and g.num_bins == 4
    assert g.starts[0].tolist() == [0, 100, 300] and g.ends[0].tolist() == [100, 200, 400]
    assert g.values[0].tolist() == [3.0, 0.0, 7.0] and g.values[1].tolist() == [1.0]
    assert g.starts[0].dtype == np.int64
    assert [v.tolist() for v in read_bedgraph(p, values="real").values] == [v.tolist() for v in g.values]


@pytest.mark.parametrize(
    "body, values, match",
    [
        ("chr1 0 100\n", "real", r"d\.bg:2: expected 4 fields \(chrom start end value\), got 3"),
        ("chr1 0 1e2 3\n", "real", r"d\.bg:2: expected integer start and end, got '0' and '1e2'"),
        ("chr1 -5 100 3\n", "real", r"d\.bg:2: start -5 is negative"),
        ("chr1 100 100 3\n", "real", r"d\.bg:2: empty interval \(end 100 <= start 100\)"),
        ("chr1 0 100 x\n", "real", r"d\.bg:2: expected a number for the value, got 'x'"),
        ("chr1 0 100 nan\n", "real", r"d\.bg:2: expected a finite value, got 'nan'"),
        ("chr1 0 100 -2\n", "counts", r"d\.bg:2: negative value -2 \(read depths are >= 0\)"),
        ("chr1 0 100 -2\n", "nonnegative", r"negative value"),
        ("chr1 0 100 2.5\n", "counts", r"d\.bg:2: expected a whole-number read count, got '2.5'"),
        ("chr1 0 100 1\nchr1 50 150 1\n", "real", r"d\.bg:3: interval chr1:50-150 overlaps the previous one \(line 2"),
        ("chr1 100 200 1\nchr1 0 100 1\n", "real", r"d\.bg:3: interval chr1:0-100 starts before the previous one"),
        ("chr1 0 100 1\nchr2 0 100 1\nchr1 100 200 1\n", "real",
         r"d\.bg:4: chromosome 'chr1' appears again \(first block at line 2\); the file is not sorted"),
        ("chr1 0 100 1\ntrack name=second\n", "real", r"d\.bg:3: a 'track' line after the data"),
        ("# nothing\n", "real", r"d\.bg: no data lines"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, body, values, match):
    p = tmp_path / "d.bg"
    p.write_text("track type=bedGraph\n" + body)
    with pytest.raises(ValueError, match=match):
        read_bedgraph(p, values=values)


def test_negative_values_allowed_for_real(tmp_path):
    p = tmp_path / "d.bg"
    p.write_text("chr1 0 100 -0.5\n")
    assert read_bedgraph(p).values[0].tolist() == [-0.5]
    with pytest.raises(ValueError, match="values: expected one of"):
        read_bedgraph(p, values="ints")


def test_sniffing():
    assert looks_like_bedgraph(["track type=bedGraph", "chr1 0 1 2"])
    assert looks_like_bedgraph(["chr1\t0\t100\t2.5"])
    assert not looks_like_bedgraph([">seq1", "ACGT"])
    assert not looks_like_bedgraph(["0 1 2 3 4"])  # integer symbols, not a track
    assert not looks_like_bedgraph(["K562\tchr1", "H3K4me3\tH3K27me3", "0\t1"])


def test_runs_break_at_state_changes_and_gaps():
    starts = np.array([0, 10, 20, 30, 50, 60])
    ends = np.array([10, 20, 30, 40, 60, 70])
    states = np.array([0, 0, 1, 1, 1, 0])
    # brute force: a run ends before i when the state changes or bin i does not start at bin i-1's end
    expected, lo = [], 0
    for i in range(1, len(states) + 1):
        if i == len(states) or states[i] != states[i - 1] or starts[i] != ends[i - 1]:
            expected.append([lo, i])
            lo = i
    assert runs(starts, ends, states).tolist() == expected == [[0, 2], [2, 4], [4, 5], [5, 6]]
    assert runs(starts[:0], ends[:0], states[:0]).shape == (0, 2)


def test_write_bed_layout(tmp_path):
    p = write_bed(tmp_path / "s.bed", ["chr1", "chr2"], [0, 5], [10, 15],
                  {"name": ["state0", "state1"], "score": [1000, 500], "mean_posterior": np.array([1.0, 0.5])},
                  track='name="cn"')
    lines = p.read_text().splitlines()
    assert lines[0] == 'track name="cn"'
    assert lines[1] == "#chrom\tstart\tend\tname\tscore\tmean_posterior"
    assert lines[2:] == ["chr1\t0\t10\tstate0\t1000\t1", "chr2\t5\t15\tstate1\t500\t0.5"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.bed"]  # no temporary left


def test_fixed_bins_split_merged_runs(tmp_path):
    """deepTools-style lines (runs of equal 100 bp bins as one line, a short last bin) against a per-base
    brute-force expansion."""
    p = tmp_path / "d.bg"
    p.write_text("chr1 0 100 1\nchr1 100 400 2\nchr1 400 500 0\nchr1 700 800 5\nchr1 800 850 6\n"
                 "chr2 0 100 3\nchr2 100 200 4\n")
    g = read_bedgraph(p).fixed_bins()
    assert g.bin_width() == 100
    for chrom, st, en, val in zip(g.chroms, g.starts, g.ends, g.values):
        per_base = {}
        for line in p.read_text().splitlines():
            c, s, e, v = line.split()
            if c == chrom:
                per_base.update({b: float(v) for b in range(int(s), int(e))})
        assert (np.diff(st) >= 100).all() and ((en - st) == 100).sum() >= len(st) - 1
        assert all(per_base[b] == v for s, e, v in zip(st, en, val) for b in range(s, e))
        assert sum(e - s for s, e in zip(st, en)) == len(per_base)  # the bins cover the track exactly
    assert g.starts[0].tolist() == [0, 100, 200, 300, 400, 700, 800] and g.ends[0][-1] == 850
    assert g.lines[0].tolist() == [1, 2, 2, 2, 3, 4, 5]


def test_fixed_bins_reject_other_widths(tmp_path):
    p = tmp_path / "d.bg"
    p.write_text("chr1 0 100 1\nchr1 100 200 2\nchr1 200 350 2\nchr1 350 450 2\n")
    with pytest.raises(ValueError, match=r"d\.bg:3: interval of 150 bp is not a multiple of the track's 100 bp bins"):
        read_bedgraph(p).fixed_bins()
