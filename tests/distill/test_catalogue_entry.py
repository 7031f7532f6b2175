"""Registering a fine-tuned checkpoint in the catalogue: settings inherited from the base, the file
appended to (comments kept), refused without damage when the result would be invalid."""

from __future__ import annotations

import shutil

import pytest

from selfhost.catalogue import DEFAULT_PATH, CatalogueError, load
from selfhost.distill.train_lora import read_examples, register, resolve_base


def test_register_appends_a_valid_entry_derived_from_the_base(tmp_path):
    catalogue = tmp_path / "catalogue.yaml"
    shutil.copy(DEFAULT_PATH, catalogue)
    base, base_dir = resolve_base("llama-8b-awq", catalogue)
    assert base_dir == "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"
    register("llama-8b-support", tmp_path / "model", base_deployment=base, catalogue_path=catalogue)
    entry = load(catalogue).get("llama-8b-support")
    assert entry.quantization is None and entry.speculative is None  # merged bf16 weights
    assert entry.batching == base.batching and entry.cost == base.cost and entry.memory == base.memory
    assert entry.base_port == 8201 and entry.replicas == 1  # after every port the catalogue uses
    assert catalogue.read_text().startswith(DEFAULT_PATH.read_text().rstrip("\n"))  # comments kept


def test_register_refuses_a_duplicate_name_and_leaves_the_file_alone(tmp_path):
    catalogue = tmp_path / "catalogue.yaml"
    shutil.copy(DEFAULT_PATH, catalogue)
    base, _ = resolve_base("tiny-cpu", catalogue)
    with pytest.raises(CatalogueError, match="unique"):
        register("tiny-cpu", tmp_path / "model", base_deployment=base, catalogue_path=catalogue)
    assert catalogue.read_text() == DEFAULT_PATH.read_text()
    with pytest.raises(CatalogueError, match="both use"):
        register("tiny-two", tmp_path / "m", base_deployment=base, catalogue_path=catalogue, port=8200)
    assert catalogue.read_text() == DEFAULT_PATH.read_text()


def test_training_data_must_end_with_the_answer(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"messages": [{"role": "assistant", "content": "a"}]}\n{"messages": [{"role": "user", "content": "q"}]}\n'
    )
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        read_examples(data)
