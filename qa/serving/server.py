"""`qa serve`: one ASGI app for people and programs: the chat UI at `/`, the HTTP API under `/v1`.

    app = create_app(assistant, api_key="...", auth="user:password")

Routes live in `APIRouter`s, one per section below; each route gets the engine from the request
(`engine(request)`: the assistant, the background writer) and raises `ApiError` (or a `QAError`,
mapped by `status_of`) for the JSON error `{"error": {"message", "type", "param", "code"}}`. To add
routes, define a router (here or in a module of its own) and add it to `ROUTERS`: `create_app` includes
each one under `/v1` with the `api_auth` dependency, before the JSON 404 for unknown `/v1` paths and the
UI mount.
(`KeyGate` refuses a /v1 request without the key before FastAPI reads its body; `api_auth` stays on
every route all the same.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..assistant import MAX_QUESTION_CHARS
from ..errors import (
    BackendError,
    ConfigError,
    ConversationNotFoundError,
    DiskFullError,
    IndexBusyError,
    IndexDamagedError,
    IndexMissingError,
    QAError,
    TooManyOpenFilesError,
)
from ..settings import bounds
from .limits import TooManyAttempts, client_address, keys
from .writer import Job, QueueFullError, Writer, metered, prepare

if TYPE_CHECKING:
    from ..assistant import Assistant
    from ..types import Answer

__all__ = ["ROUTERS", "ApiError", "EngineDep", "api_auth", "create_app", "engine", "error_body", "error_response",
           "for_http", "http_answers", "invalid_response", "serve"]

MAX_JSON_BYTES = 1_000_000  # a question is at most 2,000 characters; history and options fit easily
# A request of the chat UI (Gradio) other than an upload: a question carries the chat shown so far (each answer's
# HTML, some KB), so a long conversation's is a few MB. Gradio reads a body whole before it checks the login.
MAX_UI_BYTES = 16_000_000
MAX_HEADER_BYTES = 64 * 1024  # of a request's line and headers (nginx allows 32 KB, h11 16 KB by default)
MAX_FILES = 20  # files per upload request
MAX_HISTORY = 200  # earlier questions a question is asked with (the most recent, when a chat sends more)
TOP_K = bounds("top_k")  # what a question may ask for, as QA_TOP_K allows
RETRY_AFTER_SECONDS = 2  # the Retry-After of a 429 (the index is busy, the upload queue is full)
WAIT_SECONDS = 3600.0  # how long `POST /v1/documents` waits for its job before answering 202 with the job
ERROR_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 422: "invalid", 429: "busy", 500: "server_error", 502: "backend_error",
               503: "no_index", 507: "disk_full"}


# --- errors: one JSON shape for every failure under /v1 ---------------------------------------------
class ApiError(Exception):
    """An error a route returns as `{"error": {"message", "type", "param", "code"}}` with `status`."""

    def __init__(self, status: int, message: str, type: str | None = None, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type or ERROR_TYPES.get(status, "error")
        self.code, self.param = code, param
        self.headers = {"WWW-Authenticate": "Bearer"} if status == 401 else headers


def error_body(status: int, message: str, type: str | None = None, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """The JSON of every /v1 failure, shaped as OpenAI's errors (so its clients read it): `param` names the
    field at fault and `code` says which error it is, each null when there is none to give."""
    return {"error": {"message": message, "type": type or ERROR_TYPES.get(status, "error"), "param": param,
                      "code": code}}


def error_response(status: int, message: str, type: str | None = None, headers: dict[str, str] | None = None,
                   code: str | None = None, param: str | None = None) -> JSONResponse:
    """The JSON error response every /v1 failure has."""
    return JSONResponse(error_body(status, message, type, code, param), status_code=status, headers=headers)


def status_of(e: QAError) -> int:
    """The HTTP status of an engine error."""
    if isinstance(e, (IndexMissingError, IndexDamagedError)):  # no index to answer from, or not a safe one
        return 503
    if isinstance(e, DiskFullError):
        return 507
    if isinstance(e, TooManyOpenFilesError):  # the server's own limit, not the request's fault
        return 503
    if isinstance(e, ConversationNotFoundError):
        return 404
    if isinstance(e, (QueueFullError, IndexBusyError)):
        return 429
    if isinstance(e, BackendError):
        return 502
    if isinstance(e, ConfigError):
        return 400
    return 400


# The engine's messages name the CLI command that helps; an HTTP client is told the route instead.
_CLI_HINTS = (("List yours with: qa chats", "List yours with: GET /v1/conversations"),
              ("See the indexed documents with: qa docs", "See the indexed documents with: GET /v1/documents"),
              ("See what is indexed with: qa docs", "See what is indexed with: GET /v1/documents"),
              ("(qa docs lists them)", "(GET /v1/documents lists them)"),
              ("Run: qa ingest seeds/", "Add documents with: POST /v1/documents"),
              ("wait for it to finish and run again", "wait for it to finish and try again"))


def for_http(message: str) -> str:
    """An engine message as an HTTP client should read it."""
    for cli, http in _CLI_HINTS:
        message = message.replace(cli, http)
    return message


def http_answers(answers: Iterator[Answer]) -> Generator[Answer, None, None]:
    """Answers as an HTTP client should read them: an answer that is a message of qa's, not the documents'
    words ("No indexed document matches nope.txt... See what is indexed with: qa docs"), names the route."""
    from dataclasses import replace

    for a in answers:
        yield a if a.answered else replace(a, answer=for_http(a.answer))


def _validation_message(e: RequestValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) + " (see /docs for the request format)"


def _invalid_field(e: RequestValidationError) -> str | None:
    """The field of the first error, as OpenAI's `param` names it: "messages.0.content", "top_k"."""
    for err in e.errors():
        loc = [str(x) for x in err.get("loc", ())]
        if loc[:1] in (["body"], ["query"], ["path"], ["header"]):
            loc = loc[1:]
        return ".".join(loc) or None
    return None


