"""qa inside LlamaIndex: the query engine, retriever and chat engine are real LlamaIndex objects
giving `ask()`'s answers, with source nodes that hold the exact citations."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse
from llama_index.core.llms import MessageRole, MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import QueryBundle
from llama_index.core.tools import QueryEngineTool

from qa.errors import ConfigError
from qa.prompts import NOT_FOUND

from .conftest import ROOT

QUESTION = "Who denied the arms transfers?"
TWO_SENTENCES = "When did Putin last visit North Korea?"  # answered in two cited sentences (see test_answering)


def _doc(source: str) -> str:
    return Path(source).read_text(encoding="utf-8")


def _check_nodes(nodes, answer) -> None:
    """Cited nodes first, each exactly the answer's citation; then related passages, flagged not cited."""
    flags = [n.node.metadata["cited"] for n in nodes]
    assert flags == sorted(flags, reverse=True), "cited nodes come first"
    cited = [n for n in nodes if n.node.metadata["cited"]]
    assert len(cited) == len(answer.citations)
    for n, c, as_json in zip(cited, answer.citations, answer.to_dict()["citations"]):
        m = n.node.metadata
        assert {k: m[k] for k in as_json} == as_json  # the citation as `qa ask --json` gives it
        assert _doc(m["source"])[m["start"]:m["end"]] == m["text"] == c.text
        assert _doc(m["source"])[m["passage_start"]:m["passage_end"]] == n.node.get_content()
        assert n.score == c.score
    related = [n for n in nodes if not n.node.metadata["cited"]]
    assert related or not answer.related
    for n in related:
        m = n.node.metadata
        assert _doc(m["source"])[m["start"]:m["end"]] == n.node.get_content()


def test_they_are_llamaindex_objects(seeded) -> None:
    assert isinstance(seeded.as_query_engine(), BaseQueryEngine)
    assert isinstance(seeded.as_retriever(top_k=3), BaseRetriever)
    assert isinstance(seeded.as_chat_engine(), BaseChatEngine)
    with pytest.raises(TypeError):
        seeded.as_query_engine(similarity_top_k=3)  # an option qa does not have is not silently ignored


def test_query_gives_ask_answer_with_exact_source_nodes(seeded) -> None:
    answer = seeded.ask(QUESTION)
    response = seeded.as_query_engine().query(QUESTION)
    assert isinstance(response, Response)
    assert response.response == answer.answer and "Moscow and Pyongyang" in response.response
    assert response.metadata["answered"] is True and response.metadata["qa"] == answer.to_dict()
    _check_nodes(response.source_nodes, answer)
    # An LLM downstream sees the passage and its file, not a copy of the offsets and citation text.
    shown = response.source_nodes[0].node.get_content(metadata_mode="llm")
    assert "source:" in shown and "passage_start" not in shown


def test_unanswerable_question_has_only_related_nodes(seeded) -> None:
    response = seeded.as_query_engine().query("Who won the 2018 FIFA World Cup?")
    assert response.response == NOT_FOUND and response.metadata["answered"] is False
    assert response.source_nodes and not any(n.node.metadata["cited"] for n in response.source_nodes)


def test_aquery_and_top_k(seeded) -> None:
    answer = seeded.ask(QUESTION, top_k=2)
    response = asyncio.run(seeded.as_query_engine(top_k=2).aquery(QUESTION))
    assert response.response == answer.answer
    _check_nodes(response.source_nodes, answer)


def test_streaming_yields_sentences_then_fills_the_sources(seeded) -> None:
    answer = seeded.ask(TWO_SENTENCES)
    response = seeded.as_query_engine(streaming=True).query(TWO_SENTENCES)
    assert isinstance(response, StreamingResponse)
    assert response.source_nodes == []  # known once the answer is complete
    pieces = list(response.response_gen)
    assert len(pieces) == len(answer.citations) >= 2  # one piece per cited sentence, as it is found
    assert "".join(pieces) == answer.answer
    _check_nodes(response.source_nodes, answer)
    assert response.metadata["qa"] == answer.to_dict()

    async def collect() -> tuple[AsyncStreamingResponse, list[str]]:
        r = await seeded.as_query_engine(streaming=True).aquery(TWO_SENTENCES)
        return r, [p async for p in r.async_response_gen()]

    r, pieces = asyncio.run(collect())
    assert isinstance(r, AsyncStreamingResponse)
    assert "".join(pieces) == answer.answer
    _check_nodes(r.source_nodes, answer)


def test_retriever_inside_llamaindex_retriever_query_engine(seeded) -> None:
    q = "Where will Putin travel after North Korea?"
    retriever = seeded.as_retriever(top_k=3)
    nodes = retriever.retrieve(q)
    assert [n.node.get_content() for n in nodes] == [p.text for p in seeded.retriever().retrieve(q, 3)]
    for n in nodes:
        m = n.node.metadata
        assert _doc(m["source"])[m["start"]:m["end"]] == n.node.get_content()
    # LlamaIndex's own engine; MockLLM echoes its prompt, so the answer shows the passages it was given.
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(q)
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in nodes]
    assert "Vietnam" in str(response)
    assert asyncio.run(retriever.aretrieve(q))[0].node.node_id == nodes[0].node.node_id
    assert seeded.as_query_engine(top_k=3).retrieve(QueryBundle(q)) == nodes


