"""Style and blend queries: "which photos look like this?", alone or mixed with "which show the same thing?".

Candidates come from both graphs (a few times k each); every candidate's content and style scores are then
computed exactly from the stored vectors and ranked by the weighted score, so the ranking never depends on which
graph happened to return a photo. Each match says why it matched, from per-block style similarities and the
content score.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..encoders.style import BLOCKS, SIDE, StyleEncoder
from ..errors import ImagesimError, ModelError
from ..images import load_image
from ..store import Store
from ..store.photos import Selection
from .results import Match, Query, expand, pool_size

ContentVector = Callable[[Query], np.ndarray]  # the content vector of a query, as a content search computes it

STYLE = "style"
CONTENT = "content"
CANDIDATES_PER_K = 4  # candidates per space = this * k (at least MIN_CANDIDATES)
MIN_CANDIDATES = 40
# Explanation thresholds (cosine) per style block, (same, similar): measured on bench/style.py's tuning split, "same"
# sits near the median of same-look pairs and above the 90th percentile of different-look pairs, "similar" between.
BLOCK_THRESHOLDS = {"colour": (0.5, 0.3), "tone": (0.55, 0.35), "texture": (0.6, 0.4), "rendering": (0.85, 0.75)}
CONTENT_SAME, CONTENT_SIMILAR = 0.92, 0.75  # CLIP image-image cosine: near-identical scene / same kind of thing


def look_search(store: Store, query: Query, k: int, *, mode: str, style_weight: float,
                content_vector: ContentVector, within: Selection | None = None, offset: int = 0,
                sort: str = "score") -> list[Match]:
    """Style (mode="style") or blended (mode="blend") search; every Match carries both scores and `why`.
    `within`: only these photos (filters); `offset`, `sort`: the page (see `results.expand`)."""
    if mode not in ("style", "blend"):
        raise ImagesimError(f"unknown search mode {mode!r}: use content, style or blend")
    if not 0.0 <= style_weight <= 1.0:
        raise ImagesimError(f"--style-weight must be between 0 and 1, not {style_weight}")
    if not store.has_space(STYLE):
        raise ImagesimError(f"{store.folder} has no style vectors yet: run `imagesim index` again to add them")
    weight = 1.0 if mode == "style" else float(style_weight)
    k = max(0, int(k))
    store.refresh()
    enc = StyleEncoder()
    with store.lock:
        space = store.catalog.space(STYLE)
    if space is not None and space.fingerprint != enc.fingerprint():  # vectors of an older style encoder
        raise ImagesimError(f"{store.folder} holds style vectors of an older style encoder: run `imagesim index` "
                            "to re-encode them (only the style space is redone)")
    style_q, content_q = _query_vectors(store, query, enc, content_vector)
    if content_q is None and weight < 1.0:
        raise ImagesimError("blend search needs the content model; its weights are not available here")
    pool = pool_size(k, offset, sort)
    n = max(MIN_CANDIDATES, CANDIDATES_PER_K * pool)
    allowed = None if within is None else within.contents
    labels: set[int] = set()
    if weight > 0.0:
        labels.update(store.search(STYLE, style_q[None, :], n, allowed=allowed)[0][0].tolist())
    if weight < 1.0 and content_q is not None:
        labels.update(store.search(CONTENT, content_q[None, :], n, allowed=allowed)[0][0].tolist())
    if not labels:
        return []
    cand = np.asarray(sorted(labels), dtype=np.int64)
    with store.lock:
        s_labels, s_vecs = store.catalog.vectors(STYLE, cand.tolist(), dim=enc.dim)
        c_labels, c_vecs = (store.catalog.vectors(CONTENT, cand.tolist()) if content_q is not None
                            else (np.zeros(0, np.int64), np.zeros((0, 1), np.float32)))
    style_scores = dict(zip(s_labels.tolist(), (s_vecs @ style_q).tolist(), strict=True))
    content_scores = (dict(zip(c_labels.tolist(), (c_vecs @ content_q).tolist(), strict=True))
                      if content_q is not None and len(c_labels) else {})
    blocks = enc.block_similarities(style_q, s_vecs) if len(s_labels) else {}
    block_of = {lb: {b: float(blocks[b][i]) for b in BLOCKS} for i, lb in enumerate(s_labels.tolist())}

    def combined(lb: int) -> float:
        s = style_scores.get(lb, -1.0)
        c = content_scores.get(lb, -1.0)
        return weight * s + (1.0 - weight) * c if content_scores else s

    ranked = sorted((lb for lb in cand.tolist() if lb in style_scores), key=lambda lb: (-combined(lb), lb))[:pool]

    def detail(lb: int) -> dict[str, object]:
        c = content_scores.get(lb)
        return {"content_score": None if c is None else _clip(c), "style_score": _clip(style_scores[lb]),
                "why": explain(block_of[lb], c)}

    return expand(store, np.asarray(ranked, dtype=np.int64), np.asarray([combined(lb) for lb in ranked]), k,
                  offset=offset, within=within, sort=sort, detail=detail)


def _clip(x: float) -> float:
    return round(float(min(1.0, max(-1.0, x))), 6)


def explain(blocks: dict[str, float], content_score: float | None) -> str:
    """A short reason a photo matched: which parts of the look it shares, and whether it shows the same thing."""
    same = [BLOCKS[b] for b in BLOCKS if blocks.get(b, 0.0) >= BLOCK_THRESHOLDS[b][0]]
    similar = [BLOCKS[b] for b in BLOCKS if BLOCK_THRESHOLDS[b][1] <= blocks.get(b, 0.0) < BLOCK_THRESHOLDS[b][0]]
    parts = []
    if len(same) == len(BLOCKS):
        same = ["look (palette, tone, texture, rendering)"]
    if same:
        parts.append("same " + _join(same))
    if similar:
        parts.append("similar " + _join(similar))
    if not parts:
        parts.append("a different look")
    if content_score is not None:
        parts.append("same subject" if content_score >= CONTENT_SAME else
                     "related subject" if content_score >= CONTENT_SIMILAR else "different subject")
    return "; ".join(parts)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _query_vectors(store: Store, query: Query, enc: StyleEncoder,
                   content_vector: ContentVector) -> tuple[np.ndarray, np.ndarray | None]:
    """(style, content) vectors of the query: stored ones for an unchanged gallery file, else computed.

    The content vector comes from `content_vector` (`Gallery.vector`), exactly as a content search computes it, so
    blend at weight 0 ranks like content search.
    """
    style = None
    if isinstance(query, (str, os.PathLike)):
        style = store.stored_vector(query, STYLE)
    if style is None:
        img = query if isinstance(query, Image.Image) else load_image(query, draft_size=SIDE)
        style = enc.embed_images([img])[0]
    content = None
    if store.has_space(CONTENT):
        try:
            content = content_vector(query)
        except ModelError:
            content = None  # no content model here (e.g. offline): style search still works, without subject
    return style, content
