"""qa's cited query engine as a LlamaIndex tool beside a calculator, chosen by LlamaIndex's router.

Runs offline: the router picks the tool whose description is closest in meaning to the question
(LlamaIndex's EmbeddingSingleSelector, with qa's bundled embedding model), so no LLM, no key, no network.

    python examples/llamaindex_tool.py                      # index seeds/ if needed, ask two questions
    python examples/llamaindex_tool.py "What is 6 * 7?" "Who denied the arms transfers?"
"""

from __future__ import annotations

import ast
import operator
import re
import sys
from pathlib import Path

from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import CustomQueryEngine, RouterQueryEngine
from llama_index.core.selectors import EmbeddingSingleSelector
from llama_index.core.tools import QueryEngineTool

from qa import Assistant, IndexMissingError

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
QUESTIONS = ["What is 12 * (3 + 4)?", "Who denied the arms transfers?"]
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.operand))
    raise ValueError("not arithmetic")


class Calculator(CustomQueryEngine):
    """The other tool: evaluates the arithmetic in a question."""

    def custom_query(self, query_str: str) -> str:
        for expr in sorted(re.findall(r"[\d.()+\-*/^ ]+", query_str), key=len, reverse=True):
            try:
                return f"{expr.strip()} = {_evaluate(ast.parse(expr.strip().replace('^', '**'), mode='eval').body):g}"
            except (SyntaxError, ValueError, ZeroDivisionError):
                continue
        return "I found no arithmetic in that question."


def build_router(assistant: Assistant) -> RouterQueryEngine:
    """A LlamaIndex router over two tools: qa's documents and the calculator."""
    documents = QueryEngineTool.from_defaults(
        assistant.as_query_engine(), name="documents",
        description="Answers questions about the indexed news documents (Putin, North Korea, Russia, sanctions, "
                    "weapons, people and events), citing the exact passages.")
    calculator = QueryEngineTool.from_defaults(
        Calculator(), name="calculator",
        description="Calculator: computes arithmetic with numbers, e.g. what is 12 * (3 + 4), 2 + 2, 10 / 4.")
    # A single selection never calls the LLM (it only merges several answers): MockLLM keeps it offline.
    return RouterQueryEngine(selector=EmbeddingSingleSelector.from_defaults(embed_model=assistant.embedder),
                             query_engine_tools=[documents, calculator], llm=MockLLM())


def main(questions: list[str]) -> None:
    assistant = Assistant(llm="extractive")
    try:
        empty = assistant.status().documents == 0
    except IndexMissingError:
        empty = True
    if empty:  # a first run: index the sample documents
        print(assistant.ingest(SEEDS).summary())
    router = build_router(assistant)
    for q in questions:
        response = router.query(q)
        print(f"Q: {q}\n{response.metadata['selector_result'].reason}\nA: {response.response}")
        for n in response.source_nodes:
            m = n.node.metadata
            if m.get("cited"):
                print(f"  [{m['id']}] {m['source']} chars {m['start']}-{m['end']}: {m['text']}")
        print()


if __name__ == "__main__":
    main(sys.argv[1:] or QUESTIONS)
