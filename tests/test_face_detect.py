"""Face detection passes: tilted faces found on turned copies (and mapped back), one box per face whatever the passes,
faces cut by the frame, odd image modes, batches on threads. Fake detectors for the fast tests; real dlib on a real
face (faces-small) in the slow ones."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imagesim.faces.analyze import FaceAnalyzer
from imagesim.faces.detect import FaceDetector
from tests.support.facefakes import GREY, FakeEmbedder, FakeHog, face_photo, fake_analyzer, index_with_fakes


def before(**kwargs: Any) -> FaceDetector:
    """The detector as it was before tilted faces were looked for: upright passes only, small photos up 2x, any one
    face at the first look taken for a portrait."""
    return FaceDetector(rotate="never", max_upsample=2.0, portrait=0.0, **kwargs)


SMALL = 320  # fake tests look at small photos: passes at 160, 320 and 640 px


class UprightHog(FakeHog):
    """Like dlib's HOG, sees a "face" only when it is about upright: a coloured square filling its bounding box
    (a square tilted by 10 degrees fills ~75 % of it)."""

    def run(self, arr: np.ndarray, upsample: int, adjust: float) -> tuple[list[Any], list[float], list[int]]:
        rects, scores, kinds = super().run(arr, upsample, adjust)
        keep = []
        for r, s in zip(rects, scores, strict=True):
            patch = arr[r.top():r.bottom() + 1, r.left():r.right() + 1].astype(np.int16)
            filled = (np.abs(patch - np.asarray(GREY)).sum(axis=2) > 60).mean()
            if filled >= 0.8:
                keep.append((r, s))
        return [r for r, _ in keep], [s for _, s in keep], [0] * len(keep)


def tilted_photo(angle: float, size: tuple[int, int] = (400, 300), side: int = 70) -> tuple[Image.Image, tuple]:
    """One square "face" in the middle of a grey photo turned by `angle` degrees (counter-clockwise); its centre."""
    img = face_photo([1], size=size, side=side, at=[(size[0] // 2 - side // 2, size[1] // 2 - side // 2)])
    return img.rotate(angle, Image.Resampling.BILINEAR, fillcolor=GREY), (size[0] / 2, size[1] / 2)


def test_a_tilted_face_is_found_now_and_was_missed_before() -> None:
    img, (cx, cy) = tilted_photo(28)
    img.paste((40, 200, 40), (20, 20, 60, 60))  # an upright face beside it, tilted 28 degrees by its landmarks
    assert len(before(size=SMALL, detector=UprightHog()).face_locations(img)) == 1
    upright, found = sorted(FaceDetector(size=SMALL, detector=UprightHog(), predictor=TiltedPredictor(-28)
                                         ).face_locations(img), key=lambda d: d.box[0])
    assert upright.angle == 0.0 and found.angle == -30.0  # the turn that made it (about) upright
    left, top, right, bottom = found.box
    assert abs((left + right) / 2 - cx) < 4 and abs((top + bottom) / 2 - cy) < 4  # mapped back onto the photo
    assert 60 < right - left < 90


@pytest.mark.parametrize("angle", [-28, -15, 15, 28])
def test_boxes_of_turned_passes_map_back_for_both_directions(angle: float) -> None:
    img, (cx, cy) = tilted_photo(angle, size=(450, 250))
    found = FaceDetector(size=SMALL, detector=FakeHog(), rotate="always", rotations=(-30, 30)).face_locations(img)
    assert len(found) == 1  # upright and turned passes all see it: one box
    left, top, right, bottom = found[0].box
    assert abs((left + right) / 2 - cx) < 4 and abs((top + bottom) / 2 - cy) < 4


def test_several_passes_give_one_box_per_face() -> None:
    hog = FakeHog()
    img = face_photo([0, 1, 2], size=(600, 250), side=90)
    found = FaceDetector(size=SMALL, detector=hog, rotate="always", rotations=(-30, -15, 15, 30)).face_locations(img)
    # 160 px, 320 px and 640 px upright (a group), then four turned passes: every face seen 7 times, kept once.
    assert len(hog.calls) == 7
    assert len(found) == 3
    centres = sorted(round((d.box[0] + d.box[2]) / 2) for d in found)
    assert all(abs(c - e) < 5 for c, e in zip(centres, [65, 185, 305], strict=True))


class TiltedPredictor:
    """dlib's 5-point shape predictor, answering eye corners on a line tilted by `roll` degrees."""

    def __init__(self, roll: float) -> None:
        self.roll = roll
        self.calls = 0

    def __call__(self, arr: np.ndarray, rect: Any) -> Any:
        self.calls += 1
        cx, cy = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2
        dx, dy = np.cos(np.radians(self.roll)), np.sin(np.radians(self.roll))
        # points 0-1: the eye on the image's right, 2-3: the eye on its left (as dlib's model orders them)
        pts = [(cx + 30 * dx, cy + 30 * dy), (cx + 10 * dx, cy + 10 * dy), (cx - 30 * dx, cy - 30 * dy),
               (cx - 10 * dx, cy - 10 * dy), (cx, cy + 20)]

        class Shape:
            def part(self, i: int) -> Any:
                return type("P", (), {"x": int(round(pts[i][0])), "y": int(round(pts[i][1]))})()
        return Shape()


