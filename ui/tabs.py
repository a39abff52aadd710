"""The page's building blocks: a results panel (grid + detail view) and the Faces and People tabs.

Every event here is private (not in the API docs, not callable by gradio_client). Strings from files or users reach
the page only as gallery captions and radio labels (which Gradio shows as text) or escaped (`present.text_html`).
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypedDict

import gradio as gr

from imagesim.search import Filters

from .handlers import Handlers
from .outcome import Item, Outcome
from .people import faces_word
from .present import text_html

WORK = "imagesim-work"  # concurrency group of every search: at most WORK_LIMIT run at once
WORK_LIMIT = 2
PRIVATE: Final = "private"  # every UI event: not in the API docs, not callable by gradio_client
NO_MATCH = "no one else in the gallery looks like this person"


class Queued(TypedDict, total=False):
    """Queue options shared by the page's search events and the API endpoints, checked key by key when unpacked into
    a Gradio listener (a plain dict would type every value as `object`)."""

    api_visibility: Literal["public", "private", "undocumented"]
    concurrency_id: str
    concurrency_limit: int


PICKED = ["results"]  # a results grid's classes while its highlighted tile means something
RUN = Queued(api_visibility=PRIVATE, concurrency_id=WORK, concurrency_limit=WORK_LIMIT)


def note_html(message: str) -> str:
    """A handler's one-line message for an HTML component: escaped, never markup."""
    return f"<p class='note'>{text_html(message)}</p>" if message else ""


def toast(out: Outcome) -> str:
    """A handler's message for the page's message line. Not a Gradio toast: toasts render their text as HTML and
    mangle what an escape keeps (a name like `<b>.jpg` shows as `b.jpg`)."""
    return note_html(out.message)


def selected_index(evt: gr.SelectData) -> int:
    return evt.index if isinstance(evt.index, int) else (evt.index or [0])[0]


class Panel:
    """A grid of results with a detail view (larger photo, name, path, size, date, why, download, close) and
    optional 'More like this'. Arrow keys step through the results while the detail is open; Escape closes it."""

    def __init__(self, handlers: Handlers, name: str, columns: int = 5, more: bool = True) -> None:
        self.handlers = handlers
        self.items = gr.State([])
        self.selected = gr.State(None)
        with gr.Column(elem_classes=["panel"]):
            self.grid = gr.Gallery(label=name, show_label=False, columns=columns, object_fit="contain",
                                   height="auto", allow_preview=False, buttons=[], elem_classes=[*PICKED, "no-pick"],
                                   interactive=False, fit_columns=False)
            with gr.Row(visible=False, elem_classes=["detail"]) as self.detail:
                self.preview = gr.Image(show_label=False, interactive=False, height=360, scale=3,
                                        buttons=["fullscreen"], elem_classes=["preview"])
                with gr.Column(scale=2, min_width=240):
                    self.info = gr.HTML(elem_classes=["facts"])
                    with gr.Row():
                        self.more = gr.Button("More like this", variant="primary", size="sm", visible=more)
                        self.download = gr.DownloadButton("Download", size="sm", elem_classes=["download"])
                        self.close = gr.Button("Close", size="sm", elem_classes=["close-detail"])
        # always_last: stepping quickly through the results (arrow keys) ends on the last one, none is dropped
        self.grid.select(self._on_select, [self.items],
                         [self.preview, self.info, self.selected, self.detail, self.download, self.grid],
                         trigger_mode="always_last", **RUN)
        self.close.click(lambda: (None, gr.update(visible=False)), None, [self.selected, self.detail],
                         api_visibility=PRIVATE, queue=False)

    def _on_select(self, items: list[Item], evt: gr.SelectData) -> tuple[Any, ...]:
        index = selected_index(evt)
        item = items[index] if 0 <= index < len(items) else None
        preview, facts = self.handlers.details(item)
        original = self.handlers.original(item)
        return (self.handlers.full_size(original, preview), facts, item, gr.update(visible=item is not None),
                original, gr.update(elem_classes=PICKED))

    def outputs(self) -> list[Any]:
        return [self.grid, self.items, self.detail]

    @staticmethod
    def values(out: Outcome) -> tuple[Any, ...]:
        # Gradio's gallery cannot be told to forget its selection (a None selected_index is ignored and new results
        # keep the old index), so a grid of new results without a chosen one hides the highlight (style.css).
        classes = PICKED if out.selected is not None else [*PICKED, "no-pick"]
        return (gr.update(value=out.gallery, selected_index=out.selected, elem_classes=classes), out.items,
                gr.update(visible=False))


