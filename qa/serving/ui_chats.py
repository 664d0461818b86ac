"""The conversation list of the chat UI: saved per login, reopened on reload, renamed, deleted, searched, exported.

Every handler takes the user from Gradio's request (its login), never from the page, so an id sent by
another user's page is "not found" like any unknown id.
"""
# No `from __future__ import annotations` here: Gradio finds `gr.Request` parameters by their evaluated annotation.

import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import tzinfo
from pathlib import Path
from typing import Any

from ..conversations import ANSWERING, INTERRUPTED, STATE_NOTE, Pace, Turn
from ..errors import ConversationNotFoundError, ConversationStoreError
from ..types import Answer
from .ui import _card, esc, highlight, local_time, reader_zone, render_answer, render_panel, render_sources, source_id
from .uploads import safe_name

NONE = "-"  # the saved id of "no conversation open": Gradio keeps the last truthy value in the browser
# Run in the browser after the trash button: the question "Delete …?" into view, with the focus on its Cancel.
TO_THE_QUESTION = """() => { let tries = 0; const go = () => {
  const q = document.querySelector('#qa-chat-confirm');
  if (q) { q.scrollIntoView({block: 'nearest'}); document.getElementById('qa-chat-no')?.focus(); }
  else if (++tries < 50) setTimeout(go, 30);
  else if (document.activeElement === document.body) document.querySelector('#qa-question textarea')?.focus();
}; go(); }"""
WATCH_SECONDS = 1.5  # how often a page looks whether an answer it did not ask for itself is written
STALE_NOTE = {
    "changed": "The document has changed since this answer: the cited text is no longer at these offsets.",
    "removed": "The document has been removed from the index since this answer.",
}


# --- rendering a stored turn ------------------------------------------------------------------------
def question_html(question: str) -> str:
    """A question as the chat shows it."""
    return f'<div class="qa-question" dir="auto">{esc(question)}</div>'


def stored_answer(turn: Turn) -> str:
    """A stored answer as HTML; markers of citations whose document changed say so instead of quoting. An answer
    still being written, or interrupted, says so (after what there was of it)."""
    if turn.state == ANSWERING:
        return (f'<div class="qa-answer qa-pending qa-answering">{esc(STATE_NOTE[ANSWERING])} '
                "It appears here when it is ready.</div>")
    out = render_answer(turn.answer, turn.n) if turn.answer.answer else ""
    for cid, why in turn.stale.items():
        out = re.sub(rf'<a class="qa-cite([^"]*)" href="#{source_id(turn.n, cid)}" title="[^"]*"',
                     lambda m, w=why, c=cid: (f'<a class="qa-cite{m.group(1)} qa-stale" '
                                              f'href="#{source_id(turn.n, c)}" title="{esc(STALE_NOTE[w])}"'),
                     out)
    if turn.state == INTERRUPTED:
        out += f'<div class="qa-answer qa-interrupted" role="note">{esc(STATE_NOTE[INTERRUPTED])}</div>'
    return out


def stored_sources(turn: Turn, page_url: Any = None) -> str:
    """A stored turn's section of the sources panel, with the pages of PDF and image citations as a live answer
    shows them (`page_url`); a stale citation shows its note and the text as it was, and no page."""
    answer = turn.answer
    if turn.state == ANSWERING or (turn.state == INTERRUPTED and not answer.answer):
        return (f'<section class="qa-turn" id="qa-turn-{turn.n}"><h2>Sources</h2>'
                f'<p class="qa-q">for “<bdi>{esc(answer.question)}</bdi>”</p>'
                f'<p class="qa-empty">{esc(STATE_NOTE[turn.state])}</p></section>')
    if turn.stale:
        answer = replace(answer, citations=tuple(replace(c, boxes=()) if c.id in turn.stale else c
                                                 for c in answer.citations))
    out = render_sources(answer, turn.n, page_url)
    for c in turn.answer.citations:
        why = turn.stale.get(c.id)
        if why:
            body = (f'<span class="qa-stale-note">{esc(STALE_NOTE[why])}</span> '
                    f'Cited then (chars {c.start}-{c.end}): “{esc(c.text)}”')
            out = out.replace(_card(c.id, c, highlight(c), source_id(turn.n, c.id)),
                              _card(c.id, c, body, source_id(turn.n, c.id), " qa-stale"))
    return out


