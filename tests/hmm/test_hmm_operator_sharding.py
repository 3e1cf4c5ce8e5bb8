"""The HMM operator and ``DiscreteHMM`` with a batch of 8 sequences split over 4 simulated CPU devices
(``parallel.constrain_batch``) give the one-device log-likelihoods, posteriors and gradients; inside the
``"parallel"`` chain map (``shard_map``) ``DiscreteHMM.log_prob`` leaves the batch whole and still works.

Both runs are subprocesses (the device count is fixed when JAX starts), in float64, side by side. Each
reports, per batched output, whether its leading axis came back in 4 blocks (``Sharding.shard_shape``):
the 4-device run must have split every one, the 1-device run none, so a sharded program is compared with
an unsharded one.

Inputs committed to one device (``jax.device_put(x, jax.devices()[0])``: observations, lengths, the
operator's parameters, ``DiscreteHMM``'s probabilities) give the same values on 4 devices, outside a trace:
before they were moved onto the batch mesh, the kernels' constraint to all 4 devices refused them
("Received incompatible devices for jitted computation").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from diffbio_prob import parallel

from tests.hmm.test_hmm_sharding import two_state_sequences

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, numpyro.distributions as dist
    from flax import nnx
    from diffbio_prob.inference.chains import chain_map
    from diffbio_prob.models.hmm import DiscreteHMM
    from diffbio_prob.operators.statistical import DifferentiableHMM, HMMConfig

    data = np.load(sys.argv[1])
    symbols, counts, lengths = data["symbols"], data["counts"], data["lengths"]
    n_dev = jax.device_count()
    values, split = {}, {}

    def record(name, x, batched=True):
        values[name] = np.asarray(x).tolist()
        if batched:  # the leading axis in n_dev blocks (one block on one device)
            split[name] = x.sharding.shard_shape(x.shape)[0] * n_dev == x.shape[0] and n_dev > 1

    for family, obs, cfg in (("categorical", symbols, HMMConfig(num_states=2, num_emissions=3)),
                             ("poisson", counts, HMMConfig(num_states=2, emission="poisson"))):
        op = DifferentiableHMM(cfg, rngs=nnx.Rngs(3))
        out, _, _ = op.apply({"observations": obs, "lengths": lengths}, {}, None)
        record(f"{family}/log_likelihood", out["log_likelihood"])
        record(f"{family}/posteriors", out["state_posteriors"])
        if family == "categorical":  # 6 sequences: 4 devices do not divide them, so they run unsplit
            six = op.forward_pass(obs[:6], lengths[:6])
            values["categorical/six_sequences"] = np.asarray(six).tolist()
            unsplit = six.sharding.shard_shape(six.shape)[0] == 6
        graphdef, params = nnx.split(op, nnx.Param)

        def loss(params):
            per_seq = nnx.merge(graphdef, params).forward_pass(obs, lengths)
            return jnp.sum(per_seq), per_seq

        (value, per_seq), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        record(f"{family}/loss", value, batched=False)
        record(f"{family}/loss_per_sequence", per_seq)
        for path, g in jax.tree_util.tree_leaves_with_path(grads):
            record(f"{family}/grad{jax.tree_util.keystr(path)}", g, batched=False)

    pi = jnp.array([0.6, 0.4])
    a = jnp.array([[0.9, 0.1], [0.2, 0.8]])
    b = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    t = symbols.shape[1]

    def categorical(a, b):
        per_seq = DiscreteHMM(pi, a, b, t, lengths=lengths).log_prob(symbols)
        return jnp.sum(per_seq), per_seq

    # per-sequence transition matrices and a NumPyro emission: the vmapped path
    a8 = jnp.broadcast_to(a, (8, 2, 2)) * jnp.linspace(0.9, 1.0, 8)[:, None, None]
    a8 = a8 / a8.sum(-1, keepdims=True)

    def poisson(a8, rates):
        per_seq = DiscreteHMM(pi, a8, observation_dist=dist.Poisson(rates), num_steps=t,
                              lengths=lengths).log_prob(counts)
        return jnp.sum(per_seq), per_seq

    for name, fn, args in (("categorical", categorical, (a, b)), ("poisson", poisson, (a8, jnp.array([2.0, 9.0])))):
        (_, per_seq), grads = jax.jit(jax.value_and_grad(fn, argnums=(0, 1), has_aux=True))(*args)
        record(f"discrete/{name}_log_prob", per_seq)
        record(f"discrete/{name}_grad_chain", grads[0], batched=False)
        record(f"discrete/{name}_grad_emission", grads[1], batched=False)

    # inside the "parallel" chain map (shard_map over a "chain" mesh) the batch stays whole; the emission
    # enters as an input (DiscreteHMM's simplex check cannot read a constant under a trace)
    where = chain_map("parallel")(
        lambda key, i, x: DiscreteHMM(pi, a, x[1], t, lengths=lengths).log_prob(x[0]).sum() + 0 * i,
        jnp.zeros((2, 2), jnp.uint32), (jnp.asarray(symbols), b))
    record("chains/parallel_log_prob", where, batched=False)
    print(json.dumps({"devices": n_dev, "values": values, "split": split, "unsplit": unsplit}))
    """
)


