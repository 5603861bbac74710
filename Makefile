# Every target creates what it needs: a virtualenv in .venv with the project installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench list config clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## make run: start the proxy on 127.0.0.1:18781 with the shipped units, and a simulated
## engine on config/cluster-small.json so the units have a cluster to decide on.
run: $(STAMP)
	$(BIN)/ovirt-scheduler-proxy serve --simulate config/cluster-small.json

## make test: the whole suite (unit tests, end-to-end tier, engine-side Java client).
test: $(STAMP)
	$(BIN)/python -m pytest

## make bench: latency/throughput against the cold-start baseline, and the memory balancer.
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_proxy
	$(BIN)/python -m tests.benchmarks.bench_memory_balance

list: $(STAMP)
	$(BIN)/ovirt-scheduler-proxy list

config: $(STAMP)
	$(BIN)/ovirt-scheduler-proxy config > config/proxy.toml

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
