"""Synthetic dlib-like face descriptors and a gallery filled with them through the real face write path.

Descriptors: identities grouped in families (relatives sit closer to each other than strangers do), each identity a
centre plus per-face noise of its own spread, all shifted by one shared mean of norm ~1.2 (dlib's descriptors share
one: their norms are ~1.3-1.5, which makes cosine order coarser than euclidean). With the defaults, same-person
distances are mostly below 0.5 (83 %) and different-person ones above 0.6 (99.9 %), as dlib's are on real faces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from imagesim.faces.analyze import Face
from imagesim.faces.embed import DIM
from imagesim.faces.stage import FaceStage, configure_faces
from imagesim.store import Store


@dataclass
class Identities:
    """Identity centres and spreads; `faces` draws faces of given identities."""

    centres: np.ndarray
    spread: np.ndarray
    rng: np.random.Generator

    def faces(self, who: Sequence[int]) -> np.ndarray:
        who = np.asarray(who, dtype=np.int64)
        noise = self.rng.normal(size=(len(who), DIM)).astype(np.float32)
        return (self.centres[who] + noise * self.spread[who, None]).astype(np.float32)


def identities(n: int, seed: int, family: int = 3, stranger: float = 0.95, relative: float = 0.5,
               spread: tuple[float, float] = (0.018, 0.034)) -> Identities:
    """`n` identities in families of up to `family`: strangers' centres ~`stranger` apart, relatives' ~`relative`;
    per-dimension noise drawn per identity in `spread` (same-person distance ~ 16 x that)."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=DIM)
    mean = 1.2 * mean / np.linalg.norm(mean)
    fam = rng.normal(size=(n // family + 1, DIM))
    fam *= np.sqrt(max(stranger ** 2 - relative ** 2, 0.0) / 2) / np.linalg.norm(fam, axis=1, keepdims=True)
    own = rng.normal(size=(n, DIM))
    own *= (relative / np.sqrt(2)) / np.linalg.norm(own, axis=1, keepdims=True)
    centres = (mean + fam[np.arange(n) // family] + own).astype(np.float32)
    return Identities(centres, rng.uniform(*spread, size=n).astype(np.float32), rng)


def photos_of(labels: Sequence[int], rng: np.random.Generator, most: int = 3) -> Iterator[list[int]]:
    """Split a sequence of face identities into photos of 1..`most` faces, never one identity twice in a photo."""
    i = 0
    while i < len(labels):
        k = int(rng.integers(1, most + 1))
        photo: list[int] = []
        seen: set[int] = set()
        while i < len(labels) and len(photo) < k and labels[i] not in seen:
            photo.append(i)
            seen.add(labels[i])
            i += 1
        if not photo:  # labels[i] repeats the identity just taken: start a new photo with it
            photo.append(i)
            i += 1
        yield photo


def open_face_store(db: str, analyzer: object) -> tuple[Store, FaceStage]:
    """A database with faces on (fake models' fingerprint) and the faces space ready."""
    store = Store.open(db, create=True)
    stage = configure_faces(store, True, analyzer=analyzer)  # type: ignore[arg-type]
    assert stage is not None
    stage.begin(store)
    return store, stage


def add_faces(store: Store, stage: FaceStage, vectors: np.ndarray, labels: Sequence[int], rng: np.random.Generator,
              score: float = 1.0) -> list[int]:
    """Write faces as photos of 1-3 faces through the indexer's write path (catalog + faces graph); face ids in the
    order of `vectors`."""
    ids: list[int] = []
    catalog = store.catalog
    with catalog.transaction():
        graph_ids, graph_vecs = [], []
        for photo in photos_of(labels, rng):
            sha = hashlib.sha256(rng.bytes(16)).hexdigest()
            cid = catalog.add_content(sha, 4000, 3000)
            faces = [Face((100 + 300 * n, 100, 300 + 300 * n, 300), score, vectors[j]) for n, j in enumerate(photo)]
            got, vecs = stage.put(catalog, cid, faces)
            ids.extend(got)
            graph_ids.extend(got)
            graph_vecs.append(vecs)
    store.index(stage.space).add(np.asarray(graph_ids), np.concatenate(graph_vecs))
    return ids


def pairwise(truth: Sequence[int], found: Sequence[int | None]) -> tuple[float, float]:
    """Pairwise precision and recall of a partition (None: a face alone) against the true identities."""
    t = np.asarray(truth, dtype=np.int64)
    f = np.asarray([-1 - i if p is None else p for i, p in enumerate(found)], dtype=np.int64)

    def pairs(*cols: np.ndarray) -> float:
        _, counts = np.unique(np.stack(cols, axis=1), axis=0, return_counts=True)
        return float((counts * (counts - 1) // 2).sum())

    both, predicted, actual = pairs(t, f), pairs(f), pairs(t)
    return (both / predicted if predicted else 1.0), (both / actual if actual else 1.0)
