# The two commands of the quick start are `make demo` and `make test`; everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-sqlite test-postgres lint format bench proof proof-fast clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "python venv missing: apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gateway demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole suite runs twice: once on SQLite, once on PostgreSQL (skipped with a reason when no server answers,
# unless REQUIRE_POSTGRES=1).
test: lint test-sqlite test-postgres

test-sqlite: $(STAMP)
	TEST_DATABASE=sqlite $(BIN)/pytest -q $(PYTEST_ARGS)

test-postgres: $(STAMP)
	TEST_DATABASE=postgres $(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

proof: $(STAMP)
	$(BIN)/python -m bench.proof

proof-fast: $(STAMP)
	$(BIN)/python -m bench.proof --fast

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
