"""The Faces tab's behaviour, as plain functions over a `Gallery`: every face of the upload, numbered, and per face
who it is (a person judged on several of their faces) before the single gallery faces nearest to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from imagesim.errors import ImagesimError
from imagesim.faces.search import PersonMatch
from imagesim.images import load_image

from .outcome import Item, Outcome
from .present import friendly, shown_name, upload_name
from .thumbs import draw_boxes

if TYPE_CHECKING:
    from imagesim.search import Filters, Gallery

    from .thumbs import Thumbnails

# a poor query face (small, blurred, turned, weakly detected): its verdicts near 0.6 have a wider "low" band
LOW_QUALITY_FACE = ("low quality face (small, blurred or turned): verdicts near the 0.6 line are marked low "
                    "confidence over a wider range; have a look")
FACES_NEED_PHOTO = "drop a photo with faces into “Your photo” to see where else those people appear"


class FacesHandlers:
    """Mixed into `Handlers`: what the Faces tab does."""

    gallery: Gallery
    thumbs: Thumbnails

    def search_faces(self, upload: str | None, k: int = 12, *, filters: Filters | None = None) -> Outcome:
        """Every face in the upload, numbered; `extra` = (annotated image path, per-face result items)."""
        if not upload:
            return Outcome(message=FACES_NEED_PHOTO, extra=(None, []))
        upload = self.thumbs.source(upload) or upload
        try:
            image = load_image(upload, name=upload_name(upload))
            faces = self.gallery.faces(image, int(k), filters=filters)
        except Exception as exc:  # noqa: BLE001
            return Outcome(message=friendly(exc), extra=(None, []))
        if not faces:
            return Outcome(message="no face found in this photo", extra=(None, []))
        annotated = self.thumbs.image(draw_boxes(image, [list(f.box) for f in faces]), "faces", size=1024)
        per_face: list[list[Item]] = []
        for face in faces:
            items = self._people_items(face.people)  # who it is first ("Ada (12 photos)"), then single faces
            for m in face.matches:
                verdict = "same person" if m.same_person else "probably not the same person"
                item = self._face_item(m.path, m.box, m.distance, m.same_person, m.confidence, shown_name(m.path),
                                       f"{verdict}, {m.confidence} confidence (face distance {m.distance:.2f}; "
                                       "below 0.6 usually means the same person)", m.note, m.quality)
                if item is not None:
                    items.append(item)
            per_face.append(items)
        poor = [n for n, f in enumerate(faces, 1) if f.note]
        message = f"face {', '.join(map(str, poor))}: {LOW_QUALITY_FACE}" if poor else ""
        return Outcome(items=per_face[0], message=message, extra=(annotated, per_face))

    def _people_items(self, people: Sequence[PersonMatch]) -> list[Item]:
        """A tile per person the face is (judged on several of their faces), showing their face nearest to it."""
        items: list[Item] = []
        for p in (p for p in people if p.same_person):
            photos = f"{p.photos} photo{'s' * (p.photos != 1)}"
            item = self._face_item(p.path, p.box, p.distance, True, p.confidence, f"{p.label} ({photos})",
                                   f"{p.label} ({photos}): {p.confidence} confidence, mean face distance "
                                   f"{p.distance:.2f} over {p.faces} of their faces", p.note, p.quality)
            if item is not None:
                items.append({**item, "person": p.label})
        return items

    def _face_item(self, path: str, box: Sequence[int] | None, distance: float, same: bool, confidence: str,
                   title: str, why: str, note: str | None = None, quality: float | None = None) -> Item | None:
        """A Faces-tab tile: the face cropped from its photo, the verdict in the caption (None: the photo is gone);
        `note`: the pair is poor (low quality face), said in the caption and the explanation."""
        try:
            thumb = self.thumbs.face(path, list(box)) if box else self.thumbs.thumbnail(path)
        except (ImagesimError, OSError):
            return None  # moved or deleted since indexing: nothing to show
        return {"path": path, "name": shown_name(path), "score": None, "thumb": thumb,
                "box": list(box) if box else None, "distance": float(distance), "same_person": bool(same),
                "confidence": confidence, "quality": quality, "note": note,
                "caption": f"{'✓' if same else '✗'} {confidence}{' · low quality' if note else ''} · {title}",
                "why": f"{why}; {note} (quality {quality:.2f})" if note and quality is not None else why}
