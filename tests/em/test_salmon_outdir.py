"""``diffbio-prob quant --out-dir``: salmon's output layout with the inferential replicates, byte for byte
what tximport reads (``readInfRepFish``: ``cmd_info.json`` -> ``auxDir``, ``meta_info.json``'s
``salmon_version`` / ``num_bootstraps`` / ``num_valid_targets``, ``bootstrap/bootstraps.gz`` as R x T
little-endian doubles), read back by ``read_salmon_dir`` exactly as salmon 1.10.1's own folders; salmon's
Gibbs sampler; the command's one-line errors. No R needed (the R check is recorded in the module's
commit message and the task report)."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from diffbio_prob.cli import main
from diffbio_prob.cores import em as core
from diffbio_prob.io.salmon import (
    SALMON_FORMAT_VERSION,
    load_sample_data,
    read_quant_sf,
    read_salmon_bootstraps,
    read_salmon_dir,
    read_salmon_eq_classes,
    salmon_tpm,
    write_salmon_dir,
)
from diffbio_prob.workflows.quant import (
    gibbs_counts,
    gibbs_prior,
    quantify,
    run_quant,
    to_eq_classes,
)

N_FRAGMENTS = 10_000  # salmon's sample data


@pytest.fixture
def salmon(em_ref):
    return em_ref / "salmon_1.10.1"


@pytest.fixture
def inputs(salmon):
    d = salmon / "vbem_eqweights"
    return d / "aux_info" / "eq_classes.txt.gz", d / "quant.sf"


def run(capsys, *argv):
    code = main(["quant", *map(str, argv)])
    return code, capsys.readouterr().err


def _version_tuple(text):
    return tuple(int(x) for x in text.split("."))


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def boot_dir(tmp_path_factory, em_ref):
    """One ``--out-dir`` run with 7 bootstraps (float32, the command's default), shared by the layout tests."""
    import jax

    d = em_ref / "salmon_1.10.1" / "vbem_eqweights"
    out = tmp_path_factory.mktemp("outdir") / "S1"
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        code = main(["quant", "--eq-classes", str(d / "aux_info" / "eq_classes.txt.gz"), "--lengths",
                     str(d / "quant.sf"), "--num-bootstraps", "7", "--out-dir", str(out), "--quiet", "--seed", "3"])
    finally:
        jax.config.update("jax_enable_x64", previous)
    assert code == 0
    return out


def test_layout_is_salmons(boot_dir):
    assert _files(boot_dir) == ["aux_info/bootstrap/bootstraps.gz", "aux_info/bootstrap/names.tsv.gz",
                                "aux_info/meta_info.json", "cmd_info.json", "quant.sf"]
    assert not [p for p in boot_dir.rglob(".*")]  # no temporary file left behind


def test_bootstraps_bytes_are_gzip_float64_replicate_major(boot_dir):
    quant = read_quant_sf(boot_dir / "quant.sf")
    T = len(quant.names)
    raw = gzip.decompress((boot_dir / "aux_info" / "bootstrap" / "bootstraps.gz").read_bytes())
    assert len(raw) == 7 * T * 8  # no header: R x T doubles
    draws = np.frombuffer(raw, "<f8").reshape(7, T)  # one row of T values per replicate
    np.testing.assert_allclose(draws.sum(axis=1), N_FRAGMENTS, rtol=1e-12)  # each replicate: all fragments
    assert np.all(draws >= 0) and np.all(np.isfinite(draws))
    assert not np.allclose(draws[0], draws[1])  # real resampling
    # as R reads it: dim(boots) <- c(T, R), column-major, so column k is replicate k
    as_r = np.frombuffer(raw, "<f8").reshape(T, 7, order="F")
    np.testing.assert_array_equal(as_r[:, 2], draws[2])
    names_raw = gzip.decompress((boot_dir / "aux_info" / "bootstrap" / "names.tsv.gz").read_bytes())
    assert names_raw == ("\t".join(quant.names) + "\n").encode()  # one tab-separated line and a newline


def test_json_fields(boot_dir, salmon):
    cmd = json.loads((boot_dir / "cmd_info.json").read_text())
    meta = json.loads((boot_dir / "aux_info" / "meta_info.json").read_text())
    assert cmd["auxDir"] == "aux_info"
    assert cmd["salmon_version"] == SALMON_FORMAT_VERSION and _version_tuple(cmd["salmon_version"]) >= (0, 8, 0)
    assert cmd["diffbio_prob_version"] and cmd["numBootstraps"] == "7"
    assert all(isinstance(v, str) for v in cmd.values())  # salmon writes every value as a string
    assert _version_tuple(meta["salmon_version"]) >= (0, 8, 0)
    expected = {"samp_type": "bootstrap", "opt_type": "vb", "num_bootstraps": 7, "num_valid_targets": 15,
                "num_mapped": N_FRAGMENTS, "num_processed": N_FRAGMENTS, "percent_mapped": 100.0, "call": "quant",
                "num_eq_classes": 28, "quant_errors": []}
    assert {k: meta[k] for k in expected} == expected
    theirs = json.loads((salmon / "vbem_eqweights" / "aux_info" / "meta_info.json").read_text())
    # what describes the reads and the index comes from the input's own salmon run (same 15 targets)
    for key in ("library_types", "num_libraries", "frag_length_mean", "frag_length_sd", "index_seq_hash"):
        assert meta[key] == theirs[key], key
    assert "num_targets" not in meta  # salmon 1.10 writes num_valid_targets only
    assert set(theirs) - set(meta) <= {"num_dovetail_fragments", "num_fragments_filtered_vm", "num_decoy_fragments",
                                       "num_alignments_below_threshold_for_mapped_fragments_vm",
                                       "eq_class_properties"}


def test_quant_sf_tpm_in_float64_and_salmons_formats(boot_dir):
    lines = (boot_dir / "quant.sf").read_text().splitlines()
    assert lines[0] == "Name\tLength\tEffectiveLength\tTPM\tNumReads"
    q = read_quant_sf(boot_dir / "quant.sf")
    for line in lines[1:]:
        _, length, eff, tpm, reads = line.split("\t")
        assert length.isdigit()  # salmon: the integer length
        assert len(eff.split(".")[1]) == 3 and len(reads.split(".")[1]) == 3 and len(tpm.split(".")[1]) == 6
    # TPM from the NumReads in float64: the float32 run's TPM is not rounded to float32 (7 digits)
    assert abs(q.tpm.sum() - 1e6) < 1e-4
    np.testing.assert_allclose(q.tpm, salmon_tpm(q.num_reads, q.effective_lengths), rtol=2e-4, atol=1e-5)


@pytest.mark.float32  # the command's default precision
def test_tpm_written_is_the_float64_formula(tmp_path, inputs):
    eq, lengths = inputs
    res, _ = run_quant(eq, out_dir=tmp_path / "d", lengths=lengths, quiet=True)
    text = [ln.split("\t")[3] for ln in (tmp_path / "d" / "quant.sf").read_text().splitlines()[1:]]
    tpm64 = salmon_tpm(np.asarray(res.num_reads, np.float64), res.effective_lengths)
    assert text == [f"{x:.6f}" for x in tpm64]
    f32 = np.asarray(core.tpm(np.asarray(res.num_reads, np.float32), np.asarray(res.effective_lengths, np.float32)))
    assert [f"{x:.6f}" for x in f32] != text  # what float32 TPM would have written


def test_round_trip_through_read_salmon_dir(boot_dir):
    q = read_salmon_dir(boot_dir)
    raw = gzip.decompress((boot_dir / "aux_info" / "bootstrap" / "bootstraps.gz").read_bytes())
    np.testing.assert_array_equal(q.draws, np.frombuffer(raw, "<f8").reshape(7, -1))
    assert q.samp_type == "bootstrap" and q.num_bootstraps == 7 and q.inf_reps.shape == (15, 7)
    quant = read_quant_sf(boot_dir / "quant.sf")
    assert q.names == quant.names
    np.testing.assert_array_equal(q.num_reads, quant.num_reads)
    assert q.num_mapped == N_FRAGMENTS
    assert read_salmon_dir(boot_dir / "quant.sf").names == q.names  # the folder or its quant.sf
    names, draws = read_salmon_bootstraps(boot_dir / "aux_info")
    assert names == q.names
    np.testing.assert_array_equal(draws, q.draws)


@pytest.mark.parametrize("run_name,samp_type,n_draws", [("gibbs100", "gibbs", 100), ("bootstrap30", "bootstrap", 30),
                                                        ("vbem", "none", 0)])
def test_reads_salmons_own_folders(salmon, run_name, samp_type, n_draws):
    q = read_salmon_dir(salmon / run_name)
    assert q.samp_type == samp_type and q.num_bootstraps == n_draws
    assert q.names == read_quant_sf(salmon / run_name / "quant.sf").names
    if n_draws:
        names, draws = read_salmon_bootstraps(salmon / run_name / "aux_info")
        assert names == q.names
        np.testing.assert_array_equal(q.draws, draws)
        np.testing.assert_allclose(q.draws.sum(axis=1), N_FRAGMENTS, rtol=1e-6)  # salmon's own replicates too
    else:
        assert q.draws is None and q.inf_reps is None


def test_aux_dir_and_targets_as_tximport(tmp_path, boot_dir):
    d = tmp_path / "moved"
    shutil.copytree(boot_dir, d)
    (d / "aux_info").rename(d / "aux_elsewhere")
    cmd = json.loads((d / "cmd_info.json").read_text())
    cmd["auxDir"] = "aux_elsewhere"
    (d / "cmd_info.json").write_text(json.dumps(cmd))
    np.testing.assert_array_equal(read_salmon_dir(d).draws, read_salmon_dir(boot_dir).draws)
    meta_path = d / "aux_elsewhere" / "meta_info.json"
    meta = json.loads(meta_path.read_text())
    meta["num_valid_targets"] = 14
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="14 targets"):
        read_salmon_dir(d)
    # num_bootstraps 0: no replicates, even with the files present (tximport returns NULL)
    meta.update(num_valid_targets=15, num_bootstraps=0)
    meta_path.write_text(json.dumps(meta))
    assert read_salmon_dir(d).draws is None


