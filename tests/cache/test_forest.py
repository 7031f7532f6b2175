"""The verifier's numpy trees: bounds for rows whose costly features are not computed yet."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from gateway.cache.forest import Forest


def _fitted(monotonic_cst: list[int]) -> Forest:
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(4000, 3))
    # Feature 0 raises the odds, feature 1 lowers them, feature 2 matters only through |x2| (not monotone).
    logit = 3 * x[:, 0] - 2 * x[:, 1] + 4 * (np.abs(x[:, 2]) - 0.5)
    y = (rng.uniform(size=len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, monotonic_cst=monotonic_cst,
                                           random_state=0).fit(x, y)  # fmt: skip
    return Forest.from_sklearn(model)


def test_the_bound_holds_and_is_reached_at_the_favourable_end_of_each_unknown_feature() -> None:
    forest = _fitted([1, -1, 0])
    rows = np.random.default_rng(1).uniform(-1, 1, size=(300, 3))
    bound = forest.upper_bound(rows, unknown=[0, 1])
    grid = np.linspace(-2, 2, 41)
    best = np.full(len(rows), -np.inf)
    for a in grid:
        for b in grid:
            probe = rows.copy()
            probe[:, 0], probe[:, 1] = a, b
            best = np.maximum(best, forest.predict_proba(probe))
    assert np.all(bound >= best - 1e-12)
    assert np.allclose(bound, best)  # the most favourable values lie in the grid: the bound is exact


def test_a_feature_the_trees_are_not_monotone_in_cannot_be_bounded() -> None:
    forest = _fitted([1, -1, 0])
    with pytest.raises(ValueError, match="not monotone in feature 2"):
        forest.upper_bound(np.zeros((1, 3)), unknown=[2])


def test_the_shipped_verifier_can_bound_its_vector_features() -> None:
    from gateway.cache.verifier import FEATURE_NAMES, VECTOR_FEATURES, Verifier

    verifier = Verifier(encoder=None)
    unknown = [FEATURE_NAMES.index(name) for name in VECTOR_FEATURES]
    rows = np.random.default_rng(2).uniform(0, 1, size=(200, len(FEATURE_NAMES)))
    assert np.all(verifier.forest.upper_bound(rows, unknown) >= verifier.forest.predict_proba(rows) - 1e-12)
