"""People: the gallery's faces grouped by person, with names and the user's corrections.

Clustering is Chinese whispers (as in dlib) over the graph of faces closer than `LINK`, with hard constraints: two
faces of one photo never end up in one person, a face the user put in a person stays there, and a face the user
said is "not this person" never goes back to that person. Corrections are stored as marks on (photo bytes, box),
so they survive re-clustering, re-indexing and even a new face detector.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from ..errors import ImagesimError
from ..images import load_image
from ..store import Store
from .detect import Box, crop_box
from .store import delete_faces, descriptors, face_rows, face_settings, has_schema, set_faces

LINK = 0.55  # faces closer than this are linked for clustering: below the 0.6 verdict, so chains stay tight
MIN_FACES = 2  # an uncorrected cluster needs this many faces to become a person (one-off faces stay unassigned)
ROUNDS = 30
T = TypeVar("T")


class PersonNotFound(ImagesimError):
    """No person with that name or number."""


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None
    face_count: int
    cover_face_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "face_count": self.face_count, "cover_face_id": self.cover_face_id}

    @property
    def label(self) -> str:
        return self.name or f"person {self.id}"


@dataclass(frozen=True)
class PersonFace:
    """One face of a person, with the files that show it."""

    face_id: int
    paths: list[str]
    box: Box
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"face_id": self.face_id, "paths": self.paths, "box": list(self.box), "score": round(self.score, 3)}


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    """Run under the store's lock: a UI shares one connection between threads."""

    @functools.wraps(method)
    def wrapper(self: People, *args: Any, **kwargs: Any) -> T:
        with self.store.lock:
            return method(self, *args, **kwargs)

    return wrapper


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class People:
    """People of one database; every change is one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.catalog = store.catalog
        if not has_schema(self.catalog) or face_settings(self.catalog) is None:
            raise ImagesimError(f"faces are off for {store.folder}: run `imagesim index DIR --db {store.folder} "
                                "--faces` first")

    # ---- reading -------------------------------------------------------------------------------------------------

    @_locked
    def list(self) -> list[Person]:
        """Everyone with at least one face, or a name; most faces first."""
        rows = self.catalog.conn.execute(
            "SELECT p.id, p.name, COUNT(f.id), (SELECT f2.id FROM faces f2 WHERE f2.person_id=p.id "
            "ORDER BY (f2.right-f2.left)*(f2.bottom-f2.top)*f2.score DESC LIMIT 1) "
            "FROM people p LEFT JOIN faces f ON f.person_id=p.id GROUP BY p.id "
            "HAVING COUNT(f.id) > 0 OR p.name IS NOT NULL ORDER BY COUNT(f.id) DESC, p.id").fetchall()
        return [Person(int(r[0]), r[1], int(r[2]), r[3]) for r in rows]

    @_locked
    def unassigned(self) -> int:
        return int(self.catalog.conn.execute("SELECT COUNT(*) FROM faces WHERE person_id IS NULL").fetchone()[0])

    @_locked
    def person(self, who: str | int) -> Person:
        """A person by name (case-insensitive) or number."""
        text = str(who).strip()
        for p in self.list():
            if (p.name and p.name.lower() == text.lower()) or (text.isdigit() and int(text) == p.id):
                return p
        raise PersonNotFound(f"no person called {text!r}: see `imagesim people list`")

    @_locked
    def faces(self, who: str | int) -> list[PersonFace]:
        person = self.person(who)
        rows = face_rows(self.catalog, "WHERE person_id=?", (person.id,))
        paths = self.catalog.paths_for(r.content_id for r in rows)
        return [PersonFace(r.id, paths.get(r.content_id, []), r.box, r.score) for r in rows]

    @_locked
    def face_thumbnail(self, face_id: int, size: int = 160) -> Image.Image:
        """The face cropped from its photo with some margin, at most `size` px a side."""
        rows = face_rows(self.catalog, "WHERE id=?", (int(face_id),))
        if not rows:
            raise ImagesimError(f"no face {face_id}")
        paths = self.catalog.paths_for([rows[0].content_id]).get(rows[0].content_id, [])
        for path in paths:
            if os.path.isfile(path):
                img = load_image(path)
                thumb = img.crop(crop_box(rows[0].box, img.size))
                thumb.thumbnail((size, size))
                return thumb
        raise ImagesimError(f"the photo of face {face_id} is gone: re-index the gallery")

    # ---- corrections -----------------------------------------------------------------------------------------------

    @_locked
    def rename(self, who: str | int, name: str) -> Person:
        """Name a person; naming confirms their current faces, so later clustering keeps them together."""
        name = name.strip()
        if not name or name.isdigit():
            raise ImagesimError("a name needs at least one letter")
        person = self.person(who)
        clash = self.catalog.conn.execute("SELECT id FROM people WHERE lower(name)=lower(?) AND id<>?",
                                          (name, person.id)).fetchone()
        if clash:
            raise ImagesimError(f"{name!r} is already person {clash[0]}: merge them with `imagesim people merge`")
        with self.catalog.transaction():
            self.catalog.conn.execute("UPDATE people SET name=? WHERE id=?", (name, person.id))
            self._pin([f.id for f in face_rows(self.catalog, "WHERE person_id=?", (person.id,))], person.id)
        return self.person(person.id)

    @_locked
    def merge(self, into: str | int, others: Sequence[str | int]) -> Person:
        """Everyone in `others` becomes `into` (who keeps their name, or takes the first other's)."""
        target = self.person(into)
        sources = [self.person(o) for o in others]
        if any(s.id == target.id for s in sources):
            raise ImagesimError("cannot merge a person with themselves")
        ids = [target.id, *[s.id for s in sources]]
        marks = ",".join("?" * len(ids))
        shared = self.catalog.conn.execute(
            f"SELECT content_id FROM faces WHERE person_id IN ({marks}) GROUP BY content_id HAVING COUNT(*) > 1",
            ids).fetchone()
        if shared:
            path = (self.catalog.paths_for([shared[0]]).get(shared[0]) or ["?"])[0]
            raise ImagesimError(f"these people appear together in {path}, so they are not one person")
        name = target.name or next((s.name for s in sources if s.name), None)
        with self.catalog.transaction():
            conn = self.catalog.conn
            for s in sources:
                conn.execute("UPDATE faces SET person_id=? WHERE person_id=?", (target.id, s.id))
                conn.execute("UPDATE OR IGNORE face_marks SET person_id=? WHERE person_id=?", (target.id, s.id))
                conn.execute("DELETE FROM people WHERE id=?", (s.id,))
            conn.execute("UPDATE people SET name=? WHERE id=?", (name, target.id))
            self._pin([f.id for f in face_rows(self.catalog, "WHERE person_id=?", (target.id,))], target.id)
        return self.person(target.id)

    @_locked
    def split(self, who: str | int, face_ids: Sequence[int]) -> Person:
        """The given faces of a person become a new person; both sides are confirmed as they now are."""
        person = self.person(who)
        mine = {f.id for f in face_rows(self.catalog, "WHERE person_id=?", (person.id,))}
        chosen = [int(f) for f in face_ids]
        if not chosen or any(f not in mine for f in chosen):
            raise ImagesimError(f"give face numbers of {person.label} (see `imagesim people show {person.id}`)")
        if set(chosen) == mine:
            raise ImagesimError("that is every face of this person: nothing to split off")
        with self.catalog.transaction():
            new_id = self._new_person()
            self.catalog.conn.executemany("UPDATE faces SET person_id=? WHERE id=?", [(new_id, f) for f in chosen])
            self._pin(chosen, new_id)
            self._pin(sorted(mine - set(chosen)), person.id)
        return self.person(new_id)

    @_locked
    def move(self, face_ids: Sequence[int], to: str | int | None) -> Person | None:
        """Put faces in person `to`, or (to=None) take them out of their person for good ("not this person")."""
        rows = face_rows(self.catalog, f"WHERE id IN ({','.join('?' * len(face_ids))})", [int(f) for f in face_ids])
        if len(rows) != len(set(face_ids)) or not rows:
            raise ImagesimError("no such face number (see `imagesim people show PERSON`)")
        target = self.person(to) if to is not None else None
        if target is not None:
            contents = Counter(r.content_id for r in rows)
            taken = {int(r[0]) for r in self.catalog.conn.execute(
                "SELECT content_id FROM faces WHERE person_id=?", (target.id,))} - {r.content_id for r in rows
                                                                                    if r.person_id == target.id}
            if any(n > 1 for n in contents.values()) or taken & set(contents):
                raise ImagesimError(f"{target.label} would have two faces in one photo; move the other face first")
        with self.catalog.transaction():
            for r in rows:
                if target is None:
                    if r.person_id is not None:
                        self._mark(r.id, r.person_id, is_person=False)
                    self.catalog.conn.execute("UPDATE faces SET person_id=NULL WHERE id=?", (r.id,))
                else:
                    self.catalog.conn.execute("UPDATE faces SET person_id=? WHERE id=?", (target.id, r.id))
                    self._pin([r.id], target.id)
        return self.person(target.id) if target is not None else None

    @_locked
    def forget(self, who: str | int | None) -> int:
        """Delete a person's faces, name and corrections (or, with None, all face data and turn faces off); return
        the number of faces deleted.

        The bytes go too: SQLite's secure_delete zeroes freed pages, the WAL is checkpointed, and the faces graph
        file is rewritten without them (Store.save(compact=True)). The photos stay in the gallery; they are not
        looked at for faces again unless they change.
        """
        if who is None:
            count = int(self.catalog.conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0])
            set_faces(self.store, None)  # faces off too, or the next index would find them all again
            return count
        person = self.person(who)
        ids = [f.id for f in face_rows(self.catalog, "WHERE person_id=?", (person.id,))]
        with self.catalog.transaction():
            self.catalog.conn.execute("DELETE FROM face_marks WHERE person_id=?", (person.id,))
            self.catalog.conn.execute("DELETE FROM people WHERE id=?", (person.id,))
        delete_faces(self.store, ids)
        return len(ids)

    def _new_person(self, name: str | None = None) -> int:
        cur = self.catalog.conn.execute("INSERT INTO people(name, created_at) VALUES(?, ?)", (name, time.time()))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def _mark(self, face_id: int, person_id: int, *, is_person: bool) -> None:
        row = self.catalog.conn.execute("SELECT c.sha256, f.left, f.top, f.right, f.bottom FROM faces f "
                                        "JOIN contents c ON c.id=f.content_id WHERE f.id=?", (face_id,)).fetchone()
        if row is None:
            return
        if is_person:  # a face is one person: its other "is" marks go
            self.catalog.conn.execute("DELETE FROM face_marks WHERE sha256=? AND left=? AND top=? AND right=? AND "
                                      "bottom=? AND is_person=1", tuple(row))
        else:  # "not P" undoes an earlier "is P"
            self.catalog.conn.execute("DELETE FROM face_marks WHERE sha256=? AND left=? AND top=? AND right=? AND "
                                      "bottom=? AND person_id=?", (*row, person_id))
        self.catalog.conn.execute("INSERT OR REPLACE INTO face_marks(sha256, left, top, right, bottom, person_id, "
                                  "is_person) VALUES(?,?,?,?,?,?,?)",
                                  (*row, person_id, int(is_person)))

    def _pin(self, face_ids: Sequence[int], person_id: int) -> None:
        for f in face_ids:
            self._mark(f, person_id, is_person=True)

    # ---- clustering ------------------------------------------------------------------------------------------------

    def cluster(self) -> int:
        """Group every face into people under the constraints; keep person numbers stable; return people count."""
        with self.store.lock:
            rows = face_rows(self.catalog)
            if not rows:
                with self.catalog.transaction():
                    self.catalog.conn.execute("DELETE FROM people WHERE name IS NULL AND id NOT IN "
                                              "(SELECT person_id FROM face_marks)")
                return 0
            descs = descriptors(self.catalog, [r.id for r in rows])
            matrix = np.stack([descs[r.id] for r in rows])
            pinned, forbidden = self._constraints(rows)
            labels = constrained_whispers(matrix, [r.content_id for r in rows], pinned, forbidden)
            with self.catalog.transaction():
                assignment = self._persons_for(rows, labels, pinned, forbidden)
                self.catalog.conn.executemany("UPDATE faces SET person_id=? WHERE id=?",
                                              [(assignment[i], r.id) for i, r in enumerate(rows)])
                self.catalog.conn.execute(
                    "DELETE FROM people WHERE name IS NULL AND id NOT IN (SELECT person_id FROM faces WHERE person_id "
                    "IS NOT NULL) AND id NOT IN (SELECT person_id FROM face_marks)")
            return len({a for a in assignment if a is not None})

    def _constraints(self, rows: list) -> tuple[dict[int, int], dict[int, set[int]]]:
        """Marks -> (row index -> pinned person, row index -> persons it is not), matched by photo and box."""
        sha = dict(self.catalog.conn.execute("SELECT id, sha256 FROM contents").fetchall())
        by_sha: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            by_sha[sha.get(r.content_id, "")].append(i)
        pinned: dict[int, int] = {}
        forbidden: dict[int, set[int]] = defaultdict(set)
        for s, left, top, right, bottom, pid, is_person in self.catalog.conn.execute(
                "SELECT sha256, left, top, right, bottom, person_id, is_person FROM face_marks"):
            box = (left, top, right, bottom)
            best = max(by_sha.get(s, []), key=lambda i: iou(rows[i].box, box), default=None)
            if best is None or iou(rows[best].box, box) < 0.5:
                continue  # that photo is not in the gallery now (the mark waits for it)
            if is_person:
                pinned[best] = int(pid)
            else:
                forbidden[best].add(int(pid))
        return pinned, forbidden

    def _persons_for(self, rows: list, labels: list[int], pinned: dict[int, int],
                     forbidden: dict[int, set[int]]) -> list[int | None]:
        """Cluster labels -> person ids: pinned clusters keep their person; others take the person most of their
        faces had before (stable numbers), else a new one; small uncorrected clusters stay unassigned."""
        members: dict[int, list[int]] = defaultdict(list)
        for i, lab in enumerate(labels):
            members[lab].append(i)
        person_of: dict[int, int | None] = {}
        used: set[int] = set()
        for lab, idx in members.items():
            pins = {pinned[i] for i in idx if i in pinned}
            if pins:
                person_of[lab] = min(pins)  # constrained_whispers never mixes two pinned persons
                used.add(person_of[lab])
        existing = {int(r[0]) for r in self.catalog.conn.execute("SELECT id FROM people")}
        for lab, idx in sorted(members.items(), key=lambda kv: -len(kv[1])):
            if lab in person_of:
                continue
            if len(idx) < MIN_FACES:
                person_of[lab] = None
                continue
            before = Counter(rows[i].person_id for i in idx if rows[i].person_id in existing)
            pid = next((p for p, _ in before.most_common() if p not in used and p not in {
                q for i in idx for q in forbidden.get(i, ())}), None)
            person_of[lab] = pid if pid is not None else self._new_person()
            used.add(person_of[lab])  # type: ignore[arg-type]
        out: list[int | None] = []
        for i, lab in enumerate(labels):
            pid = person_of[lab]
            out.append(None if pid is not None and pid in forbidden.get(i, ()) else pid)
        return out


def constrained_whispers(matrix: np.ndarray, contents: Sequence[int], pinned: dict[int, int],
                         forbidden: dict[int, set[int]], link: float = LINK, rounds: int = ROUNDS) -> list[int]:
    """Chinese whispers with cannot-link constraints. Returns a cluster label per row.

    Each face takes the label its linked neighbours weigh most (weight: link - distance), among labels it may join:
    not one holding another face of its photo, not a person it was marked as not being. Pinned faces keep their
    person's label. Deterministic: faces are visited in order, ties go to the smaller label.
    """
    n = len(matrix)
    neighbours: list[list[tuple[int, float]]] = [[] for _ in range(n)]
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
