# KQV — `make serve` builds the HTML book and serves it; `make test` runs every test.
# Both create .venv and install requirements.txt on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
NB ?=

.PHONY: help venv serve book test test-unit test-notebooks test-book test-browser notebooks notebook lab clean

help:
	@echo "make serve      build the book from stored outputs and serve it on http://127.0.0.1:$(PORT)"
	@echo "make test       every test: kqvlib, exercises, notebooks (nbval), HTML build, browser"
	@echo "make lab        open the notebooks in JupyterLab"
	@echo "make notebooks  re-execute every notebook in place (refresh stored outputs)"
	@echo "make notebook NB=book/02_softmax.ipynb   re-execute one"

# --- environment -----------------------------------------------------------------------------
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

# --- the book --------------------------------------------------------------------------------
book: venv
	$(BIN)/jupyter-book build . -W --keep-going

serve: book
	@echo "Serving the book on http://127.0.0.1:$(PORT)  (Ctrl-C to stop)"
	$(BIN)/python -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

lab: venv
	$(BIN)/jupyter lab book/

notebooks: venv
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.store_widget_state=False book/*.ipynb book/solutions/*.ipynb

notebook: venv
	@test -n "$(NB)" || (echo "usage: make notebook NB=book/02_softmax.ipynb" && false)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.store_widget_state=False $(NB)

# --- tests -----------------------------------------------------------------------------------
test: venv
	bash scripts/test.sh

clean:
	rm -rf _build tests/screenshots
