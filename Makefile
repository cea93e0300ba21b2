# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: demo test test-all bench lint install qgis clean

$(BIN)/firemap: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first (a CPU wheel), then everything else pinned to it so pip never pulls CUDA wheels
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(BIN)/firemap

install: $(BIN)/firemap

demo: install
	$(BIN)/firemap demo --out demo_out --overwrite

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: install
	$(BIN)/python scripts/bench_predict.py

lint: install
	$(BIN)/ruff check firemap tests scripts
	$(BIN)/mypy firemap
	$(BIN)/hadolint Dockerfile

# Real QGIS for the qgis-marked tests (Debian's python3-qgis, ~50 s); the tests skip without it.
qgis:
	command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-qgis gdal-bin >/dev/null) || true

clean:
	rm -rf $(VENV) demo_out *.egg-info
