"""An estimator outside scikit-learn, as a user's own package would hold one: skops does
not trust its type until model.trusted_types lists it (tests/unit/test_custom_estimators.py)."""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression


class BalancedLogistic(LogisticRegression):
    """Logistic regression with class weights balanced: a user's small variation."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000) -> None:
        super().__init__(C=C, max_iter=max_iter, class_weight="balanced")
