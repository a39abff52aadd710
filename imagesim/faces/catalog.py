"""Every query on the face tables (`schema.py`): `FaceCatalog`, by name, for people, face search and the index step;
and the row types, face counts, rows and descriptors by id, and deleting faces with their graph slots.

Vectors. dlib's descriptors are not unit vectors (norms ~1.3-1.5) and their meaning is the euclidean distance
(0.6 = face_recognition's tolerance). The raw descriptor is kept in `faces.descriptor` and is what every verdict
is computed on; the "faces" space (the cosine HNSW graph) holds the same descriptor L2-normalised, used only to
find candidates, which are then re-ranked by exact euclidean distance on the raw descriptors. Cosine order and
euclidean order nearly agree at these norms, and asking the graph for several times k candidates absorbs the rest.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..store import Catalog, Store
from .analyze import Face
from .cluster import Mark
from .detect import Box
from .schema import FACES, QUALITY_TABLES, has_schema


@dataclass(frozen=True)
class FaceRow:
    """A row of `faces` without its descriptor (see `descriptors`)."""

    id: int
    content_id: int
    box: Box
    score: float
    person_id: int | None


@dataclass(frozen=True)
class Person:
    """A row of `people` with its face count and the face that shows them best (biggest, surest)."""

    id: int
    name: str | None
    face_count: int
    cover_face_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "face_count": self.face_count, "cover_face_id": self.cover_face_id}

    @property
    def label(self) -> str:
        return self.name or f"person {self.id}"


def faces_version(catalog: Catalog) -> tuple[int, int]:
    """(count, highest id) of the faces: changes whenever a face is added or deleted."""
    one = catalog.conn.execute  # two statements: each alone is one b-tree count / seek, together a scan of every face
    return int(one("SELECT COUNT(*) FROM faces").fetchone()[0]), int(one("SELECT COALESCE(MAX(id), 0) FROM faces"
                                                                          ).fetchone()[0])


def face_count(catalog: Catalog) -> int:
    """Faces found in the gallery (0 before the face tables exist)."""
    return faces_version(catalog)[0] if has_schema(catalog) else 0


def face_rows(catalog: Catalog, where: str = "", params: Sequence[object] = ()) -> list[FaceRow]:
    """Faces (by id) matching an SQL `where` clause over `faces`; code outside this module uses FaceCatalog."""
    rows = catalog.sound("faces", catalog.conn.execute(  # each row checked as read (damage never reaches an answer)
        f"SELECT id, content_id, left, top, right, bottom, score, person_id, {catalog.ok('faces')} FROM faces "
        f"{where} ORDER BY id", tuple(params)).fetchall())
    return [FaceRow(int(r[0]), int(r[1]), (r[2], r[3], r[4], r[5]), float(r[6]), r[7]) for r in rows]


def descriptors(catalog: Catalog, face_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """Raw dlib descriptors by face id."""
    ids = [int(i) for i in face_ids]
    out: dict[int, np.ndarray] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for fid, blob in catalog.sound("faces", catalog.conn.execute(
                f"SELECT id, descriptor, {catalog.ok('faces')} FROM faces WHERE id IN ({marks})", chunk).fetchall()):
            out[int(fid)] = np.frombuffer(blob, dtype=np.float32).copy()
    return out


def delete_faces(store: Store, face_ids: Sequence[int]) -> None:
    """Delete faces (rows, vectors, graph slots) and rewrite the graph so their vectors' bytes leave the file."""
    catalog = store.catalog
    ids = [int(i) for i in face_ids]
    with store.lock:
        with catalog.transaction():
            catalog.conn.executemany("DELETE FROM faces WHERE id=?", [(i,) for i in ids])
            catalog.delete_vectors(FACES, ids)
        if catalog.space(FACES) is not None:
            store.index(FACES).remove(ids)
        store.save(compact=True)


