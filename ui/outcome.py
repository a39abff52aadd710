"""What a page handler returns: result items (thumbnail, caption, path...) and a one-line message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Item = dict[str, Any]  # one result: path, name, score, why, thumb (+ box/verdict for faces)
GalleryValue = list[tuple[str, str]]  # (thumbnail path, caption) as gr.Gallery takes them


@dataclass
class Outcome:
    """What a handler produced: result items, and a one-line message for the user when something is off."""

    items: list[Item] = field(default_factory=list)
    message: str = ""
    extra: Any = None  # handler-specific payload (an annotated image, per-face results...)
    failed: bool = False  # an action was refused: the page keeps what it shows
    selected: int | None = None  # the result to highlight (the query photo itself, after "More like this")

    @property
    def gallery(self) -> GalleryValue:
        return [(it["thumb"], it["caption"]) for it in self.items]
