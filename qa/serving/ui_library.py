"""The Library panel of the chat UI: the indexed documents with a filter, "Ask only: …", re-index and remove.

The list is filtered here, in Python, from the documents read once per refresh, and at most
MAX_SHOWN of them are rendered at a time, so the panel stays quick with thousands of documents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IndexMissingError, QAError
from ..types import Document, FileResult

if TYPE_CHECKING:
    from ..assistant import Assistant
    from .writer import Writer

MAX_SHOWN = 200  # documents rendered in the list at once; the filter narrows the rest down


def name_of(d: Document) -> str:
    return d.source.rsplit("/", 1)[-1]


def label(d: Document, twins: frozenset[str] = frozenset(), zone: tzinfo | None = None) -> str:
    """One line of the list: name, type, chunks, when it was added (in the reader's time zone `zone`). A name
    that `twins` holds (two documents of that name in different folders) shows its folder too."""
    from .ui import local_time

    added = local_time(datetime.fromisoformat(d.added.replace("Z", "+00:00")).timestamp(), zone) if d.added \
        else "unknown"
    name = name_of(d)
    if name in twins:
        name = "/".join(d.source.rsplit("/", 2)[-2:])
    return f"{name} · {d.type} · {d.chunks} chunk{'s' * (d.chunks != 1)} · added {added}"


def twins(docs: Sequence[Document]) -> frozenset[str]:
    """File names that more than one document has."""
    from collections import Counter

    return frozenset(n for n, k in Counter(name_of(d) for d in docs).items() if k > 1)


def matching(docs: Sequence[Document], query: str) -> list[Document]:
    """Documents whose path, title or type contains every word of the filter (any case)."""
    words = query.lower().split()
    return [d for d in docs if all(w in f"{d.source} {d.title} {d.type}".lower() for w in words)]


def summary(shown: int, total: int, query: str) -> str:
    """The count line above the list."""
    if not total:
        return "No documents yet: add some above."
    what = f"{total} document{'s' * (total != 1)}"
    if query.strip():
        what = f"{shown} of {what} match"
    return what if shown <= MAX_SHOWN else f"{what}; showing the first {MAX_SHOWN}, type to narrow the list"


def kept_scope(saved: Any) -> list[str]:
    """The scope the browser kept, read defensively (it is whatever localStorage held)."""
    return [s for s in saved if isinstance(s, str)] if isinstance(saved, list) else []


@dataclass
class LibraryPanel:
    """What `build_app` wires: the scope for questions, how to refresh the panel after an upload, and how to
    fill it when the page loads (with the scope the browser kept)."""

    scope: Any  # gr.Dropdown: sources to ask only (empty: all)
    refresh: Callable[..., tuple[Any, ...]]
    inputs: list[Any]
    outputs: list[Any]
    load: Callable[..., tuple[Any, ...]]
    load_inputs: list[Any]


def library_panel(assistant: Assistant, writer: Writer, status: Any, status_html: Callable[[], str]) -> LibraryPanel:
    """Build the panel inside the current Blocks layout (a right-column accordion)."""
    import gradio as gr

    from .ui import esc, reader_zone, render_ingest

    def read() -> list[Document]:
        try:
            return list(assistant.documents())
        except IndexMissingError:
            return []

    def listing(docs: list[Document], query: str, selected: list[str], same: frozenset[str] | None = None,
                zone: tzinfo | None = None) -> tuple[Any, str, list[str]]:
        """The list's update, its count line, and the sources it shows."""
        found = matching(docs, query)
        shown = found[:MAX_SHOWN]
        visible = [d.source for d in shown]
        shown_set = set(visible)
        same = twins(docs) if same is None else same
        return (gr.update(choices=[(label(d, same, zone), d.source) for d in shown],
                          value=[s for s in selected if s in shown_set]),
                summary(len(found), len(docs), query), visible)

    # Each handler that lists documents takes the request: its browser's time zone dates them.
    def refresh(query: str, selected: list[str], scope: list[str] | None, request: Any = None) -> tuple[Any, ...]:
        docs = read()
        indexed = {d.source for d in docs}
        selected = [s for s in selected if s in indexed]
        same = twins(docs)  # names two documents share: the list shows their folders, the scope their paths
        items, count, visible = listing(docs, query, selected, same, reader_zone(request))
        choices = [(d.source if name_of(d) in same else name_of(d), d.source) for d in docs]
        kept = [s for s in scope or [] if s in indexed]
        return docs, selected, items, count, gr.update(choices=choices, value=kept), status_html(), visible

    def load(query: str, selected: list[str], saved: Any, request: Any = None) -> tuple[Any, ...]:
        # The "Ask only" scope of the last visit, less the documents no longer indexed.
        return refresh(query, selected, kept_scope(saved), request)

    def filtered(docs: list[Document], query: str, selected: list[str],
                 request: Any = None) -> tuple[Any, str, list[str]]:
        return listing(docs, query, selected, zone=reader_zone(request))

    def picked(value: list[str], visible: list[str], selected: list[str]) -> list[str]:
        # Selections hidden by the filter stay selected; the visible part is what the list shows.
        on_list = set(visible)
        hidden = [s for s in selected if s not in on_list]
        return list(dict.fromkeys(hidden + list(value or [])))

    # The buttons act on the ticks the list shows (`value`), not only on those recorded: a tick's event may still be
    # running when the button is pressed (Space on a document, Tab, Enter on Remove…).
    def ask_only(value: list[str], visible: list[str], selected: list[str]) -> Any:
        selected = picked(value, visible, selected)
        if not selected:
            gr.Warning("Tick the documents to ask first.")
            return gr.skip()
        return gr.update(value=list(selected))

    def confirm(value: list[str], visible: list[str], selected: list[str]) -> tuple[Any, str]:
        selected = picked(value, visible, selected)
        if not selected:
            gr.Warning("Tick the documents to remove first.")
            return gr.update(visible=False), ""
        names = ", ".join(esc(s.rsplit("/", 1)[-1]) for s in selected[:10])
        more = f" and {len(selected) - 10} more" if len(selected) > 10 else ""
        n = len(selected)
        return gr.update(visible=True), (
            f"<p>Remove {n} document{'s' * (n != 1)} from the index: <b>{names}</b>{more}? Uploaded copies are "
            "deleted; files in your folders stay.</p>")

    def remove(value: list[str], visible: list[str], selected: list[str], query: str, scope: list[str] | None,
               request: Any = None) -> tuple[Any, ...]:
        selected = picked(value, visible, selected)
        try:
            report = assistant.forget(selected)
            message = f'<p class="qa-doc-done">{esc(report.summary())}</p>'
        except QAError as e:
            message = f'<p class="qa-doc-error">{esc(str(e))}</p>'
        return (gr.update(visible=False), message, *refresh(query, [], scope, request))

    def reindex(value: list[str], visible: list[str], selected: list[str], query: str, scope: list[str] | None,
                request: Any = None) -> tuple[Any, ...]:
        selected = picked(value, visible, selected)
        if not selected:
            gr.Warning("Tick the documents to re-index first.")
            return (gr.skip(),) * 8
        present = [Path(s) for s in selected if Path(s).is_file()]
        results = [FileResult(s, "failed", reason="the file is no longer there; remove it or add it again")
                   for s in selected if not Path(s).is_file()]
        if present:
            try:
                job = writer.wait(writer.submit(present).id)
                results += list(job.results)
                if job.error:
                    gr.Warning(job.error)
            except QAError as e:
                gr.Warning(str(e))
        return (render_ingest(results), *refresh(query, selected, scope, request))

    for handler in (refresh, load, filtered, remove, reindex):
        handler.__annotations__["request"] = gr.Request  # how Gradio knows to pass it

    with gr.Accordion("Library", open=True, elem_id="qa-library"):
        docs = gr.State([])
        selected = gr.State([])
        shown = gr.State([])  # the sources the list shows (the filter's matches, at most MAX_SHOWN)
        scope = gr.Dropdown(choices=[], value=[], multiselect=True, label="Ask only: (empty: all documents)",
                            elem_id="qa-scope", allow_custom_value=False)
        query = gr.Textbox(label="Filter documents", show_label=False,
                           placeholder="Filter documents by name, title or type…", elem_id="qa-doc-filter", max_lines=1)
        count = gr.Markdown("", elem_id="qa-doc-count")
        items = gr.CheckboxGroup(choices=[], value=[], label="Documents", show_label=False, elem_id="qa-doc-list")
        with gr.Row():
            only = gr.Button("Ask only these", size="sm", elem_id="qa-doc-only")
            again = gr.Button("Re-index", size="sm", elem_id="qa-doc-reindex")
            drop = gr.Button("Remove…", size="sm", variant="stop", elem_id="qa-doc-remove")
        # A Column holds the id: Gradio writes a Group's elem_id on two nested elements (a duplicate id).
        with gr.Column(visible=False, elem_id="qa-doc-confirm") as confirmation, gr.Group():
            question = gr.HTML("", elem_id="qa-doc-question")
            with gr.Row():
                yes = gr.Button("Remove", size="sm", variant="stop", elem_id="qa-doc-yes")
                no = gr.Button("Cancel", size="sm", elem_id="qa-doc-no")
        result = gr.HTML("", elem_id="qa-doc-result")

    # The scope lives in the browser (localStorage), like top-k and the answer mode: a reload keeps it. A document
    # removed since is dropped from it when the page loads (refresh keeps only indexed ones), and so saved.
    saved = gr.BrowserState([], storage_key="qa-scope")
    scope.change(lambda value: list(value or []), scope, saved, queue=False, api_name=False, show_progress="hidden")

    state_out = [docs, selected, items, count, scope, status, shown]
    query.change(filtered, [docs, query, selected], [items, count, shown], queue=False, api_name=False,
                 trigger_mode="always_last")
    # Every tick is recorded, each after the one before: by default Gradio drops an event triggered while the last one
    # of its kind is still running, so of two ticks a few milliseconds apart the second was lost (shown, not selected).
    ticked = [items, shown, selected]
    items.input(picked, ticked, selected, queue=False, api_name=False, trigger_mode="always_last")
    only.click(ask_only, ticked, scope, queue=False, api_name=False)
    drop.click(confirm, ticked, [confirmation, question], queue=False, api_name=False)
    no.click(lambda: gr.update(visible=False), None, confirmation, queue=False, api_name=False)
    yes.click(remove, [*ticked, query, scope], [confirmation, result, *state_out], concurrency_id="library",
              api_name=False)
    again.click(reindex, [*ticked, query, scope], [result, *state_out], concurrency_id="library", api_name=False)
    return LibraryPanel(scope=scope, refresh=refresh, inputs=[query, selected, scope], outputs=state_out, load=load,
                        load_inputs=[query, selected, saved])
