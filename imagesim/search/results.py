"""What a query takes and what it returns: `Query` (a path, bytes or a PIL image) and `Match` (a path and a score)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..store import Store

Query = str | os.PathLike[str] | bytes | Image.Image


@dataclass(frozen=True)
class Match:
    """One gallery photo for a query. `score` is the cosine similarity (1.0 = same vector).

    Style and blend searches also fill `content_score`, `style_score` and `why` (a short explanation).
    """

    path: str
    score: float
    content_score: float | None = None
    style_score: float | None = None
    why: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def expand(store: Store, labels: np.ndarray, scores: np.ndarray, k: int) -> list[Match]:
    """Content labels -> files: byte-identical copies each get a row with the same score."""
    with store.lock:
        paths = store.catalog.paths_for(labels.tolist())
    out: list[Match] = []
    for label, score in zip(labels.tolist(), scores.tolist(), strict=False):
        for path in paths.get(label, []):
            out.append(Match(path, round(float(min(1.0, max(-1.0, score))), 6)))
    return out[:k]