def test_int32_replicates_as_tximport_falls_back(tmp_path, boot_dir):
    d = tmp_path / "ints"
    shutil.copytree(boot_dir, d)
    values = np.arange(7 * 15, dtype="<i4")
    (d / "aux_info" / "bootstrap" / "bootstraps.gz").write_bytes(gzip.compress(values.tobytes()))
    np.testing.assert_array_equal(read_salmon_dir(d).draws, values.reshape(7, 15))
    (d / "aux_info" / "bootstrap" / "bootstraps.gz").write_bytes(gzip.compress(b"\0" * 24))
    with pytest.raises(ValueError, match="bytes"):
        read_salmon_dir(d)


def test_write_salmon_dir_other_sample_types_and_stale_replicates(tmp_path):
    names = ["a", "b"]
    d = tmp_path / "w"
    write_salmon_dir(d, names, [100, 200], [80.0, 180.0], [3.0, 7.0], draws=[[4.0, 6.0], [2.0, 8.0]], samp_type="nuts")
    q = read_salmon_dir(d)
    assert q.samp_type == "nuts" and q.draws.shape == (2, 2)
    write_salmon_dir(d, names, [100, 200], [80.0, 180.0], [3.0, 7.0])
    assert read_salmon_dir(d).draws is None and not (d / "aux_info" / "bootstrap" / "bootstraps.gz").exists()
    with pytest.raises(ValueError, match="samp_type"):
        write_salmon_dir(d, names, [100, 200], [80.0, 180.0], [3.0, 7.0], samp_type="magic")
    with pytest.raises(ValueError, match="draws"):
        write_salmon_dir(d, names, [100, 200], [80.0, 180.0], [3.0, 7.0], draws=[[1.0, -1.0]])