def invalid_response(request: Request, e: RequestValidationError, status: int = 422) -> JSONResponse:
    """The answer to a request whose fields are invalid: `status` (422 on qa's routes, 400 on OpenAI's), 400
    for malformed JSON."""
    if any(err.get("type") == "json_invalid" for err in e.errors()):
        return error_response(400, "The request body is not valid JSON.")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and any(tuple(err.get("loc", ())) == ("body",) for err in e.errors()):
        return error_response(status, f"The body was sent as {kind or 'no content type'}: send JSON with the "
                                      "header 'Content-Type: application/json' (see /docs).")
    return error_response(status, _validation_message(e), param=_invalid_field(e))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.message, e.type, e.headers, e.code, e.param)

    @app.exception_handler(QAError)
    async def _qa_error(request: Request, e: QAError) -> JSONResponse:
        message = for_http(str(e))
        if isinstance(e, IndexMissingError) and "POST /v1/documents" not in message:
            message += " (or add files: POST /v1/documents)"
        status = status_of(e)
        return error_response(status, message,
                              headers={"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 429 else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return invalid_response(request, e)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return error_response(e.status_code, str(e.detail), headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> JSONResponse:
        import traceback

        if _stream_cut(e):  # the client's error (e.g. 404 for a stale session), inside a started stream
            print(f"qa serve: {request.method} {request.url.path}: {e.__cause__} after the stream started",
                  file=sys.stderr)
        else:
            print(f"qa serve: {request.method} {request.url.path} failed:", file=sys.stderr)
            traceback.print_exception(e, file=sys.stderr)
        return error_response(500, f"The server failed to handle this request ({type(e).__name__}: {e}); "
                                   "its log has the details.")


class BodyLimit:
    """ASGI middleware: a request body over its limit is refused with 413 before it is read whole: an upload's
    (/v1/documents, the UI's /gradio_api/upload), another /v1 request's, another UI request's. Gradio reads a
    body whole before it checks the login: a 1 GB body to /gradio_api/queue/join took 3 GB, signed in or not."""

    def __init__(self, app: Any, json_limit: int, upload_limit: int, ui_limit: int = MAX_UI_BYTES) -> None:
        self.app, self.json_limit, self.upload_limit, self.ui_limit = app, json_limit, upload_limit, ui_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/")
        if path in ("/v1/documents", "/gradio_api/upload"):
            limit = self.upload_limit
        else:
            limit = self.json_limit if path.startswith("/v1/") else self.ui_limit
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await error_response(413, f"The request body is over the limit of {limit / 1e6:g} MB.")(
                scope, receive, send)
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:  # an HTTPException: FastAPI re-raises it while reading a body, others become 400
                raise StarletteHTTPException(413, f"The request body is over the limit of {limit / 1e6:g} MB.")
            return message

        await self.app(scope, counted, send)


class KeyGate:
    """ASGI middleware: a /v1 request without the API key (when one is set), or with a wrong key or login, is
    refused with 401 (429 after too many wrong guesses, see `admit`) before its body is read. FastAPI reads
    and parses a body before a route's dependencies run, so `api_auth` alone would read a 400 MB upload, or
    answer 400 to malformed JSON, before saying the key is missing."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.state = app, state  # the app's state: `api_key` is read there, as `api_auth` reads it

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/") or _page_image(scope):
            return await self.app(scope, receive, send)
        authorization = next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"authorization"), "")
        try:
            admit(authorization, client_address(scope), self.state)
        except ApiError as e:
            return await error_response(e.status, e.message, e.type, e.headers, e.code)(scope, receive, send)
        await self.app(scope, receive, send)


class BrowserGuard:
    """ASGI middleware against what a web page open in a user's browser could do to `qa serve`.

    - A request from another site that changes something is refused (403): a form posting files to
      /v1/documents needs no CORS preflight, so any page could add or replace documents in a server
      without an API key. Browsers say where a request comes from in `Sec-Fetch-Site` (older ones in
      `Origin`); programs (curl, SDKs) send neither and are let through.
    - Served on a loopback address, only requests addressed to a loopback name are answered (403
      otherwise): a site whose name an attacker re-points at 127.0.0.1 (DNS rebinding) would otherwise
      read the API and the UI as its own origin.
    - No page of another site may show qa's pages in a frame (clickjacking: the UI's own "Remove" and
      "Delete" buttons clicked through a decoy page).
    """

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: Any, hosts: frozenset[str] | None) -> None:
        self.app, self.hosts = app, hosts  # the names a loopback server answers to; None: any (not loopback)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if scope["type"] == "http":
            send = partial(_unframed, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = headers.get("host")
        if self.hosts is not None and host is not None and _hostname(host) not in self.hosts:
            why = (f"This qa serve listens on a loopback address and answers only requests addressed to it "
                   f"(localhost, 127.0.0.1, [::1]), not to {host!r}. To reach it from other machines, serve it "
                   "on their network with --host (and --auth, --api-key).")
        elif (scope["type"] == "websocket" or scope["method"] not in self.SAFE) and _cross_site(headers):
            why = ("A request from another site's page is refused: it could change what qa holds without you "
                   "knowing. Use the chat UI's own page, or a program (curl, an OpenAI client).")
        else:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        if scope["path"].startswith("/v1/"):
            return await error_response(403, why)(scope, receive, send)
        from starlette.responses import PlainTextResponse

        await PlainTextResponse(why, status_code=403)(scope, receive, send)


async def _unframed(send: Any, message: dict[str, Any]) -> None:
    """Send a response that only qa's own pages may show in a frame."""
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", []), (b"x-frame-options", b"SAMEORIGIN"),
                              (b"content-security-policy", b"frame-ancestors 'self'")]
    await send(message)


