"""``workflows.deseq2.loess``: R's ``loess(y ~ x)`` + ``predict`` (one predictor, R's defaults) against
R 4.2.2 (``tests/reference/data/loess``, made by its ``make_reference.R``) and against the loess
curves DESeq2's small-df prior-variance search produced in R (``deseq2_real/*/r_prior_var_*``).

On the reference machine the port is bit-identical to R (vertex values and every prediction); the
tolerances below leave room only for a different libm/CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.workflows.deseq2.loess import fit_loess, loess_predict

REF = Path(__file__).resolve().parents[1] / "reference" / "data"
LOESS = REF / "loess"
REAL = REF / "deseq2_real"
CASES = pd.read_csv(LOESS / "cases.csv", skipinitialspace=True)
KL_CASES = [
    ("marioni_1v2", ""),
    ("marioni_2v2", ""),
    ("marioni_2v2", "_fit_local"),
    ("marioni_2v2", "_fit_mean"),
    ("marioni_2v3", ""),
    ("marioni_3v3_run", ""),
    ("tagseq_2v2", ""),
]


def _read(name):
    return pd.read_csv(LOESS / name, skipinitialspace=True)


def _assert_close(got, want, rtol=1e-13):
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    m = ~np.isnan(want)
    scale = np.max(np.abs(want[m])) if m.any() else 1.0
    np.testing.assert_allclose(got[m], want[m], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("case", list(CASES["case"]))
def test_matches_r_fixture(case):
    c = CASES.set_index("case").loc[case]
    d = _read(f"{case}_data.csv")
    p = _read(f"{case}_pred.csv")
    kd = _read(f"{case}_kd.csv")
    fit = fit_loess(
        d.x.to_numpy(),
        d.y.to_numpy(),
        span=float(c.span),
        degree=int(c.degree),
        weights=d.w.to_numpy() if bool(c.weighted) else None,
    )
    # same k-d tree as R
    assert fit.vertices.size == int(c.nv)
    assert fit.a.size == int(c.nc)
    _assert_close(fit.vval, np.column_stack([kd.value, kd.slope]))
    _assert_close(fit.predict(p.newx.to_numpy()), p.fit.to_numpy())


@pytest.mark.parametrize("case,suffix", KL_CASES)
def test_matches_r_on_deseq2_kl_curves(case, suffix):
    kl = pd.read_csv(REAL / case / f"r_prior_var_kl{suffix}.csv")
    lo = pd.read_csv(REAL / case / f"r_prior_var_loess{suffix}.csv")
    got = loess_predict(kl.v.to_numpy(), kl.klDiv.to_numpy(), lo.v.to_numpy(), span=0.2)
    _assert_close(got, lo.loess.to_numpy())
    assert int(np.argmin(got)) == int(np.argmin(lo.loess.to_numpy()))


def test_outside_range_is_nan_and_shape_kept():
    x = np.linspace(0, 1, 30)
    fit = fit_loess(x, np.sin(3 * x))
    out = fit.predict(np.array([[-0.1, 0.0], [0.5, 1.0 + 1e-12]]))
    assert out.shape == (2, 2)
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 1])
    assert np.isfinite(out[0, 1]) and np.isfinite(out[1, 0])
    assert np.ndim(fit.predict(0.3)) == 0


def test_reproduces_a_quadratic_exactly():
    # degree-2 local fits reproduce a quadratic; the Hermite interpolation of exact values and
    # slopes is then exact too
    x = np.linspace(-2, 3, 57)
    y = 1.5 - x + 0.25 * x**2
    z = np.linspace(-2, 3, 301)
    np.testing.assert_allclose(
        loess_predict(x, y, z, span=0.3), 1.5 - z + 0.25 * z**2, rtol=0, atol=1e-12
    )


def test_data_order_does_not_matter_beyond_rounding():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 5, 120)
    y = np.cos(x) + rng.normal(0, 0.1, 120)
    z = np.linspace(x.min(), x.max(), 99)
    perm = rng.permutation(120)
    np.testing.assert_allclose(
        loess_predict(x[perm], y[perm], z, span=0.4),
        loess_predict(x, y, z, span=0.4),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x": np.zeros((3, 2)), "y": np.zeros(3)}, "x must be 1-D"),
        ({"x": [0.0, np.nan, 2.0], "y": [1.0, 2.0, 3.0]}, "x must be finite"),
        (
            {"x": np.arange(10.0), "y": np.r_[np.arange(9.0), np.inf]},
            "y must be finite",
        ),
        ({"x": np.arange(10.0), "y": np.arange(9.0)}, "y must have the length of x"),
        ({"x": [], "y": []}, "x must not be empty"),
        ({"x": np.arange(10.0), "y": np.arange(10.0), "span": 0.0}, "span must be"),
        ({"x": np.arange(10.0), "y": np.arange(10.0), "span": True}, "span must be"),
        (
            {"x": np.arange(10.0), "y": np.arange(10.0), "span": 0.05},
            "span is too small",
        ),
        ({"x": np.arange(10.0), "y": np.arange(10.0), "span": 0.2}, "span too small"),
        (
            {"x": np.arange(10.0), "y": np.arange(10.0), "degree": 3},
            "degree must be 0, 1 or 2",
        ),
        (
            {"x": np.arange(10.0), "y": np.arange(10.0), "degree": 1.0},
            "degree must be 0, 1 or 2",
        ),
        (
            {"x": np.arange(10.0), "y": np.arange(10.0), "weights": -np.ones(10)},
            "weights must be non-negative",
        ),
        (
            {"x": np.arange(10.0), "y": np.arange(10.0), "weights": np.ones(3)},
            "weights must have the length",
        ),
        ({"x": np.arange(10.0), "y": np.arange(10.0), "cell": 0}, "cell must be"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_loess(**kwargs)


def test_degenerate_neighbourhood_raises():
    # R warns ("all data on boundary of neighborhood", "zero-width neighborhood") and predict() then
    # stops with "NA/NaN/Inf in foreign function call"
    with pytest.raises(FloatingPointError, match="neighbourhood"):
        fit_loess(np.r_[np.zeros(20), 1.0], np.arange(21.0), span=0.5)
