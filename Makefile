# github-runner: developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: help venv fmt lint static unit setup setup-openstack integration test demo bench clean pack pack-check lock

help:
	@echo "make demo         run the runner manager against local LXD and the sandbox"
	@echo "make test         lint, static, unit, then integration (sets up LXD, image, broker)"
	@echo "make pack         build github-runner_ubuntu@24.04-amd64.charm (scripts/pack-charm.py)"
	@echo "make fmt|lint|static|unit|pack-check|integration|setup|setup-openstack|bench|lock"

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	# The project, importable from the venv as the charm sees it (src, lib, the root): an
	# editable install by path file, so scripts and benchmarks need no sys.path bootstrap.
	printf '%s\n' "$(CURDIR)/src" "$(CURDIR)/lib" "$(CURDIR)" > \
		"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/github-runner.pth"
	touch $@

venv: $(VENV)/.installed

fmt: venv
	$(BIN)/ruff format src sandbox tests lib benchmarks scripts
	$(BIN)/ruff check --fix src sandbox tests lib benchmarks scripts

lint: venv
	$(BIN)/ruff check src sandbox tests lib benchmarks scripts
	$(BIN)/ruff format --check src sandbox tests lib benchmarks scripts
	$(BIN)/codespell src sandbox tests lib benchmarks scripts docs README.md templates

static: venv
	# The test fakes too: each is checked against the seam Protocol it stands in for.
	$(BIN)/mypy src sandbox lib $(wildcard tests/unit/fakes_*.py) tests/unit/test_fakes_conform.py

unit: venv
	$(BIN)/pytest tests/unit tests/sandbox -q -p no:cacheprovider \
		--cov=src --cov-report=term --cov-fail-under=85

# The .charm, by charmcraft's layout and code (charmcraft 4.5 in build/), no LXD-managed build;
# `charmcraft analyse` must pass. The venv is cached by the lock's hash (~/.cache).
pack:
	$(PYTHON) scripts/pack-charm.py

# Pack for Noble and for this machine's Python, then check both archives (layout, locked
# venv, analyse) and run the charm from the unpacked host archive (tests/pack).
pack-check: venv pack
	$(PYTHON) scripts/pack-charm.py --base host
	$(BIN)/pytest tests/pack -q -p no:cacheprovider

# Regenerate requirements.lock from requirements.txt (every transitive pin).
lock:
	$(PYTHON) scripts/pack-charm.py --lock

# Real LXD daemon + test image + RabbitMQ on loopback (root; idempotent).
setup:
	scripts/setup-lxd.sh --test-tools
	scripts/build-lxd-image.sh --test
	scripts/setup-rabbitmq.sh
	scripts/setup-prometheus.sh

# Test OpenStack (keystone, glance, placement, neutron, nova fake driver) on 127.0.0.1 (root;
# idempotent; ~1 s when already up; starts RabbitMQ itself if needed). Clouds files under
# /var/lib/github-runner-openstack.
setup-openstack: venv
	scripts/setup-openstack.sh

integration: venv setup setup-openstack
	# Real daemons on a small shared machine: one rerun, reported in the summary (R / "rerun").
	$(BIN)/pytest tests/integration -q -p no:cacheprovider --durations=25 --reruns 1 --reruns-delay 2

test: lint static unit pack-check integration bench

demo: venv setup
	$(PY) scripts/demo.py

bench: venv setup setup-openstack
	# Every benchmark at small sizes: each exits non-zero when an invariant breaks (leak, lost job).
	for b in benchmarks/*.py; do $(PY) $$b --small || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
