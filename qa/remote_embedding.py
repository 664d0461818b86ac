"""Embeddings from an OpenAI-compatible `/v1/embeddings` server (OpenAI, Ollama, vLLM, TEI, infinity).

LlamaIndex's OpenAI-like embedding sends the requests and retries connection errors, 429 and 5xx
with random exponential backoff (1-20 s, or the server's Retry-After; a 429 for up to a minute, a 5xx or
timeout at most `RETRIES` tries within it, `CONNECT_TRIES` when the connection is refused); the OpenAI
client's own retries are turned off so the two do not multiply. Ingest sends batches of
`embed_batch_size` texts with `embed_concurrency` requests in flight. Every failure that retrying
does not cure becomes one BackendError line that says what to do. Chunks are still sized in word
pieces of the bundled model's tokenizer (tokenizers only, no torch): a server does not say how it
tokenizes, and 160 such pieces fit every embedding model's window.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llama_index.embeddings.openai_like import OpenAILikeEmbedding
from pydantic import PrivateAttr

from .errors import BackendError

RETRIES = 6  # tries of a request answered by 429 or 5xx, or timed out ...
RETRY_SECONDS = 60  # ... within this long
CONNECT_TRIES = 3  # tries of a request whose connection is refused: the server is most likely down


def explain(e: Exception, url: str, model: str) -> BackendError:
    """One line for a failed request: what happened and what to do."""
    import openai

    from .llm import public_url

    url, name = public_url(url), type(e).__name__
    if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
        return BackendError(f"The embedding server at {url} refused the API key (HTTP {e.status_code}); "
                            "set QA_EMBED_API_KEY (or OPENAI_API_KEY) to a key it accepts.")
    if isinstance(e, openai.NotFoundError):
        return BackendError(f"The embedding server at {url} has no model {model!r} or no /embeddings route "
                            "(HTTP 404); set QA_EMBED_MODEL to a model it serves and QA_EMBED_URL to its /v1 URL.")
    if isinstance(e, openai.APITimeoutError):
        return BackendError(f"The embedding server at {url} did not answer in time; raise QA_EMBED_TIMEOUT, "
                            "lower QA_EMBED_BATCH_SIZE, or check the server.")
    if isinstance(e, openai.APIConnectionError):
        return BackendError(f"Cannot reach the embedding server at {url} ({name}); start it, fix QA_EMBED_URL, "
                            "or unset QA_EMBED_URL to use the local model.")
    if isinstance(e, openai.APIStatusError):
        return BackendError(f"The embedding server at {url} failed with HTTP {e.status_code} after retries "
                            f"({str(e.message)[:160]}); check the server, or try again later.")
    return BackendError(f"The embedding server at {url} gave an unusable answer ({name}: {str(e)[:160]}).")


class RemoteEmbedding(OpenAILikeEmbedding):
    """OpenAILikeEmbedding with one-line errors, normalized vectors and concurrent batches."""

    concurrency: int = 4
    _counter: Any = PrivateAttr(default=None)
    _pool: Any = PrivateAttr(default=None)
    _pool_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "QARemoteEmbedding"

    def _create_retry_decorator(self):  # type: ignore[no-untyped-def]
        """LlamaIndex's retry policy, except that a refused connection (server down) is tried only thrice."""
        import openai
        from llama_index.embeddings.openai.utils import _WaitRetryAfter
        from tenacity import retry, retry_if_exception_type, wait_random_exponential

        tries = self.max_retries

        def stop(state: Any) -> bool:
            e = state.outcome.exception() if state.outcome else None
            if isinstance(e, openai.APIConnectionError) and not isinstance(e, openai.APITimeoutError):
                return state.attempt_number >= CONNECT_TRIES
            if isinstance(e, openai.RateLimitError):  # the server asks to wait: wait, for up to a minute
                return state.seconds_since_start > RETRY_SECONDS
            return state.attempt_number >= tries or state.seconds_since_start > RETRY_SECONDS

        return retry(reraise=True, stop=stop, wait=_WaitRetryAfter(wait_random_exponential(min=1, max=20)),
                     retry=retry_if_exception_type((openai.APIConnectionError, openai.RateLimitError,
                                                    openai.InternalServerError)))

    def _get_credential_kwargs(self, is_async: bool = False) -> dict[str, Any]:
        return {**super()._get_credential_kwargs(is_async), "max_retries": 0}  # LlamaIndex's retries only

    def count_tokens(self, text: str) -> int:
        """Word pieces of the bundled model's tokenizer (chunk sizing)."""
        return len(self.token_starts(text))

    def token_starts(self, text: str) -> list[int]:
        """Where each word piece of the bundled model's tokenizer starts (see qa.embedding.TokenCounter)."""
        if self._counter is None:
            from tokenizers import Tokenizer

            from .embedding import resolve_model_path

            tok = Tokenizer.from_file(str(resolve_model_path("all-MiniLM-L6-v2") / "tokenizer.json"))
            tok.no_truncation()
            tok.no_padding()
            self._counter = tok
        return [a for a, _ in self._counter.encode(text, add_special_tokens=False).offsets]

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as e:
            raise explain(e, str(self.api_base), self.model_name) from None

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._call(super()._get_query_embedding, query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        try:
            return await super()._aget_query_embedding(query)
        except Exception as e:
            raise explain(e, str(self.api_base), self.model_name) from None

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._call(super()._get_text_embeddings, texts)

    def encode(self, texts: list[str]) -> Any:
        """Normalized float32 vectors: batches of embed_batch_size, `concurrency` requests at a time."""
        import numpy as np

        size = self.embed_batch_size
        batches = [texts[i:i + size] for i in range(0, len(texts), size)]
        if len(batches) == 1:
            rows = self._get_text_embeddings(batches[0])
        else:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="qa-embed")
            rows = [v for part in self._pool.map(self._get_text_embeddings, batches) for v in part]
        out = np.asarray(rows, dtype=np.float32)
        return out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)


def load_remote_embedder(settings: Any) -> RemoteEmbedding:
    """The embedder for QA_EMBED_URL (the key from QA_EMBED_API_KEY, else OPENAI_API_KEY)."""
    key = settings.embed_api_key or settings.openai_api_key
    emb = RemoteEmbedding(
        model_name=settings.embed_model, api_base=settings.embed_url.rstrip("/"),
        api_key=key.get_secret_value() if key else "none", embed_batch_size=settings.embed_batch_size,
        max_retries=RETRIES, timeout=settings.embed_timeout, concurrency=settings.embed_concurrency,
    )
    return emb