def test_turned_passes_run_only_when_they_could_find_more() -> None:
    img = face_photo([0], size=(400, 300), side=80)
    for roll, expect in ((0.0, []), (8.0, []), (20.0, [(30.0, 160)]), (-20.0, [(-30.0, 160)])):
        hog, predictor = FakeHog(), TiltedPredictor(roll)
        detector = FaceDetector(size=SMALL, detector=hog, predictor=predictor)
        found = detector.face_locations(img)
        assert len(found) == 1 and predictor.calls == 1
        assert len(hog.calls) == 1 + len(expect), roll  # the portrait pass, then the turns its tilt asks for
        assert detector.turns(img, found, portrait=True) == expect
    group = face_photo([0, 1], size=(400, 300), side=80)
    for roll, turns in ((0.0, 0), (15.0, 1)):
        hog, predictor = FakeHog(), TiltedPredictor(roll)
        detector = FaceDetector(size=SMALL, detector=hog, predictor=predictor)
        assert len(detector.face_locations(group)) == 2
        assert predictor.calls == 2  # the tilt of both faces looked at
        assert len(hog.calls) == 3 + turns  # a group: 160, 320, 640 px upright, then the turn at 320 px if tilted
        assert all(320 < max(c) < 420 for c in hog.calls[3:])  # the 320 px photo turned by 30 degrees
    assert detector.turns(group, [], portrait=False) == []  # nothing found, no tilt to follow
    empty = Image.new("RGB", (400, 300), GREY)
    hog = FakeHog()
    assert FaceDetector(size=SMALL, detector=hog, predictor=TiltedPredictor(0)).face_locations(empty) == []
    assert len(hog.calls) == 2  # 160 and 320 px upright found nothing: no tilt to follow, no turns by default
    hog = FakeHog()
    FaceDetector(size=SMALL, detector=hog, empty_size=160).face_locations(empty)
    assert len(hog.calls) == 2 + 2  # unless asked: both turns at 160 px
    hog = FakeHog()
    FaceDetector(size=SMALL, detector=hog, rotate="never").face_locations(empty)
    assert len(hog.calls) == 2


def test_small_photos_are_enlarged_up_to_three_times() -> None:
    hog = FakeHog()
    FaceDetector(detector=hog, rotate="never").face_locations(Image.new("RGB", (300, 200), GREY))
    assert [max(c) for c in hog.calls] == [640, 900]  # 640 px, then 3x (not 1280 px)


def test_odd_image_modes_are_converted_not_refused() -> None:
    analyzer = fake_analyzer(size=SMALL)
    photo = face_photo([2], size=(400, 300), side=80)
    images = [photo.convert(mode) for mode in ("L", "RGBA", "P", "CMYK", "1", "I")]
    out = analyzer.faces(images)
    assert len(out) == len(images)
    assert len(out[1]) == len(out[2]) == 1  # the colour modes still show the blue square


