"""Copy detection: region codes, candidates from k-NN, ORB + RANSAC verification, explanations, groups, the CLI,
moving the extra copies away and back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesim.cli import main
from imagesim.config import Settings
from imagesim.encoders import create_encoder
from imagesim.encoders.dup import PART, REGIONS, mirrored, region_codes, trim_box
from imagesim.encoders.keypoints import align, features
from imagesim.indexer import run_index
from imagesim.search import Gallery, explain
from imagesim.search.duplicates.candidates import PARTS, candidate_pairs
from imagesim.search.duplicates.verify import Verifier, verdict, verified_groups
from imagesim.store.vectors import VectorIndex
from tests.support.edits import ALL_FAMILIES, FAMILIES, jpeg
from tests.support.photos import ROOT

SAMPLES = ROOT / "gallery"
PHOTOS = ["astronaut.jpg", "coffee.jpg", "chelsea.jpg"]


def sample(name: str) -> Image.Image:
    return Image.open(SAMPLES / name).convert("RGB")


def test_region_codes_are_unit_and_mirror_is_computed_from_the_vector() -> None:
    enc = create_encoder("dup")
    img = sample("coffee.jpg")
    rows = enc.embed_images([img, Image.new("RGB", (1, 1)), Image.new("RGB", (50, 40), (9, 9, 9))])
    assert rows.shape == (3, len(REGIONS) * PART) and np.isfinite(rows).all()
    parts = rows.reshape(3, len(REGIONS), PART)
    assert np.allclose(np.linalg.norm(parts, axis=2), 1.0, atol=1e-5)  # a flat photo gets a code, never zeros
    flipped = region_codes(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))[0]
    assert float(mirrored(parts[0, 0]) @ flipped) > 0.98 > float(parts[0, 0] @ flipped)


def test_region_codes_equal_scipys_ranks_and_dct() -> None:
    """The numpy ranks and DCT (one-shot queries skip importing scipy) are scipy's rankdata and dctn, ties too."""
    from scipy.fft import dctn
    from scipy.stats import rankdata

    from imagesim.encoders import dup

    rng = np.random.default_rng(3)
    for levels in (4, 256):  # many ties, few ties
        cells = rng.integers(0, levels, (len(REGIONS), dup.GRID, dup.GRID)).astype(np.float32)
        n = dup.GRID * dup.GRID
        ref = rankdata(cells.reshape(len(cells), n), method="average", axis=1).reshape(cells.shape) / n - 0.5
        assert np.abs(dup._equalise(cells) - ref).max() < 1e-6
        want = dctn(ref, norm="ortho", axes=(1, 2))[:, :dup.LOW, :dup.LOW]
        assert np.abs(dup._DCT @ ref @ dup._DCT.T - want).max() < 1e-9


def test_borders_of_any_colour_are_trimmed() -> None:
    img = sample("astronaut.jpg").resize((200, 150))
    for colour in ((0, 0, 0), (255, 255, 255), (200, 30, 90)):
        framed = Image.new("RGB", (240, 210), colour)
        framed.paste(img, (20, 30))
        left, top, right, bottom = trim_box(framed)
        assert abs(left - 20) <= 2 and abs(top - 30) <= 2 and abs(right - 220) <= 2 and abs(bottom - 180) <= 2
    assert trim_box(img) == (0, 0, 200, 150)


@pytest.mark.parametrize("family", list(ALL_FAMILIES))
def test_every_edit_family_is_a_copy_and_the_explanation_names_it(family: str) -> None:
    rng = np.random.default_rng(11)
    for name in PHOTOS:
        original = sample(name)
        edited, words = ALL_FAMILIES[family](original, rng)
        a, b = features(original), features(edited)
        al = align(a, b)
        assert verdict(al) == "copies", (name, family, al and (al.inliers, al.agreement))
        assert al is not None
        text = ", ".join(explain.describe(al, a, b, explain.FileFacts("a", *original.size, 95, 0.0),
                                          explain.FileFacts("b", *edited.size, 100, 0.0)))
        assert all(w in text for w in words), (name, family, words, text)


def test_recompression_is_read_from_the_file(tmp_path: Path) -> None:
    original = sample("coffee.jpg")
    original.save(tmp_path / "a.jpg", quality=95)
    jpeg(original, np.random.default_rng(0), quality=20)[0].save(tmp_path / "b.jpg", quality=20)
    fa, fb = explain.file_facts(str(tmp_path / "a.jpg")), explain.file_facts(str(tmp_path / "b.jpg"))
    assert abs(fa.quality - 95) <= 2 and abs(fb.quality - 20) <= 2
    a, b = features(Image.open(tmp_path / "a.jpg")), features(Image.open(tmp_path / "b.jpg"))
    al = align(a, b)
    assert al is not None and "recompressed (JPEG quality ~20)" in explain.describe(al, a, b, fa, fb)
    assert explain.file_facts(str(tmp_path / "missing.jpg")).width == 0  # no error for a file that is gone


