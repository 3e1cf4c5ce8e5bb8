"""``diffbio-prob de / quant / hmm`` as one job of 2 processes on 127.0.0.1 (gloo collectives) write the
single-process outputs, and only process 0 writes.

Each process runs the three commands through ``cli.main`` with ``--coordinator --num-processes
--process-id`` (the first call joins the job, the next ones find it joined), so one pair of launches
covers the three; ``tests/test_launch_local.py`` runs the console script itself. Process 1 is given its
own output paths, which must not exist afterwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.cli import main

DRIVER = textwrap.dedent(
    """
    import json, sys
    from diffbio_prob.cli import main
    flags = ["--coordinator", sys.argv[1], "--num-processes", "2", "--process-id", sys.argv[2]]
    codes = [main([*cmd, *flags]) for cmd in json.loads(sys.argv[3])]
    import jax
    assert jax.process_count() == 2 and len(jax.devices()) == 2, jax.devices()
    sys.exit(max(codes))
    """
)

MANY = ("em", "em_hardfilter", "vbem")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs(tmp_path, em_ref):
    from tests.de.test_de_sharding import _simulated
    from tests.hmm.test_hmm_sharding import two_state_sequences

    counts, meta = _simulated(g=120, m=8)
    counts.to_csv(tmp_path / "counts.csv")
    meta.rename_axis("sample").to_csv(tmp_path / "meta.csv")
    h = two_state_sequences()
    with open(tmp_path / "seqs.txt", "w") as fh:
        for row, n in zip(h["symbols"], h["lengths"]):
            fh.write(" ".join(map(str, row[:n])) + "\n")
    salmon = em_ref / "salmon_1.10.1"
    de = ["de", "--counts", tmp_path / "counts.csv", "--metadata", tmp_path / "meta.csv", "--design", "~condition",
          "--quiet", "--out"]
    quant = ["quant", "--eq-classes", *(salmon / d / "aux_info" / "eq_classes.txt.gz" for d in MANY),
             "--lengths", *(salmon / d / "quant.sf" for d in MANY), "--x64", "--quiet",
             "--out-dir"]
    hmm = ["hmm", "--input", tmp_path / "seqs.txt", "--states", "2", "--iters", "15", "--restarts", "1", "--x64",
           "--quiet", "--out"]
    return [[str(a) for a in cmd] for cmd in (de, quant, hmm)]


def _commands(cmds, out):
    outs = [out / "de.csv", out / "quant", out / "hmm"]
    return [[*c, str(o)] for c, o in zip(cmds, outs)], outs


def _assert_tables_equal(a: pd.DataFrame, b: pd.DataFrame, what):
    assert list(a.columns) == list(b.columns) and a.shape == b.shape, what
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number):
            x, y = x.astype(float), y.astype(float)
            assert np.array_equal(np.isnan(x), np.isnan(y)), (what, col)
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-300, equal_nan=True, err_msg=f"{what} {col}")
        else:
            assert list(x) == list(y), (what, col)


def _numbers(obj):
    if isinstance(obj, dict):
        return [v for k in sorted(obj) for v in _numbers(obj[k])]
    if isinstance(obj, list):
        return [v for item in obj for v in _numbers(item)]
    return [obj]


@pytest.mark.slow
def test_de_quant_hmm_on_two_processes_equal_one_and_only_process_0_writes(tmp_path, em_ref, capsys):
    from diffbio_prob.io.salmon import read_salmon_dir

    cmds = _inputs(tmp_path, em_ref)
    jobs = [_commands(cmds, tmp_path / f"p{i}") for i in range(2)]
    coordinator = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", XLA_FLAGS="")
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER, coordinator, str(i), json.dumps(jobs[i][0])], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        # the single-process reference here, while the job runs (its processes wait on each other often)
        one, one_out = _commands(cmds, tmp_path / "one")
        for cmd in one:
            assert main(cmd) == 0, capsys.readouterr().err
        results = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    assert not (tmp_path / "p1").exists()  # process 1 computed everything and wrote nothing

    two_out = jobs[0][1]
    _assert_tables_equal(pd.read_csv(two_out[0]), pd.read_csv(one_out[0]), "de")
    for name in MANY:
        a, b = read_salmon_dir(two_out[1] / name), read_salmon_dir(one_out[1] / name)
        assert a.names == b.names
        np.testing.assert_allclose(a.num_reads, b.num_reads, rtol=1e-10, atol=1e-12)
    for name in ("posteriors.tsv", "viterbi.tsv"):
        _assert_tables_equal(pd.read_csv(two_out[2] / name, sep="\t"), pd.read_csv(one_out[2] / name, sep="\t"),
                             name)
    a, b = (json.loads((d / "parameters.json").read_text()) for d in (two_out[2], one_out[2]))
    na, nb = _numbers(a), _numbers(b)
    assert [type(v) for v in na] == [type(v) for v in nb]
    for x, y in zip(na, nb):
        if isinstance(x, float):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-300)
        else:
            assert x == y


@pytest.mark.parametrize("flags,message", [
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2"],
     "--coordinator, --num-processes, --process-id: give all three or none (missing --process-id)"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     "--coordinator: expected HOST:PORT with a port in [1, 65535], got 'localhost'"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"],
     "--num-processes: expected a positive integer, got 0"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id: expected an integer in [0, 2), got 2"),
])
@pytest.mark.parametrize("command", ["de", "quant", "hmm", "tximport", "demo"])
def test_bad_job_flags_are_one_line_and_exit_2_before_any_work(tmp_path, capsys, command, flags, message):
    args = {"de": ["--counts", "c.csv", "--design", "~c", "--out", tmp_path / "o.csv"],
            "quant": ["--eq-classes", "eq.txt", "--out", tmp_path / "q.sf"],
            "hmm": ["--input", "s.txt", "--states", "2", "--out", tmp_path / "h"],
            "tximport": ["--salmon", "s", "--tx-out", "--out-dir", tmp_path / "t"],
            "demo": ["--quick", "--out", tmp_path / "d"]}[command]
    code = main([command, *map(str, args), *flags])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.splitlines() == [f"diffbio-prob {command}: error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_tximport_and_demo_take_the_rank_from_the_flags_or_the_environment(monkeypatch):
    """They join no JAX job (no JAX / their own forked workers): the rank alone says who writes."""
    import argparse

    from diffbio_prob import cli

    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_PROCESS_ID", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                "SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
                "DIFFBIO_PROB_DISTRIBUTED"):
        monkeypatch.delenv(var, raising=False)

    def writes(**kw):
        ns = dict(command="tximport", coordinator=None, num_processes=None, process_id=None) | kw
        return cli._join(argparse.Namespace(**ns))

    assert writes()
    assert writes(coordinator="127.0.0.1:9", num_processes=3, process_id=0)
    assert not writes(command="demo", coordinator="127.0.0.1:9", num_processes=3, process_id=2)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    assert not writes()
    for var, value in (("SLURM_JOB_ID", "7"), ("SLURM_STEP_NODELIST", "n1"), ("SLURM_NTASKS", "2"),
                       ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0")):
        monkeypatch.setenv(var, value)
    assert writes()  # under srun, SLURM_PROCID is the rank (before Open MPI's)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")
    assert not writes()
    monkeypatch.setenv("DIFFBIO_PROB_DISTRIBUTED", "0")
    assert writes()


def test_discarded_writes_run_the_writer_and_leave_nothing(tmp_path):
    from diffbio_prob.io import atomic

    target = tmp_path / "new" / "out.csv"
    atomic.discard_writes(True)
    try:
        assert atomic.writes_discarded()
        with atomic.atomic_write(target) as fh:
            fh.write("a,b\n")
            written = fh.name
        assert os.path.basename(written) == "out.csv"  # the target's name: writers keying on the suffix work
        with pytest.raises(ZeroDivisionError), atomic.atomic_path(target):  # a writer's own error still surfaces
            1 / 0
        with pytest.raises(ValueError, match="is an existing folder"):  # paths are checked as in process 0
            with atomic.atomic_path(tmp_path):
                pass
    finally:
        atomic.discard_writes(False)
    assert not os.path.exists(written) and list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="on: expected a boolean"):
        atomic.discard_writes(1)
    with atomic.atomic_write(target) as fh:
        fh.write("a,b\n")
    assert target.read_text() == "a,b\n"
