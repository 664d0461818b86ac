"""qa as LlamaIndex objects: a cited query engine, a retriever over the hybrid search, a chat engine.

`Assistant.as_query_engine()`, `.as_retriever()` and `.as_chat_engine()` return these; they answer
through the same `Assistant.stream()` as `ask()`, so answers and citations are the same. Each
cited passage becomes a source node whose metadata holds the exact citation (`source`, `start`,
`end`, `text`, `id`, `verified`, ...); the retrieved passages no citation points into follow,
flagged `cited: False`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from .errors import ConfigError
from .types import Answer, Citation, Passage

if TYPE_CHECKING:
    from .assistant import Assistant

__all__ = ["QAChatEngine", "QAQueryEngine", "QARetriever", "answer_nodes", "passage_node"]

# What an LLM downstream (e.g. a RetrieverQueryEngine's synthesizer) sees of a node besides its text.
_SHOWN_METADATA = ("source", "location")


def _plain(value: Any) -> Any:
    """A JSON-friendly copy: dataclasses (PDF boxes) as dicts, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _node(node_id: str, text: str, metadata: dict[str, Any], score: float) -> NodeWithScore:
    hidden = [k for k in metadata if k not in _SHOWN_METADATA]
    node = TextNode(id_=node_id, text=text, metadata=metadata,
                    excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=hidden)
    return NodeWithScore(node=node, score=score)


def passage_node(p: Passage, cited: bool = False) -> NodeWithScore:
    """A retrieved passage as a LlamaIndex node; its metadata says where the text sits in the document."""
    meta = {"source": p.source, "start": p.start, "end": p.end, "location": p.location, "cited": cited}
    for name in ("page", "boxes"):  # PDF positions, where the engine provides them
        if getattr(p, name, None) not in (None, ()):
            meta[name] = _plain(getattr(p, name))
    return _node(f"{p.source}:{p.start}-{p.end}", p.text, meta, p.score)


def citation_node(c: Citation, as_json: dict[str, Any]) -> NodeWithScore:
    """A cited passage: the node's text is the passage, its metadata the exact citation inside it."""
    meta = dict(as_json)  # the citation exactly as `qa ask --json` prints it
    for name in ("page", "boxes"):
        if name not in meta and getattr(c, name, None) not in (None, ()):
            meta[name] = _plain(getattr(c, name))
    meta.update(location=c.location, passage_start=c.passage_start, passage_end=c.passage_end, cited=True)
    return _node(f"{c.source}:{c.start}-{c.end}#{c.id}", c.passage or c.text, meta, c.score)


def answer_nodes(answer: Answer) -> list[NodeWithScore]:
    """Source nodes of an answer: its citations in marker order, then the related passages none cites."""
    cited = [citation_node(c, j) for c, j in zip(answer.citations, answer.to_dict()["citations"])]
    covered = {(c.source, c.passage_start, c.passage_end) for c in answer.citations}
    related = [passage_node(p) for p in answer.related if (p.source, p.start, p.end) not in covered]
    return cited + related


def _metadata(answer: Answer) -> dict[str, Any]:
    return {"answered": answer.answered, "backend": answer.backend, "seconds": answer.seconds,
            "qa": answer.to_dict()}


def _patterns(sources: Sequence[str] | str | None) -> list[str] | None:
    """`sources` as a list of patterns: one string is one pattern (as for ask()), not one per character."""
    from .library import strings

    return None if sources is None else strings(sources)


def _scoped(fn: Callable[..., Any], sources: Sequence[str] | None) -> dict[str, Any]:
    """The `sources=` keyword for an engine call, or an error when this engine cannot scope yet."""
    if sources is None:
        return {}
    if "sources" not in inspect.signature(fn).parameters:
        raise ConfigError("This version of qa cannot limit answers to some documents (sources=...); "
                          "leave sources unset to search every indexed document.")
    return {"sources": list(sources)}


def _checked(query: str | QueryBundle) -> str | QueryBundle:
    """The query, if its question is a string: else qa's InvalidArgumentError, before LlamaIndex's own checks
    (a pydantic error about its events, or an AttributeError)."""
    from .assistant import check_question

    check_question(query.query_str if isinstance(query, QueryBundle) else query)
    return query


def _deltas(answers: Iterator[Answer], final: list[Answer]) -> Iterator[str]:
    """The new text of each growing answer; the last answer is left in `final`."""
    shown = ""
    for ans in answers:
        final[:] = [ans]
        text = ans.answer
        piece = text[len(shown):] if text.startswith(shown) else f"\n{text}"  # never taken back
        shown = text
        if piece:
            yield piece


async def _in_thread(items: Iterator[Any]) -> AsyncIterator[Any]:
    """A blocking iterator, stepped in a worker thread so the event loop keeps running."""
    done = object()
    while (item := await asyncio.to_thread(next, items, done)) is not done:
        yield item