class FacesTab:
    """Faces found in "Your photo", numbered; per face, where else that person appears (or that no one does)."""

    def __init__(self, h: Handlers, hint: str) -> None:
        self.h = h
        self.per_face = gr.State([])
        with gr.Row():
            self.annotated = gr.Image(label="Faces found", interactive=False, height=320, scale=2, buttons=[])
            with gr.Column(scale=1, min_width=200):
                self.choice = gr.Radio([], label="Show matches for", elem_id="face-choice")
                self.note = gr.HTML(note_html(hint), elem_classes=["tab-note"])
        with gr.Accordion("Same person", open=True) as self.fold:
            self.panel = Panel(h, "Same person", columns=5, more=False)
        self.choice.change(self.pick, [self.per_face, self.choice], [*self.panel.outputs(), self.fold, self.note],
                           api_visibility=PRIVATE, queue=False)

    def run(self, upload: str | None, filters: Filters | None = None, error: str = "") -> tuple[Any, ...]:
        out = Outcome(message=error, extra=(None, [])) if error else self.h.search_faces(upload, filters=filters)
        annotated, per_face = out.extra
        choices = [f"Face {i + 1}" for i in range(len(per_face))]
        return (annotated, per_face, gr.update(choices=choices, value=choices[0] if choices else None),
                *self.pick(per_face, choices[0] if choices else None, out.message))

    def pick(self, per_face: list[list[Item]], choice: str | None, message: str = "") -> tuple[Any, ...]:
        n = int(choice.split()[-1]) - 1 if choice else 0
        items = per_face[n] if 0 <= n < len(per_face) else []
        found = any(it.get("same_person") for it in items)
        if message or not per_face:
            note = message
        elif found:
            note = (f"{len(per_face)} face{'s' * (len(per_face) != 1)} found. ✓ = same person, ✗ = probably someone "
                    "else; confidence says how sure.")
        else:
            note = f"Face {n + 1}: {NO_MATCH}."
        fold = gr.update(open=found, label="Same person" if found else "Closest faces (none is this person)")
        return (*Panel.values(Outcome(items=items)), fold, note_html(note))

    def outputs(self) -> list[Any]:
        return [self.annotated, self.per_face, self.choice, *self.panel.outputs(), self.fold, self.note]


