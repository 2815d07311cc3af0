"""trainflow_inference.stack_as_csr and CsrColumnTransformer: the preprocessed matrix of a
sparse layout is stacked straight into CSR, equal to scikit-learn's own stacking and
without scipy's second copy of it."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from support.synthetic import TARGET, feature_spec_for_synthetic, make_table

from trainflow.ml.features import PreprocessingOptions, build_preprocessor, plan_features
from trainflow_inference import CsrColumnTransformer, stack_as_csr


def _parts(rows: int, seed: int = 0) -> list[object]:
    """A dense part with zeros and a NaN, a CSR part with empty rows, an empty-width part,
    a sparse part in another format and a second dense part."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, 4))
    dense[dense < 0.3] = 0.0
    dense[rows // 2, 1] = np.nan
    words = sparse.random(rows, 30, density=0.3, format="csr", random_state=seed)
    words = sparse.csr_matrix(words.multiply(rng.random((rows, 1)) > 0.2))  # about a fifth of the rows empty
    return [
        dense,
        words,
        np.empty((rows, 0)),
        sparse.random(rows, 5, density=0.3, format="csc", random_state=seed + 1),
        rng.normal(size=(rows, 2)),
    ]


def _equal(ours: sparse.spmatrix, reference: sparse.spmatrix) -> bool:
    return ours.shape == reference.shape and np.array_equal(ours.toarray(), reference.toarray(), equal_nan=True)


@pytest.mark.parametrize("rows", [1, 7, 1_000])
def test_stacking_equals_scipys_hstack(rows: int) -> None:
    parts = _parts(rows)
    ours = stack_as_csr(parts)
    reference = sparse.hstack([p for p in parts if p.shape[1]]).tocsr()
    assert ours.format == "csr"
    ours.check_format(full_check=True)
    assert _equal(ours, reference)
    assert ours.nnz == reference.nnz  # what is stored, too: not the dense parts' zeros
    assert ours.has_sorted_indices


def test_stacking_adds_far_less_than_scipys_copy() -> None:
    """Traced numpy allocations: beyond the result itself, scipy's hstack holds a second
    copy of it; stack_as_csr holds index arrays for one part at a time."""
    parts = _parts(200_000)

    def traced_peak(stack: object) -> tuple[int, int]:
        tracemalloc.start()
        result = stack(parts)
        size = result.data.nbytes + result.indices.nbytes + result.indptr.nbytes
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size, peak

    size, ours = traced_peak(stack_as_csr)
    _, scipys = traced_peak(lambda parts: sparse.hstack(parts).tocsr())
    assert ours < 1.5 * size
    assert scipys > 1.8 * size


@pytest.mark.parametrize("layout", ["sparse", "auto", "dense"])
def test_the_preprocessor_matches_column_transformer(layout: str) -> None:
    """Fitted on the same rows, CsrColumnTransformer and scikit-learn's ColumnTransformer
    give the same matrix, in fit_transform and in transform, for every layout."""
    table = make_table(3_000, seed=5).drop(columns=[TARGET])
    train, new = table.iloc[:2_000], table.iloc[2_000:]
    # a linear model's plan: one-hot and TF-IDF parts are sparse, numbers and dates dense
    plan = plan_features(train, feature_spec_for_synthetic(), PreprocessingOptions(), LogisticRegression(), n_classes=3)
    ours = build_preprocessor(dataclasses.replace(plan, layout=layout), PreprocessingOptions())
    assert isinstance(ours, CsrColumnTransformer)
    plain = ColumnTransformer(ours.transformers, remainder=ours.remainder, sparse_threshold=ours.sparse_threshold)
    fitted, expected = ours.fit_transform(train), plain.fit_transform(train)
    assert sparse.issparse(fitted) == sparse.issparse(expected) == (layout == "sparse")
    for got, want in ((fitted, expected), (ours.transform(new), plain.transform(new))):
        if sparse.issparse(want):
            assert _equal(got, want)
        else:
            np.testing.assert_array_equal(got, want)
