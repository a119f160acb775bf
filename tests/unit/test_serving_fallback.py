"""The fallback's model input: rows decoded from Redis text, the no-history vector for none."""

from __future__ import annotations

import numpy as np

from scorehouse.features.registry import feature_names, no_history_vector
from scorehouse.serving import keys
from scorehouse.serving.fallback import feature_matrix


def test_feature_matrix_stacks_stored_vectors_and_no_history_rows_in_order() -> None:
    n = len(feature_names())
    stored = np.arange(2 * n, dtype=np.float32).reshape(2, n) / 3
    stored[1, 2] = np.nan  # a missing feature stays missing (empty text → NaN)
    texts = keys.encode_feature_matrix(stored)

    matrix = feature_matrix([texts[0].encode(), None, texts[1]], n)

    expected = np.vstack([stored[0], no_history_vector()[0], stored[1]]).astype(np.float32)
    np.testing.assert_array_equal(matrix, expected)  # NaN positions must match too
    assert matrix.dtype == np.float32 and matrix.flags["C_CONTIGUOUS"]


def test_feature_matrix_uses_the_given_no_history_row_and_handles_no_misses() -> None:
    n = len(feature_names())
    given = np.full((1, n), 7.0, dtype=np.float32)
    np.testing.assert_array_equal(feature_matrix([None, None], n, given), np.vstack([given] * 2))
    assert feature_matrix([], n).shape == (0, n)
