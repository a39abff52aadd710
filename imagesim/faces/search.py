"""Search by face: every face of a query photo, each with the gallery faces nearest to it and a verdict."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..encoders import normalize
from ..errors import ImagesimError, NoFaceFound
from ..images import load_image
from ..store import Store
from ..store.photos import Selection
from .analyze import Face, FaceAnalyzer
from .detect import Box
from .store import FACES, FaceCatalog, analyzer_for, face_settings, has_schema
from .verdicts import DECIMALS, face_distance, verdict

CANDIDATES = 4  # ask the cosine graph for this many times k, then re-rank by euclidean distance


@dataclass(frozen=True)
class FaceMatch:
    """A gallery face for a query face: its photo, box, dlib distance and what that distance means."""

    path: str
    box: Box
    distance: float
    same_person: bool
    confidence: str  # "high" | "medium" | "low"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "box": list(self.box), "distance": self.distance, "same_person": self.same_person,
                "confidence": self.confidence}


@dataclass(frozen=True)
class FaceResult:
    """One face of the query photo (box in its upright pixels) and its matches, nearest first."""

    box: Box
    matches: list[FaceMatch] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "matches": [m.to_json() for m in self.matches]}


def faces_enabled(store: Store) -> bool:
    """Whether faces are on for this database."""
    return face_settings(store.catalog) is not None


def analyzer_for_query(store: Store, cached: FaceAnalyzer | None) -> FaceAnalyzer | None:
    """The analyzer for this database's face settings: `cached` when it still fits, None when faces are off."""
    settings = face_settings(store.catalog)
    if settings is None:
        return None
    fresh = analyzer_for(settings)
    return cached if cached is not None and cached.fingerprint() == fresh.fingerprint() else fresh


def query_faces(store: Store, query: str | os.PathLike[str] | bytes | Image.Image,
                analyzer: FaceAnalyzer | None = None) -> list[Face]:
    """The faces of a query photo: the stored ones for an unchanged gallery file, else freshly detected."""
    settings = face_settings(store.catalog)
    if settings is None:
        raise ImagesimError(f"faces are off for {store.folder}: run `imagesim index DIR --db {store.folder} --faces`")
    if isinstance(query, (str, os.PathLike)):
        stored = _stored_faces(store, Path(query))
        if stored:  # none stored (no face, or faces forgotten): a query may still look for itself
            return stored
    analyzer = analyzer or analyzer_for(settings)
    img = query if isinstance(query, Image.Image) else load_image(query, draft_size=analyzer.input_size)
    return analyzer.faces([img])[0]


def _stored_faces(store: Store, path: Path) -> list[Face] | None:
    """The faces stored for an unchanged, already scanned gallery file; None when the file must be looked at."""
    with store.lock:
        content_id = store.indexed_content(path)
        tables = FaceCatalog(store.catalog)
        if content_id is None or not tables.scanned(content_id):
            return None
        rows = tables.faces_of_content(content_id)
        descs = tables.descriptors([r.id for r in rows])
    return [Face(r.box, r.score, descs[r.id]) for r in sorted(rows, key=lambda r: -r.score)]


def search_faces(store: Store, query: str | os.PathLike[str] | bytes | Image.Image, k: int = 10,
                 analyzer: FaceAnalyzer | None = None, within: Selection | None = None) -> list[FaceResult]:
    """For each face in `query`, the k nearest gallery faces (one row per file showing them), nearest first;
    `within`: in these photos only (filters)."""
    faces = query_faces(store, query, analyzer)
    if not faces:
        raise NoFaceFound("no face found in this photo: faces must look roughly at the camera and span at least "
                          "~1/16 of the photo's long side; try a tighter crop")
    k = max(0, int(k))
    store.refresh()
    allowed = None
    if within is not None:
        with store.lock:
            faces_in = [r.id for r in FaceCatalog(store.catalog).all_faces() if r.content_id in within]
        allowed = np.asarray(faces_in, dtype=np.int64)
    results = []
    for face in sorted(faces, key=lambda f: (f.box[0], f.box[1])):  # left to right, as people read a photo
        results.append(FaceResult(face.box, _matches(store, face.encoding, k, allowed, within)))
    return results


def _matches(store: Store, encoding: np.ndarray, k: int, allowed: np.ndarray | None = None,
             within: Selection | None = None) -> list[FaceMatch]:
    """Candidates from the cosine graph, re-ranked by euclidean distance on the raw descriptors."""
    if k == 0 or not has_schema(store.catalog):
        return []
    labels, _ = store.search(FACES, normalize(encoding[None, :]), max(k * CANDIDATES, 50), allowed=allowed)
    ids = labels[0].tolist()
    if not ids:
        return []
    with store.lock:
        tables = FaceCatalog(store.catalog)
        descs = tables.descriptors(ids)
        rows = {r.id: r for r in tables.faces(ids)}
        paths = store.catalog.paths_for(r.content_id for r in rows.values())
    ids = [i for i in ids if i in descs and i in rows]
    dist = face_distance(np.stack([descs[i] for i in ids]), encoding) if ids else np.zeros(0)
    out: list[FaceMatch] = []
    for d, fid in sorted(zip(dist.tolist(), ids, strict=True)):
        shown = round(float(d), DECIMALS)  # the verdict is judged on the distance the user sees
        same, confidence = verdict(shown)
        for path in paths.get(rows[fid].content_id, []):
            if within is not None and not within.allows(path):
                continue
            out.append(FaceMatch(path, rows[fid].box, shown, same, confidence))
    return out[:k]
