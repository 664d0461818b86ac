"""The OpenAI-compatible endpoint: `GET /v1/models`, `POST /v1/chat/completions`, with qa's citations.

The answer, `[n]` markers included, is `choices[0].message.content`. Its citations travel as OpenAI's
`url_citation` annotations, one per citation in order of `[n]`: `start_index`/`end_index` locate the
marker in the content, `url` is the document's `file://` URL with an RFC 5147 `#char=start,end`
fragment, and `url_citation.qa` is the citation object exactly as `qa ask --json` prints it. In a
stream, content deltas come first, then one chunk whose `delta.annotations` holds all annotations,
then the finish chunk and `[DONE]` (see /work/shared/notes/citations-over-openai.md).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, StrictInt, StrictStr, Tag

from ..errors import QAError
from ..types import Answer
from .http_errors import ApiError, error_body, for_http, http_answers, invalid_response, status_of
from .server import MAX_HISTORY, EngineDep
from .writer import metered

MODEL = "qa"
CREATED = 1_700_000_000  # a fixed "created" for the one model
USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}  # qa does not count tokens
# A chat front end sends the whole conversation each time; the 1 MB body limit binds long before this.
MAX_MESSAGES = 100_000
UNKNOWN_MODEL = "The model {!r} does not exist; this server has the model 'qa'."


class OpenAIRoute(APIRoute):
    """A route that answers an invalid request 400, as OpenAI does (an OpenAI client raises BadRequestError);
    qa's own routes answer 422."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as e:
                return invalid_response(request, e, status=400)

        return handle


router = APIRouter(tags=["openai"], route_class=OpenAIRoute)


# Strict types: `"stream": "yes"`, `"n": 1.0` or a part whose text is an object are refused (400), not read as
# what they might mean.
class ContentPart(BaseModel):
    """A part of a message's content: of a text part (`text`, `input_text`) the text is read, other parts are
    skipped."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr
    text: StrictStr | None = None


def _content_kind(v: Any) -> str | None:
    return "text" if isinstance(v, str) else "parts" if isinstance(v, list) else None


# Tagged, so that an error names the field ("messages.0.content.parts.0.text"), not pydantic's union members.
Content = Annotated[Annotated[StrictStr, Tag("text")] | Annotated[list[ContentPart], Tag("parts")], Discriminator(
    _content_kind, custom_error_type="content_type",
    custom_error_message="Input should be a string, a list of content parts or null")]


class ChatMessage(BaseModel):
    """One OpenAI chat message; `content` is a string or a list of parts of which text parts are read."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Content | None = None


class ChatRequest(BaseModel):
    """`POST /v1/chat/completions`: the last user message is the question, earlier user turns the history."""

    # temperature, max_tokens, stop... are accepted and ignored (an answer is its cited sentences); n other than
    # 1 and a required tool_choice are refused.
    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(MODEL, description="Always 'qa'.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES, description="The conversation; "
                                        f"its last user message is the question, the {MAX_HISTORY} before it "
                                        "its history.")
    stream: StrictBool = False
    n: StrictInt | None = Field(None, description="Answers to give: qa gives one.")


def text_of(m: ChatMessage) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(m.content, str):
        return m.content
    return "\n".join(p.text or "" for p in m.content or () if p.type in ("text", "input_text"))


def annotations(ans: Answer) -> list[dict[str, Any]]:
    """One url_citation per citation; `qa` is the citation of `Answer.to_dict()`, the one JSON of a citation.

    The markers are found in order, each after the one before: an answer numbers its citations in order
    of first use, and a `[2]` quoted from a document before the answer's `[1]` is not the answer's."""
    out, after = [], 0
    for c in ans.to_dict()["citations"]:
        marker = f"[{c['id']}]"
        at = ans.answer.find(marker, after)
        start, end = (at, at + len(marker)) if at >= 0 else (len(ans.answer), len(ans.answer))
        after = end
        path = Path(c["source"])
        out.append({"type": "url_citation", "url_citation": {
            "url": f"{path.absolute().as_uri()}#char={c['start']},{c['end']}", "title": path.name,
            "start_index": start, "end_index": end, "qa": c}})
    return out


def _question(body: ChatRequest) -> tuple[str, list[str]]:
    if body.model != MODEL:
        raise ApiError(404, UNKNOWN_MODEL.format(body.model), "invalid_request_error", "model_not_found")
    if body.n not in (None, 1):
        raise ApiError(400, f"n={body.n}: qa gives one answer per request; leave n out or send 1.", param="n")
    choice = (body.model_extra or {}).get("tool_choice")
    if choice not in (None, "none", "auto"):
        raise ApiError(400, "qa answers from your documents and calls no tools; leave tool_choice out "
                            "(or send 'auto' or 'none').", param="tool_choice")
    users = [text_of(m) for m in body.messages if m.role == "user"]
    if not users or not users[-1].strip():
        raise ApiError(400, "No question: the last user message is the question and it is empty or missing.",
                       param="messages")
    return users[-1], users[:-1][-MAX_HISTORY:]  # the recent questions of a long chat


@router.get("/models", summary="The one model: qa")
def list_models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "qa"}]}


@router.get("/models/{model_id}", summary="The model qa")
def get_model(model_id: str) -> dict[str, Any]:
    if model_id != MODEL:
        raise ApiError(404, UNKNOWN_MODEL.format(model_id), "invalid_request_error", "model_not_found")
    return {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "qa"}


@router.post("/chat/completions", summary="OpenAI-compatible chat: the cited answer, citations as annotations")
def chat_completions(body: ChatRequest, e: EngineDep) -> Any:
    question, history = _question(body)
    from ..assistant import MAX_QUESTION_CHARS

    if len(question) > MAX_QUESTION_CHARS:
        raise ApiError(400, f"The question has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}.",
                       param="messages")
    a = e.ready()
    answers = http_answers(metered(a.stream(question, history=history), a, e.writer))
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if not body.stream:
        *_, final = answers
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
                "role": "assistant", "content": final.answer, "refusal": None, "annotations": annotations(final)}}],
            "usage": USAGE})
    options = (body.model_extra or {}).get("stream_options")
    usage = isinstance(options, dict) and bool(options.get("include_usage"))
    first = next(answers)  # errors before the first answer still get their status code

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def events() -> Iterator[str]:
        sent, last = "", first
        yield chunk({"role": "assistant", "content": ""})
        try:
            for last in _chain(first, answers):
                # The answer grows sentence by sentence; a generative draft that rewrites earlier text is
                # held back, and only text that extends what was sent goes out.
                if last.answer.startswith(sent) and len(last.answer) > len(sent):
                    yield chunk({"content": last.answer[len(sent):]})
                    sent = last.answer
        except QAError as err:
            yield f"data: {json.dumps(error_body(status_of(err), for_http(str(err))))}\n\n"
            return
        if last.answer != sent and last.answer.startswith(sent):
            yield chunk({"content": last.answer[len(sent):]})
        if last.citations:
            yield chunk({"annotations": annotations(last)})
        yield chunk({}, "stop")
        if usage:  # as OpenAI sends it: a last chunk with no choices
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                    "choices": [], "usage": USAGE}
            yield f"data: {json.dumps(data)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _chain(first: Answer, rest: Iterator[Answer]) -> Iterator[Answer]:
    yield first
    yield from rest
