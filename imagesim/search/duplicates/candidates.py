"""Stage one: which pairs of photos are worth verifying, from the "dup" graph's region codes (21 per photo,
`encoders/dup.py`), plus the content space's close neighbours when the content model has real weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...encoders.dup import DupEncoder, mirrored
from ...store import Store
from ...store.labels import sorted_unique
from ...store.photos import Selection

DUP = "dup"
PARTS = DupEncoder.parts
NEIGHBOURS = 16  # graph vectors asked per region query (several regions of one photo may come back); 24 found no
# more copies on fresh edit seeds (exact k-NN, 2,100 copies: 21 missed with 24, 20 with 16) and cost more
KNN_EF = 24  # hnswlib's search breadth here (the store's 128 is for 512-d vectors): at 20k photos (420k region
# vectors, bench duplicates-scale) ef 24 with 16 neighbours finds the same 218 of 220 copy pairs as ef 48 with 24,
# and the candidate search takes 28 s instead of 48 s
CANDIDATES = 6  # other photos per photo by their three best regions ...
SINGLE = 4  # ... and by their single best region (tuning split: 7 -> 6 copies missed, 5.0 -> 6.2 pairs per photo)
CONTENT = "content"
CONTENT_NEIGHBOURS = 3  # content-space neighbours verified per photo too (real CLIP weights only)
CONTENT_MIN = 0.9  # ... when at least this close


def candidate_pairs(ids: np.ndarray, codes: np.ndarray,
                    knn: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], limit: int = CANDIDATES,
                    single: int = SINGLE, batch: int = 512) -> dict[tuple[int, int], tuple[float, bool]]:
    """Pairs (a < b) of photo ids worth verifying -> (score, seen mirrored): per photo, the `limit` other photos
    whose region codes come nearest to its own regions (plain or mirrored), scored by the sum of their three best
    region similarities (one lucky region is weaker evidence than three). `codes`: (n, PARTS, PART); `knn` answers
    over graph labels (id * PARTS + region), a batch of queries at a time (numpy over the hits, no loop per photo)."""
    out: dict[tuple[int, int], tuple[float, bool]] = {}
    for start in range(0, len(ids), batch):
        own = np.asarray(ids[start:start + batch], dtype=np.int64)
        n = len(own)
        q = codes[start:start + batch].reshape(-1, codes.shape[-1])
        labels, scores = knn(np.concatenate([q, mirrored(q)]), NEIGHBOURS)
        k = labels.shape[1]
        # one row per hit: (photo in batch, orientation, other photo, similarity)
        flip = np.repeat(np.arange(2), n * PARTS * k)
        photo = np.tile(np.repeat(np.arange(n), PARTS * k), 2)
        other = labels.reshape(2, n, PARTS * k).ravel() // PARTS
        sims = scores.reshape(2, n, PARTS * k).ravel().astype(np.float64)
        keep = (other != own[photo]) & (labels.reshape(2, n, PARTS * k).ravel() >= 0)
        photo, flip, other, sims = photo[keep], flip[keep], other[keep], sims[keep]
        if not len(photo):  # no other photo among the hits (a filter left one photo, or none near)
            continue
        # the three best hits per (photo, orientation, other): sort by group, then by similarity, best first
        order = np.lexsort((-sims, other, flip, photo))
        photo, flip, other, sims = photo[order], flip[order], other[order], sims[order]
        first = np.r_[True, (photo[1:] != photo[:-1]) | (flip[1:] != flip[:-1]) | (other[1:] != other[:-1])]
        group = np.cumsum(first) - 1
        rank = np.arange(len(group)) - np.flatnonzero(first)[group]
        total = np.bincount(group, weights=np.where(rank < 3, sims, 0.0))
        g_photo, g_flip, g_other, g_top = photo[first], flip[first], other[first], sims[first]
        # per (photo, other): the better orientation; then per photo its `limit` best others, and the `single`
        # best by one region alone (a copy whose trim differs from its original's still has one matching region)
        order = np.lexsort((-total, g_other, g_photo))
        g_photo, g_flip, g_other, total, g_top = (x[order] for x in (g_photo, g_flip, g_other, total, g_top))
        best = np.r_[True, (g_photo[1:] != g_photo[:-1]) | (g_other[1:] != g_other[:-1])]
        g_photo, g_flip, g_other, total, g_top = (x[best] for x in (g_photo, g_flip, g_other, total, g_top))
        chosen = np.zeros(len(g_photo), bool)
        for key, keep in ((total, limit), (g_top, single)):
            order = np.lexsort((-key, g_photo))
            first = np.r_[True, g_photo[order][1:] != g_photo[order][:-1]]
            rank = np.arange(len(order)) - np.flatnonzero(first)[np.cumsum(first) - 1]
            chosen[order[rank < keep]] = True
        for me, you, score, seen in zip(own[g_photo[chosen]].tolist(), g_other[chosen].tolist(),
                                        total[chosen].tolist(), g_flip[chosen].tolist(), strict=True):
            key = (min(me, you), max(me, you))
            if score > out.get(key, (-9.0, False))[0]:
                out[key] = (score, bool(seen))
    return out


def region_table(labels: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Graph rows (label = id * PARTS + region) -> (ids, codes (n, PARTS, PART)), one row per photo."""
    ids = sorted_unique(labels // PARTS)
    codes = np.zeros((len(ids), PARTS, vectors.shape[1]), np.float32)
    codes[np.searchsorted(ids, labels // PARTS), labels % PARTS] = vectors
    return ids, codes


def content_pairs(store: Store, k: int = CONTENT_NEIGHBOURS) -> dict[tuple[int, int], tuple[float, bool]]:
    """Pairs of photos that are each other's nearest content neighbours, when the content model has real weights
    (a copy recoloured or cropped past what the region codes tolerate still shows the same thing). A model built
    from a config file alone (tests) is not asked: its neighbours mean nothing."""
    info = store.catalog.space(CONTENT)
    if info is None or str(info.description.get("model", "config:")).startswith("config:"):
        return {}
    labels, vectors = store.catalog.vectors(CONTENT, dim=info.dim)
    if not len(labels):
        return {}
    found, scores = store.index(CONTENT).search(vectors, k + 1)
    out: dict[tuple[int, int], tuple[float, bool]] = {}
    for me, row, row_scores in zip(labels.tolist(), found.tolist(), scores.tolist(), strict=True):
        for other, s in zip(row, row_scores, strict=True):
            if other != me and s >= CONTENT_MIN:
                out[(min(me, other), max(me, other))] = (float(s), False)
    return out


def region_labels(within: Selection | None) -> np.ndarray | None:
    """The graph labels (id * PARTS + region) of the photos a filter lets through; None: no filter."""
    if within is None:
        return None
    return (within.contents.astype(np.int64)[:, None] * PARTS + np.arange(PARTS)).ravel()
