"""An OpenAI-compatible model server: llama-cpp-python's, with CPU weight repacking turned off.

    python -m qa.llm_server --model_alias smollm2 --host 127.0.0.1 --port 8080 --n_threads 2 --n_ctx 2048

Without --model it serves the bundled SmolLM2-135M-Instruct. Point the openai backend at it with
QA_LLM=openai QA_OPENAI_BASE_URL=http://127.0.0.1:8080/v1. Note that llama.cpp's server answers
with its one model whatever model name a request asks for.
"""

from __future__ import annotations

import sys

from .llm import bundled_model_path, disable_repacking


def main(argv: list[str] | None = None) -> int:
    """Run the server until interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--model" not in args and not any(a.startswith("--model=") for a in args) and "--config_file" not in args:
        args = ["--model", str(bundled_model_path()), *args]
    disable_repacking()  # before the server loads the model
    from llama_cpp.server.__main__ import main as serve

    sys.argv = [sys.argv[0], *args]
    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