def test_sources_scope_or_say_it_cannot(seeded) -> None:
    """`sources=` reaches the engine when it supports scoping; until then it is refused, never ignored."""
    source = seeded.ask(QUESTION).citations[0].source
    supported = "sources" in inspect.signature(seeded.retriever().retrieve).parameters
    for make in (lambda s: seeded.as_retriever(sources=s).retrieve(QUESTION),
                 lambda s: seeded.as_query_engine(sources=s).query(QUESTION).source_nodes):
        if supported:
            assert {n.node.metadata["source"] for n in make([source])} == {source}
            assert not make(["no-such-file-*.txt"])
        else:
            with pytest.raises(ConfigError, match="sources"):
                make([source])


def test_chat_engine_keeps_the_conversation(seeded) -> None:
    first, follow_up = "Who is Matthew Miller?", "What did he reiterate?"
    chat = seeded.as_chat_engine()
    chat.chat(first)
    reply = chat.chat(follow_up)
    assert isinstance(reply, AgentChatResponse)
    expected = seeded.ask(follow_up, history=[first])
    assert reply.response == expected.answer and "11,000 containers" in reply.response
    _check_nodes(reply.source_nodes, expected)
    assert [m.role for m in chat.chat_history] == [MessageRole.USER, MessageRole.ASSISTANT] * 2

    chat.reset()
    assert chat.chat_history == []
    assert chat.chat(follow_up).response == seeded.ask(follow_up).answer  # no conversation to lean on

    chat.reset()
    chat.chat(first)
    streamed = chat.stream_chat(follow_up)
    assert isinstance(streamed, StreamingAgentChatResponse)
    assert "".join(streamed.response_gen) == expected.answer == str(streamed)
    _check_nodes(streamed.source_nodes, expected)
    assert chat.chat_history[-1].content == expected.answer

    # A history passed in replaces the engine's own, as in LlamaIndex's chat engines.
    again = asyncio.run(chat.achat(follow_up, chat_history=chat.chat_history[:2]))
    assert again.response == expected.answer

    async def astream() -> tuple[StreamingAgentChatResponse, str]:
        r = await chat.astream_chat(follow_up, chat_history=chat.chat_history[:2])
        return r, "".join([p async for p in r.async_response_gen()])

    r, text = asyncio.run(astream())
    assert text == expected.answer
    _check_nodes(r.source_nodes, expected)


def test_query_engine_tool_and_example(seeded) -> None:
    tool = QueryEngineTool.from_defaults(seeded.as_query_engine(), name="documents", description="the documents")
    out = tool.call(QUESTION)
    assert "Moscow and Pyongyang" in out.content and out.raw_output.source_nodes[0].node.metadata["cited"]

    # The README's example, as a user runs it (the `seeded` fixture points QA_INDEX_DIR at its index).
    run = subprocess.run([sys.executable, "examples/llamaindex_tool.py"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    calc, docs = run.stdout.split("Q: ")[1:]
    assert "calculator" in calc and "12 * (3 + 4) = 84" in calc
    assert "documents" in docs and "Moscow and Pyongyang" in docs
    cited = [line for line in docs.splitlines() if line.startswith("  [1] ")]
    assert cited and "chars" in cited[0]


def test_retriever_sources_are_named_as_ask_names_them(seeded) -> None:
    """README: `sources` are file globs, paths or names, as for ask(); the retriever matched exact sources only."""
    source = seeded.ask(QUESTION).citations[0].source
    for pattern in (source, Path(source).name, "*.txt", str(Path(source).parent)):
        nodes = seeded.as_retriever(sources=[pattern]).retrieve(QUESTION)
        assert nodes and {n.node.metadata["source"] for n in nodes} == {source}, pattern
    assert seeded.as_retriever(sources=["no-such-file-*.txt"]).retrieve(QUESTION) == []


def test_one_source_given_as_a_string_is_one_pattern(seeded) -> None:
    # As for ask(sources="*.md"); the LlamaIndex objects read a string as one pattern per character, and "*" or "."
    # among them named every document.
    assert seeded.as_retriever(sources="no-such-file-*.txt").retrieve(QUESTION) == []
    r = seeded.as_query_engine(sources="no-such-file-*.txt").query(QUESTION)
    assert r.source_nodes == [] and "No indexed document matches no-such-file-*.txt" in r.response
    name = Path(seeded.ask(QUESTION).citations[0].source).name
    assert seeded.as_chat_engine(sources=name).chat(QUESTION).response == seeded.ask(QUESTION).answer
