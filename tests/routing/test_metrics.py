"""RouteLLM metrics against small examples computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from router_models import metrics

# Ranked by score: gains (strong - weak) are +1, 0, +1, -1. Weak mean 0.5, strong mean 0.75.
SCORES = np.array([0.9, 0.8, 0.7, 0.6])
WEAK = np.array([0, 1, 0, 1])
STRONG = np.array([1, 1, 1, 0])


def test_curve_by_hand():
    curve = metrics.routing_curve(SCORES, WEAK, STRONG)
    assert curve.shares.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert curve.quality.tolist() == [0.5, 0.75, 0.75, 1.0, 0.75]
    assert curve.pgr.tolist() == [0, 1, 1, 2, 1]
    assert curve.thresholds[0] == np.inf
    assert curve.thresholds[1:].tolist() == [0.9, 0.8, 0.7, 0.6]


def test_apgr_and_cpt_by_hand():
    curve = metrics.routing_curve(SCORES, WEAK, STRONG)
    # Trapezoids of width 0.25 over PGR 0, 1, 1, 2, 1.
    assert metrics.apgr(curve) == pytest.approx(0.25 * (0.5 + 1 + 1.5 + 1.5))
    assert metrics.cpt(curve, 0.5) == pytest.approx(0.125)
    assert metrics.cpt(curve, 0.8) == pytest.approx(0.2)
    assert metrics.cpt(curve, 2.0) == pytest.approx(0.75)
    assert metrics.cpt(curve, 3.0) == 1.0


def test_ties_are_routed_together_and_interpolated():
    curve = metrics.routing_curve(
        np.array([0.5, 0.5, 0.1, 0.1]), np.array([0, 0, 0, 0]), np.array([1, 0, 1, 0])
    )
    assert curve.shares.tolist() == [0, 0.5, 1]
    assert curve.pgr.tolist() == [0, 0.5, 1]
    assert metrics.apgr(curve) == pytest.approx(0.5)
    assert metrics.cpt(curve, 0.25) == pytest.approx(0.25)
    assert metrics.cpt(curve, 0.5) == pytest.approx(0.5)


def test_random_router_is_half_and_oracle_is_better():
    rng = np.random.default_rng(0)
    weak = rng.integers(0, 2, 20_000)
    strong = np.maximum(weak, rng.integers(0, 2, 20_000))
    random_curve = metrics.routing_curve(rng.random(20_000), weak, strong)
    assert metrics.apgr(random_curve) == pytest.approx(0.5, abs=0.02)
    assert metrics.cpt(random_curve, 0.5) == pytest.approx(0.5, abs=0.03)
    oracle = metrics.routing_curve(strong - weak + rng.random(20_000) * 0.1, weak, strong)
    assert metrics.apgr(oracle) > 0.85
    assert metrics.cpt(oracle, 0.8) < 0.3


def test_constant_scores_equal_random_tie_breaking():
    curve = metrics.routing_curve(np.zeros(4), WEAK, STRONG)
    assert metrics.apgr(curve) == pytest.approx(0.5)
    assert metrics.cpt(curve, 0.5) == pytest.approx(0.5)


def test_curve_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        metrics.routing_curve(np.array([0.1]), np.array([0, 1]), np.array([1, 1]))
    with pytest.raises(ValueError):
        metrics.routing_curve(np.array([]), np.array([]), np.array([]))


def test_auc_by_hand():
    assert metrics.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert metrics.roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    assert np.isnan(metrics.roc_auc(np.array([0.5, 0.6]), np.array([1, 1])))


def test_calibration_by_hand():
    probabilities = np.array([0.1, 0.1, 0.9, 0.9])
    labels = np.array([0, 0, 1, 1])
    assert metrics.expected_calibration_error(probabilities, labels) == pytest.approx(0.1)
    assert metrics.brier(probabilities, labels) == pytest.approx(0.01)
    assert metrics.expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0


def test_bootstrap_apgr_spreads_around_the_full_sample_value():
    rng = np.random.default_rng(1)
    weak = rng.integers(0, 2, 2000)
    strong = np.maximum(weak, rng.integers(0, 2, 2000))
    informative = (strong - weak) + rng.normal(0, 1.0, 2000)
    full = metrics.apgr(metrics.routing_curve(informative, weak, strong))
    samples = metrics.bootstrap_apgr(informative, weak, strong, rounds=100)
    assert samples.shape == (100,)
    assert np.percentile(samples, 2.5) < full < np.percentile(samples, 97.5)
    assert 0.001 < samples.std() < 0.05


def test_paired_bootstrap_of_a_router_against_itself_is_zero_and_detects_a_better_one():
    rng = np.random.default_rng(2)
    weak = rng.integers(0, 2, 1000)
    strong = np.maximum(weak, rng.integers(0, 2, 1000))
    noise = rng.normal(0, 1.0, 1000)
    good = (strong - weak) + noise
    assert np.all(metrics.bootstrap_apgr(good, weak, strong, baseline=good, rounds=20) == 0)
    better = metrics.bootstrap_apgr(good, weak, strong, baseline=noise, rounds=50)
    assert better.mean() > 4 * better.std() > 0