# --- Gibbs -----------------------------------------------------------------------------------------
def test_gibbs_prior_is_salmons():
    np.testing.assert_array_equal(gibbs_prior(3), [1.0, 1.0, 1.0])  # max(0.01, 1) after VBEM
    np.testing.assert_array_equal(gibbs_prior(2, algorithm="em"), [1e-3, 1e-3])
    np.testing.assert_allclose(gibbs_prior(2, [0.5, 2000.0], per_nucleotide_prior=True), [1e-3, 2.0])


@pytest.fixture(scope="module")
def sample_gibbs():
    d = load_sample_data()
    res = quantify(d.table, d.effective_lengths)
    draws = gibbs_counts(d.table, d.effective_lengths, n_draws=200, init=res.num_reads, seed=11)
    return d, res, draws


def test_gibbs_draws_sum_and_are_near_the_point_estimate(sample_gibbs):
    d, res, draws = sample_gibbs
    assert draws.shape == (200, 15)
    np.testing.assert_allclose(draws.sum(axis=1), N_FRAGMENTS, rtol=1e-12)
    big = res.num_reads > 100
    mean, sd = draws.mean(0), draws.std(0, ddof=1)
    assert np.all(np.abs(mean[big] - res.num_reads[big]) < 0.1 * res.num_reads[big] + 15)
    eqc = to_eq_classes(d.table)
    tid, cid = np.asarray(eqc.transcript_ids), np.asarray(eqc.class_ids)
    ambiguous = np.zeros(15, bool)
    ambiguous[tid[np.bincount(cid)[cid] > 1]] = True
    assert ambiguous.sum() >= 5 and np.all(sd[ambiguous] > 0)


