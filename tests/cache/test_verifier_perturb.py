"""The hard augmentation families (gateway.cache.perturb): each makes the pair it is meant to make."""

from __future__ import annotations

import random

import pytest

from gateway.cache import perturb
from gateway.cache import verifier_training as vt


def rng() -> random.Random:
    return random.Random(0)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How do I convert JSON to a dict?", "How do I convert dict to a JSON?"),
        ("Is Rust faster than Go?", "Is Go faster than Rust?"),
        ("How do I move from Windows to Linux?", "How do I move from Linux to Windows?"),
        ("Convert 100 Celsius to Fahrenheit", "Convert 100 Fahrenheit to Celsius"),
    ],
)
def test_direction_swaps_the_two_sides_of_a_connector(question: str, expected: str) -> None:
    assert perturb.swap_direction(question) == expected


def test_direction_leaves_symmetric_and_function_word_pairs_alone() -> None:
    assert perturb.swap_direction("Python vs Java for web apps") is None
    assert perturb.swap_direction("What is it like to be a doctor?") is None  # "it to be": no content words


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Solve 2x + 5 = 17", "Solve 2x - 5 = 17"),
        ("Is a < b here?", "Is a > b here?"),
        ("How do I increase my RAM?", "How do I decrease my RAM?"),
        ("Sort the list in ascending order", "Sort the list in descending order"),
        ("Which is more than 5?", "Which is less than 5?"),
    ],
)
def test_operator_turns_an_operator_or_comparison_into_its_opposite(question: str, expected: str) -> None:
    assert perturb.change_operator(question) == expected


def test_operator_ignores_hyphenated_words() -> None:
    assert perturb.change_operator("A poem for a 6-year-old") is None


def test_person_changes_the_person_audience_or_age() -> None:
    assert perturb.change_person("A story for my son", rng()) not in (None, "A story for my son")
    aged = perturb.change_person("Explain gravity to a 6-year-old", rng())
    assert aged is not None and "6-year-old" not in aged and "-year-old" in aged
    assert perturb.change_person("Explain gravity for me", rng()).startswith("Explain gravity for ")
    assert perturb.change_person("Explain gravity", rng()) is None


def test_scope_families_add_drop_and_move_a_qualifier() -> None:
    narrowed = perturb.narrow_scope("How do I sort a list?", rng())
    assert narrowed.startswith("How do I sort a list ") and narrowed.endswith("?")
    assert perturb.widen_scope("How do I sort a list in Python?") == "How do I sort a list?"
    assert perturb.widen_scope("How bad is sugar for you?") is None  # a pronoun is not a scope
    assert perturb.front_qualifier("How do I sort a list in Python?") == "In Python, how do I sort a list?"
    assert perturb.front_qualifier("Can I pay when it goes on sale?") is None  # not a place, tool or time


def test_rewording_families_keep_the_request() -> None:
    assert perturb.swap_symmetric("What is the difference between RAM and ROM?") == (
        "What is the difference between ROM and RAM?"
    )
    assert perturb.reword("How do I sort a list?", rng()) == "How can I sort a list?"
    wrapped = perturb.polite("How do I sort a list?", rng())
    assert "sort a list" in wrapped and wrapped != "How do I sort a list?"


def test_every_family_is_labelled_and_hard_augment_tags_its_pairs() -> None:
    assert {label for _, label in perturb.FAMILIES.values()} == {0, 1}
    pairs = vt.Pairs(["How do I convert JSON to a dict in Python?"], ["x"], vt.np.array([1]), ["q"])
    made = vt.hard_augment(pairs, families=["direction", "front"])
    assert sorted(made.source) == ["hard:direction", "hard:front"]
    by_source = dict(zip(made.source, zip(made.b, made.label.tolist(), strict=True), strict=True))
    assert by_source["hard:direction"] == ("How do I convert dict to a JSON in Python?", 0)
    assert by_source["hard:front"] == ("In Python, how do I convert JSON to a dict?", 1)
    assert set(vt.HARD_TRAIN_FAMILIES) <= set(perturb.FAMILIES)
