"""Face quality: what it measures, how it widens the "low" band, that the verdict thresholds live in one place, that
search judges each pair with its worse face's quality (stored per face), and that catalogs from before it still open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from imagesim.encoders import Encoder
from imagesim.faces import verdicts
from imagesim.faces.analyze import Face, FaceAnalyzer
from imagesim.faces.catalog import FaceCatalog
from imagesim.faces.detect import FaceDetector
from imagesim.faces.quality import FaceQuality, turn
from imagesim.faces.schema import QUALITY_TABLES, TABLES
from imagesim.faces.search import LOW_QUALITY, search_faces
from imagesim.faces.stage import FaceStage
from imagesim.faces.verdicts import LOW_BAND, QUALITY_WIDEN, SURE_SAME, TOLERANCE, low_band, verdict
from imagesim.store import Store
from tests.support.facefakes import (
    FakeEmbedder,
    FakeHog,
    FakeQuality,
    face_photo,
    index_with_fakes,
    write_face_photo,
)

FRONTAL = np.asarray([[30, 40], [42, 40], [78, 40], [66, 40], [54, 70]], dtype=np.float64)  # eye corners, nose


class _Shape:
    """dlib's full_object_detection: 5 points placed relative to the face box, frontal unless `nose_shift`."""

    def __init__(self, rect: object, nose_shift: float) -> None:
        left, top = rect.left(), rect.top()  # type: ignore[attr-defined]
        side = rect.right() - left + 1  # type: ignore[attr-defined]
        pts = FRONTAL / 108.0 * side
        pts[4, 0] += nose_shift * (pts[2:4, 0].mean() - pts[0:2, 0].mean())
        self.points = pts + (left, top)
        self.num_parts = 5

    def part(self, i: int) -> object:
        x, y = self.points[i]
        return type("P", (), {"x": int(round(x)), "y": int(round(y))})()


class FakePredictor:
    """Stands in for dlib's 5-landmark predictor: counts its calls."""

    def __init__(self, nose_shift: float = 0.0) -> None:
        self.nose_shift = nose_shift
        self.calls = 0

    def __call__(self, arr: np.ndarray, rect: object) -> _Shape:
        self.calls += 1
        return _Shape(rect, self.nose_shift)


def _textured(side: int = 480, seed: int = 3) -> np.ndarray:
    """A photo with fine detail everywhere (a stand-in for skin, hair and eyes: edges at every scale)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (side // 4, side // 4, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)
    fine = rng.integers(-40, 40, (side, side, 3))
    return np.clip(np.asarray(img).astype(np.int16) + fine, 0, 255).astype(np.uint8)


def test_sharp_large_face_outranks_its_blurred_small_copy() -> None:
    quality = FaceQuality(predictor=FakePredictor())
    arr = _textured()
    box = (120.0, 120.0, 360.0, 360.0)  # a 240 px face
    sharp = quality.assess(arr, box, 1.5)
    small = Image.fromarray(arr).resize((60, 60), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(1.5))
    poor = quality.assess(np.asarray(small), tuple(v / 8 for v in box), 1.5)  # the same face, now 30 px and soft
    assert sharp.value == 1.0 and sharp.poor() == []
    assert poor.value < 0.3 < sharp.value
    assert {"small", "blurry"} <= set(poor.poor())
    assert poor.pose == 1.0 and poor.detector == 1.0  # pose and detector score did not change: size and blur did


def test_turned_face_and_weak_detection_lower_the_quality() -> None:
    assert turn(FRONTAL) == pytest.approx(0.0, abs=1e-9)
    turned = FRONTAL.copy()
    turned[4, 0] += 18  # nose half the eye distance to one side
    assert turn(turned) > 0.4
    arr = _textured()
    box = (120.0, 120.0, 360.0, 360.0)
    frontal = FaceQuality(predictor=FakePredictor()).assess(arr, box, 1.5)
    side = FaceQuality(predictor=FakePredictor(nose_shift=0.5)).assess(arr, box, 1.5)
    weak = FaceQuality(predictor=FakePredictor()).assess(arr, box, 0.05)
    assert frontal.value == 1.0 and side.value < 0.2 and side.poor() == ["turned"]
    assert weak.value < 0.2 and weak.poor() == ["weak detection"]


def test_band_widens_for_a_poor_face_and_stays_for_a_good_one() -> None:
    assert low_band(1.0) == low_band(None) == LOW_BAND  # a good (or unmeasured) pair: the bands as before
    assert low_band(0.0) == pytest.approx(LOW_BAND + QUALITY_WIDEN)
    assert low_band(0.0) > low_band(0.5) > low_band(1.0)
    for d in (0.45, 0.52, 0.57, 0.62, 0.67, 0.72):  # good faces: the README's table, unchanged
        assert verdict(d, quality=1.0) == verdict(d)
    step = min(QUALITY_WIDEN / 2, 0.02)
    inside = round(TOLERANCE - LOW_BAND - step, 4)  # "medium" for good faces, within a poor pair's band
    outside = round(TOLERANCE + LOW_BAND + step, 4)
    assert verdict(inside) == (True, "medium") and verdict(inside, quality=0.0) == (True, "low")
    assert verdict(outside) == (False, "medium") and verdict(outside, quality=0.0) == (False, "low")
    sure = round(SURE_SAME - 0.01, 4)
    assert verdict(sure) == (True, "high") and verdict(sure, quality=0.0)[1] != "high"  # medium bands move out too
    # quality widens the band, it never flips a verdict: same_person is the 0.6 line whatever the quality
    assert all(verdict(d, quality=q)[0] == (d < 0.6) for d in np.arange(0.3, 0.9, 0.01) for q in (0.0, 0.5, 1.0))


def test_verdict_thresholds_come_from_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's vectorised bands read the same constants as `verdict`, and changing one there changes both."""
    from bench.faces_verify import bands

    dist = np.round(np.arange(0.30, 0.95, 0.0025), 4)
    for q in (0.0, 0.3, 0.7, 1.0):
        qs = np.full_like(dist, q)
        assert bands(dist, qs, verdicts.TOLERANCE, verdicts.QUALITY_WIDEN).tolist() == [
            verdict(d, quality=q)[1] for d in dist]
    monkeypatch.setattr(verdicts, "QUALITY_WIDEN", 0.0)
    assert verdict(0.52, quality=0.0) == (True, "medium")  # no widening configured: quality no longer matters
    monkeypatch.setattr(verdicts, "LOW_BAND", 0.09)
    assert verdict(0.52) == (True, "low")


