"""Faces in the store: opt-in and remembered, incremental with the photos, off deletes everything."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from imagesim.config import Settings
from imagesim.encoders import Encoder
from imagesim.faces.catalog import face_rows
from imagesim.faces.schema import FACES, face_settings
from imagesim.indexer import run_index
from imagesim.store import Store
from tests.support.counting import Counting
from tests.support.facefakes import fake_analyzer, index_with_fakes, write_face_photo
from tests.support.photos import write_gallery


def _faces(db: Path) -> list:
    store = Store.open(db)
    try:
        return face_rows(store.catalog)
    finally:
        store.close()


def test_faces_are_off_unless_asked_and_remembered_once_on(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos = tmp_path / "photos"
    write_gallery(photos, 3)
    db = tmp_path / "db"
    settings = Settings.for_db(db, threads=1)
    report = run_index(settings, [photos], encoders=[tiny_encoder], progress=False)
    store = Store.open(db)
    assert face_settings(store.catalog) is None and store.catalog.space(FACES) is None and report.faces is None
    assert store.catalog.conn.execute("SELECT name FROM sqlite_master WHERE name='faces'").fetchone() is None
    store.close()
    report = run_index(settings, [photos], encoders=[tiny_encoder], progress=False, faces=True)
    assert report.faces == 0  # the real detector looked at the 3 existing photos and found no face
    write_gallery(photos, 1, start_seed=50)  # overwrites photo_000 with another picture
    report = run_index(settings, [photos], encoders=[tiny_encoder], progress=False)  # no flag: faces stay on
    store = Store.open(db)
    try:
        assert face_settings(store.catalog) == {"detector": "hog"} and report.faces == 0
        scanned = store.catalog.conn.execute("SELECT COUNT(*) FROM face_scans").fetchone()[0]
        assert scanned == store.catalog.counts()["contents"] == 3
    finally:
        store.close()


def test_no_faces_deletes_all_face_data(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos = tmp_path / "photos"
    for i in range(3):
        write_face_photo(photos / f"p{i}.jpg", [i % 2], seed=i)
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    assert len(_faces(db)) == 3 and list(db.glob("faces.*.hnsw"))
    run_index(Settings.for_db(db, threads=1), [photos], encoders=[tiny_encoder], progress=False, faces=False)
    store = Store.open(db)
    try:
        assert face_settings(store.catalog) is None and store.catalog.space(FACES) is None
        for table in ("faces", "people", "face_marks", "face_scans"):
            assert store.catalog.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
        assert not list(db.glob("faces.*.hnsw"))
        assert store.catalog.counts()["files"] == 3  # the photos stay indexed
    finally:
        store.close()


def test_faces_follow_renamed_and_copied_photos_without_detection(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos = tmp_path / "photos"
    write_face_photo(photos / "a.jpg", [0, 1])
    write_face_photo(photos / "b.jpg", [2], seed=1)
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    before = {r.id: r.box for r in _faces(db)}
    (photos / "sub").mkdir()
    shutil.move(photos / "a.jpg", photos / "sub" / "renamed.jpg")
    shutil.copy(photos / "b.jpg", photos / "copy.jpg")
    analyzer = fake_analyzer()
    report = index_with_fakes(db, [photos], [tiny_encoder], analyzer)
    assert analyzer.detector.detector.calls == [] and report.moved == 1 and report.added == 1
    assert {r.id: r.box for r in _faces(db)} == before


def test_photos_indexed_before_faces_get_them_without_re_encoding(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos = tmp_path / "photos"
    write_face_photo(photos / "a.jpg", [0])
    write_face_photo(photos / "b.jpg", [1, 3], seed=2)
    db = tmp_path / "db"
    run_index(Settings.for_db(db, threads=1), [photos], encoders=[tiny_encoder], progress=False)
    counting = Counting(tiny_encoder)
    report = index_with_fakes(db, [photos], [counting])
    assert counting.calls == 0 and report.faces == 3 and report.unchanged == 2 and report.updated == 0
    write_face_photo(photos / "c.jpg", [4], seed=3)
    report = index_with_fakes(db, [photos], [counting])
    assert counting.calls == 1 and report.faces == 1 and report.unchanged == 2


def test_deleted_photo_takes_its_faces_out_of_rows_and_graph(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos = tmp_path / "photos"
    write_face_photo(photos / "a.jpg", [0])
    write_face_photo(photos / "b.jpg", [1], seed=1)
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    (photos / "a.jpg").unlink()
    index_with_fakes(db, [photos], [tiny_encoder])
    rows = _faces(db)
    store = Store.open(db)
    try:
        assert len(rows) == 1 and len(store.index(FACES)) == 1
        assert store.catalog.labels(FACES).tolist() == [rows[0].id]
    finally:
        store.close()


def test_new_detector_detects_again(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos = tmp_path / "photos"
    write_face_photo(photos / "a.jpg", [0, 1])
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    old = {r.id for r in _faces(db)}
    index_with_fakes(db, [photos], [tiny_encoder], fake_analyzer(size=1024))  # other settings: other fingerprint
    rows = _faces(db)
    assert len(rows) == 2 and not old & {r.id for r in rows}


def test_the_face_step_runs_on_its_own_thread_beside_the_encoders(tmp_path: Path, tiny_encoder: Encoder,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    for i in range(3):
        write_face_photo(photos / f"p{i}.jpg", [i], seed=i)
    analyzer = fake_analyzer()
    threads: dict[str, set[str]] = {"faces": set(), "encoder": set()}
    faces, embed = analyzer.faces, tiny_encoder.embed_images

    def watched_faces(images: Any) -> Any:
        threads["faces"].add(threading.current_thread().name)
        return faces(images)

    def watched_embed(images: Any) -> Any:
        threads["encoder"].add(threading.current_thread().name)
        return embed(images)

    monkeypatch.setattr(analyzer, "faces", watched_faces)
    monkeypatch.setattr(tiny_encoder, "embed_images", watched_embed)
    report = index_with_fakes(tmp_path / "db", [photos], [tiny_encoder], analyzer)
    assert report.faces == 3 and report.added == 3
    assert {name.rsplit("_", 1)[0] for name in threads["faces"]} == {"imagesim-faces-step"}
    assert threads["encoder"] == {threading.current_thread().name}
