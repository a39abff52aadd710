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
from .catalog import FaceCatalog, FaceRow
from .detect import Box
from .schema import FACES, analyzer_for, face_settings, has_schema
from .verdicts import DECIMALS, POOR_QUALITY, face_distance, low_band, pair_quality, verdict

LOW_QUALITY = "low quality face: have a look"  # the note beside a verdict judged on a poor face (wider low band)
CANDIDATES = 4  # ask the cosine graph for this many times k, then re-rank by euclidean distance
PERSON_FACES = 3  # a person's distance: the mean over their nearest few faces, so one look-alike face claims no one


@dataclass(frozen=True)
class FaceMatch:
    """A gallery face for a query face: its photo, box, dlib distance and what that distance means."""

    path: str
    box: Box
    distance: float
    same_person: bool
    confidence: str  # "high" | "medium" | "low"
    quality: float | None = None  # the pair's (its worse face's, 0..1); None: unknown, judged as good
    note: str | None = None  # LOW_QUALITY when the pair is poor, so its low band is wider

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "box": list(self.box), "distance": self.distance, "same_person": self.same_person,
                "confidence": self.confidence, "quality": self.quality, "low_band": low_band(self.quality),
                "note": self.note}


@dataclass(frozen=True)
class PersonMatch:
    """A person of the gallery for a query face, judged on several of their faces (the mean distance to their
    nearest PERSON_FACES faces), which is steadier than any one face."""

    person_id: int
    name: str | None
    photos: int  # photos they are in, in the whole gallery
    distance: float
    faces: int  # how many of their faces that distance is over
    same_person: bool
    confidence: str
    path: str  # the photo of their face nearest to the query face, and that face's box
    box: Box
    quality: float | None = None  # the query face's against the best of their faces used (None: unknown)
    note: str | None = None

    @property
    def label(self) -> str:
        return self.name or f"person {self.person_id}"

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person_id, "name": self.name, "label": self.label, "photos": self.photos,
                "distance": self.distance, "faces": self.faces, "same_person": self.same_person,
                "confidence": self.confidence, "path": self.path, "box": list(self.box), "quality": self.quality,
                "low_band": low_band(self.quality), "note": self.note}


@dataclass(frozen=True)
class FaceResult:
    """One face of the query photo (box in its upright pixels), the people it may be (nearest first) and its
    nearest faces, nearest first."""

    box: Box
    matches: list[FaceMatch] = field(default_factory=list)
    people: list[PersonMatch] = field(default_factory=list)
    quality: float | None = None  # this query face's (0..1; None: not measured)
    note: str | None = None  # LOW_QUALITY for a poor query face: every verdict for it has the wider low band

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "people": [p.to_json() for p in self.people],
                "matches": [m.to_json() for m in self.matches], "quality": self.quality, "note": self.note}


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
        quality = tables.qualities([r.id for r in rows])
    return [Face(r.box, r.score, descs[r.id], quality.get(r.id)) for r in sorted(rows, key=lambda r: -r.score)]


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
        near = _nearest(store, face.encoding, k, allowed)
        with store.lock:
            paths = store.catalog.paths_for(row.content_id for _, row in near)
            quality = FaceCatalog(store.catalog).qualities(row.id for _, row in near)
        results.append(FaceResult(face.box, _matches(near, paths, k, within, face.quality, quality),
                                  _people(store, near, paths, k, within, face.quality, quality),
                                  face.quality, _note(face.quality)))
    return results


def _note(quality: float | None) -> str | None:
    """LOW_QUALITY for a poor face or pair (its verdicts have a wider low band), else None."""
    return LOW_QUALITY if quality is not None and quality < POOR_QUALITY else None


def _nearest(store: Store, encoding: np.ndarray, k: int,
             allowed: np.ndarray | None = None) -> list[tuple[float, FaceRow]]:
    """Candidates from the cosine graph, re-ranked by euclidean distance on the raw descriptors (rounded as shown:
    verdicts are judged on the distance the user sees), nearest first."""
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
    ids = [i for i in ids if i in descs and i in rows]
    dist = face_distance(np.stack([descs[i] for i in ids]), encoding) if ids else np.zeros(0)
    return sorted(((round(float(d), DECIMALS), rows[fid]) for d, fid in zip(dist.tolist(), ids, strict=True)),
                  key=lambda pair: (pair[0], pair[1].id))


def _matches(near: list[tuple[float, FaceRow]], paths: dict[int, list[str]], k: int,
             within: Selection | None = None, query_quality: float | None = None,
             quality: dict[int, float] | None = None) -> list[FaceMatch]:
    """The nearest faces, one row per file showing them (`paths`: the files of each content), each judged with the
    pair's quality (the worse of the query face's and its own)."""
    out: list[FaceMatch] = []
    quality = quality or {}
    for shown, row in near:
        q = pair_quality(query_quality, quality.get(row.id))
        same, confidence = verdict(shown, quality=q)
        for path in paths.get(row.content_id, []):
            if within is not None and not within.allows(path):
                continue
            out.append(FaceMatch(path, row.box, shown, same, confidence, q, _note(q)))
    return out[:k]


def _people(store: Store, near: list[tuple[float, FaceRow]], paths: dict[int, list[str]], k: int,
            within: Selection | None = None, query_quality: float | None = None,
            quality: dict[int, float] | None = None) -> list[PersonMatch]:
    """The people among the nearest faces (already within the filters' photos), each judged on the mean distance
    to their nearest PERSON_FACES faces (a person with one close face and others far is less sure than one whose
    faces all agree), nearest first; the quality is the query face's against the best of those faces."""
    by_person: dict[int, list[float]] = {}
    nearest: dict[int, FaceRow] = {}
    faces_used: dict[int, list[int]] = {}
    quality = quality or {}
    for shown, row in near:  # nearest first, so each person's list is sorted
        if row.person_id is not None:
            by_person.setdefault(row.person_id, []).append(shown)
            nearest.setdefault(row.person_id, row)
            faces_used.setdefault(row.person_id, []).append(row.id)
    if not by_person:
        return []
    with store.lock:
        known = FaceCatalog(store.catalog).names_and_photos(by_person)
    out = []
    for pid, dists in by_person.items():
        shown_in = [p for p in paths.get(nearest[pid].content_id, []) if within is None or within.allows(p)]
        if not shown_in:
            continue  # their nearest face's photo is gone since, or outside the chosen folders
        closest = dists[:PERSON_FACES]
        distance = round(sum(closest) / len(closest), DECIMALS)
        theirs = [quality[f] for f in faces_used[pid][:PERSON_FACES] if f in quality]
        q = pair_quality(query_quality, max(theirs) if theirs else None)
        same, confidence = verdict(distance, quality=q)
        name, photos = known.get(pid, (None, 0))
        out.append(PersonMatch(pid, name, photos, distance, len(closest), same, confidence, shown_in[0],
                               nearest[pid].box, q, _note(q)))
    return sorted(out, key=lambda p: (p.distance, p.person_id))[:k]