def _hostname(host: str) -> str:
    """The name of a Host header ("127.0.0.1:7860" -> "127.0.0.1", "[::1]:80" -> "::1"), "" if unreadable."""
    try:
        return (urlsplit(f"//{host}").hostname or "").rstrip(".")
    except ValueError:
        return ""


def _cross_site(headers: dict[str, str]) -> bool:
    """Whether a browser sent this request from another site's page."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")  # "none": typed in the address bar, a bookmark
    origin = headers.get("origin")
    if origin is None:
        return False  # not from a page: a program, or an old browser's same-origin GET

    return origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


class HeadAsGet:
    """ASGI middleware: HEAD on a GET route of /v1 is answered as that GET without its body, as HTTP has it
    (health checkers and monitors probe with HEAD); FastAPI routes only the methods a route declares."""

    def __init__(self, app: Any, routes: list[tuple[re.Pattern[str], set[str]]]) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope["method"] != "HEAD" or not scope["path"].startswith("/v1/")
                or not any("GET" in methods and pattern.fullmatch(scope["path"]) for pattern, methods in self.routes)):
            return await self.app(scope, receive, send)

        async def headers_only(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":  # the GET's status and headers (its length too), no body
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


_PAGE_PATH = re.compile(r"/v1/documents/.+/pages/[^/]+\.png")


def _page_image(scope: dict[str, Any]) -> bool:
    """A GET of a page image: its route takes a signed URL (the UI's <img>) instead of the key, or the key."""
    return scope["method"] == "GET" and _PAGE_PATH.fullmatch(scope["path"]) is not None


def _browser_limit(max_file_mb: float) -> int:
    """Gradio's own upload limit, in bytes: QA_MAX_FILE_MB in the MiB its message counts in ("maximum allowed
    size of 100.0 Mb", where 100 * 1e6 bytes read "95.4 Mb"). A file between the two is refused by qa, whose
    message names QA_MAX_FILE_MB."""
    return int(max_file_mb * 1024 * 1024)


# --- what routes work with ------------------------------------------------------------------------
@dataclass
class Engine:
    """The one engine of the process, shared by the API and the UI."""

    assistant: Assistant
    writer: Writer

    def ready(self) -> Assistant:
        """The assistant with its parts built (raises IndexMissingError when there is no index yet)."""
        prepare(self.assistant, self.writer.parts_lock)
        return self.assistant


def engine(request: Request) -> Engine:
    """The engine of the app serving this request (a FastAPI dependency)."""
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(engine)]  # a route's parameter `e: EngineDep` receives the engine


