"""Held-out-source evaluation on ../shared/data/router (skipped where the data is absent)."""

from __future__ import annotations

import pytest

from router_models import data as D

pytestmark = [
    pytest.mark.data,
    pytest.mark.slow,
    pytest.mark.skipif(
        not D.router_data_available(),
        reason=f"router data not found in {D.router_data_dir()} (set TIERGATE_DATA_DIR)",
    ),
]


@pytest.fixture(scope="module")
def held_out():
    from router_models.evaluate import held_out_sources
    from router_models.model import APPROACHES, SHIPPED_APPROACH
    from router_models.train import build_table

    dataset = D.load()
    results = held_out_sources([APPROACHES[SHIPPED_APPROACH]], dataset, build_table(dataset), 0.5)
    return {r.held_out: r for r in results}


def test_labels_per_source():
    dataset = D.load()
    for source, rows in (("mmlu", 14042), ("llmrouter", 5441), ("arena", 478)):
        mask = dataset.sources == source
        assert mask.sum() == rows
    mmlu = dataset.sources == "mmlu"
    # README: only GPT-4 right on 18% of MMLU.
    assert dataset.labels[mmlu].mean() == pytest.approx(0.18, abs=0.01)


def test_router_beats_random_on_every_held_out_source(held_out):
    for source in ("mmlu", "llmrouter"):
        result = held_out[source]
        assert result.apgr > 0.57, source
        assert result.cpt50 < 0.40, source
        assert result.auc > 0.55, source
    assert held_out["arena"].auc > 0.53
    assert held_out["arena"].apgr is None


def test_shipped_card_numbers_are_reproducible(held_out):
    from gateway.routing.scorer import default_scorer

    recorded = {r["held_out"]: r for r in default_scorer().artifact.metadata["held_out"]}
    for source, result in held_out.items():
        assert result.auc == pytest.approx(recorded[source]["auc"], abs=1e-6)
        if result.apgr is not None:
            assert result.apgr == pytest.approx(recorded[source]["apgr"], abs=1e-6)


def test_held_out_apgr_comes_with_its_sampling_noise(held_out):
    for source in ("mmlu", "llmrouter"):
        # A few thousand rows: APGR is known to within about a hundredth, not a thousandth.
        assert 0.002 < held_out[source].apgr_sd < 0.03, source
    assert held_out["arena"].apgr_sd is None
