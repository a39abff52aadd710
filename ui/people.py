"""The People tab's behaviour, as plain functions over a `Gallery`: list, a person's own page (their faces), name,
merge, split and forget. Every change goes through `imagesim.faces.people.People` (one transaction each); a refused
change comes back `failed`, so the page keeps what it shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image

from imagesim.errors import ImagesimError
from imagesim.faces.people import People

from .outcome import Item, Outcome
from .present import friendly, shown_name

if TYPE_CHECKING:
    from imagesim.search import Gallery

    from .thumbs import Thumbnails

NO_FACE = (203, 213, 225)  # the tile of a person without a face to show (slate, like the page)


def faces_word(n: int) -> str:
    return f"{n} face{'s' * (n != 1)}"


class PeopleHandlers:
    """Mixed into `Handlers`: what the People tab does."""

    gallery: Gallery
    thumbs: Thumbnails

    def people(self) -> Outcome:
        """Everyone with a face or a name, most faces first, each with a face thumbnail."""
        try:
            book = People(self.gallery.store)
            items = []
            for person in book.list():
                # a named person whose faces were all moved away has no face to show
                face = (book.face_thumbnail(person.cover_face_id) if person.cover_face_id is not None
                        else Image.new("RGB", (160, 160), NO_FACE))
                thumb = self.thumbs.image(face, f"face-{person.cover_face_id}")
                name = person.name or f"Person {person.id}"
                items.append({"id": person.id, "name": name, "named": bool(person.name), "thumb": thumb,
                              "count": person.face_count, "caption": f"{name} · {faces_word(person.face_count)}"})
        except Exception as exc:  # noqa: BLE001
            return Outcome(message=friendly(exc), failed=True)
        return Outcome(items=items, message="" if items else "no people yet: index photos with faces first")

    def person_faces(self, person: Item | None) -> Outcome:
        """A person's own page: each of their faces, cropped around it, named by its photo."""
        if not person:
            return Outcome()
        try:
            faces = People(self.gallery.store).faces(person["id"])
        except Exception as exc:  # noqa: BLE001
            return Outcome(message=friendly(exc), failed=True)
        items = []
        for face in faces:
            path = next(iter(face.paths), None)
            try:
                thumb = self.thumbs.face(path, list(face.box)) if path else None
            except (ImagesimError, OSError):
                thumb = None
            if thumb is None or path is None:
                continue  # its photo moved or was deleted since indexing
            items.append({"path": path, "face_id": face.face_id, "name": shown_name(path), "score": None,
                          "thumb": thumb, "caption": shown_name(path), "why": f"a face of {person['name']}"})
        return Outcome(items=items, message=f"{person['name']}: {faces_word(len(items))}")

    def rename_person(self, person: Item | None, name: str | None) -> Outcome:
        """Give a person a name (a change: the app never exposes it as a public API endpoint)."""
        name = (name or "").strip()
        if not person:
            return self._refused("pick a person first")
        if not name:
            return self._refused("type a name")
        return self._change(lambda book: book.rename(person["id"], name), f"renamed to {name}")

    def merge_people(self, person: Item | None, other: int | str | None) -> Outcome:
        """`other` becomes `person` (who keeps their name, or takes the other's)."""
        if not person or other in (None, ""):
            return self._refused("pick a person, then the person to merge into them")
        return self._change(lambda book: book.merge(person["id"], [int(other)]),
                            f"merged into {person['name']}")

    def split_face(self, person: Item | None, face: Item | None) -> Outcome:
        """One face of a person becomes a person of their own ("this is someone else")."""
        if not person or not face or "face_id" not in face:
            return self._refused("open a person, pick the face that is someone else, then press Split off")
        return self._change(lambda book: book.split(person["id"], [face["face_id"]]),
                            f"split {face['name']} off {person['name']} as a new person")

    def forget_person(self, person: Item | None) -> Outcome:
        """Delete a person's faces, name and corrections (the photos stay)."""
        if not person:
            return self._refused("pick a person first")
        return self._change(lambda book: book.forget(person["id"]), f"forgot {person['name']}")

    def _refused(self, message: str) -> Outcome:
        return Outcome(message=message, failed=True)

    def _change(self, action: Any, done: str) -> Outcome:
        try:
            action(People(self.gallery.store))
        except Exception as exc:  # noqa: BLE001
            return self._refused(friendly(exc))
        out = self.people()
        out.message = out.message or done
        return out
