"""The serving scorer: the shipped artifact, its training-side self-check, and artifact variants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.routing import features as F
from gateway.routing.scorer import Scorer, default_scorer, score
from router_models.artifact import Artifact, artifact_path, versions

from .test_features import SHAPES, TOOLS


def test_shipped_artifact_is_packaged_and_versioned():
    assert versions()
    path = artifact_path()
    assert path.name == f"router-v{versions()[-1]}.npz"
    assert path.with_suffix(".json").is_file()
    assert default_scorer().version == versions()[-1]


def test_serving_reproduces_training_probabilities():
    scorer = default_scorer()
    checks = scorer.artifact.metadata["self_check"]
    assert len(checks) >= 3
    for check in checks:
        assert scorer.score(F.prompt_messages(check["prompt"])) == pytest.approx(check["score"], abs=1e-9)


@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_scores_in_unit_interval(name):
    value = score(SHAPES[name], TOOLS)
    assert 0.0 < value < 1.0


def test_clearly_easy_below_clearly_hard():
    # The shipped model's strongest transferable signal is how much the prompt asks (length, reasoning).
    easy = score(F.prompt_messages("hi"))
    hard = score(
        F.prompt_messages(
            "Let G be a finite group of order 2p where p is an odd prime. Prove that G has a normal "
            "subgroup of order p, determine all possible isomorphism classes of G, and for each class "
            "compute the number of elements of order 2. Show every step of the argument, and then "
            "write a Python function that enumerates these groups for p < 50."
        )
    )
    assert easy < 0.2 < hard


def test_embedding_argument_is_optional_for_the_shipped_model():
    messages = F.prompt_messages("Explain TCP slow start.")
    assert not default_scorer().uses_embedding
    assert score(messages, embedding=np.ones(256, dtype=np.float32)) == score(messages)


def _artifact(**overrides) -> Artifact:
    n = len(F.DENSE_FEATURES)
    fields = {
        "metadata": {"version": 99, "dense_features": list(F.DENSE_FEATURES)},
        "dense_mean": np.zeros(n),
        "dense_scale": np.ones(n),
        "dense_weights": np.zeros(n),
        "terms": [],
        "term_idf": np.empty(0),
        "term_coefficients": np.empty(0),
        "embedding_weights": np.empty(0),
        "bias": 0.0,
    }
    return Artifact(**(fields | overrides))


def test_artifact_round_trip_with_terms_and_embedding(tmp_path):
    artifact = _artifact(
        terms=["proof", "hello"],
        term_idf=np.array([2.0, 1.0]),
        term_coefficients=np.array([3.0, -3.0]),
        embedding_weights=np.array([1.0, 0.0, -1.0]),
    )
    path = tmp_path / "router-v99.npz"
    artifact.save(path)
    scorer = Scorer.load(path)
    assert scorer.version == 99 and scorer.uses_embedding
    hard = scorer.score(F.prompt_messages("proof"), embedding=np.array([1.0, 0.0, 0.0]))
    easy = scorer.score(F.prompt_messages("hello"), embedding=np.array([1.0, 0.0, 0.0]))
    assert hard == pytest.approx(1 / (1 + np.exp(-4.0)))
    assert easy == pytest.approx(1 / (1 + np.exp(2.0)))
    # The embedding block is applied as given by the caller.
    assert scorer.score(F.prompt_messages("proof"), embedding=np.array([0.0, 0.0, 1.0])) == pytest.approx(
        1 / (1 + np.exp(-2.0))
    )


def test_dense_features_are_standardised_as_in_training():
    n = len(F.DENSE_FEATURES)
    features = F.extract(F.prompt_messages("Compute 3 + 4 step by step."), with_terms=False).dense
    mean, scale, weights = np.linspace(0, 1, n), np.linspace(1, 2, n), np.linspace(-1, 1, n)
    scorer = Scorer(_artifact(dense_mean=mean, dense_scale=scale, dense_weights=weights, bias=0.3))
    z = 0.3 + weights @ ((features - mean) / scale)
    assert scorer.score(F.prompt_messages("Compute 3 + 4 step by step.")) == pytest.approx(
        1 / (1 + np.exp(-z))
    )


def test_extreme_logits_do_not_overflow():
    n = len(F.DENSE_FEATURES)
    assert Scorer(_artifact(bias=-5000.0)).score(F.prompt_messages("x")) == 0.0
    assert Scorer(_artifact(bias=5000.0, dense_weights=np.zeros(n))).score(F.prompt_messages("x")) == 1.0


def test_artifact_with_other_features_is_refused():
    with pytest.raises(ValueError, match="retrain"):
        Scorer(_artifact(metadata={"version": 1, "dense_features": ["something_else"]}))


_CONTENT = st.one_of(
    st.none(),
    st.text(max_size=3000),
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=500)}),
            st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.just({"url": "x"})}),
            st.integers(),
        ),
        max_size=4,
    ),
)
_MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]), "content": _CONTENT}
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(messages=_MESSAGES)
def test_any_conversation_scores_within_bounds(messages):
    value = score(messages)
    assert 0.0 <= value <= 1.0


def test_standardised_features_are_clipped_as_in_training():
    n = len(F.DENSE_FEATURES)
    weights = np.zeros(n)
    weights[F.DENSE_FEATURES.index("log_tokens_total")] = 1.0
    artifact = _artifact(dense_weights=weights, bias=-0.5)
    artifact.metadata["dense_clip"] = 1.0
    # log(1 + ~5,000 tokens) is far beyond 1 sd of a zero-mean, unit-scale feature: it counts as 1.
    assert Scorer(artifact).score(F.prompt_messages("word " * 5000)) == pytest.approx(1 / (1 + np.exp(-0.5)))
