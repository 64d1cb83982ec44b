# The two commands of the quick start are `make demo` and `make test`; everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-clone test-sqlite test-postgres test-shifted lint typecheck format bench proof proof-fast clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "python venv missing: apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gateway demo

# Style, the layering contracts of docs/architecture.md (import-linter, [tool.importlinter] in pyproject.toml), types.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# mypy --strict on gateway/ ([tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole suite runs twice: once on SQLite, once on PostgreSQL (skipped with a reason when no server answers,
# unless REQUIRE_POSTGRES=1). First, a fresh clone of HEAD with nothing beside it must collect it.
test: lint test-clone test-sqlite test-postgres

test-sqlite: $(STAMP)
	TEST_DATABASE=sqlite $(BIN)/pytest -q $(PYTEST_ARGS)

test-postgres: $(STAMP)
	TEST_DATABASE=postgres $(BIN)/pytest -q $(PYTEST_ARGS)

# The committed HEAD, cloned into an empty temporary folder, collects the suite reading nothing outside the clone.
test-clone: $(STAMP)
	$(BIN)/python tests/clone_check.py

# The SQLite suite with the machine's clock moved (libfaketime, Debian's `faketime`): every process the suite starts
# is shifted by the same offset, so the run begins at SHIFTED_TO (UTC) and goes on from there. The default is the
# last half-minute of 2027 in UTC, when it is already 1 January 2028 in Amsterdam.
SHIFTED_TO ?= 2027-12-31 23:59:30
test-shifted: $(STAMP)
	@command -v faketime >/dev/null || { echo "faketime is not installed (apt-get install faketime)"; exit 1; }
	@offset=$$(( $$(date -u -d '$(SHIFTED_TO) UTC' +%s) - $$(date -u +%s) )); \
	echo "test-shifted: the clock starts at $(SHIFTED_TO) UTC ($$offset s from now)"; \
	TEST_DATABASE=sqlite faketime -f "+$$offset" $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

proof: $(STAMP)
	$(BIN)/python -m bench.proof

proof-fast: $(STAMP)
	$(BIN)/python -m bench.proof --fast

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .grimp_cache test-artifacts
