"""io/count_formats.py: featureCounts, htseq-count, AnnData .h5ad and CSV/TSV count inputs, told apart by content.

Every test writes small, realistic files into ``tmp_path``: the same 5 genes x 3 samples in each format, so the
formats can also be checked against each other.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.io.count_formats import CountInput, detect_count_format, read_count_input
from diffbio_prob.io.counts import align_counts, read_counts

# anndata's own notes while writing the test files (pandas 3 string options, the deliberately duplicated obs names)
pytestmark = [pytest.mark.filterwarnings("ignore:The 'future.infer_string' option:Warning"),
              pytest.mark.filterwarnings("ignore:Observation names are not unique:UserWarning")]

GENES = ["ENSG00000223972.5", "ENSG00000227232.5", "ENSG00000278267.1", "ENSG00000243485.5", "ENSG00000284332.1"]
SAMPLES = ["ctrl_1", "ctrl_2", "treat_1"]
VALUES = np.array([[0, 3, 1], [112, 98, 240], [7, 0, 12], [0, 0, 0], [1520, 1733, 987]], dtype=np.int64)
LENGTHS = [1735, 1351, 68, 1021, 138]
ANNOT = [  # Chr, Start, End, Strand: multi-exon genes list one value per exon, as featureCounts writes them
    ("chr1;chr1;chr1", "11869;12613;13221", "12227;12721;14409", "+;+;+"),
    ("chr1;chr1", "14404;15005", "14501;16258", "-;-"),
    ("chr1", "17369", "17436", "-"),
    ("chr1;chr1", "29554;30564", "30039;31097", "+;+"),
    ("chr1", "30366", "30503", "+"),
]
FC_COMMENT = ('# Program:featureCounts v2.0.6; Command:"featureCounts" "-T" "8" "-p" "--countReadPairs" "-s" "2" '
              '"-a" "/ref/gencode.v44.annotation.gtf" "-o" "counts/featureCounts.txt" "/data/bam/ctrl_1.bam" '
              '"/data/bam/ctrl_2.bam" "/data/bam/treat_1.bam" ')
HTSEQ_TAIL = [("__no_feature", (2514, 2210, 3011)), ("__ambiguous", (301, 277, 412)),
              ("__too_low_aQual", (0, 0, 0)), ("__not_aligned", (0, 0, 0)),
              ("__alignment_not_unique", (40121, 38840, 45011))]


def expected_frame() -> pd.DataFrame:
    return pd.DataFrame(VALUES.astype(float), index=pd.Index(GENES), columns=pd.Index(SAMPLES))


def featurecounts_text(*, comment: bool = True, bams=None, values=VALUES, genes=GENES, lengths=LENGTHS,
                       extra=None) -> str:
    bams = bams or [f"/data/bam/{s}.bam" for s in SAMPLES]
    header = ["Geneid", "Chr", "Start", "End", "Strand", "Length"] + list(extra or {}) + list(bams)
    lines = ([FC_COMMENT] if comment else []) + ["\t".join(header)]
    for i, g in enumerate(genes):
        extras = [v[i] for v in (extra or {}).values()]
        lines.append("\t".join([g, *ANNOT[i], str(lengths[i]), *extras, *map(str, values[i])]))
    return "\n".join(lines) + "\n"


def htseq_text(j: int, *, genes=GENES, values=VALUES, tail=True) -> str:
    lines = [f"{g}\t{values[i, j]}" for i, g in enumerate(genes)]
    if tail:
        lines += [f"{name}\t{v[j]}" for name, v in HTSEQ_TAIL]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def htseq_files(tmp_path, names=SAMPLES, *, suffix=".htseq.counts.txt", **kw) -> list[Path]:
    return [write(tmp_path / f"{n}{suffix}", htseq_text(j, **kw)) for j, n in enumerate(names)]


def write_h5ad(path: Path, *, x=None, layers=None, obs=None) -> Path:
    import anndata

    obs = obs if obs is not None else pd.DataFrame(
        {"condition": ["ctrl", "ctrl", "treat"], "batch": ["b1", "b2", "b1"]}, index=SAMPLES)
    adata = anndata.AnnData(X=VALUES.T.astype(np.float32) if x is None else x, obs=obs,
                            var=pd.DataFrame(index=GENES), layers=layers or {})
    adata.write_h5ad(path)
    return path


# --------------------------------------------------------------------------------------------- featureCounts


def test_featurecounts_with_comment_line(tmp_path):
    path = write(tmp_path / "featureCounts.txt", featurecounts_text())
    inp = read_count_input(path)
    assert isinstance(inp, CountInput)
    assert (inp.format, inp.orientation, inp.metadata, inp.sources) == (
        "featurecounts", "genes x samples", None, (str(path),))
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    assert list(inp.counts.columns) == SAMPLES  # the BAM stems; no Chr/Start/.../Length column is a sample
    assert inp.lengths.dtype == np.int64 and list(inp.lengths) == LENGTHS and list(inp.lengths.index) == GENES
    assert list(inp.annotation.columns) == ["Chr", "Start", "End", "Strand"]
    assert inp.annotation.loc["ENSG00000223972.5", "Start"] == "11869;12613;13221"
    assert detect_count_format(path) == "featurecounts"


def test_featurecounts_sample_names_header_or_given(tmp_path):
    path = write(tmp_path / "featureCounts.txt", featurecounts_text())
    raw = read_count_input(path, sample_names="header")
    assert list(raw.counts.columns) == [f"/data/bam/{s}.bam" for s in SAMPLES]
    given = read_count_input(path, sample_names=["A", "B", "C"])
    assert list(given.counts.columns) == ["A", "B", "C"]
    np.testing.assert_array_equal(given.counts.to_numpy(), VALUES)


def test_featurecounts_gzipped_whatever_the_name_and_without_comment(tmp_path):
    gz = write(tmp_path / "counts.txt", featurecounts_text(), gz=True)  # gzip content, no .gz suffix
    bare = write(tmp_path / "nocomment.tsv.gz", featurecounts_text(comment=False), gz=True)
    for path in (gz, bare):
        inp = read_count_input(path)
        assert inp.format == "featurecounts"
        pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)


def test_featurecounts_extra_attributes_named_on_the_command_line_are_not_samples(tmp_path):
    text = featurecounts_text(extra={"gene_name": ["DDX11L2", "WASH7P", "MIR6859-1", "MIR1302-2HG", "MIR1302-2"],
                                     "gene_type": ["lncRNA", "unprocessed_pseudogene", "miRNA", "lncRNA", "miRNA"]})
    text = text.replace('"-o"', '"--extraAttributes" "gene_name,gene_type" "-o"', 1)
    inp = read_count_input(write(tmp_path / "fc.txt", text))
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    assert list(inp.annotation.columns) == ["Chr", "Start", "End", "Strand", "gene_name", "gene_type"]
    assert inp.annotation.loc["ENSG00000227232.5", "gene_name"] == "WASH7P"
    # without the comment line naming them, the attribute column is taken for a sample and refused with a hint
    bare = "\n".join(text.splitlines()[1:]) + "\n"
    with pytest.raises(ValueError, match=r"fc_bare.txt', line 2: non-numeric count 'DDX11L2' in column "
                                         r"'gene_name' \(an --extraAttributes column\?"):
        read_count_input(write(tmp_path / "fc_bare.txt", bare))


def test_featurecounts_star_bams_with_the_same_stem_need_the_header_or_names(tmp_path):
    bams = [f"/data/{s}/Aligned.sortedByCoord.out.bam" for s in SAMPLES]
    path = write(tmp_path / "fc.txt", featurecounts_text(bams=bams))
    with pytest.raises(ValueError, match=r"paths: two samples get the name 'Aligned.sortedByCoord.out' \(column "
                                         r"'/data/ctrl_1/Aligned.sortedByCoord.out.bam' of .*sample_names=\"header\""):
        read_count_input(path)
    assert list(read_count_input(path, sample_names="header").counts.columns) == bams


def test_featurecounts_several_files_one_per_sample_are_joined(tmp_path):
    paths = [write(tmp_path / f"{s}.featureCounts.txt", featurecounts_text(bams=[f"/data/bam/{s}.bam"],
                                                                          values=VALUES[:, [j]]))
             for j, s in enumerate(SAMPLES)]
    inp = read_count_input(paths)
    assert inp.format == "featurecounts" and inp.sources == tuple(map(str, paths))
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    other = write(tmp_path / "other.txt", featurecounts_text(bams=["/data/x.bam"], values=VALUES[:4, [0]],
                                                             genes=GENES[:4], lengths=LENGTHS[:4]))
    with pytest.raises(ValueError, match=r"paths: .*ctrl_1.featureCounts.txt' and .*other.txt' have different "
                                         r"gene lists \(5 vs 4 genes.*'ENSG00000284332.1' is in"):
        read_count_input([paths[0], other])


@pytest.mark.parametrize("text, match", [
    (FC_COMMENT + "\n", r"featureCounts' comment line but no header"),
    (FC_COMMENT + "\nENSG00000223972.5\tchr1\t11869\t14409\t+\t1735\t0\n",
     r"fc.txt', line 2: expected featureCounts' header 'Geneid<TAB>Chr<TAB>Start"),
    (FC_COMMENT + "\nGeneid\tChr\tStart\tEnd\tStrand\tLength\n", r"line 2: the featureCounts header has no sample "
                                                                   r"columns after 'Length'"),
    (FC_COMMENT + "\nGeneid\tChr\tStart\tEnd\tStrand\tLength\t/d/a.bam\n", r"has a featureCounts header but no gene"),
    (featurecounts_text().replace("\t1520\t", "\t1520.5\t"), r"expected integer counts .* found 1520.5 at row 4, "
                                                             r"column 0 \(gene 'ENSG00000284332.1', sample "
                                                             r"'/data/bam/ctrl_1.bam'\).*--fraction"),
    (featurecounts_text().replace("\t112\t", "\t-112\t"), r"expected non-negative counts, found -112.0 at row 1"),
    (featurecounts_text().replace("\t112\t98", "\t112"), r"line 4: expected 9 tab-separated fields like the header"),
    (featurecounts_text().replace("\t1351\t", "\t1351bp\t"), r"line 4: expected an integer Length, got '1351bp'"),
    (featurecounts_text().replace("ENSG00000278267.1", "ENSG00000227232.5"),
     r"line 5: duplicated Geneid 'ENSG00000227232.5' \(also on line 4\)"),
])
def test_featurecounts_bad_files(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_count_input(write(tmp_path / "fc.txt", text))


def test_featurecounts_summary_file_is_refused_with_a_pointer_to_the_counts(tmp_path):
    summary = ("Status\t/data/bam/ctrl_1.bam\t/data/bam/ctrl_2.bam\nAssigned\t1639\t1834\n"
               "Unassigned_Unmapped\t0\t0\nUnassigned_NoFeatures\t2514\t2210\n")
    path = write(tmp_path / "featureCounts.txt.summary", summary)
    with pytest.raises(ValueError, match=r"featureCounts' .summary file .* \('.*featureCounts.txt'\?\)"):
        read_count_input(path)


# ----------------------------------------------------------------------------------------------- htseq-count


def test_htseq_several_files_drop_the_counter_rows(tmp_path):
    paths = htseq_files(tmp_path)
    inp = read_count_input(paths)
    assert (inp.format, inp.orientation, inp.metadata, inp.lengths) == ("htseq-count", "genes x samples", None, None)
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    assert list(inp.counts.columns) == SAMPLES  # ctrl_1.htseq.counts.txt -> ctrl_1
    assert list(inp.special.index) == [name for name, _ in HTSEQ_TAIL]
    assert inp.special.loc["__alignment_not_unique", "treat_1"] == 45011
    assert not any(g.startswith("__") for g in inp.counts.index)


def test_htseq_gzipped_named_files_and_given_names(tmp_path):
    paths = [write(tmp_path / f"{s}.tsv.gz", htseq_text(j), gz=True) for j, s in enumerate(SAMPLES)]
    inp = read_count_input(paths)
    assert list(inp.counts.columns) == SAMPLES
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    named = read_count_input(paths, sample_names=("a", "b", "c"))
    assert list(named.counts.columns) == ["a", "b", "c"]


def test_htseq_single_file_with_counter_rows_or_without_header(tmp_path):
    one = write(tmp_path / "ctrl_1.txt", htseq_text(0))
    assert detect_count_format(one) == "htseq-count"
    inp = read_count_input(one)
    assert inp.format == "htseq-count" and list(inp.counts.columns) == ["ctrl_1"]
    pd.testing.assert_frame_equal(inp.counts, expected_frame()[["ctrl_1"]], check_exact=True)
    stripped = write(tmp_path / "ctrl_2.txt", htseq_text(1, tail=False))  # counter rows already removed
    assert read_count_input(stripped).format == "htseq-count"
    assert list(read_count_input(stripped).counts["ctrl_2"]) == list(VALUES[:, 1])


def test_htseq_old_counter_names_and_gene_order(tmp_path):
    old = htseq_text(0, tail=False) + "no_feature\t10\nambiguous\t2\nalignment_not_unique\t5\n"
    shuffled = "\n".join(reversed(htseq_text(1).splitlines())) + "\n"  # same genes, other order
    paths = [write(tmp_path / "ctrl_1.txt", old), write(tmp_path / "ctrl_2.txt", shuffled),
             write(tmp_path / "treat_1.txt", htseq_text(2))]
    inp = read_count_input(paths)
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)  # first file's gene order
    assert inp.special.loc["no_feature", "ctrl_1"] == 10 and np.isnan(inp.special.loc["no_feature", "ctrl_2"])


def test_htseq_different_gene_lists_name_both_files_and_a_gene(tmp_path):
    a = write(tmp_path / "ctrl_1.txt", htseq_text(0))
    b = write(tmp_path / "ctrl_2.txt", htseq_text(1).replace("ENSG00000278267.1", "ENSG00000278267.2"))
    with pytest.raises(ValueError, match=r"paths: '.*ctrl_1.txt' and '.*ctrl_2.txt' have different gene lists "
                                         r"\(5 vs 5 genes, 2 not shared; e.g. 'ENSG00000278267.1' is in '.*ctrl_1.txt' "
                                         r"but not in '.*ctrl_2.txt'\)"):
        read_count_input([a, b])


def test_htseq_duplicate_sample_names(tmp_path):
    a = write(tmp_path / "run1" / "ctrl_1.counts", htseq_text(0))
    b = write(tmp_path / "run2" / "ctrl_1.counts", htseq_text(1))
    with pytest.raises(ValueError, match=r"paths: two samples get the name 'ctrl_1' \('.*run1/ctrl_1.counts' and "
                                         r"'.*run2/ctrl_1.counts'\); give sample_names"):
        read_count_input([a, b])
    with pytest.raises(ValueError, match=r"sample_names: duplicated sample name 'x'"):
        read_count_input([a, b], sample_names=["x", "x"])
    with pytest.raises(ValueError, match=r"sample_names: expected 2 names \(one per htseq-count file\), got 3"):
        read_count_input([a, b], sample_names=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"sample_names: expected 'stem' or a list of 2 names .* got the string 'x'"):
        read_count_input([a, b], sample_names="x")
    with pytest.raises(TypeError, match=r"sample_names: expected non-empty strings, got 3"):
        read_count_input([a, b], sample_names=["x", 3])
    assert list(read_count_input([a, b], sample_names=["x", "y"]).counts.columns) == ["x", "y"]


@pytest.mark.parametrize("old, new, match", [
    ("\t112\n", "\t-112\n", r"ctrl_1.txt': expected non-negative counts, found -112.0 at row 1, column 0 "
                            r"\(gene 'ENSG00000227232.5'\)"),
    ("\t112\n", "\t11.2\n", r"expected integer counts \(DESeq2 models raw counts\), found 11.2"),
    ("\t112\n", "\tNA\n", r"ctrl_1.txt', line 2: expected a count in the last field, got 'NA' \(several count "
                          r"files are read as htseq-count output"),
    ("ENSG00000227232.5\t112", "ENSG00000227232.5 112", r"line 2: expected 'gene<TAB>count', got "
                                                          r"'ENSG00000227232.5 112' \(no tab\)"),
    ("ENSG00000278267.1", "ENSG00000227232.5", r"line 3: duplicated gene 'ENSG00000227232.5' \(also on line 2\)"),
])
def test_htseq_bad_counts(tmp_path, old, new, match):
    a = write(tmp_path / "ctrl_1.txt", htseq_text(0).replace(old, new, 1))
    b = write(tmp_path / "ctrl_2.txt", htseq_text(1))
    with pytest.raises(ValueError, match=match):
        read_count_input([a, b])


def test_several_csv_tables_are_not_htseq(tmp_path):
    a = write(tmp_path / "a.csv", "gene,ctrl_1\ng1,1\n")
    b = write(tmp_path / "b.csv", "gene,ctrl_2\ng1,2\n")
    with pytest.raises(ValueError, match=r"a.csv', line 1: expected 'gene<TAB>count', got 'gene,ctrl_1' \(no "
                                         r"tab\) \(several count files are read as htseq-count output"):
        read_count_input([a, b])


# ----------------------------------------------------------------------------------------------------- h5ad


def test_h5ad_x_and_obs(tmp_path):
    path = write_h5ad(tmp_path / "counts.dat")  # found by its HDF5 signature, not the name
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert detect_count_format(path) == "h5ad"
    inp = read_count_input([path])
    assert (inp.format, inp.orientation) == ("h5ad", "genes x samples")
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    assert list(inp.metadata.index) == SAMPLES and list(inp.metadata["condition"]) == ["ctrl", "ctrl", "treat"]


def test_h5ad_layer_selection_and_errors(tmp_path):
    import scipy.sparse as sp

    logged = np.log1p(VALUES.T).astype(np.float32)
    path = write_h5ad(tmp_path / "pb.h5ad", x=logged, layers={"counts": sp.csr_matrix(VALUES.T),
                                                              "spliced": VALUES.T * 2})
    inp = read_count_input(path, layer="counts")
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    assert read_count_input(path, layer="spliced").counts.iloc[1, 2] == 480
    with pytest.raises(ValueError, match=r"layer: 'raw_counts' is not a layer of counts file '.*pb.h5ad' \(its "
                                         r"layers: \['counts', 'spliced'\]; leave layer unset for X\)"):
        read_count_input(path, layer="raw_counts")
    with pytest.raises(ValueError, match=r"pb.h5ad' \(X\): expected integer counts .*gene 'ENSG00000223972.5', "
                                         r"sample 'ctrl_2'.*another matrix: "
                                         r"\[\"layer 'counts'\", \"layer 'spliced'\"\]"):
        read_count_input(path)
    with pytest.raises(TypeError, match=r"layer: expected a layer name \(str\) or None for X, got int"):
        read_count_input(path, layer=0)


def test_h5ad_must_come_alone(tmp_path):
    h5 = write_h5ad(tmp_path / "pb.h5ad")
    other = write(tmp_path / "ctrl_1.txt", htseq_text(0))
    with pytest.raises(ValueError, match=r"paths: '.*pb.h5ad' is an AnnData .h5ad, which holds every sample; give "
                                         r"it alone, not with \['.*ctrl_1.txt'\]"):
        read_count_input([other, h5])
    with pytest.raises(ValueError, match=r"sample_names: not used for an .h5ad"):
        read_count_input(h5, sample_names=SAMPLES)
    with pytest.raises(ValueError, match=r"layer: only an AnnData .h5ad has layers; '.*ctrl_1.txt' is a text file"):
        read_count_input(other, layer="counts")


def test_h5ad_bad_files(tmp_path):
    import h5py

    with h5py.File(tmp_path / "filtered_feature_bc_matrix.h5", "w") as fh:
        fh.create_dataset("matrix/data", data=np.arange(3))
    with pytest.raises(ValueError, match=r"an HDF5 file that anndata cannot read as .h5ad .*10x Genomics"):
        read_count_input(tmp_path / "filtered_feature_bc_matrix.h5")
    h5 = write_h5ad(tmp_path / "pb.h5ad")
    gz = tmp_path / "pb.h5ad.gz"
    gz.write_bytes(gzip.compress(h5.read_bytes()))
    with pytest.raises(ValueError, match=r"a gzipped HDF5 \(.h5ad\) file; gunzip it first"):
        read_count_input(gz)
    fake = write(tmp_path / "fake.h5ad", "gene,ctrl_1\ng1,1\n")
    with pytest.raises(ValueError, match=r"fake.h5ad': the name ends in .h5ad but the content is not HDF5"):
        read_count_input(fake)
    dup = write_h5ad(tmp_path / "dup.h5ad", obs=pd.DataFrame({"condition": ["a", "b", "c"]},
                                                             index=["ctrl_1", "ctrl_1", "treat_1"]))
    with pytest.raises(ValueError, match=r"duplicated sample name 'ctrl_1' in obs_names"):
        read_count_input(dup)


# ---------------------------------------------------------------------------------------- tables and general


def test_csv_table_either_orientation(tmp_path):
    genes_x_samples = write(tmp_path / "counts.csv", expected_frame().astype(int).rename_axis("gene").to_csv())
    inp = read_count_input(genes_x_samples)
    assert (inp.format, inp.orientation, inp.metadata) == ("table", None, None)
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    samples_x_genes = write(tmp_path / "counts_t.tsv", expected_frame().T.astype(int).to_csv(sep="\t"))
    t = read_count_input(samples_x_genes)
    meta = pd.DataFrame({"condition": ["ctrl", "ctrl", "treat"]}, index=SAMPLES)
    aligned, _, orientation = align_counts(t.counts, meta)
    assert orientation == "samples x genes"
    pd.testing.assert_frame_equal(aligned, expected_frame(), check_exact=True)
    one_sample = write(tmp_path / "one.tsv", "gene\tctrl_1\ng1\t4\ng2\t5\n")  # a header: a table, not htseq-count
    assert read_count_input(one_sample).format == "table"
    with pytest.raises(ValueError, match=r"sample_names: not used for a count table"):
        read_count_input(genes_x_samples, sample_names=SAMPLES)
    # read_counts is unchanged for its callers
    assert read_counts(genes_x_samples).index.name == "gene"


def test_the_same_data_in_every_format_gives_the_same_frame(tmp_path):
    csv = write(tmp_path / "counts.csv", expected_frame().astype(int).rename_axis("gene").to_csv())
    fc = write(tmp_path / "featureCounts.txt", featurecounts_text())
    htseq = htseq_files(tmp_path / "htseq")
    h5 = write_h5ad(tmp_path / "counts.h5ad", x=VALUES.T.astype(np.int64))
    frames = {fmt: read_count_input(p).counts for fmt, p in
              [("table", csv), ("featurecounts", fc), ("htseq-count", htseq), ("h5ad", h5)]}
    for fmt, frame in frames.items():
        pd.testing.assert_frame_equal(frame, frames["table"], check_exact=True, obj=fmt)
        assert frame.index.name is None and frame.columns.name is None and frame.dtypes.eq(np.float64).all()


@pytest.mark.parametrize("make, exc, match", [
    (lambda d: write(d / "empty.txt", ""), ValueError, r"counts file '.*empty.txt' is empty"),
    (lambda d: write(d / "blank.tsv.gz", "\n\n", gz=True), ValueError, r"blank.tsv.gz' is empty"),
    (lambda d: [], ValueError, r"paths: expected at least one counts file, got none"),
    (lambda d: [write(d / "a.txt", htseq_text(0))] * 2, ValueError, r"paths: '.*a.txt' is given twice"),
    (lambda d: d / "missing.txt", FileNotFoundError, r"counts file '.*missing.txt' does not exist"),
    (lambda d: d, IsADirectoryError, r"is a directory"),
    (lambda d: 3, TypeError, r"paths: expected a file path or a list of them, got int"),
    (lambda d: [write(d / "a.txt", htseq_text(0)), None], TypeError, r"paths: expected file paths \(str or Path\)"),
])
def test_bad_inputs(tmp_path, make, exc, match):
    with pytest.raises(exc, match=match):
        read_count_input(make(tmp_path))


def test_undecodable_file_uses_decode_text_message(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(b"gene\t\xff\xfe\n")
    with pytest.raises(ValueError, match=r"counts file '.*bin.txt': not UTF-8 text .*expected a count table, "
                                         r"featureCounts or htseq-count output"):
        read_count_input(path)


def test_htseq_additional_attr_column(tmp_path):
    names = ["DDX11L2", "WASH7P", "MIR6859-1", "MIR1302-2HG", "MIR1302-2"]
    paths = []
    for j, s in enumerate(SAMPLES):  # htseq-count --additional-attr gene_name: gene, attribute, count
        lines = [f"{g}\t{n}\t{VALUES[i, j]}" for i, (g, n) in enumerate(zip(GENES, names))]
        lines += [f"{name}\t\t{v[j]}" for name, v in HTSEQ_TAIL]
        paths.append(write(tmp_path / f"{s}.txt", "\n".join(lines) + "\n"))
    pd.testing.assert_frame_equal(read_count_input(paths).counts, expected_frame(), check_exact=True)


def test_h5ad_without_x_needs_a_layer(tmp_path):
    import anndata

    adata = anndata.AnnData(obs=pd.DataFrame(index=SAMPLES), var=pd.DataFrame(index=GENES),
                            layers={"counts": VALUES.T})
    adata.write_h5ad(tmp_path / "nox.h5ad")
    with pytest.raises(ValueError, match=r"layer: counts file '.*nox.h5ad' has no X matrix; choose one of its "
                                         r"layers: \['counts'\]"):
        read_count_input(tmp_path / "nox.h5ad")
    inp = read_count_input(tmp_path / "nox.h5ad", layer="counts")
    pd.testing.assert_frame_equal(inp.counts, expected_frame(), check_exact=True)
    assert inp.metadata.shape == (3, 0)


def test_sample_names_that_do_not_fit_the_format(tmp_path):
    fc = write(tmp_path / "featureCounts.txt", featurecounts_text())
    htseq = htseq_files(tmp_path / "htseq")
    with pytest.raises(ValueError, match=r"sample_names: expected 3 names \(one per featureCounts sample column\), "
                                         r"got 2"):
        read_count_input(fc, sample_names=["a", "b"])
    with pytest.raises(ValueError, match=r"sample_names: expected 'stem' or a list of 3 names .*got the string "
                                         r"'header'"):
        read_count_input(htseq, sample_names="header")
    with pytest.raises(TypeError, match=r"sample_names: expected a list of names, got int"):
        read_count_input(fc, sample_names=3)
    with pytest.raises(ValueError, match=r"paths: '.*featureCounts.txt' is featureCounts output but "
                                         r"'.*ctrl_1.htseq.counts.txt' is not"):
        read_count_input([fc, htseq[0]])
    assert list(read_count_input(htseq, sample_names="stem").counts.columns) == SAMPLES
