# Watchkeeper: `make demo` runs the embedded platform, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DURATION ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install demo up up-real down-real test lint system-deps schemas check-schemas bench-ingest \
        bench-evaluator bench-estimation bench-registry bench-sdk bench-alerts dashboards kafka-up kafka-down pg-up pg-down postgres-up postgres-down clean

install: $(STAMP)

$(STAMP): pyproject.toml sdk/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]" -e ./sdk
	@touch $(STAMP)

## The embedded default: one process, in-process bus, SQLite. DURATION=SECONDS stops by itself.
demo: install
	$(BIN)/watchkeeper demo $(if $(DURATION),--duration $(DURATION),)

up: install
	$(BIN)/watchkeeper up

## The real deployment: Kafka + PostgreSQL (KAFKA_BOOTSTRAP / DATABASE_URL, else started under
## .run/), the four services as separate processes; prints the URLs; Ctrl-C stops the services.
up-real: install
	@$(BIN)/watchkeeper up --kafka

## Stops what up-real left: services, then the local Kafka and PostgreSQL (data kept; `make clean` purges).
down-real:
	@$(BIN)/watchkeeper down --servers

## The real servers the integration tests need (Java + Maven for Kafka, PostgreSQL from Debian).
system-deps:
	@bash deploy/local/system-deps.sh

test: install system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/watchkeeper schemas --check
	$(BIN)/python -m watchkeeper.dashboards --check

schemas: install
	$(BIN)/watchkeeper schemas

## The Grafana dashboards (deploy/grafana/dashboards/*.json) from watchkeeper/dashboards.py.
dashboards: install
	$(BIN)/python -m watchkeeper.dashboards

## Ingest throughput/latency vs the raw Kafka producer (own Kafka and PostgreSQL unless
## KAFKA_BOOTSTRAP / DATABASE_URL are set). BENCH_ARGS="--workers 1" etc. Ends with one JSON line.
bench-ingest: install
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

## The SDK end to end: one process logging 200,000 interleaved predictions and outcomes to
## ingest on Kafka (+ registry), beside ingest's batch path posted directly. Own Kafka and
## PostgreSQL unless KAFKA_BOOTSTRAP / DATABASE_URL are set. Ends with one JSON line.
bench-sdk: install
	$(BIN)/python bench/sdk.py $(BENCH_ARGS)

kafka-up: install
	@$(BIN)/python deploy/local/kafka.py up

kafka-down:
	@$(BIN)/python deploy/local/kafka.py down

pg-up: install
	@$(BIN)/python deploy/local/postgres.py up

pg-down:
	@$(BIN)/python deploy/local/postgres.py down

postgres-up: pg-up
postgres-down: pg-down

clean:
	-$(BIN)/python deploy/local/kafka.py down --purge 2>/dev/null
	-$(BIN)/python deploy/local/postgres.py down --purge 2>/dev/null
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache

## Evaluator throughput on a throwaway Kafka, one drift window vs Evidently, window memory.
bench-evaluator: install system-deps
	$(BIN)/python bench/evaluator.py --postgres

## Performance estimation beside NannyML 0.13.1 (CBPE: 2 models x 3 shifts; DLE: 2 models x 12
## references x 4 shifts): MAE of the estimates against the realised values. Ends with one JSON
## line. `python bench/estimation.py dle` runs the DLE part only.
bench-estimation: install
	$(BIN)/python bench/estimation.py

## Alerts: 100,000 evaluations of 1,000 fingerprints through the alerts service on Kafka +
## PostgreSQL (KAFKA_BOOTSTRAP / DATABASE_URL must be set, e.g. from make kafka-up pg-up);
## evaluations/s and the publication-to-readable p99 at 100/s. Ends with one JSON line.
bench-alerts: install
	$(BIN)/python bench/alerts.py $(BENCH_ARGS)

## Registry: upload a generated 1 GB reference CSV, report the registry process's peak memory.
bench-registry: install
	$(BIN)/python bench/registry_upload.py