def test_a_look_alike_is_not_a_copy() -> None:
    # two crops of one texture from places that do not overlap: same look, same colours, different pixels
    gravel = sample("gravel.jpg")
    w, h = gravel.size
    left, right = gravel.crop((0, 0, w // 2 - 4, h)), gravel.crop((w // 2 + 4, 0, w, h))
    assert verdict(align(features(left), features(right))) is None
    grass = sample("grass.jpg")
    assert verdict(align(features(grass), features(grass.crop((0, 0, grass.width // 2, grass.height // 2))))) \
        == "copies"  # the same texture where it does overlap: a crop


def test_candidates_come_from_knn_and_groups_from_verified_pairs() -> None:
    rng = np.random.default_rng(4)
    images = [sample(n) for n in ["astronaut.jpg", "coffee.jpg", "rocket.jpg", "gravel.jpg", "brick.jpg"]]
    images += [FAMILIES["crop"](images[0], rng)[0], FAMILIES["mirror"](images[1], rng)[0]]
    rows = create_encoder("dup").embed_images(images)
    index = VectorIndex(PART, exact_max=0, capacity=len(images) * PARTS)  # the HNSW path, as in a big gallery
    index.add(np.arange(len(images) * PARTS), rows.reshape(-1, PART))
    pairs = candidate_pairs(np.arange(len(images)), rows.reshape(len(images), PARTS, PART), index.search, limit=2,
                            single=0)
    assert (0, 5) in pairs and (1, 6) in pairs and pairs[(1, 6)][1]  # the mirror was seen as one
    assert len(pairs) <= len(images) * 2  # bounded: each photo adds at most `limit` pairs (a hub may be in more)
    verifier = Verifier(lambda i: images[i] if i != 4 else None)  # photo 4 unreadable: matches nothing
    groups = verified_groups(pairs, verifier)
    assert groups["copies"] == [[0, 5], [1, 6]]
    assert verifier.checked <= verifier.sketched == len(pairs)  # the full check only after the sketch's


@pytest.fixture
def dup_gallery(tmp_path: Path, tiny_spec) -> tuple[Path, Path]:
    folder = tmp_path / "photos"
    (folder / "edits").mkdir(parents=True)
    for name in ["astronaut.jpg", "coffee.jpg", "rocket.jpg", "brick.jpg", "gravel.jpg"]:
        shutil.copy(SAMPLES / name, folder / name)
    rng = np.random.default_rng(2)
    original = sample("astronaut.jpg")
    for family in ["crop", "rotate", "borders"]:
        FAMILIES[family](original, rng)[0].save(folder / "edits" / f"astronaut_{family}.jpg", quality=90)
    shutil.copy(folder / "coffee.jpg", folder / "edits" / "coffee_copy.jpg")  # byte-identical
    db = tmp_path / "db"
    run_index(Settings.for_db(db, model=tiny_spec, threads=1), [folder], progress=False)
    return folder, db


def test_gallery_groups_copies_with_a_keeper_and_explanations(dup_gallery) -> None:
    folder, db = dup_gallery
    with Gallery.open(db) as g:
        groups = g.duplicate_groups("copies")
        assert sorted(map(sorted, g.duplicates())) == sorted(sorted(x.paths) for x in groups)
    by_first = {Path(x.members[0].path).name: x for x in groups}
    astro = by_first["astronaut.jpg"]  # the uncropped original is the one to keep
    assert astro.kind == "copies" and astro.members[0].keep and 0.9 <= astro.score <= 1.0
    why = {Path(m.path).name: m.explanation for m in astro.members[1:]}
    assert "cropped to" in why["astronaut_crop.jpg"] and "rotated" in why["astronaut_rotate.jpg"]
    assert "border" in why["astronaut_borders.jpg"]
    assert sorted(Path(p).name for p in by_first["coffee.jpg"].paths) == ["coffee.jpg", "coffee_copy.jpg"]
    assert len(groups) == 2


def test_damaged_original_never_stops_the_pass(dup_gallery, capsys: pytest.CaptureFixture[str]) -> None:
    folder, db = dup_gallery
    (folder / "astronaut.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg any more")
    with Gallery.open(db) as g:
        groups = g.duplicate_groups()
    assert all(str(folder / "astronaut.jpg") not in x.paths for x in groups)
    # the edited copies still find each other; the broken file is one line on stderr
    assert any({"astronaut_crop.jpg", "astronaut_borders.jpg"} <= {Path(p).name for p in x.paths} for x in groups)
    assert "skipped" in capsys.readouterr().err


def test_cli_json_kinds_and_one_photo(dup_gallery, capsys: pytest.CaptureFixture[str]) -> None:
    folder, db = dup_gallery
    assert main(["duplicates", "--db", str(db), "--json", "--kind", "copies"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert groups and all(x["kind"] == "copies" and 0 <= x["score"] <= 1 for x in groups)
    assert all({"path", "keep", "score", "explanation"} <= set(m) for x in groups for m in x["members"])
    assert main(["duplicates", "--db", str(db), "--kind", "similar", "--json"]) == 0
    assert all(x["kind"] == "similar" for x in json.loads(capsys.readouterr().out)["groups"])
    assert main(["duplicates", str(folder / "edits" / "astronaut_crop.jpg"), "--db", str(db), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert str(folder / "astronaut.jpg") in {r["path"] for r in results}
    assert str(folder / "edits" / "astronaut_crop.jpg") not in {r["path"] for r in results}
    assert main(["duplicates", "--db", str(folder / "nowhere")]) == 1
    assert "imagesim: error:" in capsys.readouterr().err


def test_move_extras_and_undo(dup_gallery, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, db = dup_gallery
    before = sorted(p.name for p in folder.rglob("*.jpg"))
    extras = tmp_path / "extras"
    assert main(["duplicates", "--db", str(db), "--move-extras-to", str(extras), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    moved = {Path(m["from"]).name for m in report["moved"]}
    assert moved == {"astronaut_crop.jpg", "astronaut_rotate.jpg", "astronaut_borders.jpg", "coffee_copy.jpg"}
    assert (folder / "astronaut.jpg").exists() and (folder / "coffee.jpg").exists()  # the keepers stay
    assert sorted(p.name for p in extras.glob("*.jpg")) == sorted(moved)  # moved, not deleted
    with Gallery.open(db) as g:  # the catalog followed at once: no group left
        assert g.duplicates() == []
    assert main(["duplicates", "--db", str(db), "--undo", report["undo"]]) == 0
    assert sorted(p.name for p in folder.rglob("*.jpg")) == before
    with Gallery.open(db) as g:
        assert len(g.duplicates()) == 2


def test_readme_figures_are_the_benchmarks() -> None:
    raw = ROOT / "docs" / "bench" / "duplicates.json"
    if not raw.exists():
        pytest.skip("no benchmark figures")
    data = json.loads(raw.read_text())
    readme = (ROOT / "README.md").read_text()
    held = data["overall"]["held-out"]
    assert f"copies recall {held['ours']:.3f}" in readme
    assert f"weakest family {data['weakest']['held-out']:.3f}" in readme


def test_page_shows_keeper_and_moves_extras(dup_gallery, tmp_path: Path) -> None:
    from imagesim_ui.handlers import Handlers
    from imagesim_ui.thumbs import Thumbnails

    folder, db = dup_gallery
    with Gallery.open(db) as g:
        h = Handlers(g, Thumbnails(tmp_path / "thumbs", [str(folder)], [str(db)]))
        out = h.duplicates("copies")
        assert out.extra == 2 and {it["name"] for it in out.items if it["keep"]} == {"astronaut.jpg", "coffee.jpg"}
        assert any("cropped to" in it["why"] for it in out.items) and all("group" in it["caption"] for it in out.items)
        similar = h.duplicates("similar")
        assert all("similar shots" in it["why"] for it in similar.items)
        assert h.move_extras("  ") == "type the folder to move the extra copies to"
        assert len(h.extra_copies()) == 4
        done = h.move_extras(str(tmp_path / "extras"))
        assert done.startswith("moved 4 extra copies") and "--undo" in done
        assert h.duplicates("copies").items == [] and len(list((tmp_path / "extras").glob("*.jpg"))) == 4


@pytest.mark.slow
def test_flowers_copies_verify_and_look_alikes_do_not(datasets: Path) -> None:
    from bench.flowers import flower_photos, thumbnail

    paths = flower_photos()[5::136]  # ten photos, one per class
    originals = [thumbnail(p, 512) for p in paths]
    feats = [features(im) for im in originals]
    rng = np.random.default_rng(21)
    copies = total = 0
    for i, im in enumerate(originals):
        for edit in ALL_FAMILIES.values():
            copies += verdict(align(feats[i], features(edit(im, rng)[0]))) == "copies"
            total += 1
    assert copies / total >= 0.95, copies / total
    for i in range(len(feats)):  # ten different photos: no pair is a copy
        for j in range(i + 1, len(feats)):
            assert verdict(align(feats[i], feats[j])) != "copies", (paths[i], paths[j])
