"""The generalisation-experiment helpers (``router_models.experiments``), on small synthetic inputs."""

from __future__ import annotations

import numpy as np
import pytest

from router_models import data as D
from router_models import experiments as E


def test_candidate_features_read_options_negations_and_rarity():
    mc = E.candidate_features(
        "Which of the following is NOT a prime number?\nA. 2\nB. 3\nC. 9\nD. 11\nAnswer:"
    )
    named = dict(zip(E.CANDIDATE_FEATURES, mc, strict=True))
    assert named["share_numeric_options"] == 1.0
    assert named["log_negations"] == pytest.approx(np.log1p(1))
    assert named["log_stem_chars"] == pytest.approx(
        np.log1p(len("Which of the following is NOT a prime number?\n"))
    )
    plain = dict(zip(E.CANDIDATE_FEATURES, E.candidate_features("hello there, how are you"), strict=True))
    assert plain["log_option_chars"] == 0 and plain["share_numeric_options"] == 0
    rare = dict(
        zip(E.CANDIDATE_FEATURES, E.candidate_features("Pharmacokinetics of immunosuppressants"), strict=True)
    )
    assert rare["tok_log_id_mean"] > plain["tok_log_id_mean"]
    assert rare["log_long_words"] > plain["log_long_words"] == 0


def test_candidate_features_of_empty_prompt_are_finite():
    assert np.all(np.isfinite(E.candidate_features("")))


def test_logistic_soft_labels_equal_duplicated_hard_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    soft = 1 / (1 + np.exp(-(X[:, 0] - X[:, 1])))
    scores = E._logistic(X, soft)(X)
    # A soft label is the row once as positive (weight p) and once as negative (weight 1 - p).
    hard = E._logistic(np.vstack([X, X]), np.r_[np.ones(300), np.zeros(300)], np.r_[soft, 1 - soft])(X)
    assert scores == pytest.approx(hard, abs=1e-4)
    assert np.corrcoef(scores, soft)[0, 1] > 0.9


def test_group_intercepts_absorb_base_rates_and_are_left_out_when_scoring():
    rng = np.random.default_rng(1)
    groups = np.repeat([0, 1], 500)
    x = rng.normal(size=1000) + 3 * groups  # group 1 has larger x ...
    p = 1 / (1 + np.exp(-(x - 3 * groups - 4 * groups)))  # ... but within a group x helps, group 1 is rarer
    y = (rng.random(1000) < p).astype(float)
    pooled = E._logistic(x[:, None], y)(np.array([[0.0], [1.0]]))
    within = E._logistic(x[:, None], y, intercepts=groups)(np.array([[0.0], [1.0]]))
    assert within[1] > within[0]  # the within-group relation is positive
    assert pooled[1] < pooled[0]  # pooled, the rarer high-x group reverses it


def test_every_candidate_is_described():
    assert all(len(description) > 10 and callable(fn) for description, fn in E.CANDIDATES.values())
    assert "structure" in E.CANDIDATES


def test_llmrouter_model_scores_align_with_load(tmp_path):
    import json

    router = tmp_path / "router"
    router.mkdir()
    rows = [
        {
            "id": f"l{i}",
            "prompt": f"p{i}",
            "scores": {D.LLMROUTER_WEAK: i % 2, D.LLMROUTER_STRONG: 1, "x": 0.5},
        }
        for i in range(4)
    ]
    (router / D.SOURCE_FILES["llmrouter"]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    names, scores = D.llmrouter_model_scores(router)
    assert names == sorted([D.LLMROUTER_WEAK, D.LLMROUTER_STRONG, "x"])
    assert scores.shape == (4, 3)
    loaded = D.load(router, sources=("llmrouter",))
    assert scores[:, names.index(D.LLMROUTER_WEAK)].tolist() == loaded.weak_quality.tolist()


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(
    not D.router_data_available(),
    reason=f"router data not found in {D.router_data_dir()} (set TIERGATE_DATA_DIR)",
)
def test_experiment_baseline_is_the_shipped_protocol():
    from gateway.routing.scorer import default_scorer

    lab = E.Lab.build()
    rows = {
        (r.candidate, r.held_out): r for r in E.run(lab, ["structure", "length-only"], 5, log=lambda _: None)
    }
    recorded = {r["held_out"]: r for r in default_scorer().artifact.metadata["held_out"]}
    for source in ("mmlu", "llmrouter"):
        baseline = rows[("structure", source)]
        assert baseline.apgr == pytest.approx(recorded[source]["apgr"], abs=1e-6)
        assert baseline.delta_apgr_mean == 0 and baseline.delta_apgr_sd == 0
        # The untrained length prior is a real, weaker router: above random, below the learned one.
        length = rows[("length-only", source)]
        assert 0.5 < length.apgr < baseline.apgr
        assert length.delta_apgr_mean < 0


def test_model2vec_rarity_sees_rare_words_split_into_pieces():
    common, rare = E.m2v_rarity(["the cat sat on the mat", "pharmacokinetics of immunosuppressants"])
    named = lambda row: dict(zip(E.M2V_RARITY_FEATURES, row, strict=True))  # noqa: E731
    assert named(rare)["m2v_share_continuations"] > named(common)["m2v_share_continuations"] == 0
    assert named(rare)["m2v_log_id"] > named(common)["m2v_log_id"]
    assert np.all(E.m2v_rarity([""]) == 0)
