"""Who and what `qa serve` lets in: ASGI middlewares that refuse a request before it is read (too big, no
key, from another site's page) and the check of an API key or a UI login (`admit`, `api_auth`)."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from .http_errors import ApiError, error_response
from .limits import TooManyAttempts, client_address, keys

__all__ = ["BAD_LOGIN", "MAX_UI_BYTES", "UNAUTHORIZED", "BodyLimit", "BrowserGuard", "HeadAsGet", "KeyGate", "admit",
           "api_auth", "basic_user", "key_ok", "login"]

# A request of the chat UI (Gradio) other than an upload: a question carries the chat shown so far (each answer's
# HTML, some KB), so a long conversation's is a few MB. Gradio reads a body whole before it checks the login.
MAX_UI_BYTES = 16_000_000


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



UNAUTHORIZED = ("Missing or wrong API key: send the header 'Authorization: Bearer <QA_API_KEY>' (or, where the "
                "UI has logins, a login's own user and password as HTTP Basic auth).")
BAD_LOGIN = "Wrong user or password (HTTP Basic auth with one of the UI's logins)."


def _basic(authorization: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header; None if it is not Basic auth or cannot be read."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(given.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def login(authorization: str, users: dict[str, str]) -> str | None:
    """The UI login an `Authorization: Basic ...` header names with its right password; None if the header is
    not Basic auth; "" if it is, but not a login of this server."""
    from .users import check

    if authorization.partition(" ")[0].lower() != "basic":
        return None
    given = _basic(authorization)
    return given[0] if given and users and check(users, *given) else ""


def key_ok(authorization: str, key: bytes) -> bool:
    """Whether an `Authorization` header carries `Bearer <key>` (compared in constant time)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key)


def basic_user(authorization: str) -> str | None:
    """The user name an `Authorization: Basic ...` header gives, right password or not; None if it gives none."""
    given = _basic(authorization)
    return given[0] if given else None


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
