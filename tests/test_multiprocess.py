"""Two JAX processes on 127.0.0.1 (gloo collectives) give the single-process results.

Each process holds the whole input; ``parallel.run_batched``, ``quantify_many`` and ``baum_welch`` split
genes / samples / sequences over both processes' devices and gather the results back to both."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.de.test_de_sharding import _simulated

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from diffbio_prob import distributed
    assert distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
    import jax, numpy as np, pandas as pd
    from diffbio_prob import parallel
    from diffbio_prob.io.salmon import load_sample_data
    from diffbio_prob.workflows import deseq2 as D
    from diffbio_prob.workflows.quant import quantify_many

    assert jax.device_count() == 2 and parallel.batch_mesh().size == 2
    counts = pd.read_json(sys.argv[3], orient="split")
    meta = pd.read_json(sys.argv[4], orient="split")
    fit = D.fit_deseq2(counts, meta, "~condition")
    d = load_sample_data()
    q = quantify_many([d.table, d.table, d.table], d.effective_lengths)
    from diffbio_prob.inference.baum_welch import baum_welch
    from tests.hmm.test_hmm_sharding import two_state_sequences
    h = two_state_sequences()
    bw = baum_welch(h["counts"], 2, lengths=h["lengths"], emission="poisson", num_iters=15, tol=0.0, seed=1)
    out = {"res": fit.results().to_numpy().tolist(), "disp": fit.gene["dispersion"].tolist(),
           "quant": [r.num_reads.tolist() for r in q], "rank": jax.process_index(),
           "hmm": [bw.transition_probs.tolist(), bw.emission_params["rates"].tolist(),
                   bw.log_likelihood_history.tolist()]}
    with open(sys.argv[5] + f".{jax.process_index()}", "w") as fh:
        json.dump(out, fh)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.long  # tests/test_cli_distributed.py covers the same three workflows through the CLI in make test
def test_two_processes_equal_one(tmp_path):
    from diffbio_prob.io.salmon import load_sample_data
    from diffbio_prob.workflows.deseq2 import fit_deseq2
    from diffbio_prob.workflows.quant import quantify_many

    counts, meta = _simulated()
    counts.to_json(tmp_path / "c.json", orient="split")
    meta.to_json(tmp_path / "m.json", orient="split")
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", XLA_FLAGS="")
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, coordinator, str(i), str(tmp_path / "c.json"),
                               str(tmp_path / "m.json"), str(tmp_path / "out.json")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-2000:]
    got = [json.loads((tmp_path / f"out.json.{i}").read_text()) for i in range(2)]
    assert got[0]["res"] == got[1]["res"] and got[0]["quant"] == got[1]["quant"]  # both hold the gathered result

    fit = fit_deseq2(counts, meta, "~condition")
    single = fit.results().to_numpy()
    two = np.array(got[0]["res"], dtype=float)
    assert np.array_equal(np.isnan(two), np.isnan(single))
    np.testing.assert_allclose(two, single, rtol=1e-10, atol=1e-13, equal_nan=True)
    np.testing.assert_allclose(got[0]["disp"], fit.gene["dispersion"], rtol=1e-10)

    d = load_sample_data()
    one = quantify_many([d.table] * 3, d.effective_lengths, shard=False)
    for r, g in zip(one, got[0]["quant"]):
        np.testing.assert_allclose(g, r.num_reads, rtol=1e-10, atol=1e-10)

    # Baum-Welch: the sequences split over both processes' devices, the expected counts gathered
    from diffbio_prob.inference.baum_welch import baum_welch
    from tests.hmm.test_hmm_sharding import two_state_sequences

    h = two_state_sequences()
    bw = baum_welch(h["counts"], 2, lengths=h["lengths"], emission="poisson", num_iters=15, tol=0.0, seed=1)
    for got_v, want in zip(got[0]["hmm"], (bw.transition_probs, bw.emission_params["rates"],
                                          bw.log_likelihood_history)):
        np.testing.assert_allclose(np.asarray(got_v), want, rtol=1e-10, atol=1e-12)


def test_initialize_arguments():
    from diffbio_prob import distributed

    with pytest.raises(ValueError, match="all three or none"):
        distributed.initialize("127.0.0.1:1234", 2)
    with pytest.raises(ValueError, match=r"process_id: expected an integer in \[0, 2\)"):
        distributed.initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="coordinator: expected HOST:PORT"):
        distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="num_processes: expected a positive integer"):
        distributed.initialize("127.0.0.1:1234", 0, 0)
    with pytest.raises(TypeError, match="process_id: expected an integer"):
        distributed.initialize("127.0.0.1:1234", 2, 1.0)


def test_environment_detection(monkeypatch):
    from diffbio_prob import distributed

    for var in ("JAX_COORDINATOR_ADDRESS", "OMPI_COMM_WORLD_SIZE", "SLURM_JOB_ID", "SLURM_STEP_NODELIST",
                "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "DIFFBIO_PROB_DISTRIBUTED"):
        monkeypatch.delenv(var, raising=False)
    assert not distributed.environment_has_cluster()
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # an sbatch shell, no srun step: one process
    assert not distributed.environment_has_cluster()
    for var, value in (("SLURM_STEP_NODELIST", "n1"), ("SLURM_NTASKS", "2"), ("SLURM_PROCID", "0"),
                       ("SLURM_LOCALID", "0")):
        monkeypatch.setenv(var, value)
    assert distributed.environment_has_cluster()
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert not distributed.environment_has_cluster()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.environment_has_cluster()
    monkeypatch.setenv("DIFFBIO_PROB_DISTRIBUTED", "0")
    assert not distributed.environment_has_cluster()
