"""`qa serve`: one ASGI app for people and programs: the chat UI at `/`, the HTTP API under `/v1`.

    app = create_app(assistant, api_key="...", auth="user:password")

Routes live in `APIRouter`s, one per section below; each route gets the engine from the request
(`engine(request)`: the assistant, the background writer) and raises `ApiError` (or a `QAError`,
mapped by `status_of`: `http_errors.py`) for the JSON error `{"error": {"message", "type", "param", "code"}}`. To add
routes, define a router (here or in a module of its own) and add it to `ROUTERS`: `create_app` includes
each one under `/v1` with the `api_auth` dependency, before the JSON 404 for unknown `/v1` paths and the
UI mount.
(`KeyGate` refuses a /v1 request without the key before FastAPI reads its body; `api_auth` stays on
every route all the same: `guards.py`, with the other middlewares `create_app` wraps the app in.)
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
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ..assistant import MAX_QUESTION_CHARS
from ..errors import IndexMissingError, QAError
from ..settings import bounds
from .guards import BodyLimit, BrowserGuard, HeadAsGet, KeyGate, api_auth
from .http_errors import (
    ApiError,
    error_body,
    error_response,
    for_http,
    http_answers,
    install_error_handlers,
    status_of,
    stream_cut,
)
from .writer import Job, Writer, metered, prepare

if TYPE_CHECKING:
    from ..assistant import Assistant

__all__ = ["ROUTERS", "Engine", "EngineDep", "create_app", "engine", "serve"]

MAX_JSON_BYTES = 1_000_000  # a question is at most 2,000 characters; history and options fit easily
MAX_HEADER_BYTES = 64 * 1024  # of a request's line and headers (nginx allows 32 KB, h11 16 KB by default)
MAX_FILES = 20  # files per upload request
MAX_HISTORY = 200  # earlier questions a question is asked with (the most recent, when a chat sends more)
TOP_K = bounds("top_k")  # what a question may ask for, as QA_TOP_K allows
WAIT_SECONDS = 3600.0  # how long `POST /v1/documents` waits for its job before answering 202 with the job


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
    install_error_handlers(app)
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

def _quiet_stream_ends(record: logging.LogRecord) -> bool:
    """uvicorn's "Exception in ASGI application" with its traceback, for a cut stream: dropped."""
    return not (record.exc_info and stream_cut(record.exc_info[1]))
