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
from ..encoders.keypoints import SIDE, Alignment, Features, align, features
from ..errors import ImagesimError, first_line
from ..images import load_image
from ..store import Store
from ..store.photos import Selection
from . import explain
from .results import Match, Query

DUP = "dup"
PARTS = DupEncoder.parts
NEIGHBOURS = 24  # graph vectors asked per region query (several regions of one photo may come back)
CANDIDATES = 6  # other photos verified per photo, at most
RETRY_SCORE = 2.4  # candidates whose three best regions sum to this are also tried in the other orientation
COPY_INLIERS = 20  # a copy: at least this many keypoints agree with one similarity transform ...
COPY_AGREEMENT = 0.9  # ... and the aligned, tone-equalised pixels correlate this well
WHOLE_AGREEMENT = 0.97  # photos too small for keypoints: frame-to-frame agreement for a copy
SIMILAR_INLIERS = 15  # a similar shot: aligns, but its pixels differ more
SIMILAR_AGREEMENT = 0.5
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
                    knn: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
                    limit: int = CANDIDATES, batch: int = 64) -> dict[tuple[int, int], tuple[float, bool]]:
    """Pairs (a < b) of photo ids worth verifying -> (score, seen mirrored): per photo, the `limit` other photos
    whose region codes come nearest to its own regions (plain or mirrored), scored by the sum of their three best
    region similarities (one lucky region is weaker evidence than three). `codes`: (n, PARTS, PART); `knn` answers
    over graph labels (id * PARTS + region)."""
    out: dict[tuple[int, int], tuple[float, bool]] = {}
    for start in range(0, len(ids), batch):
        own = ids[start:start + batch]
        q = codes[start:start + batch].reshape(-1, codes.shape[-1])
        labels, scores = knn(np.concatenate([q, mirrored(q)]), NEIGHBOURS)
        n = len(own)
        labels = labels.reshape(2, n, -1) // PARTS  # (orientation, photo, hits over its regions)
        scores = scores.reshape(2, n, -1)
        for i in range(n):
            best: dict[int, tuple[float, bool]] = {}
            for flip in (0, 1):
                hits: dict[int, list[float]] = {}
                for other, sim in zip(labels[flip, i].tolist(), scores[flip, i].tolist(), strict=True):
                    if other != own[i]:
                        hits.setdefault(other, []).append(sim)
                for other, sims in hits.items():
                    score = sum(sorted(sims)[-3:])
                    if score > best.get(other, (-9.0, False))[0]:
                        best[other] = (score, bool(flip))
            for other, seen in sorted(best.items(), key=lambda kv: -kv[1][0])[:limit]:
                key = (min(int(own[i]), other), max(int(own[i]), other))
                if seen[0] > out.get(key, (-9.0, False))[0]:
                    out[key] = seen
    return out


def region_table(labels: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Graph rows (label = id * PARTS + region) -> (ids, codes (n, PARTS, PART)), one row per photo."""
    ids = np.unique(labels // PARTS)
    codes = np.zeros((len(ids), PARTS, vectors.shape[1]), np.float32)
    codes[np.searchsorted(ids, labels // PARTS), labels % PARTS] = vectors
    return ids, codes


class Verifier:
    """Stage two over photos known by id: features computed once per photo (`load` gives its pixels, or None for
    a file that cannot be read, which then matches nothing), alignments cached per pair."""

    def __init__(self, load: Callable[[int], Image.Image | None]) -> None:
        self.load = load
        self.feats: dict[int, Features | None] = {}
        self.checked = 0  # pairs aligned (work counter for tests and the benchmark)

    def features(self, pid: int) -> Features | None:
        if pid not in self.feats:
            img = self.load(pid)
            self.feats[pid] = features(img) if img is not None else None
        return self.feats[pid]

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
    ids = np.unique(pairs)
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
    for (a, b), (score, flip) in sorted(pairs.items(), key=lambda kv: -kv[1][0]):
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


def _loader(paths: dict[int, list[str]]) -> Callable[[int], Image.Image | None]:
    def load(cid: int) -> Image.Image | None:
        for path in paths.get(cid, []):
            try:
                return load_image(path, draft_size=SIDE)
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
            return index.search(q, k, allowed=allowed)

        pairs = candidate_pairs(ids, codes, knn) if len(ids) else {}
        for key, seen in _content_pairs(store).items():  # what the content model sees as the same picture
            if within is None or (key[0] in within and key[1] in within):
                pairs.setdefault(key, seen)
        shared = [cid for cid in store.catalog.shared_contents() if within is None or cid in within]
        paths = _allowed_paths(store.catalog.paths_for(sorted({x for p in pairs for x in p} | set(shared))), within)
    verifier = Verifier(_loader(paths))
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
    qf = features(img)
    load = _loader(paths)
    qfacts = explain.file_facts(str(query)) if own_path else explain.FileFacts("", *img.size, 100, 0.0)
    out: list[Match] = []
    for cid in chosen:
        other = load(cid)
        if other is None:
            continue
        of = features(other)
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
