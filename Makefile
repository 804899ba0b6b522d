# The two commands: `make demo` and `make test`. Both build .venv from the pinned files on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# plugins/ is on sys.path for every Airflow component; the demo, tests and benchmarks see the same.
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)
# Some machines set PYTHONDONTWRITEBYTECODE: every Airflow task process would then compile the
# plugin again (about a second of CPU each, hundreds of tasks in the tests).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo airflow test bench lint install clean
AIRFLOW_PORT ?= 8080

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sandbox.demo $(DEMO_ARGS)

# The Airflow UI on the sandbox (scheduler, triggerer, API server) until Ctrl-C.
airflow: $(STAMP)
	$(BIN)/python -m sandbox.airflow_ui --port $(AIRFLOW_PORT) $(AIRFLOW_ARGS)

# The project's two system packages, from Debian, installed once: Chromium for the dashboard's
# browser test, Redis as the Celery broker of the end-to-end Airflow.
CHROMIUM := /usr/bin/chromium
REDIS := /usr/bin/redis-server

$(CHROMIUM):
	./scripts/install-debian-package.sh chromium $@

$(REDIS):
	./scripts/install-debian-package.sh redis-server $@

test: $(STAMP) $(CHROMIUM) $(REDIS)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff check dags plugins sandbox tests bench

clean:
	rm -rf $(VENV) .pytest_cache
