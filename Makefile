# Everything a fresh machine needs: a virtualenv with dotbridge at the locked versions, then the
# demo or the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS := test,bench,serve
# The exact versions the test suite passed with (pip-tools; `make lock` refreshes it).
LOCK := constraints.txt

.PHONY: install demo test check-data data lint format lock test-latest bench bench-ray eval drills \
	clean e2e

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $@

demo: install
	$(BIN)/dotbridge demo

# The datasets are checked first, with the standard library only: a machine without them hears
# in seconds how to get them, before anything is installed.
test: check-data install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -v

check-data:
	@$(PYTHON) -m bridge.datasets check

# The public collections into dotbridge's cache (one of the three places the data is found).
data: install
	$(BIN)/dotbridge datasets fetch scifact nfcorpus

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-resolve every extra's dependencies to the newest releases that pyproject.toml allows and
# write them to the lock; run `make test` before committing it.
lock: install
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --upgrade --all-extras --strip-extras --no-emit-index-url \
		--no-emit-find-links --unsafe-package dotbridge -o $(LOCK) pyproject.toml

# The suite on the newest releases (no lock) in a virtualenv of its own; prints what moved
# against the lock first.
LATEST := .venv-latest
test-latest: check-data
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade -e '.[$(EXTRAS)]'
	$(LATEST)/bin/python .ci/what_moved.py $(LOCK)
	$(LATEST)/bin/ruff check .
	$(LATEST)/bin/python -m pytest -v

# Issue 13's speed targets in one run (all-MiniLM-L6-v2 on the CPU, SciFact, OpenSearch at
# OPENSEARCH_URL or a local node on BENCH_PORT): prints the table and writes it into docs/speed.md.
BENCH_PORT ?= 9282
bench: install
	$(BIN)/python benchmarks/targets.py --port $(BENCH_PORT) --readme docs/speed.md

# Issue 21: plain ingest against --ray --workers 1 and 2 (MiniLM on the CPU, 5,000 SciFact
# passages, a local node on BENCH_RAY_PORT): prints the table and writes it into docs/ray.md.
BENCH_RAY_PORT ?= 9283
bench-ray: install
	$(BIN)/python benchmarks/bench_ray.py --port $(BENCH_RAY_PORT) --doc docs/ray.md

eval: install
	$(BIN)/dotbridge eval-all --readme docs/evaluation.md

# Fault drills: kills, node crashes, a 429 storm, fuzzed queries, gateway clients through a node
# restart (real nodes; ~25 min).
DRILL_PORTS ?= 9291,9292
drills: install
	$(BIN)/python benchmarks/drills.py --ports $(DRILL_PORTS) --readme docs/drills.md

# Issue 23: a real OpenSearch Dashboards (built once from DOTBRIDGE_DASHBOARDS_SRC into the
# cache), Discover and Dev Tools driven in the system Chromium through `dotbridge serve`, on
# E2E_PORT+1..3 (loopback). About 20 min cold, a few minutes warm; screenshots in e2e/out/.
E2E_PORT ?= 9700
e2e: install
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[e2e]'
	E2E_PORT=$(E2E_PORT) $(BIN)/python e2e/run.py

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info .pytest_cache .ruff_cache
