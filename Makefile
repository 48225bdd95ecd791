# Everything a fresh machine needs: a virtualenv with dotbridge at the locked versions, then the
# demo or the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS := test,bench,serve
# The exact versions the test suite passed with (pip-tools; `make lock` refreshes it).
LOCK := constraints.txt

.PHONY: install demo test check-data data lint format lock test-latest bench bench-ray gateway-load scale eval drills \
	clean e2e e2e-browser

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

# Issue 19: 50 clients mixing pass-through, neural and _embed floods through one gateway
# (MiniLM on the CPU, OpenSearch at OPENSEARCH_URL or http://127.0.0.1:$(GATEWAY_LOAD_PORT)).
GATEWAY_LOAD_PORT ?= 9200
GATEWAY_LOAD_SECONDS ?= 60
gateway-load: install
	$(BIN)/python benchmarks/gateway_load.py --url $${OPENSEARCH_URL:-http://127.0.0.1:$(GATEWAY_LOAD_PORT)} \
		--seconds $(GATEWAY_LOAD_SECONDS)

# Issue 22: float32 and 4x OpenSearch indexes of 10k/100k/300k vectors (SciFact's MiniLM vectors
# and perturbed copies; needs `dotbridge eval-all` to have filled eval-minilm-scifact on the node
# at SCALE_URL): ingest, force-merge, memory, latency, recall; see docs/scale.md. Not in `test`.
SCALE_URL ?= http://127.0.0.1:9200
SCALE_SIZES ?= 10000,100000,300000
scale: install
	$(BIN)/python benchmarks/scale.py --url $(SCALE_URL) --sizes $(SCALE_SIZES)

eval: install
	$(BIN)/dotbridge eval-all --readme docs/evaluation.md

# Fault drills: kills, node crashes, a 429 storm, fuzzed queries, gateway clients through a node
# restart (real nodes; ~25 min).
DRILL_PORTS ?= 9291,9292
# The cluster drills: a local 3-node cluster (HTTP ports from CLUSTER_DRILL_PORT, transport from
# CLUSTER_DRILL_TRANSPORT), nodes killed under ingest and gateway traffic (docs/cluster.md).
CLUSTER_DRILL_PORT ?= 9280
CLUSTER_DRILL_TRANSPORT ?= 9285
drills: install
	$(BIN)/python -m pytest -m drill -v
	$(BIN)/python benchmarks/drills.py --ports $(DRILL_PORTS) --readme docs/drills.md
	$(BIN)/python benchmarks/cluster_drills.py --port $(CLUSTER_DRILL_PORT) \
		--transport-port $(CLUSTER_DRILL_TRANSPORT) --readme docs/cluster.md

# Issue 23: a real OpenSearch Dashboards (built once from DOTBRIDGE_DASHBOARDS_SRC into the
# cache), Discover and Dev Tools driven in the system Chromium through `dotbridge serve`, on
# E2E_PORT+1..3 (loopback). About 20 min cold, a few minutes warm; screenshots in e2e/out/.
E2E_PORT ?= 9700
e2e: install e2e-browser
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[e2e]'
	E2E_PORT=$(E2E_PORT) $(BIN)/python e2e/run.py

# The browser the e2e tests drive: the system's Chromium. On a Debian machine run as root, the
# chromium package is installed when no Chromium is found (Playwright downloads no browser);
# elsewhere e2e/run.py says in one sentence how to get one.
e2e-browser:
	@if [ -z "$$DOTBRIDGE_CHROMIUM" ] && ! command -v chromium >/dev/null \
		&& ! command -v chromium-browser >/dev/null && [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests (apt-get install chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info .pytest_cache .ruff_cache
