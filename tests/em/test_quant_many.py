"""Several samples in one compiled program (``quantify_many``, ``bootstrap_counts_many``, ``gibbs_counts_many``,
``run_quant_many``): every sample's answer is the one it gets alone (batch invariance), on salmon 1.10.1's
real equivalence classes of its sample data (dumps with different classes on one transcriptome: ``em``
and ``em_hardfilter`` weighted, ``vbem`` plain), each with its own effective lengths; and the batched
point estimates are salmon's own NumReads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffbio_prob.cores import em as core
from diffbio_prob.io.eqclasses import read_eq_classes, read_lengths
from diffbio_prob.io.salmon import read_quant_sf, read_salmon_dir, read_salmon_eq_classes, write_salmon_eq_classes
from diffbio_prob.workflows.quant import (
    bootstrap_counts,
    bootstrap_counts_many,
    gibbs_counts,
    gibbs_counts_many,
    quantify,
    quantify_many,
    run_quant,
    run_quant_many,
    sample_names,
)

DUMPS = ("em", "em_hardfilter", "vbem")  # weighted, weighted, plain


@pytest.fixture
def salmon(em_ref):
    return em_ref / "salmon_1.10.1"


@pytest.fixture
def samples(salmon):
    tables = [read_eq_classes(salmon / d / "aux_info" / "eq_classes.txt.gz") for d in DUMPS]
    effs = np.stack([read_lengths(salmon / d / "quant.sf", names=t.names).effective_lengths
                     for d, t in zip(DUMPS, tables)])
    return tables, effs


def test_samples_differ_and_mix_both_kinds_of_weights(samples):
    tables, effs = samples
    assert len({t.n_classes for t in tables}) > 1 and len({t.weights_include_length for t in tables}) == 2
    assert not np.allclose(effs[0], effs[1])  # salmon's effective lengths are per sample


@pytest.mark.parametrize("algorithm", ["em", "vbem"])
def test_quantify_many_is_each_sample_alone(samples, algorithm):
    tables, effs = samples
    many = quantify_many(tables, effs, algorithm=algorithm, batch_size=None)  # all vmapped (lax.map: below)
    for table, eff, res in zip(tables, effs, many):
        alone = quantify(table, eff, algorithm=algorithm)
        np.testing.assert_allclose(res.num_reads, alone.num_reads, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(res.tpm, alone.tpm, rtol=1e-10, atol=1e-10)
        assert (res.n_iterations, res.converged) == (alone.n_iterations, alone.converged)
        assert res.objective == pytest.approx(alone.objective, rel=1e-12)
        assert res.names == alone.names
        np.testing.assert_array_equal(res.lengths, alone.lengths)


def test_quantify_many_squarem(samples):
    tables, effs = samples
    many = quantify_many(tables[:2], effs[:2], squarem=True, batch_size=1)
    for table, eff, res in zip(tables, effs, many):
        alone = quantify(table, eff, squarem=True)
        # the extrapolation magnifies the last bits of differently compiled sums (1e-12 of the 10,000 reads)
        np.testing.assert_allclose(res.num_reads, alone.num_reads, rtol=1e-10, atol=1e-7)
        assert res.n_evaluations == alone.n_evaluations


def test_batched_estimates_are_salmons(samples, salmon):
    tables, effs = samples
    em = quantify_many(tables, effs, algorithm="em")
    vbt = read_eq_classes(salmon / "vbem_eqweights" / "aux_info" / "eq_classes.txt.gz")
    vb = quantify_many([tables[1], vbt], np.stack([effs[1], read_lengths(
        salmon / "vbem_eqweights" / "quant.sf", names=vbt.names).effective_lengths]), algorithm="vbem")
    for res, ref in [(em[0], "em"), (vb[1], "vbem_eqweights")]:  # the weighted dumps hold salmon's weights
        theirs = read_quant_sf(salmon / ref / "quant.sf")
        assert res.names == theirs.names
        assert np.abs(res.num_reads - theirs.num_reads).max() < 0.05, ref


@pytest.mark.float32
def test_quantify_many_float32(samples):
    tables, effs = samples
    many = quantify_many(tables[1:], effs[1:])
    for table, eff, res in zip(tables[1:], effs[1:], many):
        alone = quantify(table, eff)
        assert np.all(np.isfinite(res.num_reads)) and res.converged
        assert res.num_reads.sum() == pytest.approx(10_000, rel=1e-5)
        assert np.abs(res.num_reads - alone.num_reads).max() < 0.05


def test_bootstraps_many_are_each_sample_alone(samples):
    tables, effs = samples
    draws = bootstrap_counts_many(tables, effs, n_draws=3, seed=11)
    for k, (table, eff) in enumerate(zip(tables, effs)):
        alone = bootstrap_counts(table, eff, n_draws=3, seed=11 + k)
        assert draws[k].shape == (3, 15)
        np.testing.assert_allclose(draws[k], alone, rtol=1e-10, atol=1e-10)
    other = bootstrap_counts_many(tables[:2], effs[:2], n_draws=3, seeds=[12, 11], batch_size=None)
    np.testing.assert_allclose(other[0], bootstrap_counts(tables[0], effs[0], n_draws=3, seed=12), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(other[1], bootstrap_counts(tables[1], effs[1], n_draws=3, seed=11), rtol=1e-10,
                               atol=1e-10)


@pytest.mark.float32
def test_bootstraps_many_float32(samples):
    tables, effs = samples
    for k, d in enumerate(bootstrap_counts_many(tables[:2], effs[:2], n_draws=3, seed=0)):
        alone = bootstrap_counts(tables[k], effs[k], n_draws=3, seed=k)
        assert np.all(np.isfinite(d)) and np.abs(d - alone).max() < 0.05


def test_gibbs_many_is_each_sample_alone(samples):
    tables, effs = samples
    tables, effs = tables[1:], effs[1:]  # weighted and plain
    init = np.stack([r.num_reads for r in quantify_many(tables, effs)])
    draws = gibbs_counts_many(tables, effs, n_draws=4, thinning_factor=1, init=init, seed=3)
    for k, (table, eff) in enumerate(zip(tables, effs)):
        alone = gibbs_counts(table, eff, n_draws=4, thinning_factor=1, init=init[k], seed=3 + k)
        np.testing.assert_allclose(draws[k], alone, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(draws[k].sum(1), table.counts.sum(), rtol=1e-12)


def test_padding_is_inert():
    """A sample padded far beyond its size gives the unpadded answer (closed form: ``[30, 0, 5]``)."""
    a = core.make_eq_classes([0, 1, 1, 2, 2], [0, 0, 1, 1, 2], counts=[10, 20, 5], n_transcripts=3)
    b = core.make_eq_classes([0, 0, 1], [0, 1, 2], counts=[6, 2], n_transcripts=3)
    stacked = core.stack_eq_classes([a, b], n_classes=17, n_entries=40)
    assert stacked.counts.shape == (2, 17) and stacked.class_ids.shape == (2, 40)
    lengths = np.array([[100.0, 200.0, 100.0], [1.0, 1.0, 1.0]])
    res = core.em_batch(stacked, lengths, min_iter=1000, rel_tol=1e-12)
    np.testing.assert_allclose(np.asarray(res.counts[0]), [30.0, 0.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.counts[1]), [3.0, 3.0, 2.0], atol=1e-6)  # 6 split evenly


def test_stack_errors():
    a = core.make_eq_classes([0], [0], counts=[1], n_transcripts=2)
    with pytest.raises(ValueError, match=r"eqcs\[1\]: 3 transcripts, eqcs\[0\] has 2"):
        core.stack_eq_classes([a, core.make_eq_classes([0], [0], counts=[1], n_transcripts=3)])
    with pytest.raises(ValueError, match="n_classes"):
        core.stack_eq_classes([a], n_classes=1)
    with pytest.raises(TypeError, match="eqcs"):
        core.stack_eq_classes([])
    with pytest.raises(ValueError, match=r"effective_lengths: expected shape \(1, 2\)"):
        core.em_batch(core.stack_eq_classes([a]), np.ones(2))


def test_quantify_many_errors(samples):
    tables, effs = samples
    with pytest.raises(ValueError, match="algorithm: expected 'em' or 'vbem' for several samples"):
        quantify_many(tables, effs, algorithm="gradient")
    with pytest.raises(ValueError, match=r"effective_lengths\[1\]: must be finite and positive"):
        quantify_many(tables[:2], np.stack([effs[0], -effs[1]]))
    with pytest.raises(ValueError, match=r"effective_lengths: expected \(15,\)"):
        quantify_many(tables[:2], effs)
    with pytest.raises(TypeError, match="tables"):
        quantify_many(tables[0], effs[0])
    renamed = read_eq_classes(tables[1].source)
    renamed.names = ["OTHER", *renamed.names[1:]]
    with pytest.raises(ValueError, match=r"em_hardfilter.*eq_classes.txt.gz: its transcripts differ"):
        quantify_many([tables[0], renamed], effs[:2])


def test_sample_names():
    assert sample_names(["q/A1/aux_info/eq_classes.txt.gz", "B1.txt.gz", "k/S3/matrix.ec", "x/C.ec"]) == [
        "A1", "B1", "S3", "C"]
    with pytest.raises(ValueError, match="sample name 'A' given twice"):
        sample_names(["A/aux_info/eq_classes.txt.gz", "x/A/aux_info/eq_classes.txt.gz"])
    with pytest.raises(ValueError, match="samples: 'a/b' is not a usable folder name"):
        sample_names(["x", "y"], ["ok", "a/b"])
    with pytest.raises(ValueError, match="samples: 1 names for 2"):
        sample_names(["x", "y"], ["ok"])


def test_run_quant_many_reorders_a_sample_and_writes_salmon_folders(tmp_path, salmon):
    """A sample whose file lists the transcripts in another order is quantified in the first one's order."""
    table = read_salmon_eq_classes(salmon / "vbem" / "aux_info" / "eq_classes.txt.gz")
    perm = np.random.default_rng(0).permutation(table.n_transcripts)
    inv = np.argsort(perm)
    shuffled = type(table)(names=[table.names[i] for i in perm], class_ids=table.class_ids,
                           transcript_ids=inv[table.transcript_ids], weights=table.weights, counts=table.counts)
    path = write_salmon_eq_classes(tmp_path / "S2.txt.gz", shuffled)
    first = salmon / "em" / "aux_info" / "eq_classes.txt.gz"
    names, results, posts = run_quant_many(
        [first, path], tmp_path / "out", lengths=[salmon / "em" / "quant.sf", salmon / "vbem" / "quant.sf"],
        num_bootstraps=3, seed=5, quiet=True)
    assert names == ["em", "S2"] and all(p.draws.shape == (3, 15) for p in posts)
    alone, _ = run_quant(salmon / "vbem" / "aux_info" / "eq_classes.txt.gz", out_dir=tmp_path / "alone",
                         lengths=salmon / "vbem" / "quant.sf", num_bootstraps=3, seed=6, quiet=True)
    back = read_salmon_dir(tmp_path / "out" / "S2")
    assert back.names == alone.names == results[1].names
    np.testing.assert_allclose(back.num_reads, np.round(alone.num_reads, 3), atol=1e-9)
    np.testing.assert_allclose(back.draws, read_salmon_dir(tmp_path / "alone").draws, rtol=1e-10)
    assert back.samp_type == "bootstrap" and back.meta_info["num_bootstraps"] == 3


_SHARDED = """
import numpy as np, jax
from diffbio_prob.io.eqclasses import read_eq_classes, read_lengths
from diffbio_prob.workflows.quant import quantify, quantify_many
root = {root!r}
dumps = ("em", "em_hardfilter", "vbem_eqweights")
tables = [read_eq_classes(f"{{root}}/{{d}}/aux_info/eq_classes.txt.gz") for d in dumps]
effs = np.stack([read_lengths(f"{{root}}/{{d}}/quant.sf", names=t.names).effective_lengths
                 for d, t in zip(dumps, tables)])
assert jax.device_count() == 2
for t, e, r in zip(tables, effs, quantify_many(tables, effs)):
    np.testing.assert_allclose(r.num_reads, quantify(t, e).num_reads, rtol=1e-10, atol=1e-10)
print("ok")
"""


def test_samples_split_over_two_devices(salmon):
    """Three samples over two (simulated) devices: padded to four, the same answers."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
           "JAX_ENABLE_X64": "1"}
    proc = subprocess.run([sys.executable, "-c", _SHARDED.format(root=str(salmon))], capture_output=True, text=True,
                          env=env, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
