"""The UI under load: concurrent chat sessions against one `qa serve`, each a short conversation.

    python -m benchmarks load [--sessions 1 20] [--timeout 300] [--via ui api]

Indexes seeds/ in a scratch folder, starts `qa serve` on a free loopback port (extractive answers,
no API key) and, for each session count, runs that many sessions at once. Each session is its own
gradio_client Client, so it has its own conversation state, and asks four questions in turn through
the "/ask" API, as the Ask button does: two facts of the seed article, "Who is Matthew Miller?" and
the follow-up "What did he reiterate?", which is answered only when the previous turn of the same
conversation is the Miller question. An answer counts as correct when it contains its fact and a
citation marker and the sources panel lists exactly this conversation's questions.

Latency is per question, from submit to the last streamed update, queue wait included; the UI
answers up to `qa.serving.ui.ASK_CONCURRENCY` questions at once. With `--via api` the same conversations go
through `POST /v1/ask` (earlier questions as `history`), checked for the fact and cited markers. "engine" is the time the assistant itself took per answer
(shown in the sources panel). `tests/test_load.py` runs the same load with 20 sessions.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import pct, row, scratch
from .startup import seeded_env, start_serve, wait_http

# (question, a fact its answer must contain): the seed article's, as in tests/test_answering.py
FACTS = [
    ("Where will Putin travel after North Korea?", "Vietnam"),
    ("Who denied the arms transfers?", "Moscow and Pyongyang"),
    ("Who is Putin's adviser on foreign policy?", "Yuri Ushakov"),
    ("Since when has North Korea been under U.N. sanctions?", "2006"),
    ("When did Russia and China veto the U.S.-led initiative for more sanctions?", "May 2022"),
    ("Who is the Russian Defence Minister?", "Andrei Belousov"),
    ("What did commercial satellite images show North Korea preparing for?", "military parade"),
    ("Which news agency described the programme of the visit?", "Interfax"),
    ("What did Victor Cha say the summit poses?", "greatest threat"),
]
# Without its previous turn the follow-up finds nothing ("Not found in the documents").
FOLLOW_UP = [("Who is Matthew Miller?", "State Department"), ("What did he reiterate?", "11,000 containers")]
TOP_K, MODE = 5, "extractive"
_PANEL_QUESTION = re.compile(r'<p class="qa-q">for “(?:<bdi>)?(.*?)(?:</bdi>)?” · ([\d.]+) s')
_TAG = re.compile(r"<[^>]+>")


def conversation(session: int) -> list[tuple[str, str]]:
    """Session `session`'s questions and facts: two seed facts (a different pair per session), then the follow-up pair."""
    return [FACTS[session % len(FACTS)], FACTS[(session + 4) % len(FACTS)], *FOLLOW_UP]


@dataclass(frozen=True)
class Asked:
    """One question of one session: how long it took and what was wrong with its answer ("" if nothing)."""

    session: int
    question: str
    seconds: float | None  # None: no answer came back
    error: str = ""
    engine_seconds: float | None = None


@dataclass(frozen=True)
class LoadReport:
    """The outcome of a load run."""

    sessions: int
    planned: int
    asked: tuple[Asked, ...]
    wall_seconds: float

    @property
    def answered(self) -> int:
        """Questions that got an answer back (right or wrong)."""
        return sum(a.seconds is not None for a in self.asked)

    @property
    def errors(self) -> list[Asked]:
        """Questions whose answer was wrong, uncited or missing."""
        return [a for a in self.asked if a.error]

    def latency(self, p: float) -> float:
        """The p-th percentile of seconds from submit to the final answer."""
        return pct([a.seconds for a in self.asked if a.seconds is not None], p)

    def engine(self, p: float) -> float:
        """The p-th percentile of the assistant's own seconds per answer."""
        return pct([a.engine_seconds for a in self.asked if a.engine_seconds is not None], p)

    def summary(self) -> str:
        """One line: sessions, questions, errors, p50/p95."""
        who = "1 session" if self.sessions == 1 else f"{self.sessions} concurrent sessions"
        timed = any(a.engine_seconds is not None for a in self.asked)  # the UI shows it; the API does not
        engine = f" (engine p50 {self.engine(50):.2f} s)" if timed else ""
        return (f"{who}: {self.answered}/{self.planned} questions answered, "
                f"{len(self.errors)} errors; latency p50 {self.latency(50):.2f} s, p95 {self.latency(95):.2f} s"
                f"{engine}; {self.wall_seconds:.1f} s in all")

    def error_lines(self) -> str:
        """One line per error, to read when a run fails."""
        return "\n".join(f"session {a.session}: {a.question!r}: {a.error}" for a in self.errors)


