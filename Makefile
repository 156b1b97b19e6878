# Every target creates or reuses .venv, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/src

.PHONY: demo test lint typecheck unit bench layer wheel clean victorialogs

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# The pinned real VictoriaLogs the tests and the demo run: $$VLHOOK_VICTORIALOGS_BIN, else
# victoria-logs on PATH, else built once with `go install` into .cache/victorialogs/.
victorialogs:
	$(PYTHON) tests/victorialogs.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck unit

# Ships to a real VictoriaLogs (started by the bench, as `make victorialogs` finds or builds it).
# BASELINE=<git revision>: that revision's vlhook runs too, interleaved (rows "this code vs before").
bench: $(STAMP)
	$(PY) bench/run.py $(if $(BASELINE),--baseline-rev $(BASELINE))

# LAYER_PYTHON / LAYER_ARCH: the Lambda runtime the layer is for (orjson is a binary wheel).
# LAYER_INTERPRETER: a Python of that version to compile the layer's modules with (default:
# pythonX.Y on PATH).
LAYER_PYTHON ?= 3.12
LAYER_ARCH ?= x86_64
layer: $(STAMP)
	$(PY) lambda_base/build_layer.py --python-version $(LAYER_PYTHON) --arch $(LAYER_ARCH) \
		$(if $(LAYER_INTERPRETER),--python $(LAYER_INTERPRETER))

wheel: $(STAMP)
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) dist build .mypy_cache .pytest_cache .ruff_cache
