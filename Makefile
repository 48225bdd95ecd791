# Everything a fresh machine needs: a virtualenv with dotbridge, then the demo or the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint format bench bench-ray eval drills clean

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

# Issue 13's speed targets in one run (all-MiniLM-L6-v2 on the CPU, SciFact, OpenSearch at
# OPENSEARCH_URL or a local node on BENCH_PORT): prints the table and writes it into README.md.
BENCH_PORT ?= 9282
bench: install
	$(BIN)/python benchmarks/targets.py --port $(BENCH_PORT) --readme README.md

# Issue 21: plain ingest against --ray --workers 1 and 2 (MiniLM on the CPU, 5,000 SciFact
# passages, a local node on BENCH_RAY_PORT): prints the table and writes it into docs/ray.md.
BENCH_RAY_PORT ?= 9283
bench-ray: install
	$(BIN)/python benchmarks/bench_ray.py --port $(BENCH_RAY_PORT) --doc docs/ray.md

eval: install
	$(BIN)/dotbridge eval-all --readme README.md

# Fault drills: kills, node crashes, a 429 storm, fuzzed queries, gateway clients through a node
# restart (real nodes; ~25 min).
DRILL_PORTS ?= 9291,9292
drills: install
	$(BIN)/python benchmarks/drills.py --ports $(DRILL_PORTS) --readme README.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
