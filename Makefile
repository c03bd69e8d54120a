# The two commands a newcomer needs: `make demo` and `make test`. Both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck contracts-check docker-lint bench clean postgres browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[azure,postgres,conformance,oidc,tracing,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cwi demo

# Start the machine's PostgreSQL when it is installed but not running (the DB tests need it).
postgres:
	@if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n 1) main start; \
		for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi

# The console's browser tests drive Debian's chromium (Playwright cannot download a browser here):
# installed with apt-get when it is missing and we are root; otherwise those tests skip (fail with CI=true).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts-check: $(STAMP)
	$(BIN)/lint-imports

docker-lint: $(STAMP)
	$(BIN)/hadolint Dockerfile

# The whole suite on two processes per core (pytest-xdist: many tests wait on sockets, locks and
# child processes, so two per core finish sooner), the 15 slowest tests listed at the end.
# The suite starts about a hundred Python processes (the CLI, workers, benchmarks): where
# PYTHONDONTWRITEBYTECODE is set, each compiled the project's modules anew (0.3 s of CPU apiece), so
# they are compiled once first (`__pycache__` is ignored by git).
test: lint typecheck contracts-check docker-lint postgres browser
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m compileall -q -j0 worker providers contracts config_db bench tests >/dev/null
	$(BIN)/pytest -q -n $$(( $$(nproc) * 2 )) --dist worksteal --durations=15

bench: $(STAMP)
	bench/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
