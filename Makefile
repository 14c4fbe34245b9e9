# Floodgate. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)
PKGS := ./...
FUZZTIME ?= 30s

.PHONY: help build run test unit lint bench fuzz loadtest overhead tools ui clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

build: ## build bin/floodgate and bin/floodgate-load
	$(GO) build -trimpath -o bin/floodgate ./cmd/floodgate
	$(GO) build -trimpath -o bin/floodgate-load ./cmd/floodgate-load

run: ## run Floodgate on the in-memory store with the bundled example limits
	$(GO) run ./cmd/floodgate

test: lint ## the whole suite: lint, then every test with -race against real Redis
	./scripts/with-services.sh $(GO) test -race -count=1 -timeout 20m $(PKGS)
	# 1,000 dashboard sessions (the race detector makes that take minutes, so -race runs fewer)
	$(GO) test -count=1 -run 'TestSessionsLeaveNothingBehind' ./dashboard

unit: ## tests only (no lint), with -race
	./scripts/with-services.sh $(GO) test -race -count=1 -timeout 20m $(PKGS)

lint: tools ## gofmt check, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

tools:
	@test -x "$(STATICCHECK)" || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

bench: ## Go benchmarks of the hot path (memory, Redis, gRPC handlers)
	./scripts/with-services.sh $(GO) test -run '^$$' -bench . -benchmem -count 1 ./limiter/... ./extauthz/... ./config/...

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

loadtest: build ## load harness: do-nothing gRPC server vs Floodgate (memory, Redis) under the same load
	./scripts/with-services.sh ./bin/floodgate-load

overhead: ## measure the audit trail's and 100 dashboards' cost on the decision path (minutes)
	FLOODGATE_OVERHEAD=1 ./scripts/with-services.sh $(GO) test -count=1 -timeout 15m -run 'Overhead|PipelineThroughput' -v ./cmd/floodgate

ui: ## rebuild the dashboard's CSS (Tailwind, offline) and vendored uPlot; commit the results
	cd dashboard/web && npm ci --no-audit --no-fund && npm run build:css && npm run vendor

clean:
	rm -rf bin
