"""Near-duplicate groups: k nearest neighbours per photo in the "dup" space, edges that pass two tests, union-find.

Scales like the index: each photo asks the HNSW graph for its K nearest neighbours (no all-pairs matrix). An edge
needs the whole descriptor above `THRESHOLD` AND each block (layout, centre detail, colour) above its own floor, so
two different photos that share a layout but not the detail in the middle or the colours do not merge. Groups are
then checked against chaining: a member must itself be a duplicate of the group's most central photo, otherwise
it is split off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..encoders.dup import DupEncoder
from ..errors import ImagesimError
from ..images import load_image
from ..store import Store
from ..store.photos import Selection
from .results import Match, Query

K = 8  # neighbours asked per photo: more near-copies of one photo than this still join through each other
# Calibrated by bench/duplicates.py on flowers17 (threshold sweep in docs/benchmarks.md): the most edited copies
# grouped with their original while false groups stay under 1 %.
THRESHOLD = 0.80
STRUCTURE_MIN = 0.84
CENTRE_MIN = 0.94
COLOUR_MIN = 0.85
STRUCTURE_ALONE = 0.95
CHAIN_MIN = 0.9  # plain vectors only; dup vectors: every member must pass every test against the group's centre


@dataclass(frozen=True)
class Thresholds:
    whole: float = THRESHOLD
    structure: float = STRUCTURE_MIN
    centre: float = CENTRE_MIN
    colour: float = COLOUR_MIN
    chain: float = CHAIN_MIN
    structure_alone: float = STRUCTURE_ALONE


def is_duplicate(enc: DupEncoder, query: np.ndarray, others: np.ndarray,
                 t: Thresholds = Thresholds()) -> np.ndarray:
    """Boolean per row of `others`: is it a near-duplicate of `query` (every test passes)?"""
    others = np.atleast_2d(others)
    return pairs_are_duplicates(enc, np.broadcast_to(query, others.shape), others, t)


def pairs_are_duplicates(enc: DupEncoder, a: np.ndarray, b: np.ndarray, t: Thresholds = Thresholds()) -> np.ndarray:
    """Boolean per row pair (a[i], b[i]): the whole descriptor and each block pass their thresholds."""
    whole = (a * b).sum(axis=1)
    blocks = enc.pair_similarities(a, b)
    # the centre may be covered (a caption across the middle, clipped highlights) when the whole layout agrees closely
    centre_ok = (blocks["centre"] >= t.centre) | (blocks["structure"] >= t.structure_alone)
    return (whole >= t.whole) & (blocks["structure"] >= t.structure) & centre_ok & (blocks["colour"] >= t.colour)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_vectors(labels: np.ndarray, vectors: np.ndarray,
                  knn: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], *,
                  thresholds: Thresholds = Thresholds(), k: int = K, batch: int = 1024) -> list[list[int]]:
    """Groups (lists of labels, each of 2 or more) of near-duplicates among `labels`.

    `knn(queries, k)` returns (labels, scores) from the index holding these vectors (HNSW or exact).
    """
    enc = DupEncoder()
    row_of = {int(lb): i for i, lb in enumerate(labels.tolist())}
    uf = _UnionFind()
    for start in range(0, len(labels), batch):
        q = vectors[start:start + batch]
        nn_labels, nn_scores = knn(q, k + 1)
        # candidate pairs (query row, neighbour label) above the whole-descriptor threshold, tested together
        qi, col = np.nonzero((nn_scores >= thresholds.whole) & (nn_labels != labels[start:start + len(q), None]))
        pairs = [(int(labels[start + i]), int(nn_labels[i, c])) for i, c in zip(qi.tolist(), col.tolist(), strict=True)
                 if int(nn_labels[i, c]) in row_of]
        if not pairs:
            continue
        a = vectors[[row_of[p] for p, _ in pairs]]
        b = vectors[[row_of[c] for _, c in pairs]]
        for (me, other), good in zip(pairs, pairs_are_duplicates(enc, a, b, thresholds).tolist(), strict=True):
            if good:
                uf.union(me, other)
    members: dict[int, list[int]] = {}
    for lb in list(uf.parent):
        members.setdefault(uf.find(lb), []).append(lb)
    out: list[list[int]] = []
    for group in members.values():
        out += _split_chains(sorted(group), vectors[[row_of[g] for g in sorted(group)]], thresholds)
    return sorted((g for g in out if len(g) > 1), key=lambda g: g[0])


def _split_chains(group: list[int], vecs: np.ndarray, thresholds: Thresholds = Thresholds()) -> list[list[int]]:
    """Keep the members that are duplicates of the group's most central photo (both tests, like an edge); the rest
    are regrouped among themselves. Look-alikes chained through intermediate photos fall apart here."""
    if len(group) < 2:
        return []
    enc = DupEncoder() if vecs.shape[1] == DupEncoder.dim else None
    centre = int(np.argmax(vecs @ vecs.mean(axis=0)))  # O(n): no pairwise matrix, even for a huge group
    if enc is not None:
        keep = is_duplicate(enc, vecs[centre], vecs, thresholds)
    else:  # plain vectors (tests): the whole-vector test only
        keep = (vecs @ vecs[centre]) >= thresholds.chain
    keep[centre] = True
    kept = [g for g, k in zip(group, keep.tolist(), strict=False) if k]
    rest = [i for i, k in enumerate(keep.tolist()) if not k]
    out = [kept] if len(kept) > 1 else []
    if len(rest) > 1:
        out += _split_chains([group[i] for i in rest], vecs[rest], thresholds)
    return out


# ---- against a gallery ---------------------------------------------------------------------------------------------

DUP = "dup"


def _require_space(store: Store) -> None:
    if not store.has_space(DUP):
        raise ImagesimError(f"{store.folder} has no near-duplicate vectors yet: run `imagesim index` again "
                            "to add them")


def gallery_groups(store: Store, within: Selection | None = None) -> list[list[str]]:
    """Groups of absolute paths: files sharing one content (byte-identical) or near-duplicate contents; `within`:
    among these photos only (filters)."""
    _require_space(store)
    store.refresh()
    enc = DupEncoder()
    with store.lock:
        labels, vectors = store.catalog.vectors(DUP, None if within is None else within.contents, dim=enc.dim)
        index = store.index(DUP)

        def knn(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            return index.search(q, k, allowed=None if within is None else within.contents)

        near = group_vectors(labels, vectors, knn) if len(labels) else []
        grouped = {lb for g in near for lb in g}
        copies = [[cid] for cid in store.catalog.shared_contents() if cid not in grouped
                  and (within is None or cid in within)]
        paths = store.catalog.paths_for([lb for g in near + copies for lb in g])
    out = [sorted(p for lb in g for p in paths.get(lb, []) if within is None or within.allows(p))
           for g in near + copies]
    return sorted((g for g in out if len(g) > 1), key=lambda g: g[0])


def find_in_gallery(store: Store, query: Query, k: int = 2 * K, within: Selection | None = None) -> list[Match]:
    """Gallery files that are copies or near-duplicates of `query`, best first (the query file itself left out);
    `within`: among these photos only (filters)."""
    _require_space(store)
    store.refresh()
    enc = DupEncoder()
    vec = None
    own_path = None
    if isinstance(query, (str, os.PathLike)):
        own_path = os.path.realpath(query)
        vec = store.stored_vector(query, DUP)
    if vec is None:
        img = query if isinstance(query, Image.Image) else load_image(query, draft_size=256)  # like indexing
        vec = enc.embed_images([img])[0]
    labels, scores = store.search(DUP, vec[None, :], k, allowed=None if within is None else within.contents)
    if not len(labels[0]):
        return []
    with store.lock:
        lb_list = labels[0].tolist()
        got, vecs = store.catalog.vectors(DUP, lb_list, dim=enc.dim)
        by_label = dict(zip(got.tolist(), vecs, strict=True))
        paths = store.catalog.paths_for(lb_list)
    out: list[Match] = []
    for lb, score in zip(lb_list, scores[0].tolist(), strict=True):
        v = by_label.get(lb)
        if v is None or not is_duplicate(enc, vec, v)[0]:
            continue
        exact = score >= 0.99999
        for path in paths.get(lb, []):
            if path != own_path and (within is None or within.allows(path)):
                out.append(Match(path, round(float(min(1.0, score)), 6),
                                 why="same photo" if exact else "near-duplicate (resized, recompressed, cropped "
                                                                "or retouched)"))
    return out
