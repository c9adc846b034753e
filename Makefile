# The one command surface for people and CI: `make run`, `make test`.
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.parley-installed
# The browser tests drive Debian's Chromium through Playwright; Playwright's own
# browser download is never used (it cannot reach its host here).
CHROMIUM ?= /usr/bin/chromium
export PARLEY_CHROMIUM := $(CHROMIUM)

.PHONY: install run test lint format typecheck unit e2e browser chromium bench bench-stages faults bench-soak bench-idle bench-broker clean

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Parley needs Python >= 3.11 (python3 on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[local,dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the whole service (gateway, Faust worker, outbox relay) until Ctrl-C.
run: install
	$(BIN)/parley run

## Lint, type-check and run every test against real services.
test: install lint typecheck chromium
	$(BIN)/pytest

## Chromium for tests/browser: installed with apt-get when missing and we may; else a clear stop.
chromium:
	@test -x "$(CHROMIUM)" || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& echo "installing Chromium for the browser tests (apt-get install chromium)" \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || true
	@test -x "$(CHROMIUM)" || { echo "make: the browser tests need Chromium at $(CHROMIUM)."; \
		echo "      Install it (Debian/Ubuntu: sudo apt-get install chromium) or run make CHROMIUM=/path/to/chromium."; exit 1; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

e2e: install
	$(BIN)/pytest -m e2e

browser: install chromium
	$(BIN)/pytest -m browser

## The whole path under load; e.g. make bench BENCH="--max --window 200 --json out.json"
bench: install
	$(BIN)/python -m tests.bench $(BENCH)

## Each stage alone (agent, relay, fan-out, 5,000 sockets); e.g. make bench-stages STAGES="--only relay"
bench-stages: install
	$(BIN)/python -m tests.bench.stages $(STAGES)

## The fault suite (docs/reliability.md); e.g. make faults FAULTS="--rate 300 --json out.json"
faults: install
	$(BIN)/python -m tests.faults $(FAULTS)

## The embedded stack of `make run` (docs/embedded.md). Run them on a quiet machine.
SOAK_ARGS ?= --rate 200 --count 1000000 --visitors 100 --window 120
bench-soak: install
	nice -n 10 $(BIN)/python -m tests.embedded_bench soak $(SOAK_ARGS)

bench-idle: install
	$(BIN)/python -m tests.embedded_bench idle

bench-broker: install
	$(BIN)/python -m tests.embedded_bench broker

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
