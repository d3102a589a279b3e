# The contract with a new user: `make demo` and `make test` set everything up on a fresh machine.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest
# The scoring app the demos deploy: dummy (reports its version) or safe-driver (the real model).
APP ?= dummy

.PHONY: venv demo demo-cli notebooks pipeline test test-unit bench lint clean

$(STAMP): requirements.txt pyproject.toml tools/helm_binary.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/pip check
	$(BIN)/python tools/helm_binary.py
	touch $(STAMP)

venv: $(STAMP)

# The local canary walkthrough through the six notebooks (papermill), stages from the stage plan.
demo: venv
	$(BIN)/workbook walkthrough --app $(APP)

# The same walkthrough from the command line only (no notebooks).
demo-cli: venv
	$(BIN)/workbook demo --app $(APP)

# Execute the committed notebooks against a fresh local mesh and keep their outputs (for nbval).
notebooks: venv
	$(BIN)/python tools/execute_notebooks.py

# The Azure DevOps pipeline, run here against the local mesh.
pipeline: venv
	$(BIN)/workbook pipeline run --target local

test: venv
	$(PYTEST) -q tests

test-unit: venv
	$(PYTEST) -q -m "not integration and not notebooks" tests

bench: venv
	$(BIN)/python -m benchmarks.run

lint: venv
	$(BIN)/ruff check workbook tests benchmarks tools
	$(BIN)/ruff format --check workbook tests benchmarks tools
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .workbook runs
