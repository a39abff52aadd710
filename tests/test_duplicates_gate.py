"""The whole-gallery pass counts its work: the sketch check keeps distinct photos from the full verification, a
copy still gets it, and the candidate search stays bounded per photo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from imagesim.encoders import create_encoder
from imagesim.encoders.dup import PART
from imagesim.encoders.keypoints import _inliers, _per_cell, sketch, sketch_inliers
from imagesim.search.duplicates.candidates import CANDIDATES, PARTS, SINGLE, candidate_pairs
from imagesim.search.duplicates.verify import GATE_INLIERS, Verifier, verified_groups
from imagesim.store.vectors import VectorIndex
from tests.support.edits import ALL_FAMILIES, FAMILIES
from tests.support.photos import ROOT

DISTINCT = ["astronaut.jpg", "brick.jpg", "camera.jpg", "chelsea.jpg", "clock.jpg", "coffee.jpg", "coins.jpg",
            "grass.jpg", "gravel.jpg", "horse.png", "hubble_deep_field.jpg", "immunohistochemistry.jpg",
            "retina.jpg", "rocket.jpg"]


def sample(name: str) -> Image.Image:
    return Image.open(ROOT / "gallery" / name).convert("RGB")


def gallery_pass(images: list[Image.Image]) -> tuple[dict, Verifier, dict]:
    rows = create_encoder("dup").embed_images(images)
    index = VectorIndex(PART, exact_max=0, capacity=len(images) * PARTS)  # the HNSW path, as in a big gallery
    index.add(np.arange(len(images) * PARTS), rows.reshape(-1, PART))
    pairs = candidate_pairs(np.arange(len(images)), rows.reshape(len(images), PARTS, PART), index.search)
    verifier = Verifier(lambda i: images[i], threads=2)
    return verified_groups(pairs, verifier), verifier, pairs


def test_distinct_photos_cost_no_full_verification() -> None:
    images = [sample(n) for n in DISTINCT]
    groups, verifier, pairs = gallery_pass(images)
    assert len(pairs) >= len(images)  # k-NN always proposes neighbours ...
    assert verifier.sketched == len(pairs)  # ... each gets the cheap check ...
    assert verifier.checked == 0 and verifier.feats == {}  # ... and none the full one: no photo's features computed
    assert groups == {"copies": [], "similar": []}


@pytest.mark.parametrize("family", list(ALL_FAMILIES))
def test_a_copy_passes_the_sketch_gate(family: str) -> None:
    rng = np.random.default_rng(5)
    for name in ["astronaut.jpg", "coffee.jpg", "chelsea.jpg"]:
        original = sample(name)
        edited = ALL_FAMILIES[family](original, rng)[0]
        a, b = sketch(original), sketch(edited)
        # either the sketches agree, or one says too little to judge (then the full check decides)
        assert not (a.telling and b.telling) or sketch_inliers(a, b) >= GATE_INLIERS, (name, family)


def test_a_copy_among_distinct_photos_gets_verified_and_grouped() -> None:
    images = [sample(n) for n in DISTINCT]
    rng = np.random.default_rng(3)
    images += [FAMILIES["crop"](images[0], rng)[0], FAMILIES["mirror"](images[5], rng)[0]]
    groups, verifier, pairs = gallery_pass(images)
    assert groups["copies"] == [[0, 14], [5, 15]]
    assert 2 <= verifier.checked < len(pairs)  # the copies were checked in full; most pairs were not
    assert set(verifier.feats) <= {0, 5, 14, 15} | {x for p in pairs for x in p}
    assert len(verifier.feats) < len(images)  # features only for photos in pairs that passed the sketch


def test_candidates_stay_bounded_per_photo() -> None:
    images = [sample(n) for n in DISTINCT]
    rows = create_encoder("dup").embed_images(images)
    index = VectorIndex(PART, exact_max=0, capacity=len(images) * PARTS)
    index.add(np.arange(len(images) * PARTS), rows.reshape(-1, PART))
    pairs = candidate_pairs(np.arange(len(images)), rows.reshape(len(images), PARTS, PART), index.search,
                            limit=2, single=1)
    # each photo chooses at most limit + single others; a photo is also in the pairs others chose
    chosen_by = {i: sum(1 for p in pairs if i in p) for i in range(len(images))}
    assert len(pairs) <= len(images) * 3 and max(chosen_by.values()) < len(images) - 1
    assert CANDIDATES + SINGLE <= 10  # what docs/duplicates.md promises


def test_the_mirrored_sketch_is_the_plain_keypoints_mirrored() -> None:
    # the sketch's mirrored keypoints are its plain corners mirrored and described again (not searched for again):
    # a mirrored copy matches them, and plainly it matches next to nothing
    for name in ["astronaut.jpg", "coffee.jpg", "rocket.jpg", "chelsea.jpg", "camera.jpg", "clock.jpg"]:
        im = sample(name)
        a, b = sketch(im), sketch(ImageOps.mirror(im))
        assert _inliers(a.mpts, a.mdesc, b.pts, b.desc) >= 2 * GATE_INLIERS > _inliers(a.pts, a.desc, b.pts, b.desc)


def test_keypoints_per_cell_are_each_cells_strongest_in_detection_order() -> None:
    import cv2

    grey = np.asarray(sample("astronaut.jpg").convert("L").resize((256, 256)))
    found = cv2.ORB_create(nfeatures=1024, fastThreshold=8, edgeThreshold=15).detect(grey, None)
    xy = np.array([k.pt for k in found], np.float32)
    response = np.array([k.response for k in found])
    cells: dict[tuple[int, int], list[int]] = {}  # the plain Python rule the numpy one replaced
    for i, k in enumerate(found):
        cells.setdefault((int(4 * k.pt[0] / 256), int(4 * k.pt[1] / 256)), []).append(i)
    expected = [i for ids in cells.values() for i in sorted(ids, key=lambda i: -found[i].response)[:16]]
    assert len(found) > 200 and _per_cell(xy, response, grey.shape, 16 * 16).tolist() == expected
