"""Composed queries: several terms, each a photo or a text, each with a weight (negative: "not this"), in one search.

As rclip composes them: the query is the weighted sum of the terms' unit vectors in the content space (CLIP puts
photos and texts in one space), normalised. Every match then carries each term's own similarity to it, and `why`
names the term that pulled it in: the one under which it stands out most among the other matches (similarities
to a photo run higher than to a text, so raw values would always name the photo).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ImagesimError
from ..store import Store
from ..store.photos import Selection
from .results import Match, Query, expand, pool_size

CONTENT = "content"


@dataclass(frozen=True)
class Text:
    """A text term ("at sunset"), told apart from a photo's path, which is also a str."""

    text: str


Term = Query | Text


def term_name(term: Term) -> str:
    """How a term is shown in explanations and JSON: the text in quotes, a photo by its file name."""
    if isinstance(term, Text):
        return repr(term.text)
    if isinstance(term, (str, os.PathLike)):
        return os.path.basename(os.fspath(term))
    return "the photo"


def composed_search(store: Store, terms: Sequence[tuple[Term, float]], k: int, *,
                    image_vector: Callable[[Query], np.ndarray], text_vector: Callable[[str], np.ndarray],
                    within: Selection | None = None, offset: int = 0, sort: str = "score") -> list[Match]:
    """Photos nearest the weighted sum of `terms` ((term, weight) pairs; a negative weight subtracts)."""
    if not terms:
        raise ImagesimError("give at least one photo or text to search for")
    if not any(w > 0 for _, w in terms):
        raise ImagesimError("give at least one term with a positive weight: only subtracting finds nothing")
    if any(w == 0 for _, w in terms):
        raise ImagesimError("a term's weight cannot be 0: drop the term instead")
    names = [term_name(t) for t, _ in terms]
    vecs = np.stack([_unit(text_vector(t.text) if isinstance(t, Text) else image_vector(t)) for t, _ in terms])
    weights = np.asarray([w for _, w in terms], dtype=np.float32)
    query = (weights[:, None] * vecs).sum(axis=0)
    if float(np.linalg.norm(query)) < 1e-6:
        raise ImagesimError("the terms cancel each other out: change a weight")
    query = _unit(query)
    k = max(0, int(k))
    store.refresh()
    labels, scores = store.search(CONTENT, query[None, :], pool_size(k, offset, sort),
                                  allowed=None if within is None else within.contents)
    if not labels.shape[1]:
        return []
    with store.lock:
        got = store.index(CONTENT).vectors(labels[0].tolist())
    sims = got @ vecs.T  # (results, terms): each term's own similarity
    spread = (sims - sims.mean(axis=0)) / np.maximum(sims.std(axis=0), 1e-6)
    row_of = {int(lb): i for i, lb in enumerate(labels[0].tolist())}

    def detail(label: int) -> dict[str, Any]:
        row = row_of[label]
        per_term = tuple((name, round(float(s), 6)) for name, s in zip(names, sims[row].tolist(), strict=True))
        if len(terms) == 1:
            return {"terms": per_term}
        return {"terms": per_term, "why": _why(names, weights, sims[row], spread[row])}

    return expand(store, labels[0], scores[0], k, offset=offset, within=within, sort=sort, detail=detail)


def _why(names: list[str], weights: np.ndarray, sims: np.ndarray, spread: np.ndarray) -> str:
    """"pulled in by 'at sunset' (0.31); little of 'people' (0.12)": the positive term under which this match stands
    out most among the matches, and each negative term it keeps away from."""
    positive = [i for i, w in enumerate(weights.tolist()) if w > 0]
    best = max(positive, key=lambda i: float(spread[i]))
    parts = [f"pulled in by {names[best]} ({sims[best]:.2f})"]
    for i, w in enumerate(weights.tolist()):
        if w < 0:
            parts.append(f"{'little' if spread[i] <= 0 else 'some'} of {names[i]} ({sims[i]:.2f})")
    return "; ".join(parts)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def parse_weighted(text: str) -> tuple[str, float]:
    """rclip's "2:golden retriever" -> ("golden retriever", 2.0); without a "N:" prefix the weight is 1."""
    head, sep, rest = text.partition(":")
    if sep and rest.strip():
        try:
            weight = float(head)
        except ValueError:
            return text, 1.0
        if weight <= 0:
            raise ImagesimError(f"{text!r}: a weight must be above 0 (subtract with --minus / --minus-text)")
        return rest, weight
    return text, 1.0