@pytest.fixture()
def crafted(tmp_path: Path, tiny_encoder: Encoder) -> Path:
    """A gallery of two photos whose faces are both 0.52 from person 0's descriptor: one good, one poor."""
    photos = tmp_path / "photos"
    write_face_photo(photos / "good.jpg", [3], seed=1)
    write_face_photo(photos / "poor.jpg", [4], seed=2)
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    base = FakeEmbedder().base[0]
    rng = np.random.default_rng(5)
    store = Store.open(db)
    try:
        stage = FaceStage(FaceAnalyzer(FaceDetector(detector=FakeHog()), FakeEmbedder()))
        for name, q in (("good.jpg", 1.0), ("poor.jpg", 0.1)):
            step = rng.normal(size=base.shape).astype(np.float32)
            enc = base + 0.52 * step / np.linalg.norm(step)
            cid = store.indexed_content(photos / name)
            assert cid is not None
            with store.lock, store.catalog.transaction():
                ids, vectors = stage.put(store.catalog, cid, [Face((20, 40, 80, 100), 1.0, enc, q)])
            store.index("faces").add(ids, vectors)
        store.save()
    finally:
        store.close()
    return db


def test_search_judges_each_pair_with_its_worse_face(crafted: Path) -> None:
    """Both gallery faces are 0.52 from the query: the good one reads "medium", the poor one "low" with the note.
    Were quality ignored, both would read "medium"."""
    analyzer = FaceAnalyzer(FaceDetector(detector=FakeHog()), FakeEmbedder(), FakeQuality())
    store = Store.open(crafted)
    try:
        assert FaceCatalog(store.catalog).qualities(r.id for r in FaceCatalog(store.catalog).all_faces()) != {}
        [result] = search_faces(store, face_photo([0], seed=9), k=5, analyzer=analyzer)
    finally:
        store.close()
    by_name = {Path(m.path).name: m for m in result.matches}
    good, poor = by_name["good.jpg"], by_name["poor.jpg"]
    assert good.distance == pytest.approx(0.52, abs=1e-3) and poor.distance == pytest.approx(0.52, abs=1e-3)
    assert (good.same_person, good.confidence, good.note) == (True, "medium", None)
    assert (poor.same_person, poor.confidence, poor.note) == (True, "low", LOW_QUALITY)
    assert poor.quality == pytest.approx(0.1) and good.quality == 1.0
    assert poor.to_json()["low_band"] > good.to_json()["low_band"] == LOW_BAND
    assert result.quality == 1.0 and result.note is None


def test_a_poor_query_face_widens_every_verdict_for_it(crafted: Path) -> None:
    poor_query = FaceAnalyzer(FaceDetector(detector=FakeHog()), FakeEmbedder(),
                              FaceQuality(predictor=FakePredictor(nose_shift=0.6)))  # a face turned away
    store = Store.open(crafted)
    try:
        [result] = search_faces(store, face_photo([0], seed=9), k=5, analyzer=poor_query)
    finally:
        store.close()
    assert result.note == LOW_QUALITY and result.quality is not None and result.quality < 0.5
    assert {Path(m.path).name: m.confidence for m in result.matches if m.same_person} == {"good.jpg": "low",
                                                                                          "poor.jpg": "low"}


