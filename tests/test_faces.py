"""Face detection and embedding: box mapping on huge, tiny and rotated photos (fake models), real dlib on real faces."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesim.faces.analyze import FaceAnalyzer
from imagesim.faces.detect import FaceDetector, models_dir
from imagesim.faces.verdicts import TOLERANCE, face_distance, verdict
from imagesim.images import load_image
from tests.support.facefakes import FakeEmbedder, FakeHog, face_photo


def _jpeg(img: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kwargs)
    return buf.getvalue()


def test_models_are_found_without_importing_face_recognition_models() -> None:
    folder = models_dir()
    for name in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat",
                 "mmod_human_face_detector.dat"):
        assert (folder / name).is_file()
    assert "face_recognition_models" not in sys.modules  # importing it needs pkg_resources


def test_no_face_in_a_photo_without_one_and_no_embedder_loaded() -> None:
    analyzer = FaceAnalyzer(FaceDetector(size=640))  # the real HOG detector (small passes: a fast test)
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    assert analyzer.faces([noise, face_photo([])]) == [[], []]
    assert analyzer.embedder._net is None and analyzer.embedder._recognizer is None  # no ResNet loaded


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (7, 200)])
def test_tiny_images_have_no_faces_and_do_not_crash(size: tuple[int, int]) -> None:
    assert FaceAnalyzer().faces([Image.new("RGB", size, (200, 150, 120))]) == [[]]


def test_huge_photo_is_detected_small_and_boxes_come_back_in_full_size_pixels() -> None:
    hog = FakeHog()
    analyzer = FaceAnalyzer(FaceDetector(detector=hog), FakeEmbedder())
    big = face_photo([1], size=(6000, 4000), side=900, at=[(3000, 1200)])
    img = load_image(_jpeg(big), draft_size=analyzer.input_size)
    assert img.size[0] < 6000  # draft decoding did its job
    [[face]] = analyzer.faces([img])
    assert max(max(shape) for shape in hog.calls) <= 2 * analyzer.detector.size
    assert np.allclose(face.box, (3000, 1200, 3900, 2100), atol=12)


@pytest.mark.parametrize("orientation,rotate", [(6, 90), (8, 270), (3, 180)])
def test_rotated_exif_boxes_are_in_upright_pixels(orientation: int, rotate: int) -> None:
    upright = face_photo([2], size=(800, 600), side=120, at=[(600, 100)])
    stored = upright.rotate(rotate, expand=True)  # what the camera wrote; EXIF says how to turn it back
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = load_image(_jpeg(stored, exif=exif.tobytes()))
    assert img.size == (800, 600)
    [[face]] = FaceAnalyzer(FaceDetector(detector=FakeHog()), FakeEmbedder()).faces([img])
    assert np.allclose(face.box, (600, 100, 720, 220), atol=3)


def test_portraits_take_one_pass_groups_three() -> None:
    hog = FakeHog()
    detector = FaceDetector(size=1280, detector=hog, rotate="never")  # upright passes (turns: test_face_detect)
    assert len(detector.face_locations(face_photo([0], size=(2000, 1500), side=300))) == 1
    assert len(hog.calls) == 1 and max(hog.calls[0]) == 640
    hog.calls.clear()
    assert len(detector.face_locations(face_photo([0, 1], size=(2000, 1500), side=300))) == 2
    assert [max(c) for c in hog.calls] == [640, 1280, 2560]


def test_verdict_bands() -> None:
    assert verdict(0.30) == (True, "high")
    assert verdict(0.53) == (True, "medium")
    assert verdict(0.58) == (True, "low")
    assert verdict(0.62) == (False, "low")
    assert verdict(0.67) == (False, "medium")
    assert verdict(0.90) == (False, "high")
    assert verdict(TOLERANCE) == (False, "low")
    # the README's bands are half-open at every edge, even where float arithmetic would wobble
    assert [verdict(d) for d in (0.50, 0.55, 0.60, 0.65, 0.70)] == [
        (True, "medium"), (True, "low"), (False, "low"), (False, "medium"), (False, "high")]
    assert verdict(0.69996) == (False, "high")  # shown as 0.7000: judged as shown


def test_face_distance_is_euclidean() -> None:
    known = np.eye(3, 128, dtype=np.float32)
    assert np.allclose(face_distance(known, known[0]), [0.0, np.sqrt(2), np.sqrt(2)])
    assert face_distance(np.zeros((0, 128)), known[0]).shape == (0,)


# ---- real faces (faces-small) --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.mark.slow
def test_real_faces_detected_and_told_apart(datasets: Path, real_analyzer: FaceAnalyzer) -> None:
    folder = datasets / "faces-small" / "examples"
    paths = ["obama.jpg", "obama2.jpg", "biden.jpg", "two_people.jpg"]
    imgs = [load_image(folder / p, draft_size=real_analyzer.input_size) for p in paths]
    obama, obama2, biden, two = real_analyzer.faces(imgs)
    assert len(obama) == len(obama2) == len(biden) == 1 and len(two) == 2
    a, b, c = obama[0].encoding, obama2[0].encoding, biden[0].encoding
    assert 1.2 < np.linalg.norm(a) < 1.6  # dlib descriptors are not unit vectors
    assert face_distance(b[None], a)[0] < TOLERANCE < face_distance(c[None], a)[0]
    same = sorted(face_distance(np.stack([f.encoding for f in two]), a))
    assert same[0] < TOLERANCE < same[1]  # obama is one of the two people, biden the other


@pytest.mark.slow
def test_real_face_in_rotated_photo_keeps_its_upright_box(datasets: Path, real_analyzer: FaceAnalyzer) -> None:
    path = datasets / "faces-small" / "examples" / "obama.jpg"
    upright = load_image(path)
    [[face]] = real_analyzer.faces([upright])
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = load_image(_jpeg(upright.rotate(90, expand=True), exif=exif.tobytes()))
    [[again]] = real_analyzer.faces([turned])
    assert np.allclose(face.box, again.box, atol=max(6, (face.box[2] - face.box[0]) // 10))
    assert face_distance(face.encoding[None], again.encoding)[0] < 0.2


@pytest.mark.slow
def test_chip_descriptor_equals_dlibs_own_alignment(datasets: Path, real_analyzer: FaceAnalyzer) -> None:
    import dlib

    img = load_image(datasets / "faces-small" / "examples" / "biden.jpg")
    arr = np.asarray(img)
    [(box, _, _)] = real_analyzer.detector.face_locations(img)
    from imagesim.faces.detect import model_file

    predictor = real_analyzer.embedder._landmarks()
    recognizer = dlib.face_recognition_model_v1(model_file("dlib_face_recognition_resnet_model_v1.dat"))
    rect = dlib.rectangle(*(int(round(v)) for v in box[:2]), int(round(box[2])) - 1, int(round(box[3])) - 1)
    direct = np.asarray(recognizer.compute_face_descriptor(arr, predictor(arr, rect)), dtype=np.float32)
    ours = real_analyzer.embedder.face_encodings([real_analyzer.embedder.chip(arr, box)])[0]  # ONNX network
    assert np.allclose(direct, ours, atol=1e-4)


def test_batches_share_one_pool_of_detection_threads() -> None:
    """Threads are started once per analyzer, not per batch (a start waited ~0.1 s while the other thread ran)."""
    import pickle
    import threading

    analyzer = FaceAnalyzer(FaceDetector(size=256, detector=FakeHog()), FakeEmbedder(), threads=2)
    photos = [Image.new("RGB", (64, 48), (i * 40, 90, 120)) for i in range(4)]
    before = {t.ident for t in threading.enumerate()}
    started: list[int | None] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        real_start(thread)
        started.append(thread.ident)

    threading.Thread.start = counting_start  # type: ignore[method-assign]
    try:
        for _ in range(5):
            assert len(analyzer.faces(photos)) == 4
    finally:
        threading.Thread.start = real_start  # type: ignore[method-assign]
    assert 1 <= len(started) <= 2 and not set(started) & before
    copy = pickle.loads(pickle.dumps(analyzer))  # a Ray worker's copy starts its own pool when it needs one
    assert copy._pool is None and len(copy.faces(photos)) == 4