class PeopleTab:
    """Everyone the faces were grouped into; a person's own page with their faces, and name, merge, split and
    forget (each change but naming asks to confirm first)."""

    def __init__(self, h: Handlers) -> None:
        self.h = h
        self.items = gr.State([])
        self.selected = gr.State(None)
        self.face = gr.State(None)
        self.pending = gr.State(None)
        self.grid = gr.Gallery(show_label=False, columns=8, object_fit="cover", height="auto", allow_preview=False,
                               buttons=[], interactive=False, elem_classes=["people"], fit_columns=False)
        self.note = gr.HTML(elem_classes=["tab-note"])
        with gr.Column(visible=False, elem_classes=["person-page"]) as self.page:
            self.title = gr.HTML()
            self.faces = gr.Gallery(show_label=False, columns=6, object_fit="contain", height="auto",
                                    allow_preview=False, buttons=[], interactive=False, elem_classes=["results"],
                                    fit_columns=False)
            with gr.Row():
                self.name = gr.Textbox(label="Name", placeholder="type their name", scale=3)
                self.rename = gr.Button("Rename", variant="primary", scale=1)
            with gr.Row():
                self.other = gr.Dropdown([], label="The same person as", scale=3)
                self.merge = gr.Button("Merge", scale=1)
            with gr.Row():
                self.split = gr.Button("Split off the chosen face", size="sm")
                self.forget = gr.Button("Forget this person", size="sm", variant="stop")
            with gr.Row(visible=False, elem_classes=["confirm"]) as self.confirm:
                self.question = gr.HTML()
                self.yes = gr.Button("Yes, do it", variant="stop", size="sm", elem_id="confirm-yes")
                self.no = gr.Button("Cancel", size="sm")
        self.grid.select(self.open, [self.items], [self.selected, self.name, self.page, self.title, self.faces,
                                                   self.face, self.other, self.confirm, self.note], **RUN)
        self.faces.select(self.pick_face, [self.selected], [self.face, self.note], api_visibility=PRIVATE,
                          queue=False)
        self.rename.click(self.do_rename, [self.selected, self.name], self.outputs(), **RUN)
        asks = [self.pending, self.confirm, self.question, self.yes]
        self.merge.click(self.ask_merge, [self.selected, self.other, self.items], asks, api_visibility=PRIVATE)
        self.split.click(self.ask_split, [self.selected, self.face], asks, api_visibility=PRIVATE)
        self.forget.click(self.ask_forget, [self.selected], asks, api_visibility=PRIVATE)
        self.no.click(lambda: (None, gr.update(visible=False)), None, [self.pending, self.confirm],
                      api_visibility=PRIVATE, queue=False)
        self.yes.click(self.do_pending, [self.pending, self.selected], self.outputs(), **RUN)

    def load(self) -> tuple[Any, ...]:
        out = self.h.people()
        return (out.gallery, out.items, note_html(out.message), gr.update(visible=False), None,
                gr.update(visible=False))

    def open(self, items: list[Item], evt: gr.SelectData) -> tuple[Any, ...]:
        index = selected_index(evt)
        person = items[index] if 0 <= index < len(items) else None
        if person is None:
            return None, "", gr.update(visible=False), "", [], None, gr.update(), gr.update(visible=False), ""
        faces = self.h.person_faces(person)
        others = [(it["caption"], it["id"]) for it in items if it["id"] != person["id"]]
        title = f"<h3>{text_html(person['name'])}</h3><p>{faces_word(person['count'])}</p>"
        return (person, person["name"] if person.get("named") else "", gr.update(visible=True), title,
                faces.gallery, None, gr.update(choices=others, value=None), gr.update(visible=False),
                note_html(faces.message if faces.failed else ""))

    def pick_face(self, person: Item | None, evt: gr.SelectData) -> tuple[Any, ...]:
        faces = self.h.person_faces(person).items
        index = selected_index(evt)
        face = faces[index] if 0 <= index < len(faces) else None
        return face, note_html(f"chosen: the face in {face['name']}" if face else "")

    def _ask(self, action: tuple[Any, ...] | None, question: str, refusal: str) -> tuple[Any, ...]:
        if action is None:  # nothing to confirm: say what is missing, offer only Cancel
            return None, gr.update(visible=True), note_html(refusal), gr.update(visible=False)
        return action, gr.update(visible=True), note_html(question), gr.update(visible=True)

    def ask_merge(self, person: Item | None, other: int | None, items: list[Item]) -> tuple[Any, ...]:
        them = next((it for it in items if it["id"] == other), None)
        if not person or them is None:
            return self._ask(None, "", "choose who this person is the same as")
        return self._ask(("merge", other), f"Merge {them['name']} ({faces_word(them['count'])}) into "
                         f"{person['name']}? The two become one person.", "")

    def ask_split(self, person: Item | None, face: Item | None) -> tuple[Any, ...]:
        if not person or not face:
            return self._ask(None, "", "click the face that is someone else first")
        return self._ask(("split", face), f"Make the face in {face['name']} a person of their own?", "")

    def ask_forget(self, person: Item | None) -> tuple[Any, ...]:
        if not person:
            return self._ask(None, "", "pick a person first")
        return self._ask(("forget",), f"Forget {person['name']}: delete their {faces_word(person['count'])}, name "
                         "and corrections? The photos stay.", "")

    def do_pending(self, pending: tuple[Any, ...] | None, person: Item | None) -> tuple[Any, ...]:
        if not pending:
            return self._result(self.h.rename_person(None, None))
        kind, *args = pending
        if kind == "merge":
            return self._result(self.h.merge_people(person, args[0]))
        if kind == "split":
            return self._result(self.h.split_face(person, args[0]))
        return self._result(self.h.forget_person(person))

    def do_rename(self, person: Item | None, name: str) -> tuple[Any, ...]:
        return self._result(self.h.rename_person(person, name))

    def _result(self, out: Outcome) -> tuple[Any, ...]:
        """A change done: the people again, the person page closed; refused: everything stays, the reason shown."""
        note = toast(out)
        if out.failed:
            return gr.update(), gr.update(), note, gr.update(), gr.update(), gr.update(visible=False)
        return out.gallery, out.items, note, gr.update(visible=False), None, gr.update(visible=False)

    def outputs(self) -> list[Any]:
        return [self.grid, self.items, self.note, self.page, self.selected, self.confirm]
