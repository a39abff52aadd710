"""Clustering faces into people: constrained Chinese whispers and the pure steps around it (no SQL, no Store).

Chinese whispers (as in dlib) runs over the graph of faces closer than `LINK`, with hard constraints: two faces of
one photo never end up in one person, a face the user put in a person stays there, and a face the user said is
"not this person" never goes back to that person. The user's corrections arrive as marks on (photo bytes, box),
matched here to today's faces by overlap, so they survive re-clustering, re-indexing and a new face detector.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LINK = 0.55  # faces closer than this are linked for clustering: below the 0.6 verdict, so chains stay tight
MIN_FACES = 2  # an uncorrected cluster needs this many faces to become a person (one-off faces stay unassigned)
ROUNDS = 30
MARK_IOU = 0.5  # a mark applies to the face of its photo that overlaps its box at least this much (the most)
# A detection below this detector score is kept and searchable but never seeds a person: a new person needs
# MIN_FACES faces at or above it (weaker ones may join a person the others make). HOG's false positives on flowers
# score low; the floor is the largest one's score on a tuning split, rounded up (docs/faces.md has the held-out
# figures). Size does not separate them (flower false positives and real faces in group photos are both ~40 px).
# dlib's CNN detector is not measured yet: no floor.
SEED_SCORE = {"hog": 0.2, "cnn": 0.0}


@dataclass(frozen=True)
class Mark:
    """A user's correction: the face at `box` of the photo with these bytes is (or is not) person `person_id`."""

    sha256: str
    box: tuple[int, int, int, int]
    person_id: int
    is_person: bool


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def constraints(boxes: Sequence[Sequence[int]], shas: Sequence[str],
                marks: Sequence[Mark]) -> tuple[dict[int, int], dict[int, set[int]]]:
    """Marks -> (row index -> pinned person, row index -> persons it is not), matched by photo bytes and box.

    Row i is a face at `boxes[i]` in the photo whose bytes hash to `shas[i]`.
    """
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(shas):
        by_sha[s].append(i)
    pinned: dict[int, int] = {}
    forbidden: dict[int, set[int]] = defaultdict(set)
    for mark in marks:
        best = max(by_sha.get(mark.sha256, []), key=lambda i: iou(boxes[i], mark.box), default=None)
        if best is None or iou(boxes[best], mark.box) < MARK_IOU:
            continue  # that photo is not in the gallery now (the mark waits for it)
        if mark.is_person:
            pinned[best] = mark.person_id
        else:
            forbidden[best].add(mark.person_id)
    return pinned, forbidden


def seeds_people(score: float, detector: str = "hog") -> bool:
    """Whether a detection is sure enough (the detector's score) to count towards a new person."""
    return score >= SEED_SCORE.get(detector, 0.0)


def assign_persons(labels: Sequence[int], before: Sequence[int | None], pinned: dict[int, int],
                   forbidden: dict[int, set[int]], existing: set[int],
                   new_person: Callable[[], int], strong: Sequence[bool] | None = None) -> list[int | None]:
    """Cluster labels -> person ids: pinned clusters keep their person; others take the person most of their faces
    had `before` (stable numbers, among the `existing` ones), else `new_person()`; uncorrected clusters with fewer
    than MIN_FACES `strong` faces (`seeds_people`; all, when not given) stay unassigned (None). New persons are asked
    for biggest cluster first."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        members[lab].append(i)
    person_of: dict[int, int | None] = {}
    used: set[int] = set()
    for lab, idx in members.items():
        pins = {pinned[i] for i in idx if i in pinned}
        if pins:
            person_of[lab] = chosen = min(pins)  # constrained_whispers never mixes two pinned persons
            used.add(chosen)
    for lab, idx in sorted(members.items(), key=lambda kv: -len(kv[1])):
        if lab in person_of:
            continue
        if sum(1 for i in idx if strong is None or strong[i]) < MIN_FACES:
            person_of[lab] = None
            continue
        counts = Counter(p for i in idx if (p := before[i]) is not None and p in existing)
        not_them = {q for i in idx for q in forbidden.get(i, ())}
        pid = next((p for p, _ in counts.most_common() if p not in used and p not in not_them), None)
        person_of[lab] = chosen = pid if pid is not None else new_person()
        used.add(chosen)
    out: list[int | None] = []
    for i, lab in enumerate(labels):
        found = person_of[lab]
        out.append(None if found is not None and found in forbidden.get(i, ()) else found)
    return out


Links = list[list[tuple[int, float]]]  # row -> (linked row, weight link - distance), for each close neighbour


@dataclass(frozen=True)
class LinkGraph:
    """Links in compressed rows (numpy), for galleries: Python lists of tuples cost ~10 KB a face, these ~0.5 KB.
    Row i's links are `dst[indptr[i]:indptr[i + 1]]` with their weights (link - distance) in `weight`."""

    indptr: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, i: int) -> list[tuple[int, float]]:
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return list(zip(self.dst[a:b].tolist(), self.weight[a:b].tolist(), strict=True))