def test_a_batch_on_two_threads_gives_what_one_thread_gives() -> None:
    photos = [face_photo(p, size=(480, 200), side=70, seed=i) for i, p in enumerate([[0], [1, 2], [], [3, 4, 0]])]
    one = FaceAnalyzer(FaceDetector(size=SMALL, detector=FakeHog(), rotate="never"), FakeEmbedder(),
                       threads=1).faces(photos)
    embedder = FakeEmbedder()
    two = FaceAnalyzer(FaceDetector(size=SMALL, detector=FakeHog(), rotate="never"), embedder, threads=2).faces(photos)
    assert [[f.box for f in p] for p in one] == [[f.box for f in p] for p in two]
    assert [len(p) for p in two] == [1, 2, 0, 3]
    assert embedder.calls == 1  # every chip of the batch in one descriptor call


def test_a_broken_photo_gets_one_line_and_the_others_their_faces(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    face_photo([0], side=80).save(pics / "good.jpg", quality=95)
    buf = io.BytesIO()
    face_photo([1], side=80).save(buf, "JPEG", quality=95)
    (pics / "broken.jpg").write_bytes(buf.getvalue()[:300])
    report = index_with_fakes(tmp_path / "db", [pics], [])
    assert report.faces == 1
    [(path, reason)] = report.failed
    assert path.endswith("broken.jpg") and "\n" not in reason


# ---- real faces -------------------------------------------------------------------------------------------------

def _boxes(folder: Path, name: str) -> list[tuple[float, float, float, float]]:
    import xml.etree.ElementTree as ET

    for xml in ("training.xml", "testing.xml"):
        for img in ET.parse(folder / xml).getroot().iter("image"):
            if img.get("file") == name:
                return [(float(b.get("left", 0)), float(b.get("top", 0)), float(b.get("left", 0)) +
                         float(b.get("width", 0)), float(b.get("top", 0)) + float(b.get("height", 0)))
                        for b in img.iter("box")]
    raise AssertionError(name)


def _found(detector: FaceDetector, img: Image.Image, truth: list[tuple[float, ...]]) -> tuple[int, int]:
    """(labelled faces matched at IoU >= 0.3, boxes matching none)."""
    from imagesim.faces.detect import _iou

    boxes = [d.box for d in detector.face_locations(img)]
    hits = sum(any(_iou(b, t) >= 0.3 for b in boxes) for t in truth)
    return hits, sum(all(_iou(b, t) < 0.3 for t in truth) for b in boxes)


@pytest.mark.slow
@pytest.mark.parametrize("name,angle", [("2008_002079.jpg", 11.0), ("2008_007676.jpg", 16.0)])
def test_real_group_photo_turned_keeps_its_faces_now_and_lost_them_before(datasets: Path, name: str,
                                                                          angle: float) -> None:
    folder = datasets / "faces-groups"
    with Image.open(folder / name) as f:
        img = f.convert("RGB")
    turned = img.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    truth = []
    for left, top, right, bottom in _boxes(folder, name):  # the labelled boxes follow their centres
        dx, dy = (left + right - img.width) / 2, (top + bottom - img.height) / 2
        cx, cy = turned.width / 2 + dx * cos + dy * sin, turned.height / 2 - dx * sin + dy * cos
        half = (right - left) / 2
        truth.append((cx - half, cy - half, cx + half, cy + half))
    old_hits, _ = _found(before(), turned, truth)
    hits, false = _found(FaceDetector(), turned, truth)
    assert old_hits <= 2 and hits == len(truth) and false == 0


@pytest.mark.slow
def test_real_face_tilted_30_degrees_gives_the_upright_descriptor(datasets: Path) -> None:
    from imagesim.images import load_image

    upright = load_image(datasets / "faces-small" / "examples" / "obama.jpg")
    canvas = Image.new("RGB", (upright.width * 2, upright.height * 2), (90, 90, 90))
    canvas.paste(upright, (upright.width // 2, upright.height // 2))
    tilted = canvas.rotate(-30, Image.Resampling.BICUBIC)  # clockwise: the head leans 30 degrees right
    # (dlib's HOG found this big face before too: small faces in groups are the ones it lost, test above)
    analyzer = FaceAnalyzer()
    [[face]] = analyzer.faces([tilted])
    [[straight]] = analyzer.faces([upright])
    assert np.linalg.norm(face.encoding - straight.encoding) < 0.35  # the chip came out upright: same person