UNAUTHORIZED = ("Missing or wrong API key: send the header 'Authorization: Bearer <QA_API_KEY>' (or, where the "
                "UI has logins, a login's own user and password as HTTP Basic auth).")
BAD_LOGIN = "Wrong user or password (HTTP Basic auth with one of the UI's logins)."


def login(authorization: str, users: dict[str, str]) -> str | None:
    """The UI login an `Authorization: Basic ...` header names with its right password; None if the header is
    not Basic auth; "" if it is, but not a login of this server."""
    import base64
    import binascii

    from .users import check

    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(given.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return user if users and check(users, user, password) else ""


def key_ok(authorization: str, key: bytes) -> bool:
    """Whether an `Authorization` header carries `Bearer <key>` (compared in constant time)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key)


def basic_user(authorization: str) -> str | None:
    """The user name an `Authorization: Basic ...` header gives, right password or not; None if it gives none."""
    import base64
    import binascii

    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(given.strip(), validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None


def admit(authorization: str, address: str, state: Any) -> None:
    """Raise ApiError 401 for a request whose `Authorization` header does not let it in: it needs `Bearer <key>`
    when there is an API key, or a UI login as HTTP Basic auth; a Basic header that names no login is refused
    even without a key. A wrong key or login counts against the client's address (and the Basic user name):
    after too many, 429 with Retry-After, the header not even checked (`qa.serving.limits`)."""
    key: bytes | None = state.api_key
    if not authorization:
        if key is not None:
            raise ApiError(401, UNAUTHORIZED)
        return
    try:
        with state.login_limiter.attempt(keys(address, basic_user(authorization))) as outcome:
            who = login(authorization, state.users)
            if who == "" or (who is None and key is not None and not key_ok(authorization, key)):
                outcome.append(False)
                raise ApiError(401, BAD_LOGIN if who == "" else UNAUTHORIZED)
            if who or key is not None:  # a key or login checked: a success (any header passes an open API)
                outcome.append(True)
    except TooManyAttempts as e:
        raise ApiError(429, str(e), "too_many_attempts", headers={"Retry-After": str(e.retry_after)}) from None


def api_auth(request: Request) -> None:
    """Refuse a request `admit` refuses (also checked by `KeyGate`, before the body is read)."""
    admit(request.headers.get("authorization", ""), client_address(request.scope), request.app.state)


# --- request and response models: mirrors of qa.types, whose to_dict() builds every answer's JSON ----
class AskRequest(BaseModel):
    """`POST /v1/ask`."""

    # Strict types: `"stream": "yes"`, `"top_k": true` or `"5"` are refused (422), not read as what they might mean.
    model_config = ConfigDict(extra="forbid")

    question: StrictStr = Field(max_length=MAX_QUESTION_CHARS, description="The question.")
    top_k: StrictInt | None = Field(None, ge=TOP_K[0], le=TOP_K[1],
                                    description="Passages to retrieve (default QA_TOP_K).")
    history: list[StrictStr] = Field([], max_length=100_000, description="Earlier questions of the conversation, "
                                     f"oldest first (the last {MAX_HISTORY} are used; the body stays under 1 MB).")
    stream: StrictBool = Field(False, description="Send Server-Sent Events: `partial` answers, then the `answer`.")
    sources: list[StrictStr] | None = Field(None, max_length=1000, description="Answer only from the documents "
                                            "these paths, folders or globs name (as `qa ask --source`); default all.")
    conversation_id: StrictStr | None = Field(
        None, max_length=100, description="Ask in this saved conversation (its stored questions are the history, "
        "`history` is ignored) or 'new' to start one; the answer then carries `conversation_id`.")
    # Added by later branches (kept optional so older clients keep working): sources, conversation_id.


class CitationOut(BaseModel):
    """One citation as `qa ask --json` prints it: `text == document_text[start:end]`."""

    model_config = ConfigDict(extra="allow")

    id: int
    source: str
    start: int
    end: int
    text: str
    score: float
    verified: bool


class AnswerOut(BaseModel):
    """The object `qa ask --json` prints (`Answer.to_dict()`)."""

    model_config = ConfigDict(extra="allow")

    question: str
    answer: str
    answered: bool
    citations: list[CitationOut]
    verified_sentences: int
    total_sentences: int


class StatusOut(BaseModel):
    """What `qa status` shows."""

    model_config = ConfigDict(extra="allow")

    index_dir: str
    documents: int
    chunks: int
    embed_model: str
    size_bytes: int
    backend: str
    chroma_url: str | None = None
    uploads: list[dict[str, Any]] = Field([], description="Upload jobs queued or being indexed, in order.")


# --- /v1/status ---------------------------------------------------------------------------------------
status_router = APIRouter(tags=["index"])


@status_router.get("/status", response_model=StatusOut, summary="What the index holds")
def get_status(e: EngineDep) -> JSONResponse:
    from dataclasses import asdict

    body = asdict(e.assistant.status(missing_ok=True))  # nothing indexed yet: empty (a first upload may be on its way)
    body["uploads"] = [j.to_dict() for j in e.writer.jobs()]
    return JSONResponse(body)


# --- /v1/ask ----------------------------------------------------------------------------------------
ask_router = APIRouter(tags=["questions"])


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@ask_router.post("/ask", response_model=AnswerOut, summary="Answer a question with cited passages",
                 responses={200: {"description": "The answer, or with `stream` an event stream of "
                                                 "`partial` answers, then `answer` (or `error`)."}})
def ask(body: AskRequest, e: EngineDep, request: Request) -> Any:
    if not body.question.strip():
        raise ApiError(422, 'The question is empty: send {"question": "..."}.')
    a = e.ready()
    extra: dict[str, Any] = {}  # conversation_id (and a warning if the turn could not be saved)
    if body.conversation_id is not None:
        from .api_chats import conversation_answers

        # Metered inside the conversation: an answer its client leaves is finished in the background, in turn too.
        answers, extra = conversation_answers(a, request, body.conversation_id, body.question,
                                              pace=partial(metered, assistant=a, writer=e.writer), top_k=body.top_k,
                                              sources=body.sources)
    else:
        answers = metered(a.stream(body.question, top_k=body.top_k, history=body.history[-MAX_HISTORY:],
                                   sources=body.sources), a, e.writer)
    answers = http_answers(answers)
    if not body.stream:
        *_, final = answers
        return JSONResponse({**final.to_dict(), **extra})
    first = next(answers)  # errors before the first answer still get their status code

    def events() -> Generator[str, None, None]:
        last = first
        try:
            yield _sse("partial", {**first.to_dict(), **extra})
            for last in answers:
                yield _sse("partial", {**last.to_dict(), **extra})
        except QAError as err:
            yield _sse("error", error_body(status_of(err), for_http(str(err))))
            return
        finally:  # also when the client left: a conversation's answer goes on in the background from here
            answers.close()
        yield _sse("answer", {**last.to_dict(), **extra})

    return StreamingResponse(closing(events()), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def closing(events: Generator[str, None, None]) -> AsyncIterator[str]:
    """A response's event stream, computed in worker threads, closed as soon as the response ends. Starlette
    leaves a stream its client left as it is, held by a reference cycle until the garbage collector's next
    round: until then an answer in a conversation stood still instead of being finished in the background."""
    from starlette.concurrency import iterate_in_threadpool

    try:
        async for event in iterate_in_threadpool(events):
            yield event
    finally:
        events.close()


# --- /v1/documents -----------------------------------------------------------------------------------
documents_router = APIRouter(tags=["documents"])


@documents_router.get("/documents", summary="The indexed documents (the records of `qa docs --json`)")
def list_documents(e: EngineDep) -> JSONResponse:
    try:
        docs = e.assistant.documents()
    except IndexMissingError:  # nothing indexed yet
        docs = []
    return JSONResponse({"documents": [d.to_dict() for d in docs]})


@documents_router.post(
    "/documents", summary="Add documents (multipart field `files`, one or many)",
    responses={200: {"description": "The job, finished: per-file `results` (added, updated, unchanged, failed)."},
               202: {"description": "With `wait=false`, or still running after the wait: the job to poll."}})
def add_documents(files: Annotated[list[UploadFile], File(description="The files to index.")], e: EngineDep,
                  wait: Annotated[bool, Query(description="Wait until indexed (else 202 and the job).")] = True,
                  ) -> JSONResponse:
    from .uploads import discard, stage, uploads_dir

    if not files:
        raise ApiError(400, "No files: send them as multipart/form-data in the field 'files'.")
    if len(files) > MAX_FILES:
        raise ApiError(413, f"{len(files)} files in one request; send at most {MAX_FILES} at a time.")
    e.writer.check_room()  # before saving anything
    # Saved apart (all or nothing) and moved into the library when the writer indexes them.
    staged = stage([(f.filename or "upload", f.file) for f in files], uploads_dir(e.assistant),
                   e.assistant.settings.max_file_mb)
    if not staged.files:  # every file over QA_MAX_FILE_MB (with others, each is a failed result)
        discard(staged)
        raise ApiError(413, "; ".join(f"{r.path}: {r.reason}" for r in staged.refused))
    job = e.writer.submit(staged)
    if wait:
        job = e.writer.wait(job.id, timeout=WAIT_SECONDS)
    return JSONResponse(job.to_dict(), status_code=200 if job.finished else 202)


@documents_router.get("/jobs/{job_id}", summary="An upload job: state, queue position, per-file results")
def get_job(job_id: str, e: EngineDep) -> JSONResponse:
    job = e.writer.job(job_id)
    if job is None:
        raise ApiError(404, f"No upload job {job_id!r} (finished jobs are kept for a while, then forgotten).")
    return JSONResponse(job.to_dict())


# --- /v1/documents/{source}/pages/{n}.png: a PDF page or image with the cited words highlighted -----------
pages_router = APIRouter(tags=["documents"])  # included without api_auth: a signed URL needs no key


def _page_sig(key: bytes, source: str, page: int, start: int | None, end: int | None, crop: bool) -> str:
    return hmac.new(key, json.dumps([source, page, start, end, bool(crop)]).encode(), "sha256").hexdigest()[:32]


def page_url(key: bytes, source: str, page: int, start: int | None = None, end: int | None = None,
             crop: bool = False) -> str:
    """The URL of a page image, signed with the app's key: the UI's <img> fetches it without the API key,
    and the signature opens that one image only."""
    from urllib.parse import quote, urlencode

    query: dict[str, Any] = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    if crop:
        query["crop"] = 1
    query["sig"] = _page_sig(key, source, page, start, end, crop)
    return f"/v1/documents/{quote(source, safe='')}/pages/{page}.png?{urlencode(query)}"


@pages_router.get(
    "/documents/{source:path}/pages/{page:int}.png", summary="A page of a PDF or image, cited words highlighted",
    response_class=Response, responses={200: {"content": {"image/png": {}}, "description": "The page as PNG."}})
def page_png(source: str, page: int, request: Request, e: EngineDep,
             start: Annotated[int | None, Query(ge=0, description="Start of the span to highlight.")] = None,
             end: Annotated[int | None, Query(ge=0, description="End of the span to highlight.")] = None,
             crop: Annotated[bool, Query(description="Only the highlighted words and a margin.")] = False,
             sig: Annotated[str | None, Query(description="Signature of a URL the UI made.")] = None) -> Response:
    if not (sig and hmac.compare_digest(sig, _page_sig(request.app.state.page_key, source, page, start, end, crop))):
        api_auth(request)
    if (start is None) != (end is None) or (start is not None and end is not None and start >= end):
        raise ApiError(422, f"start={start}, end={end} is not a span: give both, start before end (a citation's "
                            "start and end), or neither for the plain page.")
    a = e.ready()
    try:
        png = a.page_image(source, page, start, end, crop=crop)
    except IndexMissingError:
        raise
    except QAError as err:
        raise ApiError(404, str(err)) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

@documents_router.delete(
    "/documents/{source:path}", summary="Remove documents: a source as listed (URL-encoded), or a folder or glob",
    responses={200: {"description": "`removed` sources, their `chunks`, and `uploads_deleted` files."},
               404: {"description": "No indexed document matches; nothing was removed."},
               429: {"description": "An ingest is writing to the index; try again when it is done."}})
def remove_documents(source: str, e: EngineDep) -> JSONResponse:
    from dataclasses import asdict

    from ..library import select

    try:
        indexed = [d.source for d in e.assistant.documents()]
    except IndexMissingError:  # nothing indexed yet: nothing matches
        indexed = []
    if select([source], indexed)[1]:
        raise ApiError(404, f"No indexed document matches {source}; nothing was removed. "
                            "GET /v1/documents lists them.")
    return JSONResponse(asdict(e.assistant.remove(source)))


# Each router is included under /v1 behind api_auth; add new ones at the end.
ROUTERS: list[APIRouter] = [
    status_router,
    ask_router,
    documents_router,
]


# --- the app ----------------------------------------------------------------------------------------
def create_app(assistant: Assistant, api_key: str | None = None, auth: str | None = None,
               writer: Writer | None = None, users_file: str | Path | None = None, lazy_ui: bool = False,
               host: str | None = None) -> Any:
    """The FastAPI app: the HTTP API under /v1 (docs at /docs) and the chat UI mounted at /.

    With `lazy_ui` the app answers before the UI is built: `/` shows a starting page until then
    (qa/serving/ui_mount.py); `qa serve` starts that way. `host` is the address it is served on: on a
    loopback one, requests addressed to another name are refused (see `BrowserGuard`)."""
    import asyncio

    from .api_chats import API_USER
    from .api_chats import router as chats_router
    from .api_docs import add_docs
    from .limits import LOGIN_MESSAGE, LoginLimiter, RememberClient, ui_login
    from .openai_api import router as openai_router
    from .ui_mount import LazyUI
    from .users import parse_users

    if api_key is None and assistant.settings.api_key is not None:
        api_key = assistant.settings.api_key.get_secret_value()
    users = parse_users(auth, users_file)  # the UI's logins: `user:pw,user2:pw2` and/or a users file
    writer = writer or Writer(assistant)
    lazy = LazyUI() if lazy_ui else None

    def mount_ui(parent: Any) -> Any:
        """`parent` with the Gradio UI mounted at / (imports Gradio: 2-3 s)."""
        import gradio as gr

        from .ui import _theme, build_app
        from .ui_assets import CSS, HEAD

        blocks = build_app(assistant, writer, page_url=partial(page_url, app.state.page_key))
        blocks.queue(default_concurrency_limit=None)
        # Gradio checks that a file an event receives was uploaded (is in its upload folder) only for a Blocks
        # that was launched; mounted, it copied any path a crafted request named ("/srv/users.txt") into the
        # upload, and qa indexed it. Marked launched, the check applies.
        blocks.has_launched = True
        return gr.mount_gradio_app(
            parent, blocks, path="/", auth=ui_login(users, app.state.login_limiter) if users else None,
            auth_message=LOGIN_MESSAGE, css=CSS, head=HEAD, theme=_theme(),
            max_file_size=_browser_limit(assistant.settings.max_file_mb), footer_links=[], run_history=False,
            show_error=False, ssr_mode=False, enable_monitoring=False, mcp_server=False)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ui = None
        if lazy is not None:
            ui = asyncio.create_task(lazy.run(lambda: mount_ui(FastAPI(docs_url=None, redoc_url=None,
                                                                        openapi_url=None))))
        yield
        if ui is not None:
            lazy.stop()
            await ui
        writer.close()  # refuse new uploads; an ingest cut short is repaired by the next one

    app = FastAPI(title="qa", summary="Answers from your documents, every sentence cited.", version="1",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    add_docs(app)  # /docs with Swagger UI's files served from here: FastAPI's loads them from a CDN
    app.state.engine = Engine(assistant, writer)
    app.state.api_key = api_key.encode() if api_key else None
    app.state.api_user = API_USER if users else ""  # whose conversations the API sees (qa/serving/api_chats.py)
    app.state.users = users  # a login's own user and password (HTTP Basic) acts as that login over the API
    app.state.login_limiter = LoginLimiter()  # wrong guesses at the UI's logins and the API key (qa/serving/limits.py)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, json_limit=MAX_JSON_BYTES,
                       upload_limit=int(assistant.settings.max_file_mb * 1e6 * MAX_FILES) + 1_000_000)
    app.add_middleware(KeyGate, state=app.state)  # outside BodyLimit: no key, no word on the body's size
    app.add_middleware(RememberClient)  # the UI's login check counts wrong guesses per client address
    routes = route_patterns([*ROUTERS, openai_router, chats_router, pages_router], "/v1")
    app.add_middleware(HeadAsGet, routes=routes)  # outside KeyGate: the key gate and the routes see the GET
    from .ui import _LOOPBACK

    app.add_middleware(BrowserGuard, hosts=frozenset(_LOOPBACK) if host in _LOOPBACK else None)  # outermost
    for router in [*ROUTERS, openai_router, chats_router]:
        app.include_router(router, prefix="/v1", dependencies=[Depends(api_auth)])
    app.state.page_key = os.urandom(32)
    app.include_router(pages_router, prefix="/v1")  # checks the signature, else the API key, itself

    @app.api_route("/v1/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                   include_in_schema=False)
    def _unknown(rest: str, request: Request) -> JSONResponse:
        path = f"/v1/{rest}"
        methods = [methods for pattern, methods in routes if pattern.fullmatch(path)]
        # A route of this method whose parameter did not convert (page -1 of a document) is not found either.
        allowed = sorted(set().union(*methods)) if not any(request.method in m for m in methods) else []
        if allowed:
            return error_response(405, f"{request.method} is not allowed on {path}; use {' or '.join(allowed)} "
                                       "(see /docs).", headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, f"No route {path}; see /docs for the API.")

    if lazy is None:
        app = mount_ui(app)
        app.state.ui_settled = threading.Event()
        app.state.ui_settled.set()
        return app
    app.state.ui_settled = lazy.settled
    app.mount("/", lazy)
    return app


def route_patterns(routers: list[APIRouter], prefix: str) -> list[tuple[re.Pattern[str], set[str]]]:
    """(path pattern, methods) of every route: a `{name:path}` parameter matches any text, slashes too, any
    other parameter one path segment, so `/v1/models/a/b` is no model's path."""
    out = []
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                parts = re.split(r"\{\w+(:\w+)?\}", prefix + route.path)
                pattern = "".join(re.escape(part) if i % 2 == 0 else ".+" if part == ":path" else "[^/]+"
                                  for i, part in enumerate(parts))
                methods = set(route.methods)
                out.append((re.compile(pattern), methods | {"HEAD"} if "GET" in methods else methods))  # HeadAsGet
    return out


def exposure_warnings(host: str, credentials: tuple[str, str] | None, api_key: bool) -> str:
    """The loud warnings for what other machines can reach without a login or key, else ""."""
    from .ui import _LOOPBACK, exposure_warning

    text = exposure_warning(host, credentials)
    if not api_key and host not in _LOOPBACK:
        text += (f"\n*** WARNING: serving the HTTP API (/v1) on {host} with no API key: anyone who can reach "
                 "this machine can ask about your documents and add files. Set QA_API_KEY (or --api-key). ***\n")
    return text


def budget_threads() -> None:
    """One torch thread per question and for the writer: concurrent work then shares the cores."""
    # A question embeds one short text, which never gains from a second thread; questions and the
    # writer running side by side each take a core instead. Must be set before torch is imported.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def serve(assistant: Assistant, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
          api_key: str | None = None) -> None:
    """Run the UI and the API until interrupted; `auth` (or QA_AUTH) is the UI's `user:pw[,user2:pw2]`, plus QA_USERS_FILE."""
    import uvicorn

    from .users import parse_users

    budget_threads()
    auth = auth or os.environ.get("QA_AUTH")
    users_file = os.environ.get("QA_USERS_FILE")
    users = parse_users(auth, users_file)
    if api_key is None and assistant.settings.api_key is not None:
        api_key = assistant.settings.api_key.get_secret_value()
    warning = exposure_warnings(host, next(iter(users.items())) if users else None, bool(api_key))
    if warning:
        print(warning, file=sys.stderr)
    app = create_app(assistant, api_key=api_key, auth=auth, users_file=users_file, lazy_ui=True, host=host)

    def warm() -> None:  # load the models now rather than at the first question
        # After the UI is built: both are mostly Python on one interpreter lock, and the page comes first.
        app.state.ui_settled.wait(60)
        try:
            app.state.engine.ready()
        except QAError:
            pass  # no index yet: the status says so
        resume_uploads(assistant, app.state.engine.writer)

    threading.Thread(target=warm, name="qa-warm", daemon=True).start()
    print(f"qa: chat UI on http://{host}:{port}/ · API on http://{host}:{port}/v1 (docs /docs)", file=sys.stderr,
          flush=True)
    logging.getLogger("uvicorn.error").addFilter(_quiet_stream_ends)
    with _serving(Path(assistant.settings.index_dir).absolute()):  # restore and --rebuild wait for it to stop
        # h11 rather than httptools: httptools reads request headers of any size (200 MB of them took 200 MB),
        # h11 refuses those over its limit before anything else is read.
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, http="h11",
                    h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_graceful_shutdown=5)


