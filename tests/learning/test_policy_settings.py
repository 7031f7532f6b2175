"""The policy's quality settings: off by default, validated, and part of the published schema."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.learning.calibrate import PassCurve, choose_threshold, rescaled_document
from gateway.routing.policy import PolicyError, Router, parse_policy
from tests.gateway.test_policies import FACTS, policy


def test_shadow_sampling_is_off_by_default():
    spec = parse_policy(policy())
    assert spec.quality.shadow.enabled is False and spec.quality.target_retained == 0.95


@pytest.mark.parametrize(
    ("shadow", "message"),
    [
        ({"enabled": True}, "needs a reference deployment"),
        ({"enabled": True, "reference": "gpt-4o", "grader": "judge"}, "needs a judge deployment"),
        ({"enabled": True, "reference": "gpt-5"}, "quality.shadow.reference: 'gpt-5'"),
        ({"enabled": True, "reference": "gpt-4o", "share": 1.5}, "quality.shadow.share"),
        ({"enabled": True, "reference": "gpt-4o", "max_usd_per_day": -1}, "max_usd_per_day"),
    ],
)
def test_invalid_shadow_settings_are_rejected(shadow, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Router(parse_policy(policy(quality={"shadow": shadow})), 1, FACTS)


def test_threshold_choice_and_band_rescaling():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 2000)
    passed = (rng.uniform(0, 1, 2000) > scores).astype(int)  # harder prompts fail more often
    curve = PassCurve.fit(scores, passed)
    assert curve(np.array([0.1]))[0] > 0.8 > 0.2 > curve(np.array([0.9]))[0]
    loose, strict = choose_threshold(scores, curve, 0.7), choose_threshold(scores, curve, 0.9)
    assert strict.threshold < loose.threshold and strict.quality >= 0.9 and loose.quality >= 0.7
    assert strict.strong_share > loose.strong_share
    assert choose_threshold(scores, curve, 0.0).threshold > 0.99  # nothing needs the reference

    spec = parse_policy(policy(quality={"shadow": {"enabled": True, "reference": "gpt-4o"}}))
    document = rescaled_document(spec, FACTS, 0.3)  # v1: local-small [0, .3), mini [.3, .6), 4o [.6, 1]
    assert [(b["from"], b["to"], b["deployment"]) for b in document["bands"]] == [
        (0.0, 0.15, "local-small"),
        (0.15, 0.3, "gpt-4o-mini"),
        (0.3, 1.0, "gpt-4o"),
    ]
    Router(parse_policy(document), 2, FACTS)  # a valid policy