def test_gibbs_matches_salmons_gibbs_draws(salmon, sample_gibbs):
    """Same data (the sample's 10,000 pairs): salmon 1.10.1's 100 Gibbs draws and ours agree in mean and sd."""
    _, _, ours = sample_gibbs
    q = read_salmon_dir(salmon / "gibbs100")
    theirs = q.draws
    keep = theirs.mean(0) > 20
    sd = theirs.std(0, ddof=1)
    assert np.all(np.abs(ours.mean(0) - theirs.mean(0))[keep] < 0.5 * sd[keep] + 3)
    ratio = ours.std(0, ddof=1)[keep] / sd[keep]
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio


def test_gibbs_transcripts_without_reads_stay_zero():
    eqc = core.make_eq_classes([0, 0, 1, 2, 2], [0, 1, 1, 1, 2], counts=[40, 10, 30], n_transcripts=4)
    lengths = np.array([100.0, 200.0, 150.0, 120.0])
    draws = gibbs_counts(eqc, lengths, n_draws=60, thinning_factor=4, seed=2)  # 2 chains (salmon: from 50)
    assert draws.shape == (60, 4)
    np.testing.assert_array_equal(draws[:, 3], 0.0)  # in no class
    assert np.all(draws[:, :3].var(0) > 0)
    np.testing.assert_allclose(draws.sum(1), 80.0, rtol=1e-12)
    again = gibbs_counts(eqc, lengths, n_draws=60, thinning_factor=4, seed=2)
    np.testing.assert_array_equal(draws, again)  # seeded
    assert not np.array_equal(draws, gibbs_counts(eqc, lengths, n_draws=60, thinning_factor=4, seed=3))


def test_gibbs_needs_whole_counts():
    eqc = core.make_eq_classes([0, 0], [0, 1], counts=[2.5], n_transcripts=2)
    with pytest.raises(ValueError, match="whole fragments"):
        core.gibbs_sample(eqc, np.ones(2), np.ones(2), 0, num_samples=2)


@pytest.mark.float32
def test_cli_gibbs_out_dir(tmp_path, capsys, inputs):
    eq, lengths = inputs
    out = tmp_path / "g"
    code, err = run(capsys, "--eq-classes", eq, "--lengths", lengths, "--num-gibbs-samples", 6, "--thinning-factor",
                    4, "--out-dir", out)
    assert code == 0, err
    assert "6 gibbs replicates" in err
    q = read_salmon_dir(out)
    assert q.samp_type == "gibbs" and q.draws.shape == (6, 15)
    np.testing.assert_allclose(q.draws.sum(1), N_FRAGMENTS, rtol=1e-12)
    cmd = json.loads((out / "cmd_info.json").read_text())
    assert cmd["numGibbsSamples"] == "6" and cmd["thinningFactor"] == "4"


