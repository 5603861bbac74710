# Every target creates what it needs: a virtualenv in .venv with the project installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# `make install` / `make uninstall` (as root): the proxy as a systemd service.  DESTDIR
# installs into a staging root instead (tests, packaging); the others say where things go.
DESTDIR     ?=
PREFIX      ?= /opt/ovirt-scheduler-proxy
CONFDIR     ?= /etc/ovirt-scheduler-proxy
UNITDIR     ?= /etc/systemd/system
SYSUSERSDIR ?= /etc/sysusers.d
BINDIR      ?= /usr/local/bin
INSTALL_SH  := PYTHON="$(PYTHON)" DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" CONFDIR="$(CONFDIR)" \
               UNITDIR="$(UNITDIR)" SYSUSERSDIR="$(SYSUSERSDIR)" BINDIR="$(BINDIR)" config/install.sh

.PHONY: run test bench bench-quality list config clean prereqs install uninstall

$(STAMP): setup.cfg pyproject.toml
	@$(INSTALL_SH) prereqs
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

## make bench: latency/throughput against the cold-start baseline, the memory balancer
## against the seed's request pattern, and the shared engine snapshot against each unit
## reading the engine, the journal's cost, `simulate UNIT` and `replay` at scale, and the
## balancers' quality (about 17 minutes in all).
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_proxy
	$(BIN)/python -m tests.benchmarks.bench_memory_balance
	$(BIN)/python -m tests.benchmarks.bench_snapshot
	$(BIN)/python -m tests.benchmarks.bench_whatif
	$(BIN)/python -m tests.benchmarks.bench_quality

## make bench-quality: each shipped balancer and a greedy reference on seeded clusters of 20
## to 1,000 hosts; prints the table and the goals (MET / MISSED), writes docs/QUALITY.md.
bench-quality: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_quality

list: $(STAMP)
	$(BIN)/ovirt-scheduler-proxy list

config: $(STAMP)
	$(BIN)/ovirt-scheduler-proxy config > config/proxy.toml

## make prereqs: check for what compiling the oVirt SDK needs; prints the command that installs it.
prereqs:
	@$(INSTALL_SH) prereqs

## make install / make uninstall: see README.md, "Connecting the engine".
install:
	@$(INSTALL_SH) install

uninstall:
	@$(INSTALL_SH) uninstall

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
