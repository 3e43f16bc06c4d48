# quorumlog: `make up` starts a local 3-node cluster, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test testdeps lint up sim bench compare etcd chaos proto clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check raft node client chaos proto tests benchmarks examples
	$(PY) tests/typecheck.py

test: $(STAMP) testdeps
	$(MAKE) lint
	$(VENV)/bin/pytest -n auto tests

sim: $(STAMP)
	$(VENV)/bin/quorumlog sim --seeds 1000 --steps 3000

bench: $(STAMP)
	$(VENV)/bin/quorumlog bench-core

# Side by side with a 3-member etcd (installed with apt-get when missing); ratios quorumlog/etcd.
compare: $(STAMP)
	$(PY) -m benchmarks.compare_etcd

# Debian's etcd-server, for the comparison and its test (tests/test_benchmarks.py); needs root.
etcd:
	command -v etcd >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y etcd-server; }

# What the suite needs beyond Python, so no test has a reason to skip: etcd for the
# side-by-side test, iproute2 (`ip netns`) for the multi-host test (tests/test_netns.py).
testdeps: etcd
	command -v ip >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y iproute2; }

# The chaos run CI does (tests/test_chaos_run.py); `make chaos DURATION=3600` for a soak.
DURATION ?= 120
SEED ?= 1
chaos: $(STAMP)
	$(VENV)/bin/quorumlog chaos run --duration $(DURATION) --seed $(SEED) --out chaos-run

proto: $(STAMP)
	$(PY) -m quorumlog.proto.generate

up: $(STAMP)
	$(VENV)/bin/quorumlog cluster up --nodes 3 --data-dir ./data --base-port 7001

clean:
	rm -rf $(VENV) .typecheck .mypy_cache .pytest_cache .ruff_cache build *.egg-info
