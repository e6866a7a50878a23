# gradebench — `make demo` runs the whole product locally, `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: demo serve test test-real bench install install-dev lint format typecheck messages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(VENV)/.installed: requirements/base.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.installed-dev: requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## demo: set up (virtualenv, database, reference study, demo users) and run web + worker + simulator
demo: install
	DEBUG=1 $(BIN)/python manage.py demo --port $(PORT)

## serve: production mode (DEBUG off) against DATABASE_URL (PostgreSQL) and REDIS_URL: migrate,
## collectstatic, then gunicorn (deploy/gunicorn.conf.py) + a Celery worker; see deploy/serve.sh
serve: install
	PYTHON=$(BIN)/python deploy/serve.sh

## test: the whole test suite (SQLite and the embedded broker unless DATABASE_URL / REDIS_URL are set)
test: install-dev
	$(BIN)/python -m pytest

## test-real: the tests marked real_server, against llama-cpp-python's server and the tiny GGUF
## model (../shared/models/stories260K.gguf, or LLAMA_MODEL_PATH); builds .venv-real once (~7 min)
.venv-real/.installed:
	$(PYTHON) -m venv .venv-real
	CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 .venv-real/bin/pip install "llama-cpp-python[server]==0.3.36"
	touch $@

test-real: install-dev .venv-real/.installed
	LLAMA_SERVER_PYTHON=$(CURDIR)/.venv-real/bin/python $(BIN)/python -m pytest -m real_server -p no:cacheprovider

## bench: the benchmarks named in the issues; they print their figures
bench: install-dev
	@set -e; for script in tests/benchmarks/bench_*.py; do \
		echo "== $$script"; $(BIN)/python $$script; done

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install-dev
	$(BIN)/mypy .

messages: install-dev
	DEBUG=1 $(BIN)/python manage.py makemessages -l zh_Hans --ignore=.venv --ignore=var
	DEBUG=1 $(BIN)/python manage.py compilemessages --ignore=.venv

## lock: re-resolve the pinned versions after editing pyproject.toml
lock: install-dev
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml -o requirements/base.txt --python-version 3.11 --no-header -q
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements/dev.txt --python-version 3.11 --no-header -q

clean:
	rm -rf var/broker var/cache var/test-gradebench-*.sqlite3*
