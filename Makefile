# One-command set-up: every target that runs Python first creates or updates .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Re-install only when the requirements change; the stamp is a copy of what was installed.
STAMP := $(VENV)/.installed-requirements.txt
PYTEST_ARGS ?=

.PHONY: venv test lint bench clean

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade -r requirements.txt
	cp requirements.txt $(STAMP)

lint: venv
	$(PY) -m pytest test/test_linters.py

# The whole suite, linters included (test/test_linters.py runs flake8 and pydocstyle).
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks import the package from the repository root.
bench: venv
	PYTHONPATH=. $(PY) benchmarks/pipeline_overhead.py
	PYTHONPATH=. $(PY) benchmarks/metrics_speed.py
	PYTHONPATH=. FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA $(PY) benchmarks/node_overhead.py

clean:
	rm -rf build install log .pytest_cache
