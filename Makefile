# The contract with a new user: `make demo` and `make test` set everything up on a fresh machine.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: venv demo test test-unit test-integration test-notebooks bench lint clean

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/workbook demo

test: venv
	$(PYTEST) -q tests

test-unit: venv
	$(PYTEST) -q -m "not integration and not notebooks" tests

bench: venv
	$(BIN)/python -m benchmarks.run

lint: venv
	$(BIN)/ruff check workbook tests benchmarks
	$(BIN)/ruff format --check workbook tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .workbook runs