@pytest.mark.float32
def test_cli_out_still_writes_one_file(tmp_path, capsys, inputs):
    eq, lengths = inputs
    code, err = run(capsys, "--eq-classes", eq, "--lengths", lengths, "--num-bootstraps", 3, "--out", tmp_path / "q.sf",
                    "--quiet")
    assert code == 0 and err == ""
    assert _files(tmp_path) == ["q.posterior.tsv", "q.sf"]


# --- errors: one line, exit 2, nothing written ----------------------------------------------------------
@pytest.mark.float32
@pytest.mark.parametrize("extra,message", [
    (["--out", "{t}/q.sf", "--out-dir", "{t}/d"], "--out-dir: give --out or --out-dir, not both"),
    ([], "--out, --out-dir: give one"),
    (["--out-dir", "{t}/d", "--num-bootstraps", "3", "--num-gibbs-samples", "3"], "--num-gibbs-samples: give one way"),
    (["--out-dir", "{t}/d", "--num-bootstraps", "3", "--posterior", "nuts"], "--posterior: give one way"),
    (["--out-dir", "{t}/d", "--thinning-factor", "4"], "--thinning-factor: only used with --num-gibbs-samples"),
    (["--out-dir", "{t}/d", "--num-bootstraps", "0"], "--num-bootstraps: expected a positive integer"),
    (["--out-dir", "{t}/d", "--num-gibbs-samples", "-2"], "--num-gibbs-samples: expected a positive integer"),
    (["--out-dir", "{t}/d", "--num-samples", "5"], "--num-samples: only used with --posterior"),
    (["--out-dir", "{t}/d", "--posterior-out", "{t}/p.tsv"], "--posterior-out: only used with"),
    (["--out-dir", "{t}/afile"], "exists and is not a folder"),
    (["--out-dir", "{t}/d2"], "aux_info"),
])
def test_cli_errors(tmp_path, capsys, inputs, extra, message):
    eq, lengths = inputs
    (tmp_path / "afile").write_text("x")
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "aux_info").write_text("a file where the aux folder goes")
    before = _files(tmp_path)
    code, err = run(capsys, "--eq-classes", eq, "--lengths", lengths, *[e.format(t=tmp_path) for e in extra])
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert _files(tmp_path) == before  # no partial output


@pytest.mark.float32
def test_cli_refuses_to_overwrite_the_lengths_input(tmp_path, capsys, salmon):
    d = tmp_path / "S"
    shutil.copytree(salmon / "vbem_eqweights", d)
    before = (d / "quant.sf").read_bytes()
    code, err = run(capsys, "--eq-classes", d / "aux_info" / "eq_classes.txt.gz", "--lengths", d / "quant.sf",
                    "--out-dir", d)
    assert code == 2 and "is the input file of --lengths" in err and err.count("\n") == 1
    assert (d / "quant.sf").read_bytes() == before
    assert not (d / "aux_info" / "bootstrap").exists()


@pytest.mark.float32
def test_cli_bad_input_leaves_no_folder(tmp_path, capsys, inputs):
    _, lengths = inputs
    bad = tmp_path / "eq.txt"
    bad.write_text("3\n1\nt0\nt1\n")  # truncated
    code, err = run(capsys, "--eq-classes", bad, "--lengths", lengths, "--num-bootstraps", 2,
                    "--out-dir", tmp_path / "never")
    assert code == 2 and err.count("\n") == 1 and str(bad) in err
    assert not (tmp_path / "never").exists()


def test_weighted_classes_read_as_salmon_wrote_them(salmon):
    """The eq classes the layout tests quantify: 15 transcripts, 28 classes, 10,000 fragments."""
    t = read_salmon_eq_classes(salmon / "vbem_eqweights" / "aux_info" / "eq_classes.txt.gz")
    assert (t.n_transcripts, t.n_classes, t.counts.sum()) == (15, 28, N_FRAGMENTS)