def _rowid(cur: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just made."""
    if cur.lastrowid is None:  # only after a statement that inserted nothing
        raise RuntimeError("the INSERT made no row")
    return cur.lastrowid


class FaceCatalog:
    """Every query and change People and face search make on the face tables, by name.

    Callers hold the store's lock; changes join the caller's transaction (`catalog.transaction()`), so several of
    them land together or not at all.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @property
    def conn(self) -> sqlite3.Connection:
        """The catalog's connection, looked up each time: `imagesim repair` may reconnect the catalog."""
        return self.catalog.conn

    # ---- faces -----------------------------------------------------------------------------------------------------

    def unassigned(self) -> int:
        """Faces that belong to no person."""
        return int(self.conn.execute("SELECT COUNT(*) FROM faces WHERE person_id IS NULL").fetchone()[0])

    def all_faces(self) -> list[FaceRow]:
        """Every face, by id."""
        return face_rows(self.catalog)

    def faces(self, face_ids: Iterable[int]) -> list[FaceRow]:
        """The faces with these ids (unknown ids are left out), by id."""
        ids = [int(i) for i in face_ids]
        return face_rows(self.catalog, f"WHERE id IN ({','.join('?' * len(ids))})", ids)

    def faces_after(self, face_id: int) -> list[FaceRow]:
        """Faces with an id above `face_id` (ids only grow: the faces written since a face's), by id."""
        return face_rows(self.catalog, "WHERE id > ?", (int(face_id),))

    def faces_in(self, face_ids: Iterable[int]) -> list[FaceRow]:
        """As `faces`, for any number of ids (asked in chunks, below SQLite's variable limit)."""
        ids = sorted({int(i) for i in face_ids})
        return [r for i in range(0, len(ids), 500) for r in self.faces(ids[i:i + 500])]

    def persons_in_contents(self, content_ids: Iterable[int]) -> dict[int, set[int]]:
        """Content id -> the persons its faces already belong to (for those of these photos that have any)."""
        ids = sorted({int(i) for i in content_ids})
        out: dict[int, set[int]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for cid, pid in self.conn.execute(f"SELECT content_id, person_id FROM faces WHERE content_id IN "
                                              f"({','.join('?' * len(chunk))}) AND person_id IS NOT NULL", chunk):
                out.setdefault(int(cid), set()).add(int(pid))
        return out

    def faces_of_person(self, person_id: int) -> list[FaceRow]:
        """A person's faces, by id."""
        return face_rows(self.catalog, "WHERE person_id=?", (int(person_id),))

    def faces_of_content(self, content_id: int) -> list[FaceRow]:
        """The faces of one photo's bytes, by id."""
        return face_rows(self.catalog, "WHERE content_id=?", (int(content_id),))

    def descriptors(self, face_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """Raw dlib descriptors by face id."""
        return descriptors(self.catalog, face_ids)

    def qualities(self, face_ids: Iterable[int]) -> dict[int, float]:
        """Each face's quality, for those of these faces that have one (faces indexed before it have none)."""
        ids = [int(i) for i in face_ids]
        if not ids or not self.catalog.has_tables(QUALITY_TABLES):
            return {}
        out: dict[int, float] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out.update((int(f), float(q)) for f, q in self.conn.execute(
                f"SELECT face_id, quality FROM face_quality WHERE face_id IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def scanned(self, content_id: int) -> bool:
        """Whether this photo's bytes were looked at for faces (with today's models)."""
        return self.conn.execute("SELECT 1 FROM face_scans WHERE content_id=?", (content_id,)).fetchone() is not None

    def contents_of(self, person_id: int) -> set[int]:
        """The photos (content ids) showing this person."""
        return {int(r[0]) for r in self.conn.execute("SELECT content_id FROM faces WHERE person_id=?", (person_id,))}

    def shared_content(self, person_ids: Sequence[int]) -> int | None:
        """A photo (content id) showing two faces of these persons together, if there is one."""
        row = self.conn.execute(f"SELECT content_id FROM faces WHERE person_id IN ({','.join('?' * len(person_ids))}) "
                                "GROUP BY content_id HAVING COUNT(*) > 1", list(person_ids)).fetchone()
        return int(row[0]) if row else None

    def set_persons(self, assignment: Iterable[tuple[int, int | None]]) -> None:
        """Put faces in persons: (face id, person id, or None for no one)."""
        self.conn.executemany("UPDATE faces SET person_id=? WHERE id=?", [(p, f) for f, p in assignment])

    def unscanned_contents(self) -> set[int]:
        """Photos (content ids) never looked at for faces with today's models."""
        return {int(r[0]) for r in self.conn.execute(
            "SELECT id FROM contents c WHERE NOT EXISTS (SELECT 1 FROM face_scans s WHERE s.content_id=c.id)")}

    def forget_detections(self) -> None:
        """Every face and scan goes (other face models: every photo is looked at anew); people and marks stay."""
        self.conn.execute("DELETE FROM faces")
        self.conn.execute("DELETE FROM face_scans")

    def replace_faces(self, content_id: int, faces: Sequence[Face]) -> list[int]:
        """One photo's faces, in place of those it had (and their vectors); record the scan; return the new ids."""
        old = [int(r[0]) for r in self.conn.execute("SELECT id FROM faces WHERE content_id=?", (content_id,))]
        self.catalog.delete_vectors(FACES, old)
        self.conn.execute("DELETE FROM faces WHERE content_id=?", (content_id,))
        ids = [_rowid(self.conn.execute(
            "INSERT INTO faces(content_id, left, top, right, bottom, score, descriptor) VALUES(?,?,?,?,?,?,?)",
            (content_id, *face.box, face.score, np.asarray(face.encoding, dtype=np.float32).tobytes())))
            for face in faces]
        if self.catalog.has_tables(QUALITY_TABLES):
            self.conn.executemany("INSERT OR REPLACE INTO face_quality(face_id, quality) VALUES(?, ?)",
                                  [(i, float(f.quality)) for i, f in zip(ids, faces, strict=True)
                                   if f.quality is not None])
        self.conn.execute("INSERT OR REPLACE INTO face_scans(content_id, faces) VALUES(?, ?)", (content_id, len(faces)))
        return ids

    # ---- people ----------------------------------------------------------------------------------------------------

    def people(self) -> list[Person]:
        """Everyone with at least one face, or a name; most faces first."""
        rows = self.conn.execute(
            "SELECT p.id, p.name, COUNT(f.id), (SELECT f2.id FROM faces f2 WHERE f2.person_id=p.id "
            "ORDER BY (f2.right-f2.left)*(f2.bottom-f2.top)*f2.score DESC LIMIT 1) "
            "FROM people p LEFT JOIN faces f ON f.person_id=p.id GROUP BY p.id "
            "HAVING COUNT(f.id) > 0 OR p.name IS NOT NULL ORDER BY COUNT(f.id) DESC, p.id").fetchall()
        return [Person(int(r[0]), r[1], int(r[2]), r[3]) for r in rows]

    def names_and_photos(self, person_ids: Iterable[int]) -> dict[int, tuple[str | None, int]]:
        """Each of these people's name (None: not named yet) and how many photos show them, in one query."""
        ids = [int(i) for i in person_ids]
        rows = self.conn.execute(f"SELECT p.id, p.name, COUNT(DISTINCT f.content_id) FROM people p LEFT JOIN faces f "
                                 f"ON f.person_id=p.id WHERE p.id IN ({','.join('?' * len(ids))}) GROUP BY p.id", ids)
        return {int(r[0]): (r[1], int(r[2])) for r in rows}

    def person_ids(self) -> set[int]:
        """Every person row, with faces or not."""
        return {int(r[0]) for r in self.conn.execute("SELECT id FROM people")}

    def name_owner(self, name: str, other_than: int) -> int | None:
        """The person other than `other_than` already called `name` (case-insensitive), if any."""
        row = self.conn.execute("SELECT id FROM people WHERE lower(name)=lower(?) AND id<>?",
                                (name, other_than)).fetchone()
        return int(row[0]) if row else None

    def new_person(self, name: str | None = None) -> int:
        """A new person row; its id."""
        return _rowid(self.conn.execute("INSERT INTO people(name, created_at) VALUES(?, ?)", (name, time.time())))

    def set_name(self, person_id: int, name: str | None) -> None:
        """Name a person (None: no name)."""
        self.conn.execute("UPDATE people SET name=? WHERE id=?", (name, person_id))

    def merge_person(self, source: int, target: int) -> None:
        """Person `source` becomes `target`: their faces and corrections move over, the `source` row goes."""
        self.conn.execute("UPDATE faces SET person_id=? WHERE person_id=?", (target, source))
        self.conn.execute("UPDATE OR IGNORE face_marks SET person_id=? WHERE person_id=?", (target, source))
        self.conn.execute("DELETE FROM people WHERE id=?", (source,))

    def delete_person(self, person_id: int) -> None:
        """A person's row and corrections go; their faces are left unassigned (delete them with `delete_faces`)."""
        self.conn.execute("DELETE FROM face_marks WHERE person_id=?", (person_id,))
        self.conn.execute("DELETE FROM people WHERE id=?", (person_id,))

    def drop_empty_people(self) -> None:
        """Delete people with no name, no face and no correction: numbers the clustering no longer uses."""
        self.conn.execute("DELETE FROM people WHERE name IS NULL AND id NOT IN (SELECT person_id FROM faces WHERE "
                          "person_id IS NOT NULL) AND id NOT IN (SELECT person_id FROM face_marks)")

    # ---- corrections -----------------------------------------------------------------------------------------------
    # face_marks are the user's corrections: "this face is person P" (is_person=1) or "is not P" (0). They are keyed
    # by the photo's bytes and the box, not by face id, so they hold even when faces are detected anew (another
    # detector, a photo removed and added back): a mark applies to the face of that photo whose box overlaps it most.

    def marks(self) -> list[Mark]:
        """Every correction the user made."""
        rows = self.conn.execute("SELECT sha256, left, top, right, bottom, person_id, is_person FROM face_marks")
        return [Mark(r[0], (r[1], r[2], r[3], r[4]), int(r[5]), bool(r[6])) for r in rows]

    def content_sha256(self, content_ids: Iterable[int] | None = None) -> dict[int, str]:
        """Content id -> the photo bytes' sha256, which marks are keyed by (of these contents; of all when None)."""
        if content_ids is None:
            return self.catalog.content_hashes()
        ids = sorted({int(i) for i in content_ids})
        out: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out.update((int(c), str(h)) for c, h in self.conn.execute(
                f"SELECT id, sha256 FROM contents WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def marks_for(self, sha256s: Iterable[str]) -> list[Mark]:
        """The corrections made on the photos with these bytes."""
        shas = sorted(set(sha256s))
        out: list[Mark] = []
        for i in range(0, len(shas), 500):
            chunk = shas[i:i + 500]
            out.extend(Mark(r[0], (r[1], r[2], r[3], r[4]), int(r[5]), bool(r[6])) for r in self.conn.execute(
                "SELECT sha256, left, top, right, bottom, person_id, is_person FROM face_marks WHERE sha256 IN "
                f"({','.join('?' * len(chunk))})", chunk))
        return out

    def mark(self, face_id: int, person_id: int, *, is_person: bool) -> None:
        """Remember that this face is (or is not) this person, on its photo's bytes and box."""
        row = self.conn.execute("SELECT c.sha256, f.left, f.top, f.right, f.bottom FROM faces f "
                                "JOIN contents c ON c.id=f.content_id WHERE f.id=?", (face_id,)).fetchone()
        if row is None:
            return
        if is_person:  # a face is one person: its other "is" marks go
            self.conn.execute("DELETE FROM face_marks WHERE sha256=? AND left=? AND top=? AND right=? AND bottom=? "
                              "AND is_person=1", tuple(row))
        else:  # "not P" undoes an earlier "is P"
            self.conn.execute("DELETE FROM face_marks WHERE sha256=? AND left=? AND top=? AND right=? AND bottom=? "
                              "AND person_id=?", (*row, person_id))
        self.conn.execute("INSERT OR REPLACE INTO face_marks(sha256, left, top, right, bottom, person_id, is_person) "
                          "VALUES(?,?,?,?,?,?,?)", (*row, person_id, int(is_person)))

    def pin(self, face_ids: Iterable[int], person_id: int) -> None:
        """Confirm these faces as this person: later clustering keeps them there."""
        for f in face_ids:
            self.mark(f, person_id, is_person=True)
