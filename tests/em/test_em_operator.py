"""DifferentiableEMQuantifier: the seed's API, both input forms, gradients, errors, parameters both ways."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffbio_prob.cores import em as E
from diffbio_prob.io.salmon import load_sample_data
from diffbio_prob.operators.base import FrozenParam
from diffbio_prob.operators.statistical import DifferentiableEMQuantifier, EMQuantifierConfig

READS = np.array([[1, 0, 0]] * 3 + [[1, 1, 0]] * 5 + [[0, 1, 1]] * 2 + [[0, 0, 1]] * 4, float)
CLASSES = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], float)
CLASS_COUNTS = np.array([3.0, 5.0, 2.0, 4.0])
LENGTHS = np.array([100.0, 250.0, 80.0])


def op(**kw):
    # one n_iterations for most tests: each value is a separate compilation of the unrolled loop
    return DifferentiableEMQuantifier(EMQuantifierConfig(**{"n_transcripts": 3, "n_iterations": 30, **kw}),
                                      rngs=nnx.Rngs(0))


def dense_em(a, n_iter, temperature=1.0, reads=READS, lengths=LENGTHS):
    """Textbook EM on one-row-per-read data (Bray et al. 2016), tempered responsibilities."""
    for _ in range(n_iter):
        x = np.where(reads > 0, (reads * a / lengths) ** (1 / temperature), 0.0)
        a = (x / x.sum(1, keepdims=True)).sum(0)
    return a


def test_config_defaults_are_the_seeds():
    cfg = EMQuantifierConfig()
    assert (cfg.n_transcripts, cfg.n_iterations, cfg.temperature) == (1000, 10, 1.0)
    with pytest.raises(ValueError, match="temperature"):
        EMQuantifierConfig(temperature=0.0)
    with pytest.raises(ValueError, match="n_iterations"):
        EMQuantifierConfig(n_iterations=0)
    with pytest.raises(ValueError, match="algorithm"):
        EMQuantifierConfig(algorithm="gibbs")


def test_both_input_forms_agree_and_outputs_are_consistent():
    q = op(n_iterations=30)
    data_r = {"compatibility": jnp.asarray(READS), "effective_lengths": jnp.asarray(LENGTHS)}
    out_r, state, meta = q.apply(data_r, {"s": 1}, {"m": 2})
    assert state == {"s": 1} and meta == {"m": 2}
    assert set(data_r) <= set(out_r) and {"abundances", "tpm", "estimated_counts", "log_likelihood"} <= set(out_r)
    out_c, _, _ = q.apply({"equivalence_classes": jnp.asarray(CLASSES), "counts": jnp.asarray(CLASS_COUNTS),
                           "effective_lengths": jnp.asarray(LENGTHS)}, {}, None)
    out_l, _, _ = q.apply({"equivalence_classes": [[0], [0, 1], [1, 2], [2]], "counts": CLASS_COUNTS,
                           "effective_lengths": LENGTHS}, {}, None)
    for key in ("abundances", "tpm", "estimated_counts", "log_likelihood"):
        np.testing.assert_allclose(out_c[key], out_r[key], rtol=1e-12)
        np.testing.assert_allclose(out_l[key], out_r[key], rtol=1e-12)
    # 30 unrolled EM iterations from the uniform start, computed here with the textbook dense update
    a = dense_em(np.full(3, 14 / 3), 30)
    np.testing.assert_allclose(out_r["estimated_counts"], a, rtol=1e-12)
    np.testing.assert_allclose(out_r["abundances"], a / 14, rtol=1e-12)
    np.testing.assert_allclose(out_r["tpm"], 1e6 * (a / LENGTHS) / (a / LENGTHS).sum(), rtol=1e-12)
    # the seed's methods
    np.testing.assert_allclose(q.quantify(jnp.asarray(READS), LENGTHS), a / 14, rtol=1e-12)
    np.testing.assert_allclose(q.compute_tpm(a / 14, LENGTHS), out_r["tpm"], rtol=1e-12)
    one = q.em_step(q.get_initial_abundances(), jnp.asarray(READS), LENGTHS)
    x = READS * (np.full(3, 1 / 3)) / LENGTHS
    np.testing.assert_allclose(one, (x / x.sum(1, keepdims=True)).sum(0) / 14, rtol=1e-12)


def test_until_converged_matches_salmon_on_sample_data():
    d = load_sample_data()
    t = d.table
    eqc = E.make_eq_classes(t.class_ids, t.transcript_ids, t.counts, 15, t.weights, t.weights_include_length)
    q = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=15, n_iterations=100, algorithm="vbem",
                                                      until_converged=True))
    out, _, _ = q.apply({"equivalence_classes": eqc, "effective_lengths": jnp.asarray(d.effective_lengths)}, {},
                        None)
    assert np.abs(np.asarray(out["estimated_counts"]) - d.salmon_num_reads).max() < 0.05


def test_gradient_flows_through_unrolled_iterations():
    """nnx.grad of an output with respect to the initial abundances equals central differences."""
    q = op()
    data = {"compatibility": jnp.asarray(READS), "effective_lengths": jnp.asarray(LENGTHS)}

    def loss(model):
        return model.apply(data, {}, None)[0]["tpm"][1]

    g = np.asarray(nnx.grad(loss)(q).log_initial_abundances[...])
    assert np.abs(g).max() > 0
    base = np.asarray(q.log_initial_abundances[...])
    fd = []
    for j in range(3):
        vals = []
        for sign in (1, -1):
            q.log_initial_abundances[...] = jnp.asarray(base + sign * 1e-6 * np.eye(3)[j])
            vals.append(float(loss(q)))
        fd.append((vals[0] - vals[1]) / 2e-6)
    q.log_initial_abundances[...] = jnp.asarray(base)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)


def test_learnable_init_false_freezes_the_start():
    q = op(learnable_init=False)
    assert isinstance(q.log_initial_abundances, FrozenParam)
    assert len(jax.tree.leaves(nnx.state(q, nnx.Param))) == 0


def test_temperature_changes_the_result_and_low_temperature_hardens():
    data = {"compatibility": jnp.asarray(READS), "effective_lengths": jnp.asarray(LENGTHS)}
    base = op().apply(data, {}, None)[0]["abundances"]
    hot = op(temperature=3.0).apply(data, {}, None)[0]["abundances"]
    assert np.abs(np.asarray(base) - np.asarray(hot)).max() > 1e-3
    np.testing.assert_allclose(hot, dense_em(np.full(3, 14 / 3), 30, temperature=3.0) / 14, rtol=1e-10)


def test_apply_batch_maps_over_examples():
    q = op()
    batch = {"compatibility": jnp.stack([jnp.asarray(READS), jnp.asarray(READS[::-1])]),
             "effective_lengths": jnp.stack([jnp.asarray(LENGTHS), jnp.asarray(LENGTHS[::-1])])}
    out, _, _ = q.apply_batch(batch)
    for b in range(2):
        single = q.apply({k: v[b] for k, v in batch.items()}, {}, None)[0]
        np.testing.assert_allclose(out["abundances"][b], single["abundances"], rtol=1e-10)
    bad = dict(batch, effective_lengths=batch["effective_lengths"].at[1, 2].set(-1.0))
    with pytest.raises(ValueError, match="effective_lengths: must be finite and positive"):
        q.apply_batch(bad)


def test_parameters_move_both_ways():
    q = op()
    data = {"compatibility": jnp.asarray(READS), "effective_lengths": jnp.asarray(LENGTHS)}
    params = q.to_model_params(data)
    a = np.asarray(params["abundances"])
    assert np.all(a > 0) and abs(a.sum() - 1) < 1e-12
    np.testing.assert_allclose(a, dense_em(np.full(3, 14 / 3), 30) / 14, atol=2e-6)  # EM estimate, floored
    q2 = op()
    q2.load_model_params(params)
    np.testing.assert_allclose(q2.get_initial_abundances(), a, rtol=1e-10)
    # the loaded start is where the next 30 iterations begin
    np.testing.assert_allclose(q2.apply(data, {}, None)[0]["abundances"], dense_em(14 * a, 30) / 14, rtol=1e-9)
    with pytest.raises(ValueError, match="abundances: expected finite positive"):
        q2.load_model_params({"abundances": np.array([0.5, 0.5, 0.0])})
    with pytest.raises(ValueError, match="expected key 'abundances'"):
        q2.load_model_params({"theta": a})


@pytest.mark.parametrize(
    "data,match",
    [
        ({"effective_lengths": LENGTHS}, "either 'compatibility'"),
        ({"compatibility": READS, "equivalence_classes": CLASSES, "effective_lengths": LENGTHS}, "either"),
        ({"compatibility": READS}, "'effective_lengths' .* is required"),
        ({"compatibility": READS[:, :2], "effective_lengths": LENGTHS}, r"compatibility: expected shape \(R, 3\)"),
        ({"compatibility": READS, "effective_lengths": LENGTHS[:2]}, r"effective_lengths: expected shape \(3,\)"),
        ({"compatibility": READS, "effective_lengths": np.array([1.0, 0.0, 2.0])}, "finite and positive"),
        ({"compatibility": np.vstack([READS, np.zeros(3)]), "effective_lengths": LENGTHS}, "row 14 is empty"),
        ({"compatibility": -READS, "effective_lengths": LENGTHS}, "non-negative"),
        ({"compatibility": READS, "counts": np.ones(3), "effective_lengths": LENGTHS}, r"counts: expected shape"),
        ({"equivalence_classes": CLASSES, "effective_lengths": LENGTHS}, "counts: required"),
        ({"equivalence_classes": CLASSES, "counts": -CLASS_COUNTS, "effective_lengths": LENGTHS},
         "counts: must be non-negative"),
        ({"equivalence_classes": [[0], [0, 7]], "counts": [1.0, 2.0], "effective_lengths": LENGTHS},
         "transcript id 7 out of range"),
        ({"equivalence_classes": [[0], []], "counts": [1.0, 2.0], "effective_lengths": LENGTHS}, "class 1 is empty"),
        ({"equivalence_classes": CLASSES, "counts": CLASS_COUNTS[:2], "effective_lengths": LENGTHS},
         r"counts: expected shape \(4,\)"),
    ],
)
def test_bad_input_raises_before_tracing(data, match):
    with pytest.raises(ValueError, match=match):
        op().apply(data, {}, None)


def test_wrong_types():
    with pytest.raises(TypeError, match="config"):
        DifferentiableEMQuantifier(object())
    with pytest.raises(TypeError, match="data"):
        op().apply([1, 2], {}, None)
    eqc = E.make_eq_classes([0], [0], counts=[1.0], n_transcripts=5)
    with pytest.raises(ValueError, match="built for 5 transcripts"):
        op().apply({"equivalence_classes": eqc, "effective_lengths": LENGTHS}, {}, None)


@pytest.mark.float32
def test_float32_operator_is_accurate():
    q = op()
    out = q.apply({"compatibility": jnp.asarray(READS, jnp.float32),
                   "effective_lengths": jnp.asarray(LENGTHS, jnp.float32)}, {}, None)[0]
    assert out["abundances"].dtype == jnp.float32
    np.testing.assert_allclose(out["estimated_counts"], dense_em(np.full(3, 14 / 3), 30), rtol=1e-5, atol=1e-5)


# --- bad input found by probing apply (each used to pass silently or fail with a JAX/NumPy message) ----
@pytest.mark.parametrize(
    "data,exc,match",
    [
        # all-zero counts / no classes used to return all-zero abundances
        ({"compatibility": READS, "counts": np.zeros(14), "effective_lengths": LENGTHS}, ValueError,
         "counts: all 14 classes have 0 fragments"),
        ({"equivalence_classes": CLASSES, "counts": np.zeros(4), "effective_lengths": LENGTHS}, ValueError,
         "counts: all 4 classes have 0 fragments"),
        ({"equivalence_classes": np.zeros((0, 3)), "counts": np.zeros(0), "effective_lengths": LENGTHS}, ValueError,
         "equivalence_classes: no equivalence classes"),
        ({"equivalence_classes": [], "counts": [], "effective_lengths": LENGTHS}, ValueError,
         "equivalence_classes: no equivalence classes"),
        ({"compatibility": np.zeros((0, 3)), "effective_lengths": LENGTHS}, ValueError,
         "compatibility: no equivalence classes"),
        # dtypes: NumPy's "ufunc 'isfinite' not supported" before
        ({"compatibility": READS, "effective_lengths": np.array(["a", "b", "c"])}, TypeError,
         "effective_lengths: expected numbers"),
        ({"compatibility": READS.astype(str), "effective_lengths": LENGTHS}, TypeError,
         "compatibility: expected a numeric"),
        ({"compatibility": READS, "counts": np.array(["1"] * 14), "effective_lengths": LENGTHS}, TypeError,
         "counts: expected numbers"),
        # lists: a float id was truncated to 0, a repeated id doubled the entry's weight
        ({"equivalence_classes": [[0.5], [0, 1]], "counts": [1.0, 2.0], "effective_lengths": LENGTHS}, TypeError,
         "class 0 must list integer transcript ids"),
        ({"equivalence_classes": [[0, 0], [0, 1]], "counts": [1.0, 2.0], "effective_lengths": LENGTHS}, ValueError,
         "class 0 lists a transcript more than once"),
        ({"compatibility": READS, "effective_lengths": np.array([np.nan, 1.0, 2.0])}, ValueError,
         "effective_lengths: must be finite and positive, got nan at index 0"),
        ({"compatibility": READS, "effective_lengths": np.array([-5.0, 1.0, 2.0])}, ValueError,
         "effective_lengths: must be finite and positive, got -5.0"),
        ({"compatibility": READS, "counts": np.r_[np.ones(13), np.nan], "effective_lengths": LENGTHS}, ValueError,
         "counts: must be finite, got nan for class 13"),
    ],
)
def test_more_bad_input_is_named(data, exc, match):
    with pytest.raises(exc, match=match):
        op().apply(data, {}, None)


@pytest.mark.float32
def test_weight_below_the_smallest_normal_float_is_rejected():
    """1e-40 is subnormal in float32: XLA flushes it to 0, the class went empty and the log-likelihood -inf."""
    data = {"equivalence_classes": np.array([[1e-40, 0.0, 0.0], [1.0, 1.0, 0.0]]), "counts": np.array([5.0, 5.0]),
            "effective_lengths": LENGTHS}
    with pytest.raises(ValueError, match=r"weight 1e-40 at entry 0 \(class 0\) is below the smallest normal float32"):
        op().apply(data, {}, None)
    # a normal float32 weight is fine, and the log-likelihood is finite
    data["equivalence_classes"] = np.array([[1e-30, 0.0, 0.0], [1.0, 1.0, 0.0]])
    out = op().apply(data, {}, None)[0]
    assert np.isfinite(float(out["log_likelihood"]))
    np.testing.assert_allclose(float(jnp.sum(out["estimated_counts"])), 10.0, rtol=1e-5)


def test_tiny_weight_is_fine_in_float64():
    # in float64 1e-40 is a normal number: the single-transcript class still gives its 5 fragments to t0
    data = {"equivalence_classes": np.array([[1e-40, 0.0, 0.0], [1.0, 1.0, 0.0]]), "counts": np.array([5.0, 5.0]),
            "effective_lengths": LENGTHS}
    out = op().apply(data, {}, None)[0]
    assert np.isfinite(float(out["log_likelihood"]))
    assert float(out["estimated_counts"][0]) >= 5.0 - 1e-9


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"prior": float("nan")}, ValueError, "prior: expected a finite positive number, got nan"),
        ({"prior": float("inf")}, ValueError, "prior: expected a finite positive number, got inf"),
        ({"prior": -1.0}, ValueError, "prior: expected a finite positive number"),
        ({"prior": 0.0}, ValueError, "prior: expected a finite positive number"),
        ({"prior": "0.1"}, TypeError, "prior: expected a positive number, got str"),
        ({"prior": 1e308, "n_transcripts": 3}, ValueError, "total prior mass of 1e\\+308 x 3, which overflows float64"),
        ({"temperature": 0.0}, ValueError, "temperature: expected a finite positive number"),
        ({"temperature": float("inf")}, ValueError, "temperature: expected a finite positive number"),
        ({"temperature": "1"}, TypeError, "temperature: expected a number"),
        ({"n_transcripts": True}, ValueError, "n_transcripts: expected a positive integer"),
        ({"until_converged": "yes"}, TypeError, "until_converged: expected a bool"),
        ({"learnable_init": 1}, TypeError, "learnable_init: expected a bool"),
    ],
)
def test_config_rejects_bad_values(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EMQuantifierConfig(**kwargs)
