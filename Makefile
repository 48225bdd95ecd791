# Everything a fresh machine needs: a virtualenv with dotbridge, then the demo or the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint format bench eval drills clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,serve]'
	touch $@

demo: install
	$(BIN)/dotbridge demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -v

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/bench_encoder.py
	$(BIN)/dotbridge bench

eval: install
	$(BIN)/dotbridge eval-all --readme README.md

# Fault drills: kills, node crashes, a 429 storm, fuzzed queries, gateway clients through a node
# restart (real nodes; ~25 min).
DRILL_PORTS ?= 9291,9292
drills: install
	$(BIN)/python benchmarks/drills.py --ports $(DRILL_PORTS) --readme README.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
