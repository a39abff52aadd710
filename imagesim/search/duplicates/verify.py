"""Stage two: ORB keypoints matched and fitted with RANSAC (`encoders/keypoints.py`), a cheap sketch check first;
a copy aligns with many inliers and, once aligned, agrees pixel for pixel up to tone; a similar shot (a burst: same
scene, another moment) aligns but its pixels differ more. Groups: connected components over the verified pairs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from ...encoders.keypoints import Alignment, Features, Sketch, align, features, sketch, sketch_inliers
from ...store.labels import sorted_unique

RETRY_SCORE = 2.4  # candidates whose three best regions sum to this are also tried in the other orientation
COPY_INLIERS = 20  # a copy: at least this many keypoints agree with one similarity transform ...
COPY_AGREEMENT = 0.9  # ... and the aligned, tone-equalised pixels correlate this well
WHOLE_AGREEMENT = 0.97  # photos too small for keypoints: frame-to-frame agreement for a copy
SIMILAR_INLIERS = 15  # a similar shot: aligns, but its pixels differ more
SIMILAR_AGREEMENT = 0.5
GATE_INLIERS = 12  # sketch keypoints a pair must share to get the full check (bench/duplicates.py, tuning split)
KINDS = ("copies", "similar")


def verdict(al: Alignment | None) -> str | None:
    """"copies", "similar" or None for one aligned pair."""
    if al is None:
        return None
    if al.whole:  # a thumbnail: no keypoints to count, so the pixels must agree closely
        return "copies" if al.agreement >= WHOLE_AGREEMENT else None
    if al.inliers >= COPY_INLIERS and al.agreement >= COPY_AGREEMENT:
        return "copies"
    if al.inliers >= SIMILAR_INLIERS and al.agreement >= SIMILAR_AGREEMENT:
        return "similar"
    return None


class Verifier:
    """Stage two over photos known by id, in two steps. First the sketch (`keypoints.sketch`: a few hundred ORB
    keypoints of the trimmed photo at 256 px, from a small decode, `load_small`) of both photos: a pair that shares
    fewer than GATE_INLIERS consistent keypoints is no copy, and costs no more. The pairs left get the full check:
    features once per photo (`load` gives its pixels, or None for a file that cannot be read, which then matches
    nothing), alignment, pixel agreement. Counters say how much of each was done (tests, the benchmark)."""

    def __init__(self, load: Callable[[int], Image.Image | None],
                 load_small: Callable[[int], Image.Image | None] | None = None, threads: int = 1) -> None:
        self.load = load
        self.load_small = load_small or load
        self.threads = max(1, threads)
        self.feats: dict[int, Features | None] = {}
        self.sketches: dict[int, Sketch | None] = {}
        self.checked = 0  # pairs aligned in full (work counter for tests and the benchmark)
        self.sketched = 0  # pairs given the sketch check

    def _each(self, fn: Callable, items: list) -> list:
        """fn over items on `threads` threads (decoding and OpenCV release the GIL), in order."""
        if self.threads == 1 or len(items) < 2:
            return [fn(x) for x in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(fn, items, chunksize=max(1, len(items) // (8 * self.threads))))

    def features(self, pid: int) -> Features | None:
        if pid not in self.feats:
            self.feats[pid] = self._features(pid)
        return self.feats[pid]

    def _features(self, pid: int) -> Features | None:
        img = self.load(pid)
        return features(img) if img is not None else None

    def _sketch(self, pid: int) -> Sketch | None:
        img = self.load_small(pid)
        return sketch(img) if img is not None else None

    def gate(self, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The pairs whose sketches agree (or say nothing: a thumbnail, flat art), in the order given."""
        todo = sorted({x for p in pairs for x in p} - set(self.sketches))
        self.sketches.update(zip(todo, self._each(self._sketch, todo), strict=True))

        def passes(pair: tuple[int, int]) -> bool:
            a, b = self.sketches[pair[0]], self.sketches[pair[1]]
            if a is None or b is None:
                return False
            if not (a.telling and b.telling):
                return True
            return sketch_inliers(a, b) >= GATE_INLIERS

        self.sketched += len(pairs)
        return [p for p, ok in zip(pairs, self._each(passes, pairs), strict=True) if ok]

    def prepare(self, pairs: list[tuple[int, int]]) -> None:
        """Features of every photo of these pairs, computed on `threads` threads."""
        todo = sorted({x for p in pairs for x in p} - set(self.feats))
        self.feats.update(zip(todo, self._each(self._features, todo), strict=True))

    def align(self, a: int, b: int, mirror_first: bool = False, score: float = 0.0) -> Alignment | None:
        """The orientation the candidate search saw; the other one too when the regions agreed strongly (`score`,
        three region similarities summed) but that orientation did not verify (a symmetric flower)."""
        fa, fb = self.features(a), self.features(b)
        if fa is None or fb is None:
            return None
        self.checked += 1
        found = align(fa, fb, mirror_first, both=False)
        if verdict(found) is None and score >= RETRY_SCORE:
            other = align(fa, fb, not mirror_first, both=False)
            if verdict(other) is not None:
                return other
        return found


def _components(edges: list[tuple[int, int]]) -> list[list[int]]:
    """Connected groups (two or more ids, each sorted, sorted) of the graph these edges make (scipy's csgraph)."""
    if not edges:
        return []
    from scipy.sparse import coo_matrix  # imported here: `import imagesim` stays light
    from scipy.sparse.csgraph import connected_components

    pairs = np.asarray(edges, dtype=np.int64)
    ids = sorted_unique(pairs)
    rows = np.searchsorted(ids, pairs)
    graph = coo_matrix((np.ones(len(rows)), (rows[:, 0], rows[:, 1])), shape=(len(ids), len(ids)))
    _, labels = connected_components(graph, directed=False)
    out: dict[int, list[int]] = {}
    for node, label in zip(ids.tolist(), labels.tolist(), strict=True):
        out.setdefault(label, []).append(node)
    return sorted(sorted(g) for g in out.values() if len(g) > 1)


def verified_groups(pairs: dict[tuple[int, int], tuple[float, bool]], verifier: Verifier) -> dict[str, list[list[int]]]:
    """Groups of ids per kind: copies (verified copy pairs, joined) and similar shots (similar pairs joining
    photos or copy groups; a copy group inside one similar group counts once)."""
    copies: list[tuple[int, int]] = []
    similar: list[tuple[int, int]] = []
    ranked = sorted(pairs, key=lambda p: -pairs[p][0])
    passed = verifier.gate(ranked)
    verifier.prepare(passed)
    for a, b in passed:
        score, flip = pairs[(a, b)]
        kind = verdict(verifier.align(a, b, flip, score))
        if kind is not None:
            similar.append((a, b))
            if kind == "copies":
                copies.append((a, b))
    copy_groups = _components(copies)
    in_copies = {x: g[0] for g in copy_groups for x in g}
    similar_groups = [g for g in _components(similar) if len({in_copies.get(x, x) for x in g}) > 1]
    return {"copies": copy_groups, "similar": similar_groups}
