"""``io.counts.validate_counts``: integer tables (what a count CSV parses to) take a shorter path with the
same answers and the same errors as float tables."""

from __future__ import annotations

import numpy as np
import pytest

from diffbio_prob.io.counts import MAX_COUNT, validate_counts


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint32, np.float64])
def test_integer_and_float_tables_give_the_same_values_and_errors(dtype):
    good = np.array([[0, 3, 7], [12, 0, 1]], dtype=dtype)
    out = validate_counts(good)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, good.astype(float))
    if np.issubdtype(dtype, np.signedinteger) or dtype == np.float64:
        with pytest.raises(ValueError, match=r"counts: expected non-negative counts, found -2(\.0)? at row 1, column 2"):
            validate_counts(np.array([[0, 3, 7], [12, 0, -2]], dtype=dtype))
    if np.dtype(dtype).itemsize == 8:
        big = np.array([[0, 3, 7], [12, MAX_COUNT + 1, 1]], dtype=dtype)
        with pytest.raises(ValueError, match=r"counts: expected counts <= 2147483647 .* at row 1, column 1"):
            validate_counts(big)
