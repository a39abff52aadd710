"""Near-duplicate descriptor, grouping (no chaining), `Gallery.duplicates`, `find_duplicates` and the CLI."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from imagesim.cli import main
from imagesim.config import Settings
from imagesim.encoders import create_encoder
from imagesim.indexer import run_index
from imagesim.search import Gallery
from imagesim.search.duplicates import Thresholds, _split_chains, group_vectors, is_duplicate
from imagesim.store.vectors import VectorIndex
from tests.support.photos import photo


def scene(seed: int) -> Image.Image:
    base = np.asarray(photo(seed, (320, 240)), dtype=np.float32)
    texture = np.random.default_rng(seed + 7).normal(0, 5, base.shape[:2])[..., None]
    return Image.fromarray(np.clip(base + texture, 0, 255).astype(np.uint8), "RGB")


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _text(img: Image.Image) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).text((12, 200), "holiday 2024", font=ImageFont.load_default(size=22), fill=(255, 255, 255))
    return out


EDITS = {
    "resized": lambda im: im.resize((160, 120), Image.Resampling.LANCZOS),
    "recompressed": lambda im: _jpeg(im, 20),
    "cropped": lambda im: im.crop((8, 6, 312, 234)),
    "rotated": lambda im: im.rotate(3, Image.Resampling.BICUBIC).crop((10, 10, 310, 230)),
    "brightened": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "text": _text,
}


def test_dup_vectors_are_unit_and_survive_edits() -> None:
    enc = create_encoder("dup")
    original = scene(1)
    vecs = enc.embed_images([original, *(fn(original) for fn in EDITS.values()), scene(2), scene(3),
                             Image.new("RGB", (1, 1))])
    assert vecs.shape == (len(EDITS) + 4, enc.dim) and vecs.dtype == np.float32 and np.isfinite(vecs).all()
    assert np.allclose(np.linalg.norm(vecs[:-1], axis=1), 1.0, atol=1e-5)
    flags = is_duplicate(enc, vecs[0], vecs[1:])
    assert flags[:len(EDITS)].all(), dict(zip(EDITS, flags.tolist(), strict=False))
    assert not flags[len(EDITS):].any()


def test_groups_come_from_knn_and_do_not_chain() -> None:
    enc = create_encoder("dup")
    images = [scene(s) for s in range(6)]
    vecs = enc.embed_images([*images, EDITS["resized"](images[0]), EDITS["text"](images[3])])
    labels = np.arange(len(vecs), dtype=np.int64) + 100
    index = VectorIndex(enc.dim, exact_max=0, capacity=64)  # the HNSW path, as in a big gallery
    index.add(labels, vecs)
    assert group_vectors(labels, vecs, index.search) == [[100, 106], [103, 107]]
    # a chain a~b~c where a and c are far apart is cut at the centre
    a = np.array([1.0, 0.0], np.float32)
    c = np.array([0.0, 1.0], np.float32)
    b = (a + c) / np.linalg.norm(a + c)
    loose = Thresholds(chain=0.8)
    parts = _split_chains([1, 2, 3], np.stack([a, b, c]), loose)
    assert not any({1, 3} <= set(p) for p in parts)
    assert _split_chains([1, 2], np.stack([a, b]), loose) == []
    assert _split_chains([1, 2], np.stack([a, a]), loose) == [[1, 2]]


@pytest.fixture
def dup_gallery(tmp_path: Path, tiny_spec) -> tuple[Path, Path]:
    folder = tmp_path / "photos"
    (folder / "edits").mkdir(parents=True)
    for seed in range(8):
        scene(seed).save(folder / f"p{seed}.jpg", quality=92)
    original = Image.open(folder / "p0.jpg").convert("RGB")
    for name, fn in EDITS.items():
        fn(original).save(folder / "edits" / f"p0_{name}.jpg", quality=90)
    shutil.copy(folder / "p1.jpg", folder / "edits" / "p1_copy.jpg")  # byte-identical
    db = tmp_path / "db"
    run_index(Settings.for_db(db, model=tiny_spec, threads=1), [folder], progress=False)
    return folder, db


def test_gallery_groups_edits_and_copies_only(dup_gallery) -> None:
    folder, db = dup_gallery
    with Gallery.open(db) as g:
        groups = g.duplicates()
    edits = sorted(str(folder / "edits" / f"p0_{name}.jpg") for name in EDITS)
    assert sorted(groups) == sorted([sorted([str(folder / "p0.jpg"), *edits]),
                                     sorted([str(folder / "p1.jpg"), str(folder / "edits" / "p1_copy.jpg")])])


def test_find_duplicates_of_one_photo(dup_gallery, tmp_path: Path) -> None:
    folder, db = dup_gallery
    outside = tmp_path / "outside.jpg"
    ImageEnhance.Brightness(scene(0)).enhance(0.75).resize((200, 150)).save(outside, quality=80)
    new_photo = tmp_path / "new.jpg"
    scene(99).save(new_photo)
    with Gallery.open(db) as g:
        found = {Path(m.path).name for m in g.find_duplicates(outside)}
        assert "p0.jpg" in found and "p3.jpg" not in found
        assert g.find_duplicates(new_photo) == []
        own = g.find_duplicates(folder / "p1.jpg")  # a gallery file: its copy, not itself
        assert [Path(m.path).name for m in own] == ["p1_copy.jpg"] and own[0].why == "same photo"


def test_cli_duplicates_json(dup_gallery, capsys: pytest.CaptureFixture[str]) -> None:
    folder, db = dup_gallery
    assert main(["duplicates", "--db", str(db), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert len(groups) == 2 and all(Path(p).is_absolute() for g in groups for p in g)
    assert main(["duplicates", str(folder / "edits" / "p0_text.jpg"), "--db", str(db), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert str(folder / "p0.jpg") in {r["path"] for r in results}
    assert main(["duplicates", "--db", str(folder / "nowhere")]) == 1
    assert "imagesim: error:" in capsys.readouterr().err


@pytest.mark.slow
def test_edited_flowers_find_their_original(datasets: Path) -> None:
    from bench.duplicates import EDITS as BENCH_EDITS
    from bench.flowers import flower_photos, thumbnail

    paths = flower_photos()[::17]  # 80 photos across the classes
    originals = [thumbnail(p, 512) for p in paths]
    enc = create_encoder("dup")
    gallery = enc.embed_images(originals)
    hits = flagged = total = 0
    for i, img in enumerate(originals[:20]):
        edited = enc.embed_images([fn(img) for fn in BENCH_EDITS.values()])
        hits += int((np.argmax(edited @ gallery.T, axis=1) == i).sum())
        flagged += int(sum(is_duplicate(enc, e, gallery[i])[0] for e in edited))
        total += len(edited)
    assert hits / total >= 0.98 and flagged / total >= 0.85, (hits / total, flagged / total)
