# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
export FEAST_USAGE := False
export RAY_USAGE_STATS_ENABLED := 0
export NO_MKDOCS_2_WARNING := 1

.PHONY: docs docs-serve docs-pictures demo demo-drift demo-experiment test test-unit test-integration test-properties lint format k8s k8s-check benchmark-quality benchmark-features benchmark-serving benchmark-replica-loss benchmark-train benchmark-train-wall benchmark-train-nodes benchmark-history-bag gpu-check benchmark-scale benchmark-multinode benchmark-catalog benchmark-data-statistics benchmark-shadow benchmark-assignment benchmark-new-items benchmark-cold-items benchmark-content-encoding constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One resolution, pinned by constraints.txt; re-run when either file changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e '.[docs]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/recsys quickstart

# The demo, then the closed loop: drift -> Evidently -> retrain -> gate -> hot reload.
demo-drift: $(VENV)/.installed
	$(BIN)/recsys quickstart --drift

# An online experiment: the multi-stage model against popularity, MovieLens users clicking.
demo-experiment: $(VENV)/.installed
	$(BIN)/recsys experiment demo

# Two workers (pytest-xdist), a test module whole on one of them; TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test-unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest tests/unit

test-integration: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder tests/integration

# The property suite at length: at least 10,000 generated inputs per input path (files,
# events, CLI options); `make test` runs it bounded.
test-properties: $(VENV)/.installed-dev
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load tests/unit/properties --hypothesis-show-statistics

# The documentation site, built strict (a broken link or reference fails) into site/, its
# benchmark tables and plots first checked against benchmarks/results (after a benchmark run:
# make docs-pictures); or served at http://127.0.0.1:8001 while you edit docs/.
docs: $(VENV)/.installed-docs
	$(BIN)/python -m benchmarks.docs_tables --check
	$(BIN)/python -m benchmarks.docs_plots --check
	$(BIN)/mkdocs build --strict --quiet

docs-serve: $(VENV)/.installed-docs
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

# The tables and plots rendered again from benchmarks/results, and the Evidently report's
# picture shot from the newest `make demo` run (with Chromium, where it is installed).
docs-pictures: $(VENV)/.installed
	$(BIN)/python -m benchmarks.docs_tables
	$(BIN)/python -m benchmarks.docs_plots
	$(BIN)/python -m benchmarks.docs_screenshot || echo "the Evidently picture is left as it was"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The Helm chart rendered offline into k8s/rendered/<env>.yaml (commit them), or checked:
# lint (strict), Kubernetes and KubeRay schemas, policies, a fresh rendering.
k8s: $(VENV)/.installed-dev
	$(BIN)/python k8s/render.py

k8s-check: $(VENV)/.installed-dev
	$(BIN)/python k8s/render.py --check
	$(BIN)/python -m pytest -q tests/unit/k8s

benchmark-quality: $(VENV)/.installed
	$(BIN)/python benchmarks/quality_movielens.py

benchmark-features: $(VENV)/.installed
	$(BIN)/python benchmarks/features.py

# Serves the registry's champion (what `make demo` promotes): run `make demo` first.
benchmark-serving: $(VENV)/.installed
	$(BIN)/python benchmarks/serving_load.py

# One of two serving replicas killed under load: failed requests, recovery, replacement.
benchmark-replica-loss: $(VENV)/.installed
	$(BIN)/python -m benchmarks.replica_loss

# Two-tower examples/s on Ray Train (1 and 2 workers) against plain PyTorch loops.
benchmark-train: $(VENV)/.installed
	$(BIN)/python benchmarks/train_throughput.py --feeds memory stream

# `recsys train` of the MovieLens-100k two-tower: wall time, its parts, the same loop in process.
benchmark-train-wall: $(VENV)/.installed
	$(BIN)/python -m benchmarks.train_wall

# The two-tower data-parallel over two workers on a local two-node Ray cluster, against one.
benchmark-train-nodes: $(VENV)/.installed
	$(BIN)/python -m benchmarks.train_nodes

# The user tower's history mean: EmbeddingBag against the id-shares product, by table and length.
benchmark-history-bag: $(VENV)/.installed
	$(BIN)/python -m benchmarks.history_bag

# On a machine with a GPU: the two-tower and the DCN ranker with --gpu against the CPU runs.
gpu-check: $(VENV)/.installed
	$(BIN)/python -m benchmarks.gpu_check

# The loop on synthetic data at scale (1M interactions; --interactions for another size).
benchmark-scale: $(VENV)/.installed
	$(BIN)/python -m benchmarks.scale

# The same loop on a local multi-node Ray cluster (two worker nodes): training and serving
# across the nodes, with where each worker and replica ran.
benchmark-multinode: $(VENV)/.installed
	$(BIN)/python -m benchmarks.multinode

# A request's cost at 10k, 200k and 1M catalog items (--baseline-tree DIR: an older checkout too).
benchmark-catalog: $(VENV)/.installed
	$(BIN)/python -m benchmarks.catalog_scale

# The generator's knobs fitted to MovieLens-100k, then its statistics beside the synthetic
# worlds' at 1M and 20M interactions.
benchmark-data-statistics: $(VENV)/.installed
	$(BIN)/python -m benchmarks.data_statistics --fit

# Shadow traffic's cost to users' answers (c16, with and without); the experiment demo's app.
benchmark-shadow: $(VENV)/.installed
	$(BIN)/python -m benchmarks.shadow_load

# An A/B split's assignment over HTTP: 2,000 users, three requests each, two replicas.
benchmark-assignment: $(VENV)/.installed
	$(BIN)/python -m benchmarks.assignment_http

# New items over HTTP under load: from the 202 to a fitting user's answer (experiment demo).
benchmark-new-items: $(VENV)/.installed
	$(BIN)/python -m benchmarks.new_items

# Cold items (ColdRec's protocol) on MovieLens-100k, three seeds: random, genre affinity,
# content kNN, the multi-stage model; and the content encoder's cost at 1.7k and 200k items.
benchmark-cold-items: $(VENV)/.installed
	$(BIN)/python -m benchmarks.cold_items

benchmark-content-encoding: $(VENV)/.installed
	$(BIN)/python -m benchmarks.content_encoding

# Re-resolve everything together and re-pin (needs the package index).
constraints:
	rm -rf /tmp/recsys-resolve && $(PYTHON) -m venv /tmp/recsys-resolve
	/tmp/recsys-resolve/bin/pip install --quiet -e '.[dev]' 'protobuf<7' 'pandas<3'
	{ sed -n '1,3p' constraints.txt; /tmp/recsys-resolve/bin/pip freeze --exclude-editable \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