def list_label(title: str, updated: float, zone: tzinfo | None = None) -> str:
    """One entry of the conversation list: title and date (in the reader's time zone `zone`)."""
    short = title if len(title) <= 60 else title[:59] + "…"
    return f"{short} · {local_time(updated, zone)}"


# --- the handlers -----------------------------------------------------------------------------------------
class Chats:
    """The conversation side of the UI over one assistant (and the per-mode engines that share its store)."""

    def __init__(self, assistant: Any, page_url: Any = None) -> None:
        self.assistant = assistant
        self.page_url = page_url  # signed page-image URLs, so a reopened PDF citation shows its page again
        self.problem = ""  # why conversations are off, shown as a banner; answers still work
        self.exports = Path(tempfile.mkdtemp(prefix="qa-exports-"))

    @staticmethod
    def user(request: Any) -> str:
        """The login of the request, "" without login."""
        return getattr(request, "username", None) or ""

    def available(self) -> bool:
        """Whether conversations can be stored; else `problem` says why."""
        if self.problem:
            return False
        try:
            self.assistant.conversation_store()
            return True
        except ConversationStoreError as e:
            self.problem = str(e)
            return False

    def banner(self) -> str:
        """The banner shown while conversations are off."""
        if not self.problem:
            return ""
        return (f'<div class="qa-chats-off">{esc(self.problem)} Questions are still answered, '
                "but not saved.</div>")

    def answers(self, engine: Any, question: str, history: Sequence[str], chat_id: str | None, request: Any,
                pace: Pace, **kw: Any) -> tuple[Iterator[Answer], str | None]:
        """The answer stream of a question, stored in conversation `chat_id` (a new one if None); the id. The
        answer is computed under `pace`, also when the page goes away and the server finishes it alone."""
        from ..assistant import question_problem

        if question_problem(question) is not None:  # refused (too long): answered, not stored, nothing opened
            return pace(engine.stream(question, history=history, **kw)), chat_id
        if not self.available():
            return pace(engine.stream(question, history=history, **kw)), None
        user = self.user(request)
        try:
            # The question is stored as it is asked (conv.stream), so a reload finds it while it is answered.
            try:
                conv = engine.conversation(chat_id, user) if chat_id else engine.conversation(None, user)
                answers = conv.stream(question, pace, **kw)
            except ConversationNotFoundError:  # deleted meanwhile (another tab): start a new one, and say so
                import gradio as gr

                gr.Warning("This conversation was deleted (in another window); this question starts a new one.")
                conv = engine.conversation(None, user)
                answers = conv.stream(question, pace, **kw)
        except ConversationStoreError as e:
            self.problem = str(e)
            return pace(engine.stream(question, history=history, **kw)), None
        return self._saving(conv, answers, question, history, pace, kw), conv.id

    def _saving(self, conv: Any, answers: Iterator[Answer], question: str, history: Sequence[str], pace: Pace,
                kw: dict[str, Any]) -> Iterator[Answer]:
        final = None
        try:
            for final in answers:
                yield final
        except ConversationStoreError as e:  # the store broke: answer anyway, say that it was not saved
            self.problem = str(e)
            if final is None:
                yield from pace(conv.assistant.stream(question, history=history, **kw))
        finally:  # a page that went away (reloaded, closed): the engine finishes and stores the answer itself
            close = getattr(answers, "close", None)
            if close is not None:
                close()

    def listing(self, request: Any, chat_id: str | None, search: str = "") -> Any:
        """The conversation list (title · date), the open one selected."""
        import gradio as gr

        if not self.available():
            return gr.update(choices=[], value=None)
        try:
            found = self.assistant.conversations(self.user(request), search or "")
        except ConversationStoreError as e:
            self.problem = str(e)
            return gr.update(choices=[], value=None)
        ids = {c.id for c in found}
        zone = reader_zone(request)
        return gr.update(choices=[(list_label(c.title, c.updated, zone), c.id) for c in found],
                         value=chat_id if chat_id in ids else None)

    def view(self, request: Any, chat_id: str | None, search: str = "") -> tuple[Any, ...]:
        """Everything the page shows for conversation `chat_id` (empty if None or not this user's).

        In order: chat, sources panel, turns state, chat id state, list, title box, export file,
        saved id (browser), banner.
        """
        chat: list[dict[str, str]] = []
        sections: list[str] = []
        turns: list[tuple[str, str]] = []
        title, export = "", None
        conv = None
        if chat_id and self.available():
            try:
                conv = self.assistant.conversation(chat_id, self.user(request))
                stored = conv.turns
                title = conv.title
                export = self._export(conv, stored)
            except ConversationNotFoundError:
                conv = None
            except ConversationStoreError as e:
                self.problem, conv = str(e), None
            for t in stored if conv is not None else ():
                section = stored_sources(t, self.page_url)
                chat += [{"role": "user", "content": question_html(t.question)},
                         {"role": "assistant", "content": stored_answer(t)}]
                sections.append(section)
                turns.append((t.question, section))
        cid = conv.id if conv is not None else None
        return (chat, render_panel(sections), turns, cid, self.listing(request, cid, search), title, export,
                cid or NONE, self.banner())

    def _export(self, conv: Any, turns: Sequence[Turn]) -> str | None:
        if not turns:
            return None
        from ..conversations import to_markdown

        path = self.exports / f"{safe_name(conv.title)[:50].strip() or 'conversation'}.md"
        folder = self.exports / conv.id  # one folder per conversation: two with one title do not clash
        folder.mkdir(exist_ok=True)
        path = folder / path.name
        path.write_text(to_markdown(conv.info, turns), encoding="utf-8")
        return str(path)

    # Handlers wired by `wire`; Gradio fills in `request` (its annotation becomes gr.Request in `build_panel`).
    def on_load(self, saved: str | None, chat: list[Any] | None, request: Any) -> tuple[Any, ...]:
        view = self.view(request, None if saved in ("", NONE) else saved)
        # A question asked before the saved conversation came back: keep what the chat shows. `chat` is the
        # chat as this load event was triggered, so a question asked while it was queued is not in it: with
        # nothing to restore (no saved conversation, or an empty one), the chat is left alone as well.
        if chat or not view[2]:
            import gradio as gr

            return (gr.skip(),) * 4 + view[4:]
        return view

    def on_select(self, chat_id: str | None, search: str, request: Any) -> tuple[Any, ...]:
        return self.view(request, chat_id, search)

    def on_new(self, search: str, request: Any) -> tuple[Any, ...]:
        return self.view(request, None, search)

    def on_delete(self, chat_id: str | None, search: str, request: Any) -> tuple[Any, ...]:
        if chat_id and self.available():
            try:
                self.assistant.conversation(chat_id, self.user(request)).delete()
            except (ConversationNotFoundError, ConversationStoreError):
                pass
        return self.view(request, None, search)

    def on_rename(self, chat_id: str | None, title: str, search: str,
                  request: Any) -> tuple[Any, ...]:
        if chat_id and title.strip() and self.available():
            try:
                self.assistant.conversation(chat_id, self.user(request)).rename(title)
            except (ConversationNotFoundError, ConversationStoreError):
                pass
        return self.view(request, chat_id, search)[4:]

    def on_search(self, search: str, chat_id: str | None, request: Any) -> Any:
        return self.listing(request, chat_id, search)

    def after_ask(self, chat_id: str | None, search: str, request: Any) -> tuple[Any, ...]:
        return self.view(request, chat_id, search)[4:]

    def answering(self, chat_id: str | None, request: Any) -> bool:
        """Whether an answer of conversation `chat_id` is still being written (by a page that was reloaded, or
        left for another conversation)."""
        if not chat_id or not self.available():
            return False
        try:
            return self.assistant.conversation(chat_id, self.user(request)).answering
        except (ConversationNotFoundError, ConversationStoreError):
            return False

    def on_watch(self, chat_id: str | None, request: Any) -> Any:
        """The timer that brings in an answer still being written: on while the open conversation has one."""
        import gradio as gr

        return gr.Timer(active=self.answering(chat_id, request))

    def on_tick(self, chat_id: str | None, search: str, request: Any) -> tuple[Any, ...]:
        """The open conversation again once its answers are all written (the timer then stops)."""
        import gradio as gr

        if self.answering(chat_id, request):
            return (gr.skip(),) * 10
        if not chat_id:  # a new conversation: the question being asked in it is this page's own
            return (*(gr.skip(),) * 9, gr.Timer(active=False))
        return (*self.view(request, chat_id, search), gr.Timer(active=False))


