"""Errors of `qa serve`'s HTTP API: one JSON shape for every failure under /v1.

A route raises `ApiError` (or a `QAError`, mapped by `status_of`) and the handlers `install_error_handlers`
adds answer `{"error": {"message", "type", "param", "code"}}`, the shape of OpenAI's errors.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
from .writer import QueueFullError

if TYPE_CHECKING:
    from ..types import Answer

__all__ = ["ERROR_TYPES", "RETRY_AFTER_SECONDS", "ApiError", "error_body", "error_response", "for_http",
           "http_answers", "install_error_handlers", "invalid_response", "status_of", "stream_cut"]

RETRY_AFTER_SECONDS = 2  # the Retry-After of a 429 (the index is busy, the upload queue is full)
ERROR_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 422: "invalid", 429: "busy", 500: "server_error", 502: "backend_error",
               503: "no_index", 507: "disk_full"}


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


def install_error_handlers(app: FastAPI) -> None:
    """The handlers that give every failure the JSON error shape (and log a crash with its traceback)."""
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

        if stream_cut(e):  # the client's error (e.g. 404 for a stale session), inside a started stream
            print(f"qa serve: {request.method} {request.url.path}: {e.__cause__} after the stream started",
                  file=sys.stderr)
        else:
            print(f"qa serve: {request.method} {request.url.path} failed:", file=sys.stderr)
            traceback.print_exception(e, file=sys.stderr)
        return error_response(500, f"The server failed to handle this request ({type(e).__name__}: {e}); "
                                   "its log has the details.")


def stream_cut(e: BaseException | None) -> bool:
    """An open stream ended by the client or by shutdown, not a fault of the server: a browser tab's event
    stream cancelled when `qa serve` stops (after it says it cancels it), or an error Gradio raises inside
    a stream it already started (a tab from before a restart asking for its old session)."""
    return isinstance(e, asyncio.CancelledError) or (
        isinstance(e, RuntimeError) and "response already started" in str(e)
        and isinstance(e.__cause__, StarletteHTTPException))
