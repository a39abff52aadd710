"""dlib's face ResNet on ONNX Runtime (faces/resnet.py) gives dlib's own descriptors, and a file it cannot read
falls back to dlib's network."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesim.errors import ModelError
from imagesim.faces.detect import model_file
from imagesim.faces.embed import FaceEmbedder
from imagesim.faces.resnet import N_CONV, OnnxFaceResNet, read_weights

GALLERY = Path(__file__).resolve().parents[1] / "gallery"
MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def _chips() -> np.ndarray:
    """Chips the network has to get right: photo crops (faces, fur, texture) and noise, 150x150 RGB."""
    out = []
    for name in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "brick.jpg"):
        img = Image.open(GALLERY / name).convert("RGB")
        w, h = img.size
        side = min(w, h)
        out.append(np.asarray(img.crop((0, 0, side, side)).resize((150, 150))))
    rng = np.random.default_rng(3)
    out.append(rng.integers(0, 256, (150, 150, 3), dtype=np.uint8))
    out.append(np.zeros((150, 150, 3), np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def dlib_descriptors() -> np.ndarray:
    import dlib

    network = dlib.face_recognition_model_v1(model_file(MODEL))
    return np.asarray([np.asarray(v) for v in network.compute_face_descriptor(list(_chips()))], np.float32)


def test_the_onnx_network_gives_dlibs_descriptors(dlib_descriptors: np.ndarray) -> None:
    weights = read_weights(model_file(MODEL))
    assert len(weights.convs) == N_CONV == 29 and weights.fc.shape == (256, 128)
    ours = OnnxFaceResNet(model_file(MODEL), threads=2)(_chips())
    assert ours.shape == (6, 128) and ours.dtype == np.float32
    assert np.abs(ours - dlib_descriptors).max() < 1e-4
    cos = (ours * dlib_descriptors).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(dlib_descriptors, axis=1)
    assert cos.min() > 0.99999
    # and the distances verdicts are judged by
    ours_d = np.linalg.norm(ours[:, None] - ours[None], axis=2)
    theirs_d = np.linalg.norm(dlib_descriptors[:, None] - dlib_descriptors[None], axis=2)
    assert np.abs(ours_d - theirs_d).max() < 1e-4


def test_the_embedder_runs_the_onnx_network_and_pickles_without_it(dlib_descriptors: np.ndarray) -> None:
    embedder = FaceEmbedder()
    out = embedder.face_encodings(list(_chips()))
    assert isinstance(embedder._net, OnnxFaceResNet) and embedder._recognizer is None
    assert np.abs(out - dlib_descriptors).max() < 1e-4
    copy = pickle.loads(pickle.dumps(embedder))  # `index --ray` workers build their own session
    assert copy._net is None
    assert np.abs(copy.face_encodings(list(_chips()[:2])) - dlib_descriptors[:2]).max() < 1e-4


@pytest.mark.parametrize("damage", ["truncated", "no convolutions"])
def test_a_model_file_it_cannot_read_is_one_line_and_dlib_takes_over(
        damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        dlib_descriptors: np.ndarray) -> None:
    data = Path(model_file(MODEL)).read_bytes()
    bad = tmp_path / MODEL
    renamed = data.replace(b"\x01\x05con_4", b"\x01\x05con_9")
    bad.write_bytes(data[:len(data) // 2] if damage == "truncated" else renamed)
    with pytest.raises(ModelError, match="face descriptor model"):
        read_weights(str(bad))
    import dlib

    real = dlib.face_recognition_model_v1(model_file(MODEL))
    monkeypatch.setattr("imagesim.faces.embed.model_file", lambda name: str(bad))
    monkeypatch.setattr(dlib, "face_recognition_model_v1", lambda path: real)
    out = FaceEmbedder().face_encodings(list(_chips()))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "using dlib's own" in err[0]
    assert np.abs(out - dlib_descriptors).max() < 1e-6
