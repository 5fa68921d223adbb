# Two commands do everything on a fresh machine (see README.md):
#   make book   set up .venv and build the book into _build/html
#   make test   set up .venv (and Debian's chromium for the browser tests), then run every test
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

vendor:
	bash tools/vendor_mathjax.sh
	bash tools/vendor_axe.sh

book: $(STAMP) vendor
	$(BIN)/jupyter-book build . -W -n --keep-going

chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: $(STAMP) vendor chromium
	$(BIN)/python -m pytest

clean:
	rm -rf _build _vendor $(VENV)
