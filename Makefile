# Two commands do everything on a fresh machine (see README.md):
#   make book   set up .venv and build the book into _build/html
#   make test   build the book as `make book` does (and get Debian's chromium), then run every test on it
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test chromium vendor clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e .
	touch $@

vendor: $(STAMP)
	bash tools/vendor_mathjax.sh
	bash tools/vendor_axe.sh
	$(BIN)/python tools/vendor_pyodide.py   # Pyodide and wheels for JupyterLite, cached in ~/.cache/bptt-book

# --all: every page is rebuilt and re-executed (an incremental build would not notice an edited bptt_core.py).
book: $(STAMP) vendor
	$(BIN)/jupyter-book build . --all -W -n --keep-going

chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# The tests check the book that `make book` just built (BPTT_BUILT_SITE), on two workers: one file's
# tests (a notebook's cells) stay together on one worker, in order.
test: book chromium
	BPTT_BUILT_SITE=$(CURDIR)/_build/html $(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

clean:
	rm -rf _build _vendor $(VENV)
