# One entry point for people and CI. Every target creates the venv on first use.
#   make deploy                  run the main job (deploy.yml) on the embedded default inventory
#   make test                    lint + every pytest suite (unit, integration, Molecule scenarios)
#   make lint | unit | integration
#   make molecule [SCENARIO=base] run one scenario (all when SCENARIO is empty) straight through Molecule
#   make images                  make sure a Docker engine runs and the test images exist
#   make drift [INVENTORY=inventories/production]  the drift check (exit 0 clean, 2 drift, 1 error)
#   make bench                   run the benchmarks (see bench/README.md)
#   make lock                    re-resolve constraints.txt from requirements.txt
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?=
# The venv's bin first: ansible-*, molecule, sops and pytest all come from it.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# sops otherwise asks GitHub for a newer version on every call.
export SOPS_DISABLE_VERSION_CHECK := 1
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help venv deploy test lint unit integration molecule images system-packages drift bench lock clean
help:
	@sed -n '1,10p' Makefile

venv: $(STAMP)
$(STAMP): requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $@

# The embedded default needs the Docker engine and the locally made base image.
deploy: $(STAMP) images
	$(BIN)/ansible-playbook deploy.yml

lint: $(STAMP) system-packages
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	scripts/shellcheck-all
	scripts/detect-private-key
	$(BIN)/python scripts/check-sops-encrypted
	$(BIN)/python scripts/render-requirements --check

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

# The README's test command. On a fresh machine it installs the system packages first.
# Every scenario under molecule/ runs inside the one pytest run (tests/molecule collects them).
# Then the leak scan: the run's captured output (JUnit XML, every test's stdout and stderr), the
# log of every Ansible run and the drift reports must hold none of the test secrets
# (scripts/leak-scan --repo-defaults). It runs even when pytest failed; either failing fails.
REPORTS := .cache/test-reports
test: system-packages lint images
	rm -rf $(REPORTS) && mkdir -p $(REPORTS)
	rc=0; ANSIBLE_LOG_PATH=$(CURDIR)/$(REPORTS)/ansible.log \
	  $(BIN)/pytest tests -o junit_logging=all --junitxml=$(REPORTS)/junit.xml || rc=$$?; \
	$(BIN)/python scripts/leak-scan --repo-defaults $(REPORTS) $(wildcard .cache/drift) || rc=1; \
	exit $$rc

molecule: $(STAMP) images
	if [ -n "$(SCENARIO)" ]; then $(BIN)/molecule test -s "$(SCENARIO)"; else $(BIN)/molecule test --all; fi

images: system-packages
	scripts/ensure-test-images

system-packages:
	scripts/install-system-packages

INVENTORY ?=
drift: $(STAMP)
	scripts/drift-check $(if $(INVENTORY),-i $(INVENTORY))

# The drift bench runs 30 systemd containers: --inotify lifts the kernel's inotify instance
# limit for the run (root) and puts it back.
bench: $(STAMP) images
	$(BIN)/python bench/bench_db_backup.py
	$(BIN)/python bench/bench_drift.py --inotify
	$(BIN)/python bench/bench_deploy.py
	$(BIN)/python bench/bench_workstation.py
	$(BIN)/python bench/bench_litestream_rpo.py

lock: $(STAMP)
	$(BIN)/pip install --quiet --upgrade -r requirements.txt
	{ sed -n '1,2p' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
