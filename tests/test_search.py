"""Search through the library call: self-match, k, empty collections, text, model checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagesim.config import ModelSpec, Settings
from imagesim.errors import ModelMismatch, NoIndex
from imagesim.indexer import run_index
from imagesim.search import Gallery
from tests.support.photos import photo, write_gallery


@pytest.fixture
def gallery_db(tmp_path: Path, tiny_spec: ModelSpec) -> tuple[Path, list[Path]]:
    photos = write_gallery(tmp_path / "pics", 12)
    db = tmp_path / "db"
    run_index(Settings.for_db(db, model=tiny_spec), [tmp_path / "pics"])
    return db, photos


def test_a_gallery_photo_finds_itself_first(gallery_db) -> None:
    db, photos = gallery_db
    with Gallery.open(db) as g:
        for p in photos[:4]:
            hits = g.search(p, k=5)
            assert hits[0].path == str(p) and hits[0].score >= 0.99
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            assert all(Path(h.path).is_absolute() for h in hits)


def test_an_outside_photo_is_encoded_with_the_recorded_model(gallery_db, tmp_path: Path) -> None:
    db, photos = gallery_db
    outside = tmp_path / "outside.png"
    photo(3).save(outside)  # same pixels as photos[3], other format and place
    with Gallery.open(db) as g:
        hits = g.search(outside, k=3)
        assert hits[0].path == str(photos[3]) and hits[0].score >= 0.99
        assert g.search(photo(3), k=1)[0].path == str(photos[3])  # a PIL image works too


def test_k_larger_than_the_collection_and_k_zero(gallery_db) -> None:
    db, photos = gallery_db
    with Gallery.open(db) as g:
        assert len(g.search(photos[0], k=100)) == 12
        assert g.search(photos[0], k=0) == []


def test_text_search_returns_ranked_gallery_photos(gallery_db) -> None:
    db, _ = gallery_db
    with Gallery.open(db) as g:
        hits = g.search_text("a red tulip", k=4)
        assert len(hits) == 4 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_empty_collection(tmp_path: Path, tiny_spec: ModelSpec) -> None:
    (tmp_path / "empty").mkdir()
    db = tmp_path / "db"
    report = run_index(Settings.for_db(db, model=tiny_spec), [tmp_path / "empty"])
    assert report.to_json()["added"] == 0
    with Gallery.open(db) as g:
        assert g.search(photo(1), k=10) == []
        assert g.search_text("anything", k=10) == []


def test_no_database_yet(tmp_path: Path) -> None:
    with pytest.raises(NoIndex, match="imagesim index"):
        Gallery.open(tmp_path / "nothing")


def test_asking_for_another_model_is_a_clear_error(gallery_db, tiny_spec: ModelSpec) -> None:
    import torch

    from imagesim.encoders import create_encoder

    db, photos = gallery_db
    torch.manual_seed(11)
    other = create_encoder("clip", spec=ModelSpec(tiny_spec.name, None))
    with Gallery.open(db, encoder=other, model=ModelSpec(tiny_spec.name, None)) as g, \
            pytest.raises(ModelMismatch, match="--rebuild"):
        g.search(photos[0])


def test_searches_see_what_another_process_committed(gallery_db, tmp_path: Path, tiny_spec: ModelSpec) -> None:
    db, photos = gallery_db
    with Gallery.open(db) as g:
        assert len(g.search(photos[0], k=100)) == 12
        write_gallery(tmp_path / "more", 3, start_seed=50)
        run_index(Settings.for_db(db, model=tiny_spec), [tmp_path / "more"])
        assert len(g.search(photos[0], k=100)) == 15
        vec = g.vector(photos[0])
        assert vec.dtype == np.float32 and np.isclose(np.linalg.norm(vec), 1.0, atol=1e-5)
