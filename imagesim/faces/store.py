"""Faces in the database: the `faces` table beside the catalog's contents, the "faces" vector space, the opt-in switch.

A face belongs to a content (the photo's bytes), like every vector: a renamed, moved or copied photo keeps its faces
without being looked at again, and a content that goes away takes its faces with it (ON DELETE CASCADE).

Vectors. dlib's descriptors are not unit vectors (norms ~1.3-1.5) and their meaning is the euclidean distance
(0.6 = face_recognition's tolerance). The raw descriptor is kept in `faces.descriptor` and is what every verdict
is computed on; the "faces" space (the cosine HNSW graph) holds the same descriptor L2-normalised, used only to
find candidates, which are then re-ranked by exact euclidean distance on the raw descriptors. Cosine order and
euclidean order nearly agree at these norms, and asking the graph for several times k candidates absorbs the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..encoders import normalize
from ..store import Catalog, Store
from ..store.schema import TableSet, register_tables
from .detect import DIM, Box, Face, FaceAnalyzer, FaceDetector

FACES = "faces"  # the vector space; labels are face ids
META_KEY = "faces"  # JSON settings when faces are on for this database; absent when off
TABLES = "faces"  # the optional table set below

# The face tables exist only in databases with faces turned on; this module owns them (schema and queries).
FACE_SCHEMA = """
CREATE TABLE IF NOT EXISTS people(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, created_at REAL NOT NULL, _crc INTEGER);
CREATE TABLE IF NOT EXISTS faces(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
    left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    score REAL NOT NULL,
    descriptor BLOB NOT NULL,
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL, _crc INTEGER);
CREATE INDEX IF NOT EXISTS faces_by_content ON faces(content_id);
CREATE INDEX IF NOT EXISTS faces_by_person ON faces(person_id);
CREATE TABLE IF NOT EXISTS face_scans(
    content_id INTEGER PRIMARY KEY REFERENCES contents(id) ON DELETE CASCADE, faces INTEGER NOT NULL, _crc INTEGER);
CREATE TABLE IF NOT EXISTS face_marks(
    sha256 TEXT NOT NULL, left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    is_person INTEGER NOT NULL, _crc INTEGER,
    PRIMARY KEY (sha256, left, top, right, bottom, person_id));
"""


register_tables(TableSet(
    name=TABLES, marker="faces", ddl=FACE_SCHEMA, spaces=(FACES,),
    # what `imagesim repair` drops when it points at nothing: a lost face is not looked for again (it may be one a
    # user forgot: people forget), and a lost person leaves their faces unassigned (ON DELETE SET NULL)
    orphans=(
        ("faces", "content_id NOT IN (SELECT id FROM contents)"),
        ("faces", f"'{FACES}' IN (SELECT name FROM spaces) AND id NOT IN (SELECT label FROM vectors WHERE "
                  f"space='{FACES}')"),
        ("vectors", f"space='{FACES}' AND label NOT IN (SELECT id FROM faces)"),
        ("face_scans", "content_id NOT IN (SELECT id FROM contents)"),
        ("face_marks", "person_id NOT IN (SELECT id FROM people)"),
    ),
    mend=("UPDATE faces SET person_id=NULL WHERE person_id NOT IN (SELECT id FROM people)",),
))

# face_marks are the user's corrections: "this face is person P" (is_person=1) or "is not P" (0). They are keyed by
# the photo's bytes and the box, not by face id, so they hold even when faces are detected anew (another detector,
# a photo removed and added back): a mark applies to the face of that photo whose box overlaps it most.


@dataclass(frozen=True)
class FaceRow:
    id: int
    content_id: int
    box: Box
    score: float
    person_id: int | None


def ensure_schema(catalog: Catalog) -> None:
    """Create the face tables if they are missing."""
    catalog.ensure_tables(TABLES)


def has_schema(catalog: Catalog) -> bool:
    return catalog.has_tables(TABLES)


def face_settings(catalog: Catalog) -> dict | None:
    """The face settings of this database, or None when faces are off."""
    raw = catalog.meta(META_KEY)
    return json.loads(raw) if raw else None


def analyzer_for(settings: dict) -> FaceAnalyzer:
    return FaceAnalyzer(FaceDetector(settings.get("detector", "hog")))


def set_faces(store: Store, settings: dict | None) -> None:
    """Turn faces on (with these settings) or off; off deletes every face, person and correction."""
    catalog = store.catalog
    if settings is not None:
        ensure_schema(catalog)
        with catalog.transaction():
            catalog.set_meta(META_KEY, json.dumps(settings, sort_keys=True))
        return
    with catalog.transaction():
        catalog.conn.execute("DELETE FROM meta WHERE key=?", (META_KEY,))
    delete_all_faces(store)


def delete_all_faces(store: Store) -> None:
    """Remove all face data from the catalog and the vector files, leaving no bytes behind."""
    catalog = store.catalog
    with store.lock:
        with catalog.transaction():
            if has_schema(catalog):
                for table in ("face_marks", "faces", "face_scans", "people"):
                    catalog.conn.execute(f"DELETE FROM {table}")
            catalog.drop_space(FACES)
        store.drop_space(FACES)
        store.save(compact=True)


def wal_is_clean(catalog: Catalog) -> bool:
    """Checkpoint the WAL into the database and truncate it; False when a reader kept it from finishing."""
    busy, _, _ = catalog.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(busy) == 0


def faces_version(catalog: Catalog) -> tuple[int, int]:
    """(count, highest id) of the faces: changes whenever a face is added or deleted."""
    row = catalog.conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM faces").fetchone()
    return int(row[0]), int(row[1])


def face_count(catalog: Catalog) -> int:
    """Faces found in the gallery (0 before the face tables exist)."""
    return faces_version(catalog)[0] if has_schema(catalog) else 0


def face_rows(catalog: Catalog, where: str = "", params: Sequence[object] = ()) -> list[FaceRow]:
    rows = catalog.conn.execute(f"SELECT id, content_id, left, top, right, bottom, score, person_id FROM faces "
                                f"{where} ORDER BY id", tuple(params)).fetchall()
    return [FaceRow(int(r[0]), int(r[1]), (r[2], r[3], r[4], r[5]), float(r[6]), r[7]) for r in rows]


def descriptors(catalog: Catalog, face_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """Raw dlib descriptors by face id."""
    ids = [int(i) for i in face_ids]
    out: dict[int, np.ndarray] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for fid, blob in catalog.conn.execute(f"SELECT id, descriptor FROM faces WHERE id IN ({marks})", chunk):
            out[int(fid)] = np.frombuffer(blob, dtype=np.float32).copy()
    return out


def delete_faces(store: Store, face_ids: Sequence[int]) -> None:
    """Delete faces (rows, vectors, graph slots) and rewrite the graph so their vectors' bytes leave the file."""
    catalog = store.catalog
    ids = [int(i) for i in face_ids]
    with store.lock:
        with catalog.transaction():
            catalog.conn.executemany("DELETE FROM faces WHERE id=?", [(i,) for i in ids])
            catalog.conn.executemany("DELETE FROM vectors WHERE space=? AND label=?", [(FACES, i) for i in ids])
        if catalog.space(FACES) is not None:
            store.index(FACES).remove(ids)
        store.save(compact=True)


