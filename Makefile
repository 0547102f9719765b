# iot-etl: the user interface is these targets. `make demo` and `make test`
# are the two commands a new user needs; see README.md.

SHELL        := /bin/bash
GO           ?= go
GOBIN        := $(shell $(GO) env GOPATH)/bin
TEMPORAL_CLI := github.com/temporalio/cli/cmd/temporal@v1.5.1
TEMPORAL     := $(GOBIN)/temporal
VERSITYGW_CLI := github.com/versity/versitygw/cmd/versitygw@v1.8.0
VERSITYGW    := $(GOBIN)/versitygw
BIN          := bin
DEMO_DEVICES ?= 50
DEMO_DAYS    ?= 2
TEST_TIMEOUT ?= 45m

export TEMPORAL_BIN := $(TEMPORAL)
export VERSITYGW_BIN := $(VERSITYGW)

.PHONY: help tools test-tools build up down status migrate seed check summary worker-start worker-stop dashboard-start dashboard-stop demo demo-batch demo-stream test test-rules test-faults test-unit lint bench soak fuzz fmt clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

$(TEMPORAL):
	@echo "installing the Temporal CLI ($(TEMPORAL_CLI)); the first build takes 2-3 minutes"
	$(GO) install $(TEMPORAL_CLI)

$(VERSITYGW):
	@echo "installing versitygw ($(VERSITYGW_CLI)), the S3 server the export tests run against"
	$(GO) install $(VERSITYGW_CLI)

tools: $(TEMPORAL) ## install the Temporal CLI (dev server + UI) if missing

test-tools: tools $(VERSITYGW) ## also install versitygw, the S3 server the tests run against, if missing

build: ## build worker, starter and devstack into bin/
	$(GO) build -o $(BIN)/ ./worker ./starter ./devstack

up: tools build ## start the local stack (Temporal + UI, Kafka dev broker; databases if not running)
	$(BIN)/devstack up

down: build worker-stop dashboard-stop ## stop what `make up`, `make worker-start` and `make dashboard-start` started
	$(BIN)/devstack down

status: build ## show each component of the local stack
	$(BIN)/devstack status

migrate: build ## create the databases and apply migrations
	$(BIN)/starter migrate

seed: build ## fill the source databases (DEMO_DEVICES x DEMO_DAYS of 1-minute readings)
	$(BIN)/starter seed --devices $(DEMO_DEVICES) --days $(DEMO_DAYS) --seed 42

check: build ## test every component
	$(BIN)/starter check

summary: build ## print where everything is, with row counts
	$(BIN)/starter summary

WORKER_PID := .devstack/pids/worker.pid
WORKER_LOG := .devstack/logs/worker.log

worker-start: build worker-stop ## (re)start a background worker on the local stack
	@mkdir -p $(dir $(WORKER_PID)) $(dir $(WORKER_LOG))
	@nohup $(BIN)/worker >> $(WORKER_LOG) 2>&1 & echo $$! > $(WORKER_PID)
	@sleep 2; if ! kill -0 $$(cat $(WORKER_PID)) 2>/dev/null; then echo "worker failed to start:"; tail -20 $(WORKER_LOG); rm -f $(WORKER_PID); exit 1; fi
	@echo "worker running (pid $$(cat $(WORKER_PID))), log $(WORKER_LOG)"

worker-stop: ## stop the background worker
	@if [ -f $(WORKER_PID) ]; then pid=$$(cat $(WORKER_PID)); \
		if kill $$pid 2>/dev/null; then for i in $$(seq 1 60); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; echo "worker stopped (pid $$pid)"; fi; \
		rm -f $(WORKER_PID); fi

DASHBOARD_PID := .devstack/pids/dashboard.pid
DASHBOARD_LOG := .devstack/logs/dashboard.log

dashboard-start: build dashboard-stop ## (re)start the web dashboard in the background on DASHBOARD_ADDR
	@mkdir -p $(dir $(DASHBOARD_PID)) $(dir $(DASHBOARD_LOG))
	@nohup $(BIN)/starter dashboard >> $(DASHBOARD_LOG) 2>&1 & echo $$! > $(DASHBOARD_PID)
	@sleep 2; if ! kill -0 $$(cat $(DASHBOARD_PID)) 2>/dev/null; then echo "dashboard failed to start:"; tail -20 $(DASHBOARD_LOG); rm -f $(DASHBOARD_PID); exit 1; fi
	@echo "dashboard running (pid $$(cat $(DASHBOARD_PID))): $$(grep -o 'http://[^ ]*' $(DASHBOARD_LOG) | tail -1)"

