"""Copies and similar shots, in two stages: k-NN candidates from region codes, then local features with RANSAC.

Stage one (`candidate_pairs`): every photo asks the "dup" graph (16 region codes per photo, `encoders/dup.py`) for
the nearest codes to its whole picture and to its mirror image; a crop meets one of its original's regions, a
bordered copy was trimmed before it was described. Each photo keeps at most `CANDIDATES` other photos: no all-pairs
work, and verification stays bounded per photo. Stage two (`Verifier`): ORB keypoints matched and fitted with RANSAC
(`encoders/keypoints.py`); a copy aligns with many inliers and, once aligned, agrees pixel for pixel up to tone; a
similar shot (a burst: same scene, another moment) aligns but its pixels differ more. The alignment also says how
the copy was made (`explain.py`). Groups: union-find over verified pairs; each group names the copy to keep.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..encoders.dup import DupEncoder, mirrored, region_codes
from ..encoders.keypoints import SIDE, SKETCH_SIDE, Alignment, Features, Sketch, align, features, sketch, sketch_inliers
from ..errors import ImagesimError, first_line
from ..images import load_image
from ..store import Store
from ..store.photos import Selection
from ..store.vectors import sorted_unique
from . import explain
from .results import Match, Query

DUP = "dup"
PARTS = DupEncoder.parts
NEIGHBOURS = 24  # graph vectors asked per region query (several regions of one photo may come back)
KNN_EF = 48  # hnswlib's search breadth here (the store's 128 is for 512-d vectors; 48 gives the same candidates)
CANDIDATES = 6  # other photos per photo by their three best regions ...
SINGLE = 4  # ... and by their single best region (tuning split: 7 -> 6 copies missed, 5.0 -> 6.2 pairs per photo)
RETRY_SCORE = 2.4  # candidates whose three best regions sum to this are also tried in the other orientation
COPY_INLIERS = 20  # a copy: at least this many keypoints agree with one similarity transform ...
COPY_AGREEMENT = 0.9  # ... and the aligned, tone-equalised pixels correlate this well
WHOLE_AGREEMENT = 0.97  # photos too small for keypoints: frame-to-frame agreement for a copy
SIMILAR_INLIERS = 15  # a similar shot: aligns, but its pixels differ more
SIMILAR_AGREEMENT = 0.5
GATE_INLIERS = 12  # sketch keypoints a pair must share to get the full check (bench/duplicates.py, tuning split)
KINDS = ("copies", "similar")
CONTENT = "content"
CONTENT_NEIGHBOURS = 3  # content-space neighbours verified per photo too (real CLIP weights only)
CONTENT_MIN = 0.9  # ... when at least this close


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


@dataclass(frozen=True)
class Member:
    """One photo of a group: how it differs from the one to keep (`keep` marks that one)."""

    path: str
    keep: bool
    score: float  # 0..1: how closely it matches the kept photo (1 for the kept photo itself)
    explanation: str

    def to_json(self) -> dict:
        return {"path": self.path, "keep": self.keep, "score": round(self.score, 3), "explanation": self.explanation}


@dataclass(frozen=True)
class DupGroup:
    """Copies of one photo, or similar shots of one scene; `members[0]` is the suggested keeper."""

    kind: str
    score: float  # the weakest member's score: every member matches the kept photo at least this well
    members: list[Member] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [m.path for m in self.members]

    @property
    def extras(self) -> list[str]:
        """The members that are not the suggested keeper."""
        return [m.path for m in self.members if not m.keep]

    def to_json(self) -> dict:
        return {"kind": self.kind, "score": round(self.score, 3), "members": [m.to_json() for m in self.members]}


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


def describe_group(kind: str, ids: list[int], paths: dict[int, str], verifier: Verifier) -> DupGroup:
    """A group with its keeper chosen (most of the scene, most pixels, least compressed, oldest) and each other
    member explained against it."""
    facts = [explain.file_facts(paths[i]) for i in ids]
    feats = [verifier.features(i) for i in ids]
    # how wide a view each member shows, against the member with the most pixels (one alignment each way)
    ref = max(range(len(ids)), key=lambda i: facts[i].width * facts[i].height)
    shares = [_view(feats[ref], f) if kind == "copies" else 1.0 for f in feats]
    order = explain.keep_order(facts, shares, feats)
    keeper = order[0]
    members = [Member(paths[ids[keeper]], True, 1.0, "suggested keep: " + _why_keep(facts[keeper], shares[keeper]))]
    for i in order[1:]:
        fa, fb = feats[keeper], feats[i]
        al = align(fa, fb) if fa is not None and fb is not None else None
        if al is None or fa is None or fb is None:
            members.append(Member(paths[ids[i]], False, 0.0, "joined through another member"))
            continue
        words = explain.describe(al, fa, fb, facts[keeper], facts[i])
        if kind == "similar":
            words = ["another shot of the same scene"] + [w for w in words if w.startswith(("cropped", "rotated"))]
        members.append(Member(paths[ids[i]], False, max(0.0, min(1.0, al.agreement)), ", ".join(words)))
    score = min((m.score for m in members[1:] if m.score > 0), default=0.0)
    return DupGroup(kind, score, members)


def _view(ref: Features | None, f: Features | None) -> float:
    """f's view relative to ref's: above 1 when ref is a crop of f, below when f is a crop of ref."""
    if ref is None or f is None or ref is f:
        return 1.0
    there, back = align(ref, f), align(f, ref)
    if there is None or back is None:
        return 1.0
    return explain.crop_share(there, ref, f) / max(explain.crop_share(back, f, ref), 0.05)


def _why_keep(f: explain.FileFacts, share: float) -> str:
    bits = [f"{f.width}x{f.height}"] if f.width else []
    if f.quality < 100 and f.quality:
        bits.append(f"JPEG quality ~{f.quality}")
    if share >= 0.99:
        bits.append("the widest view")
    return ", ".join(bits) or "first of the group"


# ---- against a gallery ---------------------------------------------------------------------------------------------


def _require_space(store: Store) -> None:
    info = store.catalog.space(DUP)
    if info is None or info.description.get("regions") != PARTS:
        raise ImagesimError(f"{store.folder} has no near-duplicate region codes yet: run `imagesim index` again "
                            "to add them")


def _loader(paths: dict[int, list[str]], side: int = SIDE) -> Callable[[int], Image.Image | None]:
    """Pixels of a content from its first readable file, JPEGs draft-decoded down to about `side`; a file that
    cannot be read is one line on stderr, and a content without a readable file gives None."""
    def load(cid: int) -> Image.Image | None:
        for path in paths.get(cid, []):
            try:
                return load_image(path, draft_size=side)
            except (ImagesimError, OSError, ValueError) as exc:
                print(f"imagesim: skipped {path}: {first_line(exc)}", file=sys.stderr)
        return None
    return load


def _content_pairs(store: Store, k: int = CONTENT_NEIGHBOURS) -> dict[tuple[int, int], tuple[float, bool]]:
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


def _region_labels(within: Selection | None) -> np.ndarray | None:
    """The graph labels (id * PARTS + region) of the photos a filter lets through; None: no filter."""
    if within is None:
        return None
    return (within.contents.astype(np.int64)[:, None] * PARTS + np.arange(PARTS)).ravel()


def _allowed_paths(paths: dict[int, list[str]], within: Selection | None) -> dict[int, list[str]]:
    if within is None:
        return paths
    return {cid: [p for p in files if within.allows(p)] for cid, files in paths.items() if cid in within}


def gallery_groups(store: Store, kind: str | None = None, within: Selection | None = None) -> list[DupGroup]:
    """Groups of copies and of similar shots (or of one `kind`), byte-identical files included as copies;
    `within`: among these photos only (filters)."""
    _require_space(store)
    store.refresh()
    allowed = _region_labels(within)
    with store.lock:
        labels, vectors = store.catalog.vectors(DUP, allowed, dim=DupEncoder.dim // PARTS)
        ids, codes = region_table(labels, vectors)
        index = store.index(DUP)

        def knn(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            return index.search(q, k, ef=KNN_EF, allowed=allowed, threads=store.threads)

        pairs = candidate_pairs(ids, codes, knn) if len(ids) else {}
        for key, seen in _content_pairs(store).items():  # what the content model sees as the same picture
            if within is None or (key[0] in within and key[1] in within):
                pairs.setdefault(key, seen)
        shared = [cid for cid in store.catalog.shared_contents() if within is None or cid in within]
        paths = _allowed_paths(store.catalog.paths_for(sorted({x for p in pairs for x in p} | set(shared))), within)
    verifier = Verifier(_loader(paths), _loader(paths, SKETCH_SIDE), threads=store.threads)
    found = verified_groups(pairs, verifier)
    grouped = {x for g in found["copies"] for x in g}
    first = {cid: paths[cid][0] for cid in paths if paths.get(cid)}
    out: list[DupGroup] = []
    for k in KINDS if kind is None else (kind,):
        for g in found[k]:
            group = describe_group(k, [x for x in g if x in first], first, verifier)
            if k == "copies":  # every file of a content is a member: byte-identical copies are copies too
                group = _with_identical(group, paths, {x for x in g})
            out.append(group)
        if k == "copies":
            out += [_identical(paths[cid]) for cid in shared if cid not in grouped and len(paths.get(cid, [])) > 1]
    return sorted(out, key=lambda g: (KINDS.index(g.kind), g.paths[0]))


def _identical(files: list[str]) -> DupGroup:
    files = sorted(files)
    keep = min(files, key=lambda p: explain.file_facts(p).mtime)
    members = [Member(keep, True, 1.0, "suggested keep: oldest of identical files")]
    members += [Member(p, False, 1.0, "identical file") for p in files if p != keep]
    return DupGroup("copies", 1.0, members)


def _with_identical(group: DupGroup, paths: dict[int, list[str]], cids: set[int]) -> DupGroup:
    listed = set(group.paths)
    extra = [Member(p, False, 1.0, "identical file") for c in sorted(cids) for p in paths.get(c, []) if p not in listed]
    return DupGroup(group.kind, group.score, group.members + extra) if extra else group


def find_in_gallery(store: Store, query: Query, limit: int = CANDIDATES,
                    within: Selection | None = None) -> list[Match]:
    """Gallery files that are copies of `query` (or similar shots of it), best first, each with how it differs
    from the query; the query file itself is left out; `within`: among these photos only (filters)."""
    _require_space(store)
    store.refresh()
    own_path = os.path.realpath(query) if isinstance(query, (str, os.PathLike)) else None
    img = query if isinstance(query, Image.Image) else load_image(query, draft_size=SIDE)
    codes = region_codes(img)
    # the query as photo -1: the same candidate search and score as the gallery pass
    allowed = _region_labels(within)
    found = candidate_pairs(np.array([-1]), codes[None], lambda q, k: store.search(DUP, q, k, allowed=allowed),
                            limit=limit)
    ranked = sorted(found.items(), key=lambda kv: -kv[1][0])
    chosen = [b for (_, b), _ in ranked]
    mirror_of = {b: seen[1] for (_, b), seen in ranked}
    with store.lock:
        paths = _allowed_paths(store.catalog.paths_for(chosen), within)
    # the query as photo -1 of a verifier: the sketch gate first, the full check only for what passes
    load, load_small = _loader(paths), _loader(paths, SKETCH_SIDE)
    verifier = Verifier(lambda c: img if c == -1 else load(c), lambda c: img if c == -1 else load_small(c),
                        threads=store.threads)
    passed = verifier.gate([(-1, c) for c in chosen if c in paths])
    qf = verifier.features(-1) if passed else None
    qfacts = explain.file_facts(str(query)) if own_path else explain.FileFacts("", *img.size, 100, 0.0)
    out: list[Match] = []
    for _, cid in passed:
        of = verifier.features(cid)
        if of is None or qf is None:
            continue
        al = align(qf, of, mirror_of.get(cid, False))
        kind = verdict(al)
        if kind is None or al is None:
            continue
        for path in paths.get(cid, []):
            if path == own_path:
                continue
            words = explain.describe(al, qf, of, qfacts, explain.file_facts(path))
            why = ("copy: " if kind == "copies" else "similar shot: ") + ", ".join(words)
            out.append(Match(path, round(float(al.agreement), 6), why=why))
    return sorted(out, key=lambda m: -m.score)