class QAQueryEngine(BaseQueryEngine):
    """qa's cited answers as a LlamaIndex query engine: `Response.response` is the answer with `[n]` markers."""

    def __init__(self, assistant: Assistant, *, streaming: bool = False, top_k: int | None = None,
                 sources: Sequence[str] | str | None = None, llm: str | None = None) -> None:
        super().__init__(callback_manager=None)
        if llm is not None and llm != assistant.settings.llm:  # another answer mode, same index and settings
            assistant = type(assistant)(assistant.settings, llm=llm)
        self.assistant = assistant
        self.streaming = streaming
        self.top_k = top_k
        self.sources = _patterns(sources)

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}  # qa's prompts live in qa/prompts.py, not in LlamaIndex prompt templates

    def query(self, str_or_query_bundle: str | QueryBundle) -> Any:
        """LlamaIndex's `query`, refusing a question that is not a string as `ask()` does."""
        return super().query(_checked(str_or_query_bundle))

    async def aquery(self, str_or_query_bundle: str | QueryBundle) -> Any:
        """LlamaIndex's `aquery`, refusing a question that is not a string as `ask()` does."""
        return await super().aquery(_checked(str_or_query_bundle))

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The passages a query would be answered from (LlamaIndex evaluators call this)."""
        return QARetriever(self.assistant, self.top_k, self.sources).retrieve(query_bundle)

    def _answers(self, question: str) -> Iterator[Answer]:
        return self.assistant.stream(question, self.top_k, **_scoped(self.assistant.stream, self.sources))

    def _query(self, query_bundle: QueryBundle) -> Response | StreamingResponse:
        if not self.streaming:
            *_, answer = self._answers(query_bundle.query_str)
            return Response(answer.answer, answer_nodes(answer), _metadata(answer))
        nodes: list[NodeWithScore] = []
        meta: dict[str, Any] = {}
        return StreamingResponse(self._streamed(self._answers(query_bundle.query_str), nodes, meta), nodes, meta)

    @staticmethod
    def _streamed(answers: Iterator[Answer], nodes: list[NodeWithScore], meta: dict[str, Any]) -> Iterator[str]:
        # The citations are known once the answer is complete: the response's lists fill in then.
        final: list[Answer] = []
        yield from _deltas(answers, final)
        if final:
            nodes[:] = answer_nodes(final[0])
            meta.update(_metadata(final[0]))

    async def _aquery(self, query_bundle: QueryBundle) -> Response | AsyncStreamingResponse:
        if not self.streaming:
            return await asyncio.to_thread(self._query, query_bundle)
        nodes: list[NodeWithScore] = []
        meta: dict[str, Any] = {}
        answers = self._answers(query_bundle.query_str)
        return AsyncStreamingResponse(_in_thread(self._streamed(answers, nodes, meta)), nodes, meta)


class QARetriever(BaseRetriever):
    """qa's hybrid retrieval (dense + BM25, committed chunks only) as a LlamaIndex retriever."""

    def __init__(self, assistant: Assistant, top_k: int | None = None,
                 sources: Sequence[str] | str | None = None) -> None:
        super().__init__()
        self.assistant = assistant
        self.top_k = top_k
        self.sources = _patterns(sources)

    def retrieve(self, str_or_query_bundle: str | QueryBundle) -> list[NodeWithScore]:
        """LlamaIndex's `retrieve`, refusing a query that is not a string as `ask()` does."""
        return super().retrieve(_checked(str_or_query_bundle))

    async def aretrieve(self, str_or_query_bundle: str | QueryBundle) -> list[NodeWithScore]:
        """LlamaIndex's `aretrieve`, refusing a query that is not a string as `ask()` does."""
        return await super().aretrieve(_checked(str_or_query_bundle))

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        retriever = self.assistant.retriever()
        k = self.top_k or self.assistant.settings.top_k
        scope = _scoped(retriever.retrieve, self.sources)
        if scope:  # paths, names, folders and globs, named as ask() takes them: the engine wants indexed sources
            scope["sources"] = self.assistant._scope(scope["sources"])
            if not scope["sources"]:
                return []
        passages = retriever.retrieve(query_bundle.query_str, k, **scope)
        return [passage_node(p) for p in passages]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


class QAChatEngine(BaseChatEngine):
    """A conversation over the documents: follow-ups are read with the earlier questions, as in the UI."""

    def __init__(self, assistant: Assistant, top_k: int | None = None, sources: Sequence[str] | str | None = None,
                 chat_history: Sequence[ChatMessage] | None = None) -> None:
        self.engine = QAQueryEngine(assistant, top_k=top_k, sources=sources)
        self._history: list[ChatMessage] = list(chat_history or [])

    @property
    def chat_history(self) -> list[ChatMessage]:
        return list(self._history)

    def reset(self) -> None:
        self._history = []

    def _start(self, message: str, chat_history: Sequence[ChatMessage] | None) -> Iterator[Answer]:
        if chat_history is not None:
            self._history = list(chat_history)
        questions = [str(m.content) for m in self._history if m.role == MessageRole.USER and m.content]
        answers = self.engine.assistant.stream(message, self.engine.top_k, history=questions,
                                               **_scoped(self.engine.assistant.stream, self.engine.sources))
        self._history.append(ChatMessage(role=MessageRole.USER, content=message))
        return answers

    def _finish(self, answer: Answer) -> None:
        self._history.append(ChatMessage(role=MessageRole.ASSISTANT, content=answer.answer))

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        *_, answer = self._start(message, chat_history)
        self._finish(answer)
        return AgentChatResponse(response=answer.answer, source_nodes=answer_nodes(answer),
                                 metadata=_metadata(answer))

    def stream_chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> StreamingAgentChatResponse:
        response = StreamingAgentChatResponse(is_writing_to_memory=False)
        response.chat_stream = self._chat_stream(self._start(message, chat_history), response)
        return response

    def _chat_stream(self, answers: Iterator[Answer], response: StreamingAgentChatResponse) -> Iterator[ChatResponse]:
        final: list[Answer] = []
        text = ""
        for piece in _deltas(answers, final):
            text += piece
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece)
        if final:
            self._finish(final[0])
            response.source_nodes[:] = answer_nodes(final[0])

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        return await asyncio.to_thread(self.chat, message, chat_history)

    async def astream_chat(self, message: str,
                           chat_history: list[ChatMessage] | None = None) -> StreamingAgentChatResponse:
        response = StreamingAgentChatResponse(is_writing_to_memory=False)
        response.achat_stream = _in_thread(self._chat_stream(self._start(message, chat_history), response))
        return response
