# StableFace: the README's commands. Everything installs into a local virtualenv (.venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= $(abspath ../shared)
STAMP := $(VENV)/.installed-stamp
PYTEST_FLAGS ?=
export STABLEFACE_SHARED_DATA ?= $(SHARED)/data
# Ray starts many processes; keep its logs and temp files inside the build tree.
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: setup demo test test-all test-gpu bench lint format lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/python -m stableface.demo

test: setup
	$(BIN)/python -m pytest -m "not heavy and not gpu" $(PYTEST_FLAGS)

test-all: setup
	$(BIN)/python -m pytest $(PYTEST_FLAGS)

test-gpu: setup
	$(BIN)/python -m pytest -m gpu $(PYTEST_FLAGS)

bench: setup
	$(BIN)/python -m bench $(BENCH)

lint: setup
	$(BIN)/ruff check platform jobs serve tests bench cluster
	$(BIN)/ruff format --check platform jobs serve tests bench cluster

format: setup
	$(BIN)/ruff format platform jobs serve tests bench cluster
	$(BIN)/ruff check --fix platform jobs serve tests bench cluster

lock: setup
	{ echo "# Pinned transitive versions for reproducible installs (make setup). Regenerate with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build outputs

# A local multi-node Ray cluster (head + CLUSTER_WORKERS worker raylets) for trying cluster runs.
CLUSTER_WORKERS ?= 1
.PHONY: cluster-up cluster-down cluster-status

cluster-up: setup
	$(BIN)/python cluster/local_cluster.py start --workers $(CLUSTER_WORKERS)

cluster-down:
	$(BIN)/python cluster/local_cluster.py stop

cluster-status:
	$(BIN)/python cluster/local_cluster.py status
