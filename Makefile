# quorumlog: `make up` starts a local 3-node cluster, `make test` runs the whole suite.
#
# Every install comes from requirements.txt: exact versions with hashes for the runtime
# and the test/lint tools, compiled from pyproject.toml's ranges by uv (pinned below, itself
# installed from PyPI into .tools/). `make lock` refreshes the lock; `make test-latest` runs
# the suite against the newest versions pyproject.toml allows, in a separate venv, so drift is
# seen on purpose. See README "Set-up" for why this shape.
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV_DIR := .tools/uv-$(UV_VERSION)
UV := $(UV_DIR)/bin/uv
LOCK := requirements.txt
# The runtime alone (what a node or client needs), for the container image.
RUNTIME_LOCK := requirements-runtime.txt
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LATEST := .venv-latest
# uv must never fetch an interpreter of its own: the machine's Python 3.11 is the one.
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: install lock test test-fast test-latest testdeps lint up console sim bench compare etcd \
	chaos proto clean

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
		--target $(UV_DIR) uv==$(UV_VERSION)

# Sync the venv to the lock exactly (hashes checked), then the project itself, editable, with
# the locked setuptools (no build isolation, so no unlocked build tool is ever fetched).
$(STAMP): $(LOCK) pyproject.toml | $(UV)
	test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV) pip sync --quiet --require-hashes $(LOCK)
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# `make lock` moves every pin to the newest allowed version (requirements.txt, which installs
# use; requirements-runtime.txt, the image's; pylock.toml, the same pins in PEP 751's format); `make lock LOCK_UPGRADE=` keeps
# the current pins and only adds what pyproject.toml newly asks for.
LOCK_UPGRADE ?= --upgrade
lock: | $(UV)
	$(UV) pip compile pyproject.toml --extra test --universal --python-version 3.11 \
		--generate-hashes --annotation-style line --custom-compile-command "make lock" \
		$(LOCK_UPGRADE) -o $(LOCK)
	$(UV) pip compile pyproject.toml --universal --python-version 3.11 \
		--generate-hashes --annotation-style line --custom-compile-command "make lock" \
		--constraint $(LOCK) -o $(RUNTIME_LOCK)
	$(UV) pip compile pyproject.toml --extra test --universal --python-version 3.11 \
		--format pylock.toml --custom-compile-command "make lock" \
		--constraint $(LOCK) -o pylock.toml

lint: $(STAMP)
	$(VENV)/bin/ruff check raft node client chaos proto tests benchmarks examples
	$(PY) tests/typecheck.py

test: $(STAMP) testdeps
	$(MAKE) lint
	$(VENV)/bin/pytest -n auto tests

# The inner loop: everything that starts no node process and is not slow (under a minute).
test-fast: $(STAMP)
	$(VENV)/bin/pytest -n auto -m "not cluster and not chaos and not slow" tests

# The newest versions pyproject.toml allows (not the lock): lint + suite in .venv-latest.
test-latest: testdeps | $(UV)
	test -x $(LATEST)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(LATEST)
	VIRTUAL_ENV=$(LATEST) $(UV) pip install --quiet --upgrade --reinstall-package quorumlog \
		-e '.[test]'
	VIRTUAL_ENV=$(LATEST) $(UV) pip list --format freeze > $(LATEST)/versions.txt
	@echo "newest allowed versions (compare with $(LOCK)): $(LATEST)/versions.txt"
	$(LATEST)/bin/ruff check raft node client chaos proto tests benchmarks examples
	$(LATEST)/bin/python tests/typecheck.py
	$(LATEST)/bin/pytest -n auto tests \
		--deselect tests/test_lock.py::test_this_venv_has_the_locked_versions

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
# side-by-side test, iproute2 (`ip netns`) for the multi-host test (tests/test_netns.py),
# Node.js and npm for the Node.js example's test (tests/test_node_example.py runs `npm ci`),
# fuse3 (fusermount3 and libfuse3) for the fault filesystem's tests (tests/test_faultfs.py),
# Chromium and its driver for the web console's browser tests (tests/test_console_*.py).
testdeps: etcd
	command -v ip >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y iproute2; }
	command -v fusermount3 >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y fuse3; }
	command -v node >/dev/null && command -v npm >/dev/null || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; }
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

# The chaos run CI does (tests/test_chaos_run.py); `make chaos DURATION=3600` for a soak.
DURATION ?= 120
SEED ?= 1
chaos: $(STAMP)
	$(VENV)/bin/quorumlog chaos run --shards 3 --duration $(DURATION) --seed $(SEED) --out chaos-run

proto: $(STAMP)
	$(PY) -m quorumlog.proto.generate

up: $(STAMP)
	$(VENV)/bin/quorumlog cluster up --nodes 3 --shards 6 --data-dir ./data --base-port 7001

# The web console for the cluster `make up` runs (docs/console.md): http://127.0.0.1:8080/
console: $(STAMP)
	$(VENV)/bin/quorumlog console

clean:
	rm -rf $(VENV) $(LATEST) .tools .typecheck .mypy_cache .pytest_cache .ruff_cache build \
		dist *.egg-info
