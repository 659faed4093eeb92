# Every target creates the virtual environment on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo overnight overnight-tmux lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python -m benchmarks.example.demo

overnight: $(STAMP)
	$(BIN)/autoharness run

overnight-tmux: $(STAMP)
	config/overnight-tmux.sh

lint: $(STAMP)
	$(BIN)/ruff check orchestrator agents benchmarks tests

bench: $(STAMP)
	$(BIN)/python tests/bench.py

clean:
	rm -rf $(VENV) demo .pytest_cache
