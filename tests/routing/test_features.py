"""Feature extraction on every message shape the OpenAI API allows (and some it does not)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.routing import features as F

SHAPES = {
    "plain": [{"role": "user", "content": "What is 2 + 2?"}],
    "content none": [{"role": "user", "content": None}],
    "no content key": [{"role": "user"}],
    "text parts and image": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this chart."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            ],
        }
    ],
    "tool round trip": [
        {"role": "system", "content": "You are a shop assistant."},
        {"role": "user", "content": "Where is my order 1234?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "find_order", "arguments": '{"id":1234}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'},
    ],
    "legacy function call": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "ok"},
    ],
    "developer role only": [{"role": "developer", "content": "Answer in French."}],
    "empty": [],
    "junk entries": [
        None,
        "text",
        3,
        {"role": "user", "content": 42},
        {"role": "user", "content": [None, 1]},
    ],
    "string parts": [{"role": "user", "content": ["a", "b"]}],
    "junk tool calls": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": 5, "function_call": "f"},
        {"role": "assistant", "tool_calls": [None, {"function": "x"}, {"function": {"name": 3}}]},
    ],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "find_order",
            "description": "Look an order up by id.",
            "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}},
        },
    },
    {"type": "function", "function": {"name": "no_params"}},
    {"name": "bare_function_dict", "description": "not wrapped"},
    "not a tool",
]


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("tools", [None, TOOLS, []])
def test_every_shape_gives_finite_features(name, tools):
    features = F.extract(SHAPES[name], tools)
    assert features.dense.shape == (len(F.DENSE_FEATURES),)
    assert np.isfinite(features.dense).all()
    assert isinstance(features.terms, list)


def test_content_text_keeps_text_parts_and_drops_the_rest():
    assert F.content_text(SHAPES["text parts and image"][0]["content"]) == "Describe this chart."
    assert F.content_text(None) == ""
    assert F.content_text(42) == ""


def test_whole_conversation_is_analysed_last_user_first():
    text = F.conversation_text(SHAPES["tool round trip"], TOOLS)
    assert text.analysed.startswith("Where is my order 1234?")
    assert text.last_user == "Where is my order 1234?"
    for fragment in ("shop assistant", "find_order", "Look an order up by id.", '"shipped"', '{"id":1234}'):
        assert fragment in text.analysed


def test_system_prompt_and_tools_change_the_features():
    bare = F.extract([{"role": "user", "content": "Summarise the ticket."}])
    with_context = F.extract(
        [
            {"role": "system", "content": "Follow these rules exactly. " * 40},
            {"role": "user", "content": "Summarise the ticket."},
        ],
        TOOLS,
    )
    total = F.DENSE_FEATURES.index("log_tokens_total")
    last_user = F.DENSE_FEATURES.index("log_tokens_last_user")
    assert with_context.dense[total] > bare.dense[total]
    assert with_context.dense[last_user] == bare.dense[last_user]


def test_long_inputs_are_clipped_head_and_tail_but_counted_whole():
    long = "start " + "word " * 50_000 + " end"
    text = F.conversation_text([{"role": "user", "content": long}])
    assert len(text.analysed) <= F.CHAR_BUDGET + 1
    assert text.analysed.startswith("start") and text.analysed.endswith("end")
    assert text.total_chars == len(long)
    features = F.extract([{"role": "user", "content": long}])
    tokens = np.expm1(features.dense[F.DENSE_FEATURES.index("log_tokens_total")])
    assert 40_000 < tokens < 60_000  # ~50k tokens, estimated from the analysed part


def test_budget_is_shared_across_segments():
    messages = [
        {"role": "system", "content": "s" * 10_000},
        {"role": "user", "content": "u" * 10_000},
        {"role": "assistant", "content": "a" * 10_000},
    ]
    text = F.conversation_text(messages)
    assert len(text.analysed) <= F.CHAR_BUDGET + 2
    assert text.last_user == text.analysed[: len(text.last_user)]


def test_structure_features_see_code_math_choices_and_constraints():
    def value(name, prompt):
        return F.extract(F.prompt_messages(prompt)).dense[F.DENSE_FEATURES.index(name)]

    assert value("log_code_fences", "```python\nprint(1)\n```") > 0
    assert value("frac_code_lines", "def f(x):\n    return x;\n}") > 0
    assert value("log_math_symbols", "Solve x^2 + 3x = 4 for x, and sin(x)") > value("log_math_symbols", "Hi")
    assert value("log_latex_commands", r"Compute $\frac{1}{2}$") > 0
    assert value("log_choice_options", "Pick one:\nA. red\nB. blue\nC. green") == pytest.approx(np.log1p(3))
    assert value("log_constraint_words", "You must answer in at most 50 words and don't use lists") > 0
    assert value("log_reasoning_words", "Prove it step by step") == pytest.approx(np.log1p(2))
    assert value("log_creative_words", "Write a poem") == pytest.approx(np.log1p(2))


def test_terms_fold_numbers_and_add_bigrams():
    assert F.terms("Add 12 and 3.5!") == [
        "add",
        "<num>",
        "and",
        "<num>",
        "add <num>",
        "<num> and",
        "and <num>",
    ]


def test_term_weights_fit_and_vectorize():
    documents = [["a", "b"], ["a", "c"], ["a", "b", "b"]]
    weights = F.TermWeights.fit(documents, min_df=2)
    assert set(weights.vocabulary) == {"a", "b"}
    indices, values = weights.vectorize(["b", "b", "a", "zzz"])
    assert sorted(indices.tolist()) == [0, 1]
    assert np.linalg.norm(values) == pytest.approx(1.0)
    # "b" is rarer than "a" and appears twice: it must weigh more.
    assert (
        values[indices.tolist().index(weights.vocabulary["b"])]
        > values[indices.tolist().index(weights.vocabulary["a"])]
    )
    empty_indices, empty_values = weights.vectorize(["unknown"])
    assert len(empty_indices) == len(empty_values) == 0


def test_embedding_text_is_the_last_user_message():
    assert F.embedding_text(SHAPES["tool round trip"]) == "Where is my order 1234?"
    assert F.embedding_text(SHAPES["text parts and image"]) == "Describe this chart."
    assert F.embedding_text([]) == ""
