# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Where torch comes from. Empty = automatic: PyTorch's CPU index when no NVIDIA GPU answers (the CUDA wheels from
# the default index are several GB), the default index when one does. Set it to use another build, e.g.
# `make install TORCH_INDEX=https://download.pytorch.org/whl/cu124`.
TORCH_INDEX ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: demo test test-all bench lint install qgis clean

$(BIN)/firemap: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, then everything else pinned to it (constraints.txt) so pip never swaps it for a CUDA build
	@index="$(TORCH_INDEX)"; \
	if [ -z "$$index" ] && ! (command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1); then \
		index=$(TORCH_CPU_INDEX); fi; \
	if [ -n "$$index" ]; then \
		echo "torch==$(TORCH_VERSION) from $$index"; \
		$(BIN)/pip install -q --timeout 30 --retries 1 torch==$(TORCH_VERSION) --index-url "$$index" || \
		{ echo "$$index unreachable: torch==$(TORCH_VERSION) from the default index instead"; \
		  $(BIN)/pip install -q torch==$(TORCH_VERSION); }; \
	else \
		echo "NVIDIA GPU found: torch==$(TORCH_VERSION) from the default index (CUDA build)"; \
		$(BIN)/pip install -q torch==$(TORCH_VERSION); fi
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
	@hadolint=$$(command -v $(BIN)/hadolint || command -v hadolint || true); \
	if [ -n "$$hadolint" ]; then $$hadolint Dockerfile; else echo "hadolint not installed: Dockerfile lint skipped"; fi

# Real QGIS for the qgis-marked tests (Debian's python3-qgis, ~50 s); the tests skip without it.
qgis:
	command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-qgis gdal-bin >/dev/null) || true

clean:
	rm -rf $(VENV) demo_out *.egg-info