# Every input committed to device 0 (on one device that is the only device: the reference values). Eager
# calls, and gradients (eager and jitted) closing over committed observations. Not a committed argument of
# jit or jax.grad: inside a trace commitment cannot be seen (parallel.constrain_batch).
COMMITTED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, numpyro.distributions as dist
    from flax import nnx
    from diffbio_prob.models.hmm import DiscreteHMM
    from diffbio_prob.operators.statistical import DifferentiableHMM, HMMConfig

    data = np.load(sys.argv[1])
    commit = lambda tree: jax.device_put(tree, jax.devices()[0])
    symbols, counts, lengths = (commit(data[k]) for k in ("symbols", "counts", "lengths"))
    assert all(x.committed and x.sharding.device_set == {jax.devices()[0]} for x in (symbols, counts, lengths))
    n_dev = jax.device_count()
    values, split = {}, {}

    def record(name, x, batched=True):
        values[name] = np.asarray(x).tolist()
        if batched:  # the batch still split over the devices
            split[name] = x.sharding.shard_shape(x.shape)[0] * n_dev == x.shape[0] and n_dev > 1

    def grads(prefix, tree):
        for path, g in jax.tree_util.tree_leaves_with_path(tree):
            record(f"{prefix}{jax.tree_util.keystr(path)}", g, batched=False)

    for family, obs, cfg in (("categorical", symbols, HMMConfig(num_states=2, num_emissions=3)),
                             ("poisson", counts, HMMConfig(num_states=2, emission="poisson"))):
        op = DifferentiableHMM(cfg, rngs=nnx.Rngs(3))
        out, _, _ = op.apply({"observations": obs, "lengths": lengths}, {}, None)
        record(f"{family}/log_likelihood", out["log_likelihood"])
        record(f"{family}/posteriors", out["state_posteriors"])
        graphdef, params = nnx.split(op, nnx.Param)
        loss = lambda p: jnp.sum(nnx.merge(graphdef, p).forward_pass(obs, lengths))
        grads(f"{family}/grad", jax.grad(loss)(params))
        grads(f"{family}/jit_grad", jax.jit(jax.grad(loss))(params))
        # the operator's parameters committed as well (its state put on device 0)
        committed_op = nnx.merge(graphdef, commit(params))
        record(f"{family}/committed_params_log_likelihood", committed_op.forward_pass(obs, lengths))


    pi, a, b = commit((jnp.array([0.6, 0.4]), jnp.array([[0.9, 0.1], [0.2, 0.8]]),
                       jnp.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])))
    t = symbols.shape[1]
    categorical = lambda a, b: DiscreteHMM(pi, a, b, t, lengths=lengths).log_prob(symbols)
    a8 = jnp.broadcast_to(a, (8, 2, 2)) * jnp.linspace(0.9, 1.0, 8)[:, None, None]
    a8 = commit(a8 / a8.sum(-1, keepdims=True))
    poisson = lambda a8, rates: DiscreteHMM(pi, a8, observation_dist=dist.Poisson(rates), num_steps=t,
                                            lengths=lengths).log_prob(counts)
    for name, fn, args in (("categorical", categorical, (a, b)), ("poisson", poisson, (a8, commit(jnp.array([2.0, 9.0]))))):
        record(f"discrete/{name}_log_prob", fn(*args))
    print(json.dumps({"devices": n_dev, "values": values, "split": split}))
    """
)

def _data():
    data = two_state_sequences(seed=11, b=8, t=30, stay=0.85, rates=(2.0, 9.0), min_length=12)
    data["symbols"] = np.where(np.arange(30) < data["lengths"][:, None], data["symbols"], -1)  # padding: -1
    return data


def _run(path, n_dev, script=SCRIPT):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_dev}", JAX_PLATFORMS="cpu",
               JAX_ENABLE_X64="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return subprocess.Popen([sys.executable, "-c", script, str(path)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _one_and_four(tmp_path, script=SCRIPT):
    """``script``'s report on 1 and on 4 devices (both runs side by side)."""
    np.savez(tmp_path / "d.npz", **_data())
    procs = {n: _run(tmp_path / "d.npz", n, script) for n in (1, 4)}
    got = {}
    try:
        for n, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"{n} device(s):\n{err[-3000:]}"
            got[n] = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return got[1], got[4]


