"""Baum-Welch with the sequences split over 4 simulated CPU devices gives the one-device fit.

The batch (7 sequences, not a multiple of 4) is padded with weight-0 copies; a wrong padding weight would
double-count a sequence and move every estimate by far more than the tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, numpy as np, jax
    from diffbio_prob import parallel
    from diffbio_prob.inference.baum_welch import baum_welch

    data = np.load(sys.argv[1])
    seen = []
    orig = parallel.batch_mesh
    def spy(shard=True):
        mesh = orig(shard)
        seen.append(1 if mesh is None else mesh.size)
        return mesh
    parallel.batch_mesh = spy
    out = {}
    for name, obs, kw in (("categorical", data["symbols"], {"num_emissions": 3}),
                          ("poisson", data["counts"], {"emission": "poisson"})):
        fit = baum_welch(obs, 2, lengths=data["lengths"], num_iters=25, tol=0.0, seed=1, **kw)
        fields = {"initial_probs": fit.initial_probs, "transition_probs": fit.transition_probs,
                  "log_likelihood_history": fit.log_likelihood_history, **fit.emission_params}
        out[name] = {k: np.asarray(v).tolist() for k, v in fields.items()}
    print(json.dumps({"devices": jax.device_count(), "seen": sorted(set(seen)), "fits": out}))
    """
)


def two_state_sequences(seed=4, b=7, t=60, stay=0.9, rates=(3.0, 12.0), min_length=20):
    """``b`` ragged sequences of a sticky two-state chain: 3-symbol and Poisson observations, lengths."""
    rng = np.random.default_rng(seed)
    z = np.zeros((b, t), int)
    for i in range(b):
        for j in range(1, t):
            z[i, j] = z[i, j - 1] if rng.random() < stay else 1 - z[i, j - 1]
    symbols = np.where(z == 0, rng.choice(3, (b, t), p=[0.7, 0.2, 0.1]), rng.choice(3, (b, t), p=[0.1, 0.3, 0.6]))
    counts = rng.poisson(np.where(z == 0, *rates))
    lengths = rng.integers(min_length, t + 1, b)
    return {"symbols": symbols, "counts": counts, "lengths": lengths}


@pytest.mark.slow
def test_baum_welch_on_4_devices_equals_one_device(tmp_path):
    from diffbio_prob.inference.baum_welch import baum_welch

    data = two_state_sequences()
    np.savez(tmp_path / "d.npz", **data)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               JAX_ENABLE_X64="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "d.npz")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["devices"] == 4 and got["seen"] == [4]
    for name, obs, kw in (("categorical", data["symbols"], {"num_emissions": 3}),
                          ("poisson", data["counts"], {"emission": "poisson"})):
        fit = baum_welch(obs, 2, lengths=data["lengths"], num_iters=25, tol=0.0, seed=1, **kw)
        sharded = got["fits"][name]
        single = {"initial_probs": fit.initial_probs, "transition_probs": fit.transition_probs,
                  "log_likelihood_history": fit.log_likelihood_history, **fit.emission_params}
        assert set(sharded) == set(single) and len(single) == 4
        for key, value in sharded.items():
            np.testing.assert_allclose(np.asarray(value), np.asarray(single[key]), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name} {key}")