def message_text(message: dict[str, Any]) -> str:
    """The HTML content of a chat message (Gradio gives a string or a list of text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or () if isinstance(part, dict))


def check(chat: list[dict[str, Any]], panel: str, questions: list[str], fact: str) -> str:
    """What the user would find wrong with the latest answer of a conversation, or "" if it is right."""
    if len(chat) != 2 * len(questions):
        return f"the chat holds {len(chat)} messages after {len(questions)} questions"
    answer = message_text(chat[-1])
    text = html.unescape(_TAG.sub("", answer))
    if fact not in text:
        return f"{fact!r} is not in the answer {text[:200]!r}"
    if 'class="qa-cite' not in answer or not re.search(r">\[\d+\]</a>", answer):
        return f"the answer cites nothing: {answer[:200]!r}"
    listed = [html.unescape(q) for q, _ in _PANEL_QUESTION.findall(panel)]
    if "qa-done" not in panel or listed != questions:
        return f"the sources panel lists {listed}, not this conversation's {questions}"
    return ""


def run_session(url: str, session: int, start: threading.Barrier, deadline: float) -> list[Asked]:
    """One chat session: connect, wait for the others, then ask its conversation in turn until the deadline."""
    from gradio_client import Client

    plan = conversation(session)
    client, failure = None, ""
    try:
        client = Client(url, verbose=False, download_files=False, max_workers=2, analytics_enabled=False)
    except Exception as e:  # counted, not raised: one failed session must not hide the others
        failure = f"could not connect: {type(e).__name__}: {e}"
    try:
        start.wait(timeout=max(0.0, deadline - time.monotonic()))
    except threading.BrokenBarrierError:
        pass  # a session failed to connect in time; the rest still run
    if client is None:
        return [Asked(session, plan[0][0], None, failure)]
    asked: list[Asked] = []
    chat: list[dict[str, Any]] = []
    questions: list[str] = []
    try:
        for question, fact in plan:
            t0 = time.perf_counter()
            job = None
            try:
                job = client.submit(question, chat, TOP_K, MODE, api_name="/ask")
                chat, panel, _ = job.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as e:  # a timeout or a server error ends the conversation
                if job is not None:
                    job.cancel()
                why = "no answer before the deadline" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
                asked.append(Asked(session, question, None, why))
                break
            seconds = time.perf_counter() - t0
            questions.append(question)
            found = _PANEL_QUESTION.findall(panel)
            engine = float(found[-1][1]) if found else None
            asked.append(Asked(session, question, seconds, check(chat, panel, questions, fact), engine))
    finally:
        client.close()
    return asked


def check_api(body: dict[str, Any], fact: str) -> str:
    """What a program would find wrong with a `/v1/ask` answer, or "" if it is right."""
    if fact not in body.get("answer", ""):
        return f"{fact!r} is not in the answer {body.get('answer', '')[:200]!r}"
    cited = body.get("citations") or []
    if not cited or any(f"[{c['id']}]" not in body["answer"] for c in cited):
        return f"the answer does not cite its citations: {body['answer'][:200]!r}"
    return ""


def run_session_api(url: str, session: int, start: threading.Barrier, deadline: float) -> list[Asked]:
    """One conversation through the HTTP API: `/v1/ask` with the earlier questions as `history`."""
    import httpx

    plan = conversation(session)
    asked: list[Asked] = []
    questions: list[str] = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=None) as http:
        try:
            start.wait(timeout=max(0.0, deadline - time.monotonic()))
        except threading.BrokenBarrierError:
            pass
        for question, fact in plan:
            t0 = time.perf_counter()
            try:
                r = http.post("/v1/ask", json={"question": question, "top_k": TOP_K, "history": questions},
                              timeout=max(0.1, deadline - time.monotonic()))
                r.raise_for_status()
                body = r.json()
            except Exception as e:  # a timeout or a server error ends the conversation
                asked.append(Asked(session, question, None, f"{type(e).__name__}: {e}"))
                break
            questions.append(question)
            asked.append(Asked(session, question, time.perf_counter() - t0, check_api(body, fact)))
    return asked


def run_load(url: str, sessions: int = 20, timeout: float = 300.0, via: str = "ui") -> LoadReport:
    """`sessions` conversations at once against the `qa serve` at `url` (its UI, or its HTTP API with
    `via="api"`); stops asking after `timeout` s."""
    deadline = time.monotonic() + timeout
    start = threading.Barrier(sessions)
    t0 = time.perf_counter()
    session = run_session if via == "ui" else run_session_api
    with ThreadPoolExecutor(sessions, thread_name_prefix="session") as pool:
        results = list(pool.map(lambda i: session(url, i, start, deadline), range(sessions)))
    return LoadReport(sessions, sum(len(conversation(i)) for i in range(sessions)),
                      tuple(a for r in results for a in r), time.perf_counter() - t0)


def warm_up(url: str) -> float:
    """Ask one question first, as a visitor's page load warms the models; its seconds."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    try:
        t0 = time.perf_counter()
        client.predict(FACTS[0][0], [], TOP_K, MODE, api_name="/ask")
        return time.perf_counter() - t0
    finally:
        client.close()


