"""The face tables: their schema, registered with the store as optional table sets, and the switch that turns faces
on (settings in the catalog's meta, tables created) or off (every face, person and correction deleted).

A face belongs to a content (the photo's bytes), like every vector: a renamed, moved or copied photo keeps its faces
without being looked at again, and a content that goes away takes its faces with it (ON DELETE CASCADE). Every query
on these tables is in `catalog.py`.
"""

from __future__ import annotations

import json

from ..store import Catalog, Store
from ..store.schema import TableSet, register_tables
from .analyze import FaceAnalyzer
from .detect import FaceDetector

FACES = "faces"  # the vector space; labels are face ids
META_KEY = "faces"  # JSON settings when faces are on for this database; absent when off
TABLES = "faces"  # the optional table set below
QUALITY_TABLES = "face_quality"  # a second set, added later: catalogs made before it open as they are, without it
PEOPLE_STATE_KEY = "people_state"  # incremental people's high-water mark (incremental.py); goes with the faces

# The face tables exist only in databases with faces turned on; this module owns their schema, catalog.py the queries.
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

# Each face's quality (0..1, quality.py), written with the face. Its own table set, not a column of `faces`: the
# catalog checks every schema against the one this version creates, so a new column would make every catalog with
# faces from before it look damaged; a new set is simply absent from them until faces are next written (ensure_schema).
# A face without a row (indexed before this table existed) has an unknown quality, judged as a good face.
QUALITY_SCHEMA = """
CREATE TABLE IF NOT EXISTS face_quality(
    face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE, quality REAL NOT NULL, _crc INTEGER);
"""

register_tables(TableSet(
    name=QUALITY_TABLES, marker="face_quality", ddl=QUALITY_SCHEMA,
    orphans=(("face_quality", "face_id NOT IN (SELECT id FROM faces)"),),
))


def ensure_schema(catalog: Catalog) -> None:
    """Create the face tables if they are missing (and the quality table, in catalogs from before it)."""
    catalog.ensure_tables(TABLES)
    catalog.ensure_tables(QUALITY_TABLES)


def has_schema(catalog: Catalog) -> bool:
    """Whether the face tables exist (faces were turned on once)."""
    return catalog.has_tables(TABLES)


def face_settings(catalog: Catalog) -> dict | None:
    """The face settings of this database, or None when faces are off."""
    raw = catalog.meta(META_KEY)
    return json.loads(raw) if raw else None


def analyzer_for(settings: dict) -> FaceAnalyzer:
    """The face models these settings ask for."""
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
        catalog.delete_meta(META_KEY)
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
            catalog.delete_meta(PEOPLE_STATE_KEY)
        store.drop_space(FACES)
        store.save(compact=True)