def _serving(index: Path) -> contextlib.AbstractContextManager[None]:
    """The claim `qa serve` holds on its index (`qa.backup.serving`); none on a damaged one, which nothing
    writes to (not even a lock file)."""
    from ..backup import serving
    from ..integrity import precheck

    try:
        precheck(index)
    except QAError:
        return contextlib.nullcontext()
    return serving(index)


def resume_uploads(assistant: Assistant, writer: Writer) -> Job | None:
    """Queue the uploads a stopped server had accepted but not indexed: those it had queued (still staged,
    `uploads.adopt` puts them in place) and those its job had put in place (`Assistant.pending_uploads`).
    Files of this server's own jobs, uploaded since it started, are theirs to index."""
    from .uploads import adopt, uploads_dir

    try:
        theirs = {p for j in writer.jobs() for p in j.files}
        adopt(uploads_dir(assistant))
        pending = assistant.pending_uploads()
        theirs |= {p for j in writer.jobs() for p in j.files}
        pending = [p for p in pending if str(p) not in theirs]
        if not pending:
            return None
        job = writer.submit(pending)
    except QAError as e:
        print(f"qa: uploads not indexed by a stopped server are left as they are: {e}", file=sys.stderr)
        return None
    names = ", ".join(p.name for p in pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
    print(f"qa: indexing {len(pending)} upload(s) a stopped server had not indexed: {names}", file=sys.stderr,
          flush=True)
    return job


def _stream_cut(e: BaseException | None) -> bool:
    """An open stream ended by the client or by shutdown, not a fault of the server: a browser tab's event
    stream cancelled when `qa serve` stops (after it says it cancels it), or an error Gradio raises inside
    a stream it already started (a tab from before a restart asking for its old session)."""
    return isinstance(e, asyncio.CancelledError) or (
        isinstance(e, RuntimeError) and "response already started" in str(e)
        and isinstance(e.__cause__, StarletteHTTPException))


def _quiet_stream_ends(record: logging.LogRecord) -> bool:
    """uvicorn's "Exception in ASGI application" with its traceback, for a cut stream: dropped."""
    return not (record.exc_info and _stream_cut(record.exc_info[1]))
