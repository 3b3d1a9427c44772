# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install the project into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test fast venv lint validate conformance unit package bench matrix clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python -m engine.conformance.demo

validate: venv
	$(BIN)/python -m engine.validate protocols/

lint: venv
	$(BIN)/ruff check engine conformance tests tools benchmarks
	$(BIN)/mypy

unit: venv
	$(BIN)/python -m pytest

# The edit loop: the fast tier of the unit tests (under 15 s); not a substitute for `make test`.
fast: venv
	$(BIN)/python -m pytest -m fast

conformance: venv
	$(BIN)/python -m engine.conformance

package: venv
	bash tools/check_package.sh

# Regenerate the README's coverage matrix from the fixtures and manifests.
matrix: venv
	$(BIN)/python -m engine.conformance.matrix --write README.md

# The whole suite: manifests, lint and types, unit + end-to-end tests, the
# conformance matrix, packaging.
test: venv validate lint unit conformance package

# The engine against raw httpx on a local mock provider (see benchmarks/run.py; it
# writes benchmarks/results.md and results.json), then the framers' throughput and the load test.
bench: venv
	$(BIN)/python -m benchmarks
	$(BIN)/python tools/bench_framing.py
	$(BIN)/python tools/bench_load.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
