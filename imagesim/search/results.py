"""What a query takes and what it returns: `Query` (a path, bytes or a PIL image) and `Match` (a path and a score),
and `expand`, which turns ranked content labels into files: filters, date order and paging."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImagesimError
from ..store import Store
from ..store.photos import PhotoTable, Selection

Query = str | os.PathLike[str] | bytes | Image.Image
SORTS = ("score", "date")
# --sort date orders this many best matches (or offset + k, if more) by date taken: pages walk one fixed pool
DATE_POOL = 200


@dataclass(frozen=True)
class Match:
    """One gallery photo for a query. `score` is the cosine similarity (1.0 = same vector).

    Style and blend searches also fill `content_score`, `style_score` and `why` (a short explanation); composed
    queries fill `terms` (each term's own similarity, as (term, score) pairs) and `why`; a date-sorted search fills
    `taken` (the local time the photo was taken).
    """

    path: str
    score: float
    content_score: float | None = None
    style_score: float | None = None
    why: str | None = None
    taken: str | None = None
    terms: tuple[tuple[str, float], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if self.terms is not None:
            out["terms"] = dict(self.terms)
        return out


def check_paging(k: int, offset: int, sort: str) -> None:
    if offset < 0:
        raise ImagesimError(f"--offset must be 0 or more, not {offset}")
    if sort not in SORTS:
        raise ImagesimError(f"unknown sort {sort!r}: use score or date")


def pool_size(k: int, offset: int = 0, sort: str = "score") -> int:
    """How many ranked contents a query needs for this page."""
    return max(DATE_POOL, offset + k) if sort == "date" else offset + k


def expand(store: Store, labels: np.ndarray, scores: np.ndarray, k: int, *, offset: int = 0,
           within: Selection | None = None, sort: str = "score",
           detail: Callable[[int], dict[str, Any]] | None = None) -> list[Match]:
    """Content labels (best first) -> files: byte-identical copies each get a row with the same score; files
    outside `within`'s folders are left out; `sort` "date" orders by date taken (newest first, undated last);
    then rows [offset, offset + k). `detail(label)` adds fields (why, terms...) to each match."""
    check_paging(k, offset, sort)
    label_list = [int(lb) for lb in np.asarray(labels).ravel().tolist()]
    with store.lock:
        paths = store.catalog.paths_for(label_list)
        dates = PhotoTable(store.catalog).dates(label_list) if sort == "date" else {}
    rows = [(label, score, path) for label, score in zip(label_list, np.asarray(scores).ravel().tolist(), strict=False)
            for path in paths.get(label, []) if within is None or within.allows(path)]
    if sort == "date":
        rows.sort(key=lambda r: -(dates.get(r[0], (None, None))[0] or float("-inf")))
    out: list[Match] = []
    for label, score, path in rows[offset:offset + k]:
        extra = detail(label) if detail is not None else {}
        taken = dates.get(label, (None, None))[1] if sort == "date" else None
        out.append(Match(path, round(float(min(1.0, max(-1.0, score))), 6), taken=taken, **extra))
    return out
