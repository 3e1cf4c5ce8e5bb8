"""The three operators as datarax operators (diffbio_prob.operators.datarax), with the datarax extra.

Every number is compared with our operator's own ``apply`` / ``apply_batch`` in float64 (the x64 fixture):
on a ``datarax.Batch`` (``__call__`` and ``apply_batch``), record by record (``apply``), inside a
``datarax.Pipeline`` (which vmaps or scans ``apply`` under its compiled step), and for gradients.
"""

from __future__ import annotations

import pytest

datarax = pytest.importorskip("datarax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from datarax.sources.memory_source import MemorySource, MemorySourceConfig  # noqa: E402
from flax import nnx  # noqa: E402

from diffbio_prob.operators.datarax import (  # noqa: E402
    DataraxEMQuantifier, DataraxHMM, DataraxNBGLM, DataraxOperator, to_datarax)
from diffbio_prob.operators.statistical import (  # noqa: E402
    DifferentiableEMQuantifier, DifferentiableHMM, DifferentiableNBGLM, EMQuantifierConfig, HMMConfig,
    NBGLMConfig)

TOL = dict(rtol=1e-12, atol=1e-12)
B = 6  # records per test batch; the pipelines serve them as two batches of 3


def _hmm():
    rng = np.random.default_rng(0)
    op = DifferentiableHMM(HMMConfig(num_states=3, num_emissions=4), rngs=nnx.Rngs(1))
    data = {"observations": rng.integers(0, 4, (B, 9)), "lengths": np.array([9, 8, 9, 5, 7, 9])}
    return op, data


def _hmm_poisson():
    rng = np.random.default_rng(1)
    op = DifferentiableHMM(HMMConfig(num_states=2, emission="poisson"), rngs=nnx.Rngs(2))
    return op, {"observations": rng.poisson(3.0, (B, 8))}


def _nb():
    rng = np.random.default_rng(2)
    op = DifferentiableNBGLM(NBGLMConfig(n_features=5, n_covariates=2), rngs=nnx.Rngs(3))
    op.log_dispersion[...] = jnp.asarray(rng.normal(0.5, 0.3, 5))  # away from the all-zeros start
    design = np.stack([np.ones(B), np.repeat([0.0, 1.0], B // 2)], axis=1)
    data = {"counts": rng.poisson(20.0, (B, 5)), "design": design, "size_factors": rng.uniform(0.6, 1.5, B)}
    return op, data


def _em():
    rng = np.random.default_rng(3)
    op = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=4, n_iterations=6))
    op.log_initial_abundances[...] = jnp.asarray(rng.normal(0.0, 0.5, 4))  # a non-uniform start
    compat = (rng.uniform(size=(B, 7, 4)) < 0.5).astype(float)
    compat[:, :, 0] = np.maximum(compat[:, :, 0], compat.sum(-1) == 0)  # no read compatible with nothing
    return op, {"compatibility": compat, "effective_lengths": rng.uniform(80.0, 300.0, (B, 4))}


CASES = {"hmm": _hmm, "hmm_poisson": _hmm_poisson, "nb_glm": _nb, "em": _em}
SHARED = {"nb_glm": ("dispersion", "coefficients")}  # our apply_batch gives these once for the batch


def _jnp(data):
    return {k: jnp.asarray(v) for k, v in data.items()}


def _assert_outputs_equal(case, out, ref):
    new = set(ref) - {"observations", "lengths", "counts", "design", "size_factors", "compatibility",
                      "effective_lengths"}
    assert new, "the operator added no outputs"
    for k in sorted(set(ref)):
        want = np.asarray(ref[k])
        if k in SHARED.get(case, ()):
            want = np.broadcast_to(want, (B, *want.shape))  # datarax: every field has the record axis
        got = np.asarray(out[k])
        assert got.shape == want.shape, k
        np.testing.assert_allclose(got, want, err_msg=k, **TOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_call_and_apply_batch_equal_our_apply_batch(case):
    op, data = CASES[case]()
    ref, _, _ = op.apply_batch(data)
    adapter = to_datarax(op)
    assert isinstance(adapter, datarax.OperatorModule) and adapter.operator is op
    states = {"seen": jnp.arange(B)}
    batch = datarax.Batch.from_parts(_jnp(data), states, batch_state={"epoch": jnp.asarray(4)})
    for out in (adapter(batch), adapter.apply_batch(batch)):
        assert isinstance(out, datarax.Batch) and out.batch_size == B
        _assert_outputs_equal(case, out.get_data(), ref)
        np.testing.assert_array_equal(out.states.get_value()["seen"], np.arange(B))
        assert int(out.get_batch_state()["epoch"]) == 4


@pytest.mark.parametrize("case", sorted(CASES))
def test_apply_one_record_equals_our_apply(case):
    op, data = CASES[case]()
    record = {k: v[2] for k, v in data.items()}
    ref, _, _ = op.apply(record, {}, None)
    out, state, meta = to_datarax(op).apply(_jnp(record), {"s": 1}, {"m": 2})
    assert state == {"s": 1} and meta == {"m": 2}
    for k in ref:
        np.testing.assert_allclose(np.asarray(out[k]), np.asarray(ref[k]), err_msg=k, **TOL)


def _loss_terms(out):
    # the log-likelihood and one more output, so the gradient is not the log-likelihood's alone
    second = {"state_posteriors": lambda x: jnp.sum(x[..., 0] ** 2), "predicted_mean": lambda x: jnp.sum(jnp.log(x)),
              "tpm": lambda x: jnp.sum(x[..., 1]) * 1e-6}
    extra = sum(f(out[k]) for k, f in second.items() if k in out)
    return jnp.sum(out["log_likelihood"]) + extra


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_equal_through_the_adapter(case):
    op, data = CASES[case]()
    g_op = nnx.grad(lambda m: _loss_terms(m.apply_batch(_jnp(data))[0]))(op)
    adapter = to_datarax(op)
    batch_data = _jnp(data)
    g_ad = nnx.grad(lambda a: _loss_terms(a(datarax.Batch.from_parts(batch_data, {})).get_data()))(adapter)
    want, got = nnx.to_pure_dict(g_op), nnx.to_pure_dict(g_ad)["operator"]
    assert jax.tree.structure(want) == jax.tree.structure(got)
    leaves = jax.tree.leaves(want)
    assert leaves and all(np.abs(np.asarray(x)).max() > 1e-6 for x in leaves)  # a real gradient
    for w, g in zip(leaves, jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **TOL)


def _pipeline(stage, data, batch_size=3):
    source = MemorySource(MemorySourceConfig(), data=dict(data), rngs=nnx.Rngs(0))
    return datarax.Pipeline(source=source, stages=[stage], batch_size=batch_size, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("case,strategy", [("hmm", "vmap"), ("hmm", "scan"), ("hmm_poisson", "vmap"),
                                           ("nb_glm", "vmap"), ("em", "vmap")])
def test_pipeline_runs_the_operator_record_by_record(case, strategy):
    op, data = CASES[case]()
    ref, _, _ = op.apply_batch(data)
    batches = list(_pipeline(to_datarax(op, batch_strategy=strategy), data))
    assert len(batches) == 2  # 6 records, batches of 3, one epoch
    out = {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}
    _assert_outputs_equal(case, out, ref)


@pytest.mark.slow
def test_pipeline_gradient_reaches_the_operator():
    op, data = _hmm()
    pipe = _pipeline(DataraxHMM(op), data, batch_size=B)
    batch_data = _jnp(data)
    g_pipe = nnx.grad(lambda p: _loss_terms(p(batch_data)))(pipe)
    g_op = nnx.grad(lambda m: _loss_terms(m.apply_batch(batch_data)[0]))(op)
    flat_pipe = {p[-1]: v for p, v in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(g_pipe))
                 if "operator" in [getattr(k, "key", None) for k in p]}
    flat_op = {p[-1]: v for p, v in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(g_op))}
    assert flat_pipe.keys() == flat_op.keys() and flat_op
    for k in flat_op:
        np.testing.assert_allclose(np.asarray(flat_pipe[k]), np.asarray(flat_op[k]), **TOL)


def test_constructors_and_output_spec():
    hmm = DataraxHMM(HMMConfig(num_states=3, num_emissions=4), rngs=nnx.Rngs(1))
    ref = DifferentiableHMM(HMMConfig(num_states=3, num_emissions=4), rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(hmm.operator.log_transition_params[...], ref.log_transition_params[...])
    assert isinstance(DataraxNBGLM(NBGLMConfig(n_features=3)).operator, DifferentiableNBGLM)
    assert DataraxEMQuantifier().operator.n_transcripts == EMQuantifierConfig().n_transcripts
    assert issubclass(DataraxHMM, DataraxOperator) and issubclass(DataraxOperator, datarax.OperatorModule)
    spec = hmm.output_spec({"observations": jax.ShapeDtypeStruct((9,), jnp.int32)})
    assert spec["log_likelihood"].shape == () and spec["state_posteriors"].shape == (9, 3)
    assert spec["observations"].shape == (9,)


def test_bad_inputs_name_the_argument():
    op, data = _hmm()
    with pytest.raises(TypeError, match="operator"):
        to_datarax(object())
    with pytest.raises(TypeError, match="operator: expected a DifferentiableHMM"):
        DataraxHMM(_nb()[0])
    with pytest.raises(ValueError, match="batch_strategy"):
        to_datarax(op, batch_strategy="pmap")
    with pytest.raises(TypeError, match="batch"):
        to_datarax(op).apply_batch(dict(data))
    bad = dict(data, observations=np.where(np.arange(9) == 3, 7, data["observations"]))  # symbol 7, M = 4
    with pytest.raises(ValueError, match="observations"):
        to_datarax(op)(datarax.Batch.from_parts(_jnp(bad), {}))
    glm, gdata = _nb()
    with pytest.raises(ValueError, match="counts"):
        to_datarax(glm)(datarax.Batch.from_parts(_jnp(dict(gdata, counts=-gdata["counts"])), {}))


def test_empty_batch_comes_back_unchanged():
    op, _ = _hmm()
    empty = datarax.Batch([])
    assert to_datarax(op)(empty) is empty