class FaceStage:
    """The indexer's face step: which contents still need a look, the batch detection, and the rows it writes."""

    space = FACES

    def __init__(self, analyzer: FaceAnalyzer) -> None:
        self.analyzer = analyzer
        self.found = 0

    @property
    def input_size(self) -> int:
        return self.analyzer.input_size

    def begin(self, store: Store) -> set[int]:
        """Make the tables and space ready; return the contents never scanned for faces with these models."""
        catalog = store.catalog
        ensure_schema(catalog)
        info = catalog.space(FACES)
        fingerprint = self.analyzer.fingerprint()
        if info is not None and info.fingerprint != fingerprint:  # other detector/models: detect everything anew
            with catalog.transaction():
                catalog.conn.execute("DELETE FROM faces")
                catalog.conn.execute("DELETE FROM face_scans")
        store.ensure_space(FACES, fingerprint, self.analyzer.describe(), DIM, rebuild=True)
        store.index(FACES)
        return {int(r[0]) for r in catalog.conn.execute(
            "SELECT id FROM contents c WHERE NOT EXISTS (SELECT 1 FROM face_scans s WHERE s.content_id=c.id)")}

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        return self.analyzer.faces(images)

    def put(self, catalog: Catalog, content_id: int, faces: Sequence[Face]) -> tuple[list[int], np.ndarray]:
        """Write one photo's faces (inside the caller's transaction); return their ids and graph vectors."""
        conn = catalog.conn
        for row in conn.execute("SELECT id FROM faces WHERE content_id=?", (content_id,)).fetchall():
            conn.execute("DELETE FROM vectors WHERE space=? AND label=?", (FACES, row[0]))
        conn.execute("DELETE FROM faces WHERE content_id=?", (content_id,))
        ids: list[int] = []
        for face in faces:
            cur = conn.execute("INSERT INTO faces(content_id, left, top, right, bottom, score, descriptor) "
                               "VALUES(?,?,?,?,?,?,?)", (content_id, *face.box, face.score,
                                                         np.asarray(face.encoding, dtype=np.float32).tobytes()))
            ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
        conn.execute("INSERT OR REPLACE INTO face_scans(content_id, faces) VALUES(?, ?)", (content_id, len(faces)))
        vectors = normalize(np.stack([f.encoding for f in faces])) if faces else np.zeros((0, DIM), np.float32)
        if ids:
            catalog.put_vectors(FACES, ids, [content_id] * len(ids), vectors)
        self.found += len(ids)
        return ids, vectors


def configure_faces(store: Store, faces: bool | None, detector: str | None = None) -> FaceStage | None:
    """Apply `--faces` / `--no-faces` / `--face-detector` to this database; return the face step, or None when off."""
    settings = face_settings(store.catalog)
    if faces is False:
        if settings is not None or has_schema(store.catalog):
            set_faces(store, None)
        return None
    if faces or detector:
        settings = {"detector": detector or (settings or {}).get("detector", "hog")}
        FaceDetector(settings["detector"])  # refuse an unknown detector before anything changes
        set_faces(store, settings)
    return FaceStage(analyzer_for(settings)) if settings is not None else None
