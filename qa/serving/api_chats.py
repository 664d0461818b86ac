"""HTTP routes for saved conversations: `GET/PATCH/DELETE /v1/conversations[/{id}]`, and `conversation_id` on `/v1/ask`.

Whose conversations: a request with a UI login's own user and password (HTTP Basic auth) acts as that
login, and sees exactly the conversations it sees in the UI. Otherwise the API has one identity, the
holder of `QA_API_KEY` (or anyone who can reach /v1 without a key). Without UI logins it is the same user
as the UI's, so both see the same conversations; with logins (QA_AUTH, QA_USERS_FILE) it is a user of its
own, "api", so a key holder never reads, renames or deletes a login's conversations, whatever id it is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..conversations import Pace
from ..errors import ConversationNotFoundError, ConversationStoreError
from .http_errors import ApiError, for_http
from .server import EngineDep

API_USER = "api"  # the API's user when the UI has logins
NEW = "new"  # conversation_id that starts a conversation

router = APIRouter(tags=["conversations"])


def api_user(request: Request) -> str:
    """The user the API acts as (see the module docstring)."""
    from .guards import login

    who = login(request.headers.get("authorization", ""), getattr(request.app.state, "users", {}))
    return who or getattr(request.app.state, "api_user", "")


def _conversation(assistant: Any, id: str | None, user: str) -> Any:
    try:
        return assistant.conversation(id, user)
    except ConversationNotFoundError as e:
        raise ApiError(404, for_http(str(e))) from None
    except ConversationStoreError as e:
        raise ApiError(503, str(e), "conversations_off") from None


def info_dict(c: Any) -> dict[str, Any]:
    """One conversation of a list."""
    return {"id": c.id, "title": c.title, "created": c.created, "updated": c.updated, "turns": c.turns}


def turn_dict(t: Any) -> dict[str, Any]:
    """A stored turn: its answer as `Answer.to_dict()` builds it, its stale citations, and its state ("done",
    "answering": the answer is still being written, "interrupted": it never completed)."""
    return {"n": t.n, "created": t.created, "backend": t.answer.backend, "scope": t.scope,
            "answer": t.answer.to_dict(), "stale": {str(k): v for k, v in t.stale.items()}, "state": t.state}


@router.get("/conversations", summary="Your saved conversations, latest first")
def list_conversations(request: Request, e: EngineDep,
                       q: Annotated[str, Query(description="Only those whose title, questions or answers "
                                                           "contain this.")] = "") -> JSONResponse:
    try:
        found = e.assistant.conversations(api_user(request), q)
    except ConversationStoreError as err:
        raise ApiError(503, str(err), "conversations_off") from None
    return JSONResponse({"conversations": [info_dict(c) for c in found]})


@router.get("/conversations/{id}", summary="One conversation: its turns (JSON) or its Markdown export",
            responses={200: {"content": {"text/markdown": {}}}})
def get_conversation(id: str, request: Request, e: EngineDep,
                     format: Annotated[Literal["json", "markdown"], Query(
                         description="`markdown`: the export with numbered citations and their exact text.")]
                     = "json") -> Response:
    conv = _conversation(e.assistant, id, api_user(request))
    if format == "markdown":
        return Response(conv.markdown(), media_type="text/markdown; charset=utf-8",
                        headers={"Content-Disposition": f'inline; filename="conversation-{conv.id}.md"'})
    turns = conv.turns
    return JSONResponse({**info_dict(conv.info), "turns": [turn_dict(t) for t in turns]})


class RenameRequest(BaseModel):
    """`PATCH /v1/conversations/{id}`."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200, description="The conversation's new title.")


@router.patch("/conversations/{id}", summary="Rename a conversation (as `qa chats rename`)")
def rename_conversation(id: str, body: RenameRequest, request: Request, e: EngineDep) -> JSONResponse:
    title = " ".join(body.title.split())
    if not title:
        raise ApiError(422, 'The title is empty: send {"title": "..."}.')
    conv = _conversation(e.assistant, id, api_user(request))
    conv.rename(title)
    return JSONResponse(info_dict(conv.info))  # read again: as stored now


@router.delete("/conversations/{id}", summary="Delete a conversation and its turns")
def delete_conversation(id: str, request: Request, e: EngineDep) -> JSONResponse:
    _conversation(e.assistant, id, api_user(request)).delete()
    return JSONResponse({"deleted": id})


def conversation_answers(assistant: Any, request: Request, conversation_id: str, question: str,
                         pace: Pace | None = None, **kw: Any) -> tuple[Iterator[Any], dict[str, Any]]:
    """`/v1/ask` in a conversation ("new" starts one): the answers, computed under `pace` (also those finished
    after the client left, see `Conversation.stream`), and what to add to the answer's JSON."""
    conv = _conversation(assistant, None if conversation_id == NEW else conversation_id, api_user(request))
    extra: dict[str, Any] = {"conversation_id": conv.id}

    def answers() -> Iterator[Any]:
        final, stream = None, None
        try:
            stream = conv.stream(question, pace, **kw)  # the question is stored now, its answer when complete
            for final in stream:
                yield final
        except ConversationStoreError as err:  # answered, but not saved: say so with the answer
            if final is None:
                raise ApiError(503, str(err), "conversations_off") from None
            extra.update(conversation_id=None, warning=str(err))
        finally:  # a client that left mid-stream: the engine finishes and stores the answer itself
            if stream is not None:
                stream.close()

    return answers(), extra
