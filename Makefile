# `make book` builds the site into _build/html; `make test` runs every check.
# Both create (or reuse) a local virtual environment in .venv with the pinned versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))

# Same numbers on every run: one BLAS/OpenMP thread, fixed hash seed.
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export PYTHONHASHSEED := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The offline copy of the MNIST test split, when it sits beside the checkout (CI, these machines).
MNIST_DIR := $(abspath ../shared/data/mnist)
ifneq ($(wildcard $(MNIST_DIR)),)
export VGCOURSE_DATA ?= $(MNIST_DIR)
endif

.PHONY: book test lint pytest constraints clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

book: $(STAMP)
	rm -rf _build/html _build/.doctrees
	$(BIN)/jupyter-book build --all -W -n --keep-going .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collects nothing; that is a failure here, never a pass.
pytest: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope \
		--nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		tests $(NOTEBOOKS); \
	status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
	exit $$status

test: lint book pytest

constraints: $(STAMP)
	{ echo "# Exact versions CI and the book build install (pip install -c constraints.txt ...)."; \
	  echo "# Users get the ranges in pyproject.toml; regenerate with: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf _build .pytest_cache .ruff_cache