@pytest.mark.slow
def test_hmm_operator_and_discrete_hmm_on_4_devices_equal_one_device(tmp_path):
    one, four = _one_and_four(tmp_path)
    assert one["devices"] == 1 and four["devices"] == 4
    assert set(four["split"]) == set(one["split"]) and len(four["split"]) == 8
    assert not any(one["split"].values())
    assert all(four["split"].values()), {k: v for k, v in four["split"].items() if not v}
    assert one["unsplit"] and four["unsplit"]
    assert set(four["values"]) == set(one["values"]) and sum("grad" in k for k in one["values"]) == 10
    for key, value in four["values"].items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(one["values"][key]), rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    # the chain map over 2 of the 4 devices: each chain's log_prob of the whole batch
    chains = np.asarray(four["values"]["chains/parallel_log_prob"])
    np.testing.assert_allclose(chains, np.sum(one["values"]["discrete/categorical_log_prob"]), rtol=1e-12)


@pytest.mark.slow
def test_inputs_committed_to_one_device_on_4_devices_equal_one_device(tmp_path):
    one, four = _one_and_four(tmp_path, COMMITTED_SCRIPT)
    assert one["devices"] == 1 and four["devices"] == 4
    n_grads = sum("grad" in k for k in one["values"])
    assert set(four["values"]) == set(one["values"]) and n_grads == 12, n_grads
    for key, value in four["values"].items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(one["values"][key]), rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    # the committed inputs still run split over the 4 devices
    assert set(four["split"]) == set(one["split"]) and len(four["split"]) == 8
    assert all(four["split"].values()), {k: v for k, v in four["split"].items() if not v}


def test_device_mesh_and_constrain_batch_arguments():
    mesh = parallel.device_mesh("chain", 1)
    assert mesh.axis_names == ("chain",) and mesh.size == 1
    assert parallel.device_mesh().size == jax.device_count()
    for bad, err in ((0, ValueError), (jax.device_count() + 1, ValueError), ("2", TypeError), (True, TypeError)):
        with pytest.raises(err, match="size"):
            parallel.device_mesh("chain", bad)
    for bad, err in (("", ValueError), (3, TypeError)):
        with pytest.raises(err, match="axis_name"):
            parallel.device_mesh(bad)
    x = np.zeros((8, 3))
    assert parallel.constrain_batch(x, shard=False) is x and parallel.constrain_gathered(x, shard=False) is x
