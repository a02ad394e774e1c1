# Two commands matter: `make demo` and `make test`. Both build the venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hilsim demo

test: $(STAMP)
	$(VENV)/bin/ruff check hilsim tests bench
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check hilsim tests bench

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