def _fix_annotations(chats: Chats) -> None:
    """Give the handlers Gradio's real Request class as annotation (imported only when the UI is built)."""
    import gradio as gr

    for name in ("on_load", "on_select", "on_new", "on_delete", "on_rename", "on_search", "after_ask", "answering",
                 "on_watch", "on_tick"):
        getattr(type(chats), name).__annotations__["request"] = gr.Request


def build_panel(chats: Chats) -> dict[str, Any]:
    """The conversation list and its buttons (call inside the Blocks, where it should appear)."""
    import gradio as gr

    _fix_annotations(chats)
    c: dict[str, Any] = {}
    with gr.Accordion("Conversations", open=True, elem_id="qa-chats"):
        c["banner"] = gr.HTML(chats.banner(), elem_id="qa-chats-banner", js_on_load=None)
        with gr.Row(equal_height=True):
            c["search"] = gr.Textbox(label="Search conversations", show_label=False,
                                     placeholder="Search conversations…", lines=1, max_lines=1, scale=4,
                                     min_width=120, elem_id="qa-chat-search", submit_btn=False)
            c["new"] = gr.Button("New", size="sm", scale=1, min_width=60, elem_id="qa-chat-new")
        c["list"] = gr.Radio(choices=[], value=None, label="Saved conversations", show_label=False, container=False,
                             min_width=120, elem_id="qa-chat-list")
        with gr.Row(equal_height=True):
            c["title"] = gr.Textbox(label="Title of the conversation", show_label=False, placeholder="Title",
                                    lines=1, max_lines=1, scale=3, min_width=100, elem_id="qa-chat-title",
                                    submit_btn=False)
            c["rename"] = gr.Button("Rename", size="sm", scale=1, min_width=60, elem_id="qa-chat-rename")
            c["delete"] = gr.Button("Delete", size="sm", scale=1, min_width=60, variant="stop",
                                    elem_id="qa-chat-delete")
            c["export"] = gr.DownloadButton("Export", value=None, size="sm", scale=1, min_width=60,
                                            elem_id="qa-chat-export")
        # Deleting cannot be undone: asked in the page first (no browser dialog), as the library's Remove is.
        # A Column holds the id: Gradio writes a Group's elem_id on two nested elements (a duplicate id).
        with gr.Column(visible=False, elem_id="qa-chat-confirm") as c["confirm"], gr.Group():
            c["question"] = gr.HTML("", elem_id="qa-chat-question")
            with gr.Row():
                c["yes"] = gr.Button("Delete", size="sm", variant="stop", elem_id="qa-chat-yes")
                c["no"] = gr.Button("Cancel", size="sm", elem_id="qa-chat-no")
    c["saved"] = gr.BrowserState("", storage_key="qa-open-conversation")
    c["timer"] = gr.Timer(WATCH_SECONDS, active=False)  # brings in an answer written after the page (re)opened
    return c