def all_pair_links(matrix: np.ndarray, contents: Sequence[int], link: float = LINK) -> Links:
    """Links between every two rows closer than `link` (of different photos), found over all pairs: for small sets
    (a test, the new faces of one update); the gallery-wide re-cluster uses `knn_links`."""
    n = len(matrix)
    neighbours: Links = [[] for _ in range(n)]
    sq = (matrix * matrix).sum(axis=1)
    step = max(16, 8_000_000 // max(n, 1))  # distance blocks of at most ~32 MB
    for start in range(0, n, step):
        block = matrix[start:start + step]
        d2 = sq[start:start + step, None] + sq[None, :] - 2.0 * block @ matrix.T
        dist = np.sqrt(np.maximum(d2, 0.0))
        for r, c in zip(*np.nonzero(dist < link), strict=False):
            i, j = start + int(r), int(c)
            if i != j and contents[i] != contents[j]:
                neighbours[i].append((j, float(link - dist[r, c])))
    return neighbours


def knn_links(matrix: np.ndarray, contents: Sequence[int], knn: np.ndarray, link: float = LINK) -> LinkGraph:
    """Links from a k-NN graph: `knn[i]` are row indices of row i's candidate neighbours (-1: none), kept when their
    exact euclidean distance is below `link`. Made symmetric (j links i when i links j), so a face whose own k-NN
    list missed a neighbour still hears it. Vectorised: a million faces make tens of millions of candidate pairs."""
    n = len(matrix)
    contents_arr = np.asarray(contents)
    found_i, found_j, found_d = [], [], []
    for start in range(0, n, 4096):
        rows = np.arange(start, min(n, start + 4096))
        cand = knn[rows]
        safe = np.where(cand >= 0, cand, 0)
        dist = np.linalg.norm(matrix[safe] - matrix[rows][:, None, :], axis=2)
        keep = (cand >= 0) & (dist < link) & (safe != rows[:, None]) & \
            (contents_arr[safe] != contents_arr[rows][:, None])
        r, c = np.nonzero(keep)
        found_i.append(rows[r])
        found_j.append(safe[r, c])
        found_d.append(dist[r, c])
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    d = np.concatenate(found_d) if found_d else np.zeros(0)
    lo, hi = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    _, first = np.unique(lo * n + hi, return_index=True)  # each pair once, whichever side found it
    lo, hi, w = lo[first], hi[first], link - d[first]
    src, dst, weight = np.concatenate([lo, hi]), np.concatenate([hi, lo]), np.concatenate([w, w])
    order = np.lexsort((dst, src))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
    return LinkGraph(indptr, dst[order].astype(np.int64), weight[order].astype(np.float64))


def constrained_whispers(matrix: np.ndarray, contents: Sequence[int], pinned: dict[int, int],
                         forbidden: dict[int, set[int]], link: float = LINK, rounds: int = ROUNDS) -> list[int]:
    """Chinese whispers with cannot-link constraints over all pairs of rows closer than `link` (see `whispers`)."""
    return whispers(all_pair_links(matrix, contents, link), contents, pinned, forbidden, rounds)


def whispers(neighbours: Links | LinkGraph, contents: Sequence[int], pinned: dict[int, int],
             forbidden: dict[int, set[int]], rounds: int = ROUNDS) -> list[int]:
    """Chinese whispers with cannot-link constraints over given links. Returns a cluster label per row.

    Each face takes the label its linked neighbours weigh most (weight: link - distance), among labels it may join:
    not one holding another face of its photo, not a person it was marked as not being. Pinned faces keep their
    person's label. Deterministic: faces are visited in order, ties go to the smaller label.
    """
    n = len(neighbours)
    # Labels: a pinned person p is label -(p + 1) (negative, never clashes with a row index); others start alone.
    labels = [-(pinned[i] + 1) if i in pinned else i for i in range(n)]
    held: dict[int, Counter[int]] = defaultdict(Counter)  # label -> photos it holds faces of
    for i, lab in enumerate(labels):
        held[lab][contents[i]] += 1

    def allowed(i: int, lab: int) -> bool:
        if lab < 0 and -lab - 1 in forbidden.get(i, ()):
            return False
        return held[lab][contents[i]] - (1 if labels[i] == lab else 0) == 0

    for _ in range(rounds):
        changed = 0
        for i in range(n):
            if i in pinned:
                continue
            weights: dict[int, float] = defaultdict(float)
            for j, w in neighbours[i]:
                weights[labels[j]] += w
            best = labels[i] if allowed(i, labels[i]) else i
            best_w = weights.get(best, 0.0)
            for lab, w in sorted(weights.items()):
                if w > best_w and allowed(i, lab):
                    best, best_w = lab, w
            if best != labels[i]:
                if not allowed(i, best):  # its own singleton label is taken by a group holding its photo
                    best = n + i
                held[labels[i]][contents[i]] -= 1
                held[best][contents[i]] += 1
                labels[i] = best
                changed += 1
        if not changed:
            break
    return labels
