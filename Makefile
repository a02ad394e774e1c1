# Two commands matter: `make demo` and `make test`. Both build the venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# systemd-python (the `systemd` extra) compiles against libsystemd: take it where the headers are
# (CI installs them), so `make test` still works on a laptop without them (those tests skip).
EXTRAS := $(shell pkg-config --exists libsystemd 2>/dev/null && echo test,systemd || echo test)

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
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
