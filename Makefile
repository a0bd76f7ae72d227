# Namirasoft Email Sender. `make help` lists the targets.
#
# Every Go target loops over the modules of go.work (`go list -m`), so a new
# module is picked up by adding it to go.work. Tools are pinned in
# scripts/tools.sh and installed into .bin/ on first use.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Absolute directories of the workspace modules, and their ./dir/... patterns.
MODULES = $(shell go list -m -f '{{.Dir}}')
MODDIRS = $(patsubst $(CURDIR)/%,%,$(MODULES))
PKGS = $(patsubst %,./%/...,$(MODDIRS))

IMAGE ?= namirasoft/email-sender:dev

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN { FS = ":.*## " } \
		/^##@/ { printf "\n%s\n", substr($$0, 5) } \
		/^[a-zA-Z0-9_.-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Develop

.PHONY: run
run: ## Run everything in one process (PostgreSQL from DATABASE_URL or started locally, embedded NATS)
	@bash scripts/run.sh

.PHONY: test
test: ## Unit and integration tests with -race against real PostgreSQL, plus a short fuzz run (FUZZTIME=10s)
	@bash scripts/test.sh

.PHONY: bench
bench: ## Run the benchmark harness (scripts/bench.sh)
	@if [ -f scripts/bench.sh ]; then bash scripts/bench.sh; \
	else echo "bench: no benchmark harness yet (scripts/bench.sh is missing)"; fi

.PHONY: bench-scale
bench-scale: ## Report queries at 10M messages: seed once (reused), p50/p95 and EXPLAIN per shape (scripts/bench-scale.sh; not part of make test)
	@bash scripts/bench-scale.sh

.PHONY: chaos
chaos: ## Fault injection run: the services as processes under load while workers, NATS and PostgreSQL are killed (scripts/chaos.sh)
	@bash scripts/chaos.sh

.PHONY: cluster
cluster: ## Start a 3-node NATS cluster on loopback (scripts/cluster.sh start; `scripts/cluster.sh stop` stops it)
	@bash scripts/cluster.sh start

.PHONY: build
build: ## Build every package of every module
	go build $(PKGS)

.PHONY: lint
lint: ## gofmt (must list nothing) and go vet on every module
	@fail=0; \
	unformatted="$$(gofmt -l $(MODDIRS))"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (make fmt):"; echo "$$unformatted"; fail=1; \
	fi; \
	for dir in $(MODDIRS); do \
		if (cd "$$dir" && go list ./... 2>&1 | grep -q 'matched no packages'); then \
			echo "go vet $$dir: no packages yet"; continue; \
		fi; \
		echo "go vet $$dir"; \
		(cd "$$dir" && go vet ./...) || fail=1; \
	done; \
	if [ $$fail != 0 ]; then echo "lint: FAILED"; fi; exit $$fail

.PHONY: fmt
fmt: ## Format all Go code (gofmt -w)
	gofmt -w $(MODDIRS)

.PHONY: tidy
tidy: ## go mod tidy in every module
	@for dir in $(MODDIRS); do \
		echo "go mod tidy $$dir"; \
		(cd "$$dir" && go mod tidy); \
	done

##@ Generated code

.PHONY: proto
proto: ## Lint the protos; regenerate the Go code, the HTTP gateway and the OpenAPI document (pinned buf and plugins in .bin/)
	@bash scripts/proto.sh

.PHONY: docs
docs: ## Regenerate the README configuration tables from the config structs
	@bash scripts/docs.sh

.PHONY: verify
verify: ## Fail if generated proto code, the OpenAPI document, the README config tables or any go.mod is stale
	@bash scripts/verify.sh

.PHONY: tools
tools: ## Install the pinned tools (buf, protoc-gen-go, protoc-gen-go-grpc, protoc-gen-grpc-gateway, protoc-gen-openapiv2, grpcurl) into .bin/
	@bash scripts/tools.sh

##@ Local services

.PHONY: pg
pg: ## Make sure PostgreSQL runs and print its DATABASE_URL (test database)
	@bash scripts/pg.sh test

.PHONY: pg-stop
pg-stop: ## Stop the project-local PostgreSQL cluster, if one was started
	@bash scripts/pg.sh stop

##@ Containers (need a Docker engine)

.PHONY: image
image: ## Build the image with the three services (deploy/Dockerfile)
	docker build -f deploy/Dockerfile -t $(IMAGE) .

.PHONY: up
up: ## Start the multi-container setup (docker-compose.yml)
	docker compose up --build -d

.PHONY: down
down: ## Stop the multi-container setup
	docker compose down

.PHONY: clean
clean: ## Stop the local cluster and remove .data/ (keeps .bin/)
	@bash scripts/pg.sh reset
	rm -rf .data
