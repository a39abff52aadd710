"""Search by face: matches per query face, sorted by distance, with verdicts; stored faces reused; clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagesim.encoders import Encoder
from imagesim.errors import ImagesimError, NoFaceFound
from imagesim.faces.people import People
from imagesim.faces.search import search_faces
from imagesim.search import Gallery
from imagesim.store import Store
from tests.support.facefakes import face_photo, fake_analyzer, index_with_fakes, write_face_photo
from tests.support.photos import write_gallery


@pytest.fixture()
def gallery_db(tmp_path: Path, tiny_encoder: Encoder) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    write_face_photo(photos / "a.jpg", [0])
    write_face_photo(photos / "b.jpg", [1, 0], seed=1)
    write_face_photo(photos / "c.jpg", [2], seed=2)
    shutil.copy(photos / "a.jpg", photos / "a_copy.jpg")
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    return db, photos


def test_new_photo_finds_the_same_person_first(gallery_db: tuple[Path, Path], tmp_path: Path) -> None:
    db, photos = gallery_db
    query = face_photo([0], size=(500, 400), seed=9, at=[(200, 100)])
    store = Store.open(db)
    try:
        [result] = search_faces(store, query, k=10, analyzer=fake_analyzer())
    finally:
        store.close()
    assert result.box == (200, 100, 260, 160)
    paths = [Path(m.path).name for m in result.matches]
    assert sorted(paths[:3]) == ["a.jpg", "a_copy.jpg", "b.jpg"]
    assert [m.same_person for m in result.matches] == [True] * 3 + [False] * 2
    assert all(m.confidence == "high" for m in result.matches)
    assert [m.distance for m in result.matches] == sorted(m.distance for m in result.matches)
    b = next(m for m in result.matches if m.path.endswith("b.jpg") and m.same_person)
    assert b.box == (110, 40, 170, 100)  # the second square of b.jpg: the right face, not just the right photo
    assert set(result.to_json()) == {"box", "people", "matches", "quality", "note"}  # quality: added, old kept
    assert set(result.matches[0].to_json()) == {"path", "box", "distance", "same_person", "confidence", "quality",
                                                "low_band", "note"}


def test_gallery_photo_uses_its_stored_faces(gallery_db: tuple[Path, Path]) -> None:
    db, photos = gallery_db
    with Gallery.open(db) as gallery:
        assert gallery.faces_enabled()
        results = gallery.faces(photos / "b.jpg", k=2)  # stored faces: no detector needed, none is loaded
    assert [r.box[0] for r in results] == [20, 110]  # left to right
    assert [Path(m.path).name for m in results[0].matches][:1] == ["b.jpg"]
    assert all(len(r.matches) == 2 for r in results)


def test_photo_without_face_says_so(gallery_db: tuple[Path, Path], tmp_path: Path) -> None:
    db, _ = gallery_db
    [empty] = write_gallery(tmp_path / "other", 1)
    with Gallery.open(db) as gallery, pytest.raises(NoFaceFound, match="no face found"):
        gallery.faces(empty)


def test_faces_off_is_a_clear_error(tmp_path: Path, tiny_encoder: Encoder) -> None:
    from imagesim.config import Settings
    from imagesim.indexer import run_index

    photos = tmp_path / "photos"
    write_gallery(photos, 2)
    run_index(Settings.for_db(tmp_path / "db", threads=1), [photos], encoders=[tiny_encoder], progress=False)
    with Gallery.open(tmp_path / "db") as gallery:
        assert not gallery.faces_enabled()
        with pytest.raises(ImagesimError, match="--faces"):
            gallery.faces(photos / "photo_000.jpg")


def test_the_person_is_judged_on_several_of_their_faces(tmp_path: Path, tiny_encoder: Encoder) -> None:
    """One of Bo's faces filed under Ada (a look-alike, or a slip): that single face says "Ada", but Ada's other
    faces are far from the query, so the person-level answer is Bo, named first with their photo count."""
    photos = tmp_path / "photos"
    for i in range(3):
        write_face_photo(photos / f"ada{i}.jpg", [0], seed=i)
        write_face_photo(photos / f"bo{i}.jpg", [1], seed=10 + i)
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    store = Store.open(db)
    try:
        people = People(store)
        for who in people.list():
            names = {Path(p).name[:2] for f in people.faces(who.id) for p in f.paths}
            people.rename(who.id, "Ada" if names == {"ad"} else "Bo")
        slip = next(f for f in people.faces("Bo") if any(p.endswith("bo0.jpg") for p in f.paths))
        people.move([slip.face_id], "Ada")
        [result] = search_faces(store, face_photo([1], seed=99), k=10, analyzer=fake_analyzer())
    finally:
        store.close()
    nearest_face = next(m for m in result.matches if m.path.endswith("bo0.jpg"))
    assert nearest_face.same_person  # the face alone would count for whoever it is filed under
    assert [(p.label, p.photos, p.faces, p.same_person) for p in result.people] == [("Bo", 2, 2, True),
                                                                                   ("Ada", 4, 3, False)]
    assert result.people[0].confidence == "high" and result.people[0].path.endswith(("bo1.jpg", "bo2.jpg"))
    assert set(result.people[0].to_json()) == {"person", "name", "label", "photos", "distance", "faces",
                                               "same_person", "confidence", "path", "box", "quality", "low_band",
                                               "note"}