def test_faces_indexed_before_quality_existed_still_open_and_read_as_unknown(tmp_path: Path,
                                                                             tiny_encoder: Encoder) -> None:
    """A catalog whose face tables predate `face_quality` (made here as the last version made them) opens with its
    schema check, answers with unknown quality (judged as before), and gains the table on the next index."""
    from imagesim.store.catalog import Catalog

    photos = tmp_path / "photos"
    write_face_photo(photos / "a.jpg", [0])
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    store = Store.open(db)
    try:  # back to the old layout: no quality table
        with store.catalog.transaction():
            store.catalog.conn.execute("DROP TABLE face_quality")
    finally:
        store.close()
    catalog = Catalog(db / "catalog.sqlite", create=False)  # the full check at open: schema and every row
    try:
        assert catalog.has_tables(TABLES) and not catalog.has_tables(QUALITY_TABLES)
        tables = FaceCatalog(catalog)
        assert tables.qualities(r.id for r in tables.all_faces()) == {}
    finally:
        catalog.close()
    analyzer = FaceAnalyzer(FaceDetector(detector=FakeHog()), FakeEmbedder(), FakeQuality())
    store = Store.open(db)
    try:
        [result] = search_faces(store, photos / "a.jpg", k=3, analyzer=analyzer)  # its stored face: no quality
        assert result.quality is None and result.matches[0].quality is None
        assert result.matches[0].to_json()["low_band"] == LOW_BAND
    finally:
        store.close()
    write_face_photo(photos / "b.jpg", [1], seed=3)
    index_with_fakes(db, [photos], [tiny_encoder], analyzer)
    store = Store.open(db)
    try:
        tables = FaceCatalog(store.catalog)
        assert store.catalog.has_tables(QUALITY_TABLES)
        assert list(tables.qualities(r.id for r in tables.all_faces()).values()) == [1.0]  # b's new face only
    finally:
        store.close()


def test_deleting_faces_takes_their_quality_rows(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos = tmp_path / "photos"
    write_face_photo(photos / "a.jpg", [0, 1])
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder],
                     FaceAnalyzer(FaceDetector(detector=FakeHog()), FakeEmbedder(), FakeQuality()))
    store = Store.open(db)
    try:
        count = "SELECT COUNT(*) FROM face_quality"
        assert store.catalog.conn.execute(count).fetchone()[0] == 2
        from imagesim.faces.catalog import delete_faces

        delete_faces(store, [r.id for r in FaceCatalog(store.catalog).all_faces()][:1])
        assert store.catalog.conn.execute(count).fetchone()[0] == 1
    finally:
        store.close()


@pytest.mark.slow
def test_real_face_quality_on_faces_small() -> None:
    """dlib's real landmarks on a real portrait: a good face; the same face downscaled and blurred: a poor one."""
    from tests.support.photos import datasets_dir

    path = datasets_dir() / "faces-small" / "examples" / "obama.jpg"
    if not path.is_file():
        pytest.skip("no faces-small")
    analyzer = FaceAnalyzer()
    img = Image.open(path).convert("RGB")
    [[face]] = analyzer.faces([img])
    small = img.resize((img.width // 6, img.height // 6)).filter(ImageFilter.GaussianBlur(1.0))
    [[copy]] = analyzer.faces([small])
    assert face.quality is not None and copy.quality is not None
    assert face.quality >= 0.9 > 0.5 > copy.quality


def test_faces_tab_tile_says_low_quality() -> None:
    """The Faces tab's tile for a poor pair: "low quality" in the caption, the quality in the explanation and item."""
    from imagesim_ui.faces import FacesHandlers

    class Thumbs:
        def face(self, path: str, box: list[int]) -> str:
            return "/tmp/thumb.png"

    handlers = FacesHandlers()
    handlers.thumbs = Thumbs()  # type: ignore[assignment]
    poor = handlers._face_item("/p/a.jpg", [0, 0, 9, 9], 0.52, True, "low", "a.jpg", "same person", LOW_QUALITY, 0.2)
    good = handlers._face_item("/p/b.jpg", [0, 0, 9, 9], 0.52, True, "medium", "b.jpg", "same person", None, 1.0)
    assert poor is not None and good is not None
    assert poor["caption"] == "✓ low · low quality · a.jpg" and good["caption"] == "✓ medium · b.jpg"
    assert poor["quality"] == 0.2 and "quality 0.20" in poor["why"] and good["why"] == "same person"