dashboard-stop: ## stop the background dashboard
	@if [ -f $(DASHBOARD_PID) ]; then pid=$$(cat $(DASHBOARD_PID)); \
		if kill $$pid 2>/dev/null; then for i in $$(seq 1 20); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; echo "dashboard stopped (pid $$pid)"; fi; \
		rm -f $(DASHBOARD_PID); fi

demo-batch: build ## run the batch ETL over yesterday (UTC) and print its summary
	$(BIN)/starter batch run --csv

STREAM_RATE ?= 50

demo-stream: build ## stream for about a minute: simulate, pause and resume, show status and counts
	$(BIN)/starter stream start
	$(BIN)/starter simulate --devices $(DEMO_DEVICES) --seed 42 --rate $(STREAM_RATE) --duration 40s --anomaly-ratio 0.01 --bad-ratio 0.01
	$(BIN)/starter stream status --wait-caught-up 60s
	$(BIN)/starter stream pause
	@echo "--- paused: 15s of readings are published but not consumed (the lag grows) ---"
	$(BIN)/starter simulate --devices $(DEMO_DEVICES) --seed 42 --rate $(STREAM_RATE) --duration 15s --anomaly-ratio 0.01 --bad-ratio 0.01
	$(BIN)/starter stream status
	$(BIN)/starter stream resume
	$(BIN)/starter stream status --wait-caught-up 60s
	$(BIN)/starter dlq ls --limit 5

demo: up migrate seed check worker-start dashboard-start demo-batch demo-stream summary ## run the demo on the local stack

test: test-tools test-rules ## unit and integration tests (real Temporal, PostgreSQL, MariaDB, kfake, Prometheus)
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -count=1 -timeout $(TEST_TIMEOUT) ./...

test-rules: ## check the alert rules and run their unit tests with promtool
	@command -v promtool >/dev/null || { echo "promtool not found: install Debian's prometheus package (apt-get install prometheus)"; exit 1; }
	promtool check rules monitoring/alerts.yml
	promtool test rules monitoring/alerts_test.yml

FAULTS_TIMEOUT ?= 25m

test-faults: test-tools ## the fault suite: real crashes, partitions, kills and bad sources, checked exactly (docs/RELIABILITY.md)
	$(GO) vet -tags faults ./faults/
	$(GO) test -tags faults -count=1 -timeout $(FAULTS_TIMEOUT) -v ./faults/
	$(GO) test -count=1 -timeout 10m -v -run '^(TestExportParksThenRetryExport|TestSourceSchemaDrift)$$' ./worker/

test-unit: ## only the tests that need no services
	$(GO) test -count=1 -short ./...

lint: ## gofmt, go mod tidy, go vet, staticcheck, golangci-lint (errorlint, revive, nolintlint; forbidigo bans the wall clock and randomness in workflows/)
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt needed on the files above"; exit 1)
	@$(GO) mod tidy -diff || (echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1)
	$(GO) vet ./...
	$(GO) vet -tags faults ./faults/
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run ./...

bench: ## every benchmark (bench-*), results in bench/results/
	@for t in $$(grep -oE '^bench-[a-z-]+' $(MAKEFILE_LIST) | sort -u); do $(MAKE) --no-print-directory $$t || exit 1; done

bench-seed: ## seed 1000 devices x 7 days into throwaway databases; readings/s
	$(GO) run ./bench/seed

bench-batch: tools ## batch ETL over 1M and 10M readings vs the same transform in SQL; worker peak RSS
	$(GO) run ./bench/batch

bench-scale: tools ## batch (1M readings) and stream (1M messages) with 1 and 2 worker processes; rows/s, speedup, CPU per component and per row
	$(GO) run ./bench/scale

bench-stream: ## exactly-once ingest of 2M messages vs a COPY ceiling and a naive consumer; latency at 10k msg/s
	$(GO) run ./bench/stream

soak: tools ## 30 min of stream at 10k msg/s, 2 workers, one killed (-9) every 5 min; RSS, lag, latency, exact (not in bench)
	$(GO) run ./bench/soak

fuzz: ## FuzzDecode for 10 minutes; executions and findings in bench/results/fuzz.json (not in bench)
	$(GO) run ./bench/fuzz

fmt: ## gofmt the tree
	gofmt -w .

clean: ## remove build output (not .devstack state)
	rm -rf $(BIN)
