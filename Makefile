# Two commands matter: `make demo` and `make test`. Both build the venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# One stamp per install: the demo needs hilsim alone, the tests also their extras (Playwright,
# cryptography, ...). The test install includes the runtime, so it stamps both.
RUNTIME := $(VENV)/.installed-runtime
TESTING := $(VENV)/.installed-test
# systemd-python (the `systemd` extra) compiles against libsystemd: take it where the headers are
# (CI installs them). Without it everything still works and `make test` passes: sd_notify goes
# out without it, and only the tests of its journal handler skip.
PKG_CONFIG ?= pkg-config
EXTRAS := $(shell $(PKG_CONFIG) --exists libsystemd 2>/dev/null && echo test,systemd || echo test)
# setuptools says, as information, on every editable install of a package that is not in a src/
# folder, to mind same-named folders; hilsim's is the package itself. Nothing to act on.
PIP_INSTALL := PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install --quiet

.PHONY: demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(PY)
	$(PIP_INSTALL) -e .
	touch $@

$(TESTING): pyproject.toml | $(PY)
	$(PIP_INSTALL) -e '.[$(EXTRAS)]'
	touch $@ $(RUNTIME)

# The same session twice: against the built-in CSMS in OCPP 1.6, then in OCPP 2.0.1.
demo: $(RUNTIME)
	$(VENV)/bin/hilsim demo
	$(VENV)/bin/hilsim demo --ocpp 2.0.1

test: $(TESTING)
	$(VENV)/bin/ruff check hilsim tests bench
	$(PY) -m pytest

lint: $(TESTING)
	$(VENV)/bin/ruff check hilsim tests bench

bench: $(TESTING)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
