"""The filter bar: date range, folder, camera, person, place and file type, and the sort order, applied to every tab.

Its fields keep their values while the page is open, and every search event reads them; `read` turns them into
`imagesim.search.Filters` (the library parses the same strings the CLI takes), or the one line saying what did not
parse. A place is a name ("Lisbon") or a position with an optional radius ("38.72,-9.14,5").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import gradio as gr

from imagesim.errors import ImagesimError
from imagesim.search import Filters
from imagesim.search.filters import TYPES

from .present import friendly

SORTS = ["score", "date"]
_POSITION = re.compile(r"^\s*[-+]?\d+(\.\d+)?\s*,\s*[-+]?\d+(\.\d+)?\s*(,.*)?$")


@dataclass(frozen=True)
class Asked:
    """What the filter bar asks for: the filters (None when none is set), the order, or why it cannot be read."""

    filters: Filters | None = None
    sort: str = "score"
    error: str = ""


def read(after: str | None, before: str | None, folder: str | None, camera: str | None,
         people: list[str] | str | None, place: str | None, types: list[str] | str | None,
         sort: str | None = "score") -> Asked:
    """The bar's field values as filters; a date that does not parse or an unknown type is one line in `error`."""
    place = (place or "").strip()
    is_position = bool(_POSITION.match(place))
    try:
        filters = Filters.parse(after=after or "", before=before or "", folders=[folder or ""], camera=camera or "",
                                near=place if is_position else "", place="" if is_position else place,
                                people=_listed(people), types=_listed(types))
    except ImagesimError as exc:
        return Asked(error=friendly(exc))
    return Asked(filters=None if filters.empty else filters, sort=sort if sort in SORTS else "score")


def _listed(value: list[str] | str | None) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def summary(*values: Any) -> str:
    """The fold's title: which filters are on, so a folded bar still says why results are missing."""
    names = ["after", "before", "in", "camera", "with", "place", "type"]
    on = [f"{name} {', '.join(_listed(v))}" for name, v in zip(names, values[:7], strict=True) if _listed(v)
          and any(x.strip() for x in _listed(v))]
    if len(values) > 7 and values[7] == "date":
        on.append("newest first")
    return "Filters: " + " · ".join(on) if on else "Filters"


class FilterBar:
    """The bar's fields in a fold (a phone's screen stays for the results), one row that wraps when narrow."""

    def __init__(self, people: list[str]) -> None:
        with gr.Accordion("Filters", open=False, elem_id="filter-fold") as self.fold, \
                gr.Row(elem_id="filter-bar", equal_height=False):
            self.after = gr.Textbox(label="After", placeholder="2019", max_lines=1, min_width=110,
                                    elem_id="f-after")
            self.before = gr.Textbox(label="Before", placeholder="2020-06", max_lines=1, min_width=110,
                                     elem_id="f-before")
            self.folder = gr.Textbox(label="In folder", placeholder="~/Pictures/Trips", max_lines=1, min_width=140,
                                     elem_id="f-folder")
            self.camera = gr.Textbox(label="Camera", placeholder="Pixel 7", max_lines=1, min_width=110,
                                     elem_id="f-camera")
            self.people = gr.Dropdown(people, value=[], multiselect=True, label="With", min_width=130,
                                      elem_id="f-people", info=None)
            self.place = gr.Textbox(label="Place", placeholder="Lisbon", max_lines=1, min_width=130,
                                    elem_id="f-place", info=None)
            self.types = gr.Dropdown(list(TYPES), value=[], multiselect=True, label="Type", min_width=110,
                                     elem_id="f-types")
            self.sort = gr.Radio(SORTS, value="score", label="Sort by", min_width=170, elem_id="f-sort")
            self.apply = gr.Button("Apply", size="sm", variant="secondary", min_width=80, elem_id="f-apply", scale=0)
        for trigger in self.triggers():  # the fold's title follows the fields
            trigger(lambda *v: gr.update(label=summary(*v)), self.inputs(), self.fold, api_visibility="private",
                    queue=False)

    def inputs(self) -> list[Any]:
        """The fields in the order `read` takes them."""
        return [self.after, self.before, self.folder, self.camera, self.people, self.place, self.types, self.sort]

    def triggers(self) -> list[Any]:
        """The events after which the results follow the bar: Enter in a box, a changed choice, Apply."""
        return [self.apply.click, self.sort.change, self.people.change, self.types.change,
                *(box.submit for box in (self.after, self.before, self.folder, self.camera, self.place))]
