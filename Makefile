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

# The browser test (tests/test_site.py) drives Debian's Chromium with Playwright and serves the site's
# CDN scripts from npm packages in tests/browser/node_modules (pinned by its package-lock.json).
CHROMIUM ?= /usr/bin/chromium
BROWSER_DIR := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.installed

.PHONY: book reader-notebooks test lint pytest pytest-unbuilt pytest-built nbval claims-other-kernels versions \
	versions-lock browser constraints clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The data check runs first: missing or corrupted data files fail the build in seconds, with the way out.
# After the site come the reader notebooks: each chapter for Colab and Jupyter readers in _build/colab/,
# with the numbers the build computed written into the prose (vgcourse/reader_notebooks.py).
# VGCOURSE_STRICT_FIGURES=1: every figure a plot function returns must fit the text column, keep its
# series inside its axes and its text legible (vgcourse/plots/figure_check.py), or the chapter fails.
book: $(STAMP)
	$(BIN)/python -m vgcourse.datasets --check
	rm -rf _build/html _build/.doctrees _build/colab
	VGCOURSE_STRICT_FIGURES=1 $(BIN)/jupyter-book build --all -W -n --keep-going .
	$(BIN)/python -m vgcourse.reader_notebooks --build _build --out _build/colab

# The reader notebooks again, from the executed chapters of the last `make book`.
reader-notebooks: $(STAMP)
	$(BIN)/python -m vgcourse.reader_notebooks --build _build --out _build/colab

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# What the browser test needs besides .venv: Debian's Chromium and the npm packages of the site's CDN
# scripts. Installing Debian packages needs root (CI has it); without, say which command to run.
browser: $(CHROMIUM) $(BROWSER_STAMP)

$(CHROMIUM):
	@[ "$$(id -u)" -eq 0 ] || { echo "No Chromium at $(CHROMIUM) and installing it needs root:" \
		"run 'sudo apt-get install -y chromium chromium-driver fonts-dejavu-core', then make test again."; exit 1; }
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		chromium chromium-driver fonts-dejavu-core fonts-liberation

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	@command -v npm >/dev/null || [ "$$(id -u)" -ne 0 ] || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; }
	@command -v npm >/dev/null || { echo "npm is missing and installing it needs root:" \
		"run 'sudo apt-get install -y nodejs npm', then make test again."; exit 1; }
	cd $(BROWSER_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

# pytest exits 5 when it collects nothing; that is a failure here, never a pass.
# VGCOURSE_REQUIRE_BROWSER=1: a browser test that cannot run fails instead of skipping.
# Each chapter is executed twice in `make test`: by the book build (pinned versions, ipywidgets 8) and by
# the Colab path (tests/test_colab_path.py: the reader notebooks, Python 3.12, an older torch, ipywidgets
# 7.7.1), which fails on any cell error as nbval does. `make nbval` runs nbval alone (a quick check of
# chapters while writing them: `make nbval NOTEBOOKS=book/x.ipynb`).
# `make pytest` runs every test; `make test` runs them in two parts: the tests that read the book build
# (BUILT_TESTS) after it, the others while it runs (the build executes one chapter at a time, on one core).
BUILT_TESTS := tests/test_site.py tests/test_reader_notebooks.py tests/test_colab_path.py \
	tests/test_student_copies.py tests/test_instructor.py
PYTEST := VGCOURSE_REQUIRE_BROWSER=1 VGCOURSE_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -n 2 --dist loadscope \
	--durations=15
define run_pytest
	$(PYTEST) $(1); \
	status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
	exit $$status
endef

pytest: $(STAMP) browser
	$(call run_pytest,tests)

pytest-unbuilt: $(STAMP)
	$(call run_pytest,$(addprefix --ignore=,$(BUILT_TESTS)) tests)

pytest-built: $(STAMP) browser
	$(call run_pytest,$(BUILT_TESTS))

nbval: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 180 $(NOTEBOOKS)

# The chapter claims (tests marked `claim`) once more under another CPU kernel family than this CPU's own
# (ATEN_CPU_CAPABILITY: `default` unless that is the CPU's own, then the next one it offers). PyTorch picks
# kernels by instruction set and training amplifies their last-bit differences, so a claim that holds on
# one kernel family only fails here. `benchmarks/claim_margins.py` measures every family the CPU has.
claims-other-kernels: $(STAMP)
	@others="$$($(BIN)/python benchmarks/claim_margins.py --other-capabilities)"; \
	[ -n "$$others" ] || { echo "claims-other-kernels: this CPU offers no kernel family besides its own"; exit 0; }; \
	cap="$${others%% *}"; \
	echo "== chapter claims under ATEN_CPU_CAPABILITY=$$cap"; \
	ATEN_CPU_CAPABILITY=$$cap $(BIN)/python -m pytest -n 2 -q -m claim -p no:cacheprovider tests; \
	status=$$?; \
	if [ $$status -eq 5 ]; then echo "no claim test collected: failing"; exit 1; fi; \
	exit $$status

# The two ends of pyproject.toml's version ranges (ci/version_ends.py): the package's unit tests (not the
# claims, notebooks or site) once with every direct dependency at its floor (lowest-direct resolution, on
# the oldest Python requires-python allows) and once with the newest releases (on the newest Python here),
# each in its own environment cached in ~/.cache/vgcourse/version-venvs/ and installed from its lock file
# (constraints-lowest.txt, constraints-newest.txt: every package pinned; `make versions-lock` resolves them
# again, which needs the package index). constraints.txt stays the one set the book is built and tested with.
versions: $(STAMP)
	$(BIN)/python ci/version_ends.py test lowest newest

versions-lock: $(STAMP)
	$(BIN)/python ci/version_ends.py lock lowest newest

# The book build and the tests that do not read it run side by side (-j2), then the rest. `versions` takes
# the core the book build leaves free once the other tests are done (the build runs one chapter at a time).
# The tests that read the build and the claims under another kernel family also run side by side: the
# built tests keep a core busy with one Colab chapter at a time and leave gaps the claims fill.
test: $(STAMP) browser
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory --output-sync=target -j2 book pytest-unbuilt versions
	$(MAKE) --no-print-directory --output-sync=target -j2 pytest-built claims-other-kernels

constraints: $(STAMP)
	{ echo "# Exact versions CI and the book build install (pip install -c constraints.txt ...)."; \
	  echo "# Users get the ranges in pyproject.toml; regenerate with: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf _build .pytest_cache .ruff_cache
