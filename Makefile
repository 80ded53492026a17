# Two commands do all set-up on a fresh machine (E-3):
#   make app   — venv, install, serve the admin app on the embedded default (SQLite + generated key)
#   make test  — venv, install, system services for the tests, the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: app test typecheck system-deps bench-deps wheel-env litellm-env litellm-proxy-env bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	$(PY) -m pip install --quiet -e '.[test,app,bench]'
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/byok-nb serve

system-deps:
	bash scripts/system_deps.sh

# nginx and wrk: only the gateway benchmarks need them (static upstream, load generator in C).
bench-deps:
	bash scripts/system_deps.sh --bench

# The installed-wheel tests need a fresh virtualenv with the dependencies; it is made here, before
# pytest, so that the suite itself reaches no network (tests/install/wheelkit.py).
wheel-env: $(STAMP)
	$(PY) tests/install/wheelkit.py

# mypy --strict over the public modules: the list and the settings are [tool.mypy] in pyproject.toml.
# First, being quick: a type error stops `make test` before the slower set-up steps.
typecheck: $(STAMP)
	$(PY) -m mypy

# LiteLLM pinned to one version in a venv of its own (tests/gateway/litellmkit.py): the gateway
# tests run a real LiteLLM client from it, offline; the benchmarks run the LiteLLM proxy from the
# second one (its extra is much larger, so the tests do not pay for it).
litellm-env: $(STAMP)
	$(PY) tests/gateway/litellmkit.py

litellm-proxy-env: $(STAMP)
	$(PY) tests/gateway/litellmkit.py --proxy

test: $(STAMP) typecheck system-deps wheel-env litellm-env
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: $(STAMP) bench-deps litellm-proxy-env
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build *.egg-info
