"""Thresholds for a target strong-model share or a quality floor, on synthetic scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router_models import calibration


def test_share_threshold_on_uniform_scores():
    scores = np.arange(100) / 100
    for share in (0.1, 0.3, 0.55, 1.0):
        t = calibration.for_strong_share(scores, share)
        assert t.strong_share == pytest.approx(share)
        assert np.mean(scores >= t.threshold) == pytest.approx(share)
    assert calibration.for_strong_share(scores, 0.3).threshold == pytest.approx(0.70)


def test_share_threshold_rounds_up_to_at_least_the_target():
    t = calibration.for_strong_share(np.arange(10) / 10, 0.25)
    assert t.strong_share == pytest.approx(0.3)


def test_zero_share_never_routes_to_strong():
    t = calibration.for_strong_share(np.array([0.2, 0.9]), 0.0)
    assert math.isinf(t.threshold) and t.strong_share == 0
    assert t.as_dict()["threshold"] is None


def test_ties_cannot_be_split():
    t = calibration.for_strong_share(np.array([0.9] * 5 + [0.1] * 5), 0.3)
    assert t.threshold == 0.9
    assert t.strong_share == 0.5


def test_share_must_be_a_fraction():
    with pytest.raises(ValueError):
        calibration.for_strong_share(np.array([0.5]), 1.5)


def test_quality_floor_threshold():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    weak, strong = np.array([0, 1, 0, 1]), np.array([1, 1, 1, 0])
    t = calibration.for_min_pgr(scores, weak, strong, 0.5)
    assert (t.threshold, t.strong_share, t.pgr) == (0.9, 0.25, 1.0)
    t = calibration.for_min_pgr(scores, weak, strong, 1.5)
    assert (t.threshold, t.strong_share, t.pgr) == (0.7, 0.75, 2.0)
    assert calibration.for_min_pgr(scores, weak, strong, 0.0).as_dict()["threshold"] is None
