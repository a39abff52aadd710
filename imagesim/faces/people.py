"""People: the gallery's faces grouped by person, with names and the user's corrections.

The grouping itself is `cluster.py` (constrained Chinese whispers); the tables are `store.py`'s (FaceCatalog). This
module is the user-facing side: list, show, name, merge, split, move and forget people, and re-cluster under the
corrections. Corrections are stored as marks on (photo bytes, box), so they survive re-clustering, re-indexing and
even a new face detector.
"""

from __future__ import annotations

import builtins
import functools
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image

from ..errors import ImagesimError
from ..images import load_image
from ..store import Store
from .catalog import FaceCatalog, Person, delete_faces, face_count
from .detect import Box, crop_box
from .incremental import PeopleUpdate, recluster, update
from .schema import face_settings, has_schema, set_faces

__all__ = ["People", "Person", "PersonFace", "PersonNotFound"]

T = TypeVar("T")


class PersonNotFound(ImagesimError):
    """No person with that name or number."""


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


class People:
    """People of one database; every change is one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.catalog = store.catalog
        if not has_schema(self.catalog) or face_settings(self.catalog) is None:
            raise ImagesimError(f"faces are off for {store.folder}: run `imagesim index DIR --db {store.folder} "
                                "--faces` first")
        self.tables = FaceCatalog(self.catalog)

    # ---- reading -------------------------------------------------------------------------------------------------

    @_locked
    def list(self) -> list[Person]:
        """Everyone with at least one face, or a name; most faces first."""
        return self.tables.people()

    @_locked
    def unassigned(self) -> int:
        return self.tables.unassigned()

    @_locked
    def person(self, who: str | int) -> Person:
        """A person by name (case-insensitive) or number."""
        text = str(who).strip()
        for p in self.list():
            if (p.name and p.name.lower() == text.lower()) or (text.isdigit() and int(text) == p.id):
                return p
        raise PersonNotFound(f"no person called {text!r}: see `imagesim people list`")

    @_locked
    def faces(self, who: str | int) -> builtins.list[PersonFace]:  # `list` here is People.list
        person = self.person(who)
        rows = self.tables.faces_of_person(person.id)
        paths = self.catalog.paths_for(r.content_id for r in rows)
        return [PersonFace(r.id, paths.get(r.content_id, []), r.box, r.score) for r in rows]

    @_locked
    def face_thumbnail(self, face_id: int, size: int = 160) -> Image.Image:
        """The face cropped from its photo with some margin, at most `size` px a side."""
        rows = self.tables.faces([int(face_id)])
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
        clash = self.tables.name_owner(name, person.id)
        if clash is not None:
            raise ImagesimError(f"{name!r} is already person {clash}: merge them with `imagesim people merge`")
        with self.catalog.transaction():
            self.tables.set_name(person.id, name)
            self.tables.pin([f.id for f in self.tables.faces_of_person(person.id)], person.id)
        return self.person(person.id)

    @_locked
    def merge(self, into: str | int, others: Sequence[str | int]) -> Person:
        """Everyone in `others` becomes `into` (who keeps their name, or takes the first other's)."""
        target = self.person(into)
        sources = [self.person(o) for o in others]
        if any(s.id == target.id for s in sources):
            raise ImagesimError("cannot merge a person with themselves")
        shared = self.tables.shared_content([target.id, *[s.id for s in sources]])
        if shared is not None:
            path = (self.catalog.paths_for([shared]).get(shared) or ["?"])[0]
            raise ImagesimError(f"these people appear together in {path}, so they are not one person")
        name = target.name or next((s.name for s in sources if s.name), None)
        with self.catalog.transaction():
            for s in sources:
                self.tables.merge_person(s.id, target.id)
            self.tables.set_name(target.id, name)
            self.tables.pin([f.id for f in self.tables.faces_of_person(target.id)], target.id)
        return self.person(target.id)

    @_locked
    def split(self, who: str | int, face_ids: Sequence[int]) -> Person:
        """The given faces of a person become a new person; both sides are confirmed as they now are."""
        person = self.person(who)
        mine = {f.id for f in self.tables.faces_of_person(person.id)}
        chosen = [int(f) for f in face_ids]
        if not chosen or any(f not in mine for f in chosen):
            raise ImagesimError(f"give face numbers of {person.label} (see `imagesim people show {person.id}`)")
        if set(chosen) == mine:
            raise ImagesimError("that is every face of this person: nothing to split off")
        with self.catalog.transaction():
            new_id = self.tables.new_person()
            self.tables.set_persons([(f, new_id) for f in chosen])
            self.tables.pin(chosen, new_id)
            self.tables.pin(sorted(mine - set(chosen)), person.id)
        return self.person(new_id)

    @_locked
    def move(self, face_ids: Sequence[int], to: str | int | None) -> Person | None:
        """Put faces in person `to`, or (to=None) take them out of their person for good ("not this person")."""
        rows = self.tables.faces(face_ids)
        if len(rows) != len(set(face_ids)) or not rows:
            raise ImagesimError("no such face number (see `imagesim people show PERSON`)")
        target = self.person(to) if to is not None else None
        if target is not None:
            contents = Counter(r.content_id for r in rows)
            taken = self.tables.contents_of(target.id) - {r.content_id for r in rows if r.person_id == target.id}
            if any(n > 1 for n in contents.values()) or taken & set(contents):
                raise ImagesimError(f"{target.label} would have two faces in one photo; move the other face first")
        with self.catalog.transaction():
            for r in rows:
                if target is None:
                    if r.person_id is not None:
                        self.tables.mark(r.id, r.person_id, is_person=False)
                    self.tables.set_persons([(r.id, None)])
                else:
                    self.tables.set_persons([(r.id, target.id)])
                    self.tables.pin([r.id], target.id)
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
            count = face_count(self.catalog)
            set_faces(self.store, None)  # faces off too, or the next index would find them all again
            return count
        person = self.person(who)
        ids = [f.id for f in self.tables.faces_of_person(person.id)]
        with self.catalog.transaction():
            self.tables.delete_person(person.id)
        delete_faces(self.store, ids)
        return len(ids)

    # ---- clustering ------------------------------------------------------------------------------------------------

    def cluster(self) -> int:
        """Group every face into people under the constraints (a full re-cluster on the faces' k-NN graph); keep
        person numbers stable; return the number of people with faces."""
        return self.recluster().people

    def recluster(self) -> PeopleUpdate:
        """A full re-cluster on the faces' k-NN graph, under every correction (`imagesim people recluster`)."""
        with self.store.lock:
            return recluster(self.store, self.tables)

    def update(self) -> PeopleUpdate:
        """Put only the faces found since the last clustering into people (a full re-cluster when the incremental
        state asks for one): what the indexer runs after each pass."""
        with self.store.lock:
            return update(self.store, self.tables)
