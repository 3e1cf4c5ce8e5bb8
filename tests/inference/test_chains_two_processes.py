"""NUTS chains over a job of 2 JAX processes on 127.0.0.1 (gloo collectives): ``chain_method="auto"``
resolves to ``"parallel"``, each process runs one chain, and both processes get the draws a single process
gives with ``"sequential"`` (the same chain programs, so equal to rounding), with the typed and the raw
PRNG keys."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from diffbio_prob.inference import fit_nuts

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from diffbio_prob import distributed
    assert distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
    import jax, numpy as np
    from diffbio_prob.inference import fit_nuts
    from tests.inference.test_chains_two_processes import KW, location_scale, data
    assert jax.process_count() == 2 and jax.device_count() == 2
    out = {}
    for name, key in (("raw", 3), ("typed", jax.random.key(3))):
        fit = fit_nuts(location_scale, data(), chain_method="auto", rng_key=key, progress=name == "raw", **KW)
        out[name] = {"chain_method": fit.extra["chain_method"], "m": fit.samples["m"].tolist(),
                     "s": fit.samples["s"].tolist(), "lp": fit.sample_stats["lp"].tolist()}
    with open(sys.argv[3] + f".{jax.process_index()}", "w") as fh:
        json.dump(out, fh)
    """
)

KW = dict(num_warmup=40, num_samples=30, num_chains=2)


def location_scale(y):
    import numpyro
    import numpyro.distributions as dist

    m = numpyro.sample("m", dist.Normal(0.0, 10.0))
    s = numpyro.sample("s", dist.HalfNormal(2.0))
    numpyro.sample("y", dist.Normal(m, s), obs=y)


def data() -> np.ndarray:
    return np.linspace(-1.0, 3.0, 20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_parallel_chains_over_two_processes_give_the_sequential_draws(tmp_path):
    import jax

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", XLA_FLAGS="",
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, coordinator, str(i), str(tmp_path / "out.json")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        single = {name: fit_nuts(location_scale, data(), chain_method="sequential", rng_key=key, progress=False, **KW)
                  for name, key in (("raw", 3), ("typed", jax.random.key(3)))}
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    got = [json.loads((tmp_path / f"out.json.{i}").read_text()) for i in range(2)]
    assert got[0] == got[1]  # every process holds every chain's draws
    for name, fit in single.items():
        two = got[0][name]
        assert two["chain_method"] == "parallel"
        for site in ("m", "s"):
            np.testing.assert_allclose(np.array(two[site]), fit.samples[site], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} {site}")
        np.testing.assert_allclose(np.array(two["lp"]), fit.sample_stats["lp"], rtol=1e-9, err_msg=name)
        # the two chains differ: each process ran its own key, not both the same chain
        assert not np.allclose(fit.samples["m"][0], fit.samples["m"][1])
