# Two commands on a fresh machine:  `make run`  (environment + assets + whole default workflow)
# and  `make test`  (environment + test suite).  Everything else is plain snakemake / pytest.

PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.actpat-installed

.PHONY: run test env dry-run report lint clean-results check-readme

# The pinned closure (envs/requirements.lock), then the package itself without touching the pins.
# torch is installed first and alone so that pip takes the CPU wheel where one is provided locally.
$(STAMP): pyproject.toml envs/requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$$(grep '^torch==' envs/requirements.lock)"
	$(BIN)/pip install -q -r envs/requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

env: $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --workflow-profile profiles/local
	$(BIN)/snakemake --cores 1 --report report.html

test: $(STAMP)
	$(BIN)/python -m pytest

# After `make run`: does the README's results section equal this run's results/summary.md?
check-readme: $(STAMP)
	$(BIN)/python -m actpat readme --readme README.md --summary results/summary.md

dry-run: $(STAMP)
	$(BIN)/snakemake -n --cores $(CORES)

lint: $(STAMP)
	$(BIN)/ruff check src scripts tests benchmarks
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

clean-results:
	rm -rf results logs
