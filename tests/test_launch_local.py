"""``bench/launch_local.py``: a ``diffbio-prob`` command as a job of N local processes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.cli import main

from tests.bench_scripts import load_bench


@pytest.mark.slow
@pytest.mark.long  # tests/test_cli_distributed.py runs de (with quant and hmm) on 2 processes in make test
def test_two_processes_of_de_write_the_one_process_table(tmp_path, capsys):
    from tests.de.test_de_sharding import _simulated

    counts, meta = _simulated(g=60, m=6)
    counts.to_csv(tmp_path / "counts.csv")
    meta.rename_axis("sample").to_csv(tmp_path / "meta.csv")
    args = ["de", "--counts", str(tmp_path / "counts.csv"), "--metadata", str(tmp_path / "meta.csv"),
            "--design", "~condition", "--quiet", "--out"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    code = load_bench("launch_local").launch(["diffbio-prob", *args, str(tmp_path / "two.csv")], 2, timeout=300, env=env)
    assert code == 0
    assert main([*args, str(tmp_path / "one.csv")]) == 0, capsys.readouterr().err
    two, one = pd.read_csv(tmp_path / "two.csv", index_col=0), pd.read_csv(tmp_path / "one.csv", index_col=0)
    assert list(two.index) == list(one.index) and list(two.columns) == list(one.columns)
    assert np.array_equal(two.isna().to_numpy(), one.isna().to_numpy())
    np.testing.assert_allclose(two.to_numpy(float), one.to_numpy(float), rtol=1e-10, atol=1e-300)


def test_a_failed_process_gives_its_exit_code(tmp_path, capfd):
    # tximport joins no JAX job, so this costs two interpreter starts; each process fails on its input
    code = load_bench("launch_local").launch(["tximport", "--salmon", str(tmp_path / "missing"), "--tx-out", "--out-dir",
                               str(tmp_path / "txi")], 2, timeout=120)
    err = capfd.readouterr().err
    assert code == 2
    # whichever process fails first gives the job its code; the launcher may stop the other before it
    # fails alike (-15), and which one is first depends on the machine's scheduling
    lines = {i: [line for line in err.splitlines() if line.startswith(f"launch_local: process {i} exited with ")]
             for i in (0, 1)}
    assert all(len(found) == 1 for found in lines.values()), err
    codes = {i: found[0].rsplit(" ", 1)[1] for i, found in lines.items()}
    assert "2" in codes.values(), err
    assert set(codes.values()) <= {"2", "-15"}, err
    assert not (tmp_path / "txi").exists()


def test_arguments():
    launch = load_bench("launch_local").launch
    with pytest.raises(ValueError, match="--process-id given; the launcher sets the job flags itself"):
        launch(["de", "--process-id", "1"], 2)
    with pytest.raises(ValueError, match="num_processes: expected a positive integer, got 0"):
        launch(["de"], 0)
    with pytest.raises(ValueError, match="command: expected a diffbio-prob subcommand"):
        launch(["diffbio-prob"], 2)
    with pytest.raises(ValueError, match="timeout: expected a positive number"):
        launch(["de"], 2, timeout=0)