def wire(chats: Chats, c: dict[str, Any], app: Any, chat: Any, sources: Any, turns: Any, chat_id: Any) -> Any:
    """Connect the panel's events; returns the `.then` step to chain after each question."""
    import gradio as gr

    view = [chat, sources, turns, chat_id, c["list"], c["title"], c["export"], c["saved"], c["banner"]]
    tail = view[4:]
    # A reopened conversation may have an answer still being written (the page was reloaded while it was, or
    # left for another conversation): the timer shows it when it is done.
    for opened in (app.load(chats.on_load, [c["saved"], chat], view, api_name=False, show_progress="hidden"),
                   c["list"].input(chats.on_select, [c["list"], c["search"]], view, api_name=False)):
        opened.then(chats.on_watch, chat_id, c["timer"], api_name=False, show_progress="hidden")
    c["timer"].tick(chats.on_tick, [chat_id, c["search"]], [*view, c["timer"]], api_name=False,
                    show_progress="hidden")
    # The page remembers the conversation a question opened as soon as it is asked (stored then), not only
    # when its answer is complete: a reload in between reopens it.
    chat_id.change(lambda cid: cid or NONE, chat_id, c["saved"], queue=False, api_name=False, show_progress="hidden")
    c["new"].click(chats.on_new, [c["search"]], view, api_name=False)
    def ask_first(chat_id: str | None, title: str) -> tuple[Any, str]:
        if not chat_id:
            gr.Info("Open a conversation first: pick one in the list.")
            return gr.update(visible=False), ""
        return gr.update(visible=True), (f"<p>Delete “{esc(title or 'this conversation')}” and all its turns? "
                                         "This cannot be undone.</p>")

    c["delete"].click(ask_first, [chat_id, c["title"]], [c["confirm"], c["question"]], api_name=False,
                      show_progress="hidden")

    def trash(chat_id: str | None, search: str, request: gr.Request) -> tuple[Any, ...]:
        # The chat's trash button deletes the conversation, as its icon says, after the same question as Delete.
        # Gradio has emptied the chat already: it shows the conversation again until the answer is Delete.
        shown = chats.view(request, chat_id, search)
        if shown[3] is None:  # nothing saved is open (a new chat, conversations off): emptying it is all there is
            return (*shown, gr.update(visible=False), "")
        return (*shown, *ask_first(shown[3], shown[5]))

    chat.clear(trash, [chat_id, c["search"]], [*view, c["confirm"], c["question"]], api_name=False,
               show_progress="hidden").then(
        None, None, None, api_name=False,
        # Gradio emptied the chat, and with it the focused trash button: the focus goes to the question's Cancel (to
        # the question box if nothing was saved to delete). The question is drawn a moment after this runs.
        js=TO_THE_QUESTION)
    c["no"].click(lambda: gr.update(visible=False), None, c["confirm"], queue=False, api_name=False)
    c["yes"].click(chats.on_delete, [chat_id, c["search"]], view, api_name=False).then(
        lambda: gr.update(visible=False), None, c["confirm"], queue=False, api_name=False)
    for trigger in (c["rename"].click, c["title"].submit):
        trigger(chats.on_rename, [chat_id, c["title"], c["search"]], tail, api_name=False)
    for trigger in (c["search"].change, c["search"].submit):
        trigger(chats.on_search, [c["search"], chat_id], c["list"], api_name=False, show_progress="hidden")

    def after(event: Any) -> Any:
        return event.then(chats.after_ask, [chat_id, c["search"]], tail, api_name=False, show_progress="hidden")

    return after
