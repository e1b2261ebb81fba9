# Everyday commands. `make` (or `make help`) lists them; `make -n TARGET` shows what one runs.
# Variables can be set on the command line, e.g. `make run MODEL_DIR=/path/to/model`.

CARGO ?= cargo
DOCKER ?= docker
MODEL_DIR ?= ../shared/models/minilm-sst2
IMAGE ?= sentiment-server
CUDA_COMPUTE_CAP ?= 90
# `docker compose` (v2 plugin) when the engine has it, else the standalone docker-compose (v1).
COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo "$(DOCKER) compose" || echo docker-compose)
# Compose profiles `make up` starts beside api and postgres: tracking (MLflow), gpu (api-gpu),
# repository (api-repository). `make down` stops all three, whichever were started.
PROFILES ?=
MLFLOW_IMAGE ?= sentiment-mlflow:latest

# Image metadata, evaluated only by the targets that use it.
VERSION = $(shell awk -F'"' '/^\[/ { s = $$0 } s == "[package]" && /^version *=/ { print $$2; exit }' Cargo.toml)
# The commit, with -dirty when tracked files have uncommitted changes (as scripts/build-image.sh).
GIT_SHA = $(shell sha=$$(git rev-parse HEAD 2>/dev/null) || sha=unknown; \
	[ -z "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || sha=$$sha-dirty; echo $$sha)
SOURCE_URL = $(shell git remote get-url origin 2>/dev/null || echo unknown)

.DEFAULT_GOAL := help
.PHONY: help build test fmt lint run image image-gpu image-gpu-local image-mlflow image-train up down compose-up compose-down bench check-workflows check-docs check-doc-examples ci

help: ## list these targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## release build of the server (target/release/sentiment-server)
	$(CARGO) build --release

test: ## run the test suite (needs ../shared, or SHARED_DIR=/path/to/shared)
	$(CARGO) test

fmt: ## format the code with rustfmt
	$(CARGO) fmt --all

lint: ## clippy on every target, warnings are errors
	$(CARGO) clippy --all-targets -- -D warnings

run: ## serve the model in MODEL_DIR (default ../shared/models/minilm-sst2) on 0.0.0.0:8000
	$(CARGO) run --release -- --model-dir $(MODEL_DIR)

image: ## build the CPU image without a registry (scripts/build-image.sh; IMAGE=sentiment-server)
	IMAGE=$(IMAGE) scripts/build-image.sh

image-gpu: ## build the CUDA image from Dockerfile.gpu as IMAGE:<version>-cuda, :<sha>-cuda, :latest-cuda (CUDA_COMPUTE_CAP=90)
	$(DOCKER) build -f Dockerfile.gpu \
		--build-arg CUDA_COMPUTE_CAP=$(CUDA_COMPUTE_CAP) \
		--build-arg VERSION=$(VERSION) \
		--build-arg GIT_SHA=$(GIT_SHA) \
		--build-arg SOURCE_URL=$(SOURCE_URL) \
		-t $(IMAGE):$(VERSION)-cuda -t $(IMAGE):$(GIT_SHA)-cuda -t $(IMAGE):latest-cuda .

image-gpu-local: ## the CUDA image without a registry: local CUDA 13.0 base images from PyPI (scripts/build-cuda-base-images.sh)
	GPU=1 scripts/build-image.sh

image-mlflow: ## the MLflow image of the tracking profile without a registry (scripts/build-mlflow-image.sh)
	scripts/build-mlflow-image.sh

image-train: ## the training image of the train profile without a registry (scripts/build-train-image.sh; docs/training.md)
	scripts/build-train-image.sh

up: ## start the compose stack in the background; PROFILES=tracking adds MLflow (its image built first if missing)
	@case " $(PROFILES) " in *" tracking "*) \
		$(DOCKER) image inspect $(MLFLOW_IMAGE) >/dev/null 2>&1 || scripts/build-mlflow-image.sh ;; esac
	$(COMPOSE) $(foreach p,$(PROFILES),--profile $(p)) up -d

down: ## stop and remove the compose stack: tracking, gpu and repository too (volumes kept)
	$(COMPOSE) --profile tracking --profile gpu --profile repository down

compose-up: up ## alias of up

compose-down: down ## alias of down

bench: ## load benchmark (benches/load.rs; see BENCHMARKS.md)
	$(CARGO) bench --bench load

check-workflows: ## lint .github/workflows with actionlint (+ shellcheck when installed)
	bash scripts/check-workflows.sh

check-docs: ## check every link and #anchor of the Markdown files, offline (lychee)
	bash scripts/check-docs.sh

check-doc-examples: ## run the examples of README.md and docs/ against live servers (builds the server)
	$(CARGO) build --quiet --bin sentiment-server
	python3 scripts/check-doc-examples.py

ci: ## what CI runs on a clean clone (.ci/run: formatting, tests, image, end-to-end checks)
	bash .ci/run