@contextmanager
def serving(index: Path, log: Path) -> Iterator[str]:
    """`qa serve` over `index` on a free loopback port, offline, extractive, no login; yields its URL."""
    env = {**os.environ, "QA_INDEX_DIR": str(index), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "QA_OPENAI_API_KEY", "QA_OPENAI_BASE_URL", "QA_LLM",
                "QA_CHROMA_URL", "QA_AUTH"):
        env.pop(var, None)
    proc, url, t0 = start_serve(env, log)
    try:
        try:
            wait_http(url, proc, t0, timeout=180, ui=True)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"qa serve did not come up ({e}):\n{log.read_text(errors='replace')[-3000:]}") from None
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks load", description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 20], help="concurrent sessions, one run each")
    ap.add_argument("--timeout", type=float, default=300, help="seconds each run may take at most")
    ap.add_argument("--via", choices=["ui", "api"], nargs="+", default=["ui", "api"],
                    help="through the chat UI's Gradio API, the HTTP API (/v1/ask), or both")
    args = ap.parse_args(argv)
    rows = []
    with scratch() as tmp:
        index = tmp / "index"
        seeded_env(index)
        with serving(index, tmp / "serve.log") as url:
            print(f"first answer (loads the models) {warm_up(url):.1f} s", flush=True)
            for n, via in ((n, via) for via in args.via for n in args.sessions):
                report = run_load(url, n, args.timeout, via)
                print(f"{via}: {report.summary()}", flush=True)
                if report.errors:
                    print(report.error_lines(), flush=True)
                what = "chat session" if via == "ui" else "API client (/v1/ask)"
                rows.append(row(f"{via.upper()} under load: {n} concurrent {what}{'s' * (n != 1)} x 4 questions "
                                "(`qa serve`, seeds/, extractive)",
                                f"p50 {report.latency(50):.2f} s, p95 **{report.latency(95):.2f} s**; "
                                f"{report.answered}/{report.planned} "
                                f"answered, {len(report.errors)} errors, {report.wall_seconds:.0f} s",
                                "0 errors"))
                print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
