# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PY_STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json
PYTEST_ARGS ?=
ARGS ?=

.PHONY: setup run test lint clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js and npm are required (apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## run: Azurite, the simulator with demo tenants, and the app on http://127.0.0.1:7071
run: setup
	$(PY) -m devtools.run $(ARGS)

## test: lint, then the whole suite (Azurite is started by the tests)
test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(PY_STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf .local .pytest_cache .ruff_cache test-artifacts
