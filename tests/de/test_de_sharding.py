"""Genes (DESeq2) and samples (quantify_many) sharded over 4 simulated CPU devices give the results of one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, numpy as np, pandas as pd, jax
    from diffbio_prob import parallel
    from diffbio_prob.workflows import deseq2 as D

    counts = pd.read_json(sys.argv[1], orient="split")
    meta = pd.read_json(sys.argv[2], orient="split")
    seen = []
    orig = parallel.batch_mesh
    def spy(shard=True):
        mesh = orig(shard)
        seen.append(1 if mesh is None else mesh.size)
        return mesh
    parallel.batch_mesh = spy
    fit = D.fit_deseq2(counts, meta, "~condition")
    out = {"res": fit.results().to_numpy().tolist(), "disp": fit.gene["dispersion"].tolist()}
    from diffbio_prob.io.salmon import load_sample_data
    from diffbio_prob.workflows.quant import quantify_many
    d = load_sample_data()  # 5 samples over 4 devices: one padded slot
    out["quant"] = [r.num_reads.tolist() for r in quantify_many([d.table] * 5, d.effective_lengths)]
    print(json.dumps({"devices": jax.device_count(), "seen": sorted(set(seen)), **out}))
    """
)


def _simulated(g=200, m=12, seed=1):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    b0 = rng.normal(4, 2, g)
    b1 = rng.normal(0, 1, g)
    disp = 4 / 2**b0 + 0.1
    mu = 2 ** (b0[:, None] + b1[:, None] * np.repeat([0.0, 1.0], m // 2))
    y = rng.negative_binomial(1 / disp[:, None], 1 / (1 + disp[:, None] * mu))
    samples = [f"s{j}" for j in range(m)]
    counts = pd.DataFrame(y, index=[f"g{i}" for i in range(g)], columns=samples)
    meta = pd.DataFrame({"condition": np.repeat(["A", "B"], m // 2)}, index=samples)
    return counts, meta


@pytest.mark.slow
def test_sharded_fit_equals_single_device(tmp_path):
    import numpy as np

    from diffbio_prob.workflows.deseq2 import fit_deseq2

    counts, meta = _simulated()
    counts.to_json(tmp_path / "c.json", orient="split")
    meta.to_json(tmp_path / "m.json", orient="split")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "c.json"), str(tmp_path / "m.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["devices"] == 4
    assert data["seen"] == [4]  # every kernel ran on the 4-device mesh
    fit = fit_deseq2(counts, meta, "~condition")  # this process: one device
    single = fit.results().to_numpy()
    sharded = np.array(data["res"], dtype=float)
    assert np.array_equal(np.isnan(sharded), np.isnan(single))
    np.testing.assert_allclose(sharded, single, rtol=1e-11, atol=1e-13, equal_nan=True)  # rounding only
    np.testing.assert_allclose(data["disp"], fit.gene["dispersion"], rtol=1e-12)
    # quantification: samples split over the 4 devices
    from diffbio_prob.io.salmon import load_sample_data
    from diffbio_prob.workflows.quant import quantify_many

    d = load_sample_data()
    one = quantify_many([d.table] * 5, d.effective_lengths, shard=False)
    assert len(data["quant"]) == 5
    for r, g in zip(one, data["quant"]):
        np.testing.assert_allclose(g, r.num_reads, rtol=1e-10, atol=1e-10)
