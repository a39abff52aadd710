"""The content encoder on tiny open_clip configs with random weights; weights loading the way a user does it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imagesim.config import ModelSpec
from imagesim.encoders import BatchEmbedder, create_encoder
from imagesim.errors import ModelError, WeightsUnavailable
from tests.support.photos import TINY_CONFIG, photo, write_photo


def test_vectors_are_unit_float32_without_nan(tiny_encoder) -> None:
    vecs = tiny_encoder.embed_images([photo(i) for i in range(5)])
    assert vecs.shape == (5, tiny_encoder.dim) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert not np.isnan(vecs).any()
    assert tiny_encoder.embed_images([]).shape == (0, tiny_encoder.dim)


def test_batch_encoding_matches_one_by_one(tiny_encoder) -> None:
    imgs = [photo(i) for i in range(4)]
    together = tiny_encoder.embed_images(imgs)
    alone = np.stack([tiny_encoder.embed_images([im])[0] for im in imgs])
    assert np.allclose(together, alone, atol=1e-5)


def test_text_vectors(tiny_encoder) -> None:
    vecs = tiny_encoder.embed_texts(["a red tulip", "a cat on a sofa"])
    assert vecs.shape == (2, tiny_encoder.dim) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1])


def test_saved_checkpoint_loads_back_identically(tiny_weights: Path) -> None:
    """A random tiny model saved with torch.save and loaded through --weights gives the same vectors."""
    import torch

    torch.manual_seed(0)
    fresh = create_encoder("clip", spec=ModelSpec(name=str(TINY_CONFIG), pretrained=None))
    loaded = create_encoder("clip", spec=ModelSpec(name=str(TINY_CONFIG), pretrained=None, weights=str(tiny_weights)))
    torch.manual_seed(1)
    other = create_encoder("clip", spec=ModelSpec(name=str(TINY_CONFIG), pretrained=None))
    imgs = [photo(7), photo(8)]
    assert np.allclose(fresh.embed_images(imgs), loaded.embed_images(imgs), atol=1e-6)
    assert not np.allclose(other.embed_images(imgs), loaded.embed_images(imgs), atol=1e-3)
    assert loaded.describe()["weights_sha256"] and loaded.fingerprint() != other.fingerprint()


def test_fingerprint_ignores_where_the_files_are(tiny_weights: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "moved.json"
    cfg.write_text(TINY_CONFIG.read_text())
    weights = tmp_path / "moved.pt"
    weights.write_bytes(tiny_weights.read_bytes())
    a = create_encoder("clip", spec=ModelSpec(name=str(TINY_CONFIG), pretrained=None, weights=str(tiny_weights)))
    b = create_encoder("clip", spec=ModelSpec(name=str(cfg), pretrained=None, weights=str(weights)))
    assert a.fingerprint() == b.fingerprint()


def test_missing_pretrained_weights_offline_is_one_clear_error() -> None:
    with pytest.raises(WeightsUnavailable) as info:
        create_encoder("clip", spec=ModelSpec("RN50", "openai"))
    msg = str(info.value)
    assert "RN50" in msg and "--weights FILE" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "spec, fragment",
    [
        (ModelSpec("no-such-model", None), "unknown model"),
        (ModelSpec("ViT-B-32", "no-such-tag"), "no pretrained tag"),
        (ModelSpec(str(TINY_CONFIG), None, "/nonexistent/w.pt"), "weights file not found"),
    ],
)
def test_bad_model_specs_raise_model_error(spec: ModelSpec, fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        create_encoder("clip", spec=spec)


def test_bad_config_and_mismatched_weights(tmp_path: Path, tiny_weights: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(ModelError, match="embed_dim, vision_cfg and text_cfg"):
        create_encoder("clip", spec=ModelSpec(str(bad), None))
    other = json.loads(TINY_CONFIG.read_text())
    other["embed_dim"] = 16
    cfg = tmp_path / "other.json"
    cfg.write_text(json.dumps(other))
    with pytest.raises(ModelError, match="tiny_clip.json, not for other.json"):  # the file it fits, by name
        create_encoder("clip", spec=ModelSpec(str(cfg), None, str(tiny_weights)))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read .* as a model checkpoint"):
        create_encoder("clip", spec=ModelSpec(str(TINY_CONFIG), None, str(garbage)))


def test_batch_embedder_is_a_pure_map_batches_function(tiny_spec: ModelSpec, tmp_path: Path) -> None:
    good = write_photo(tmp_path / "a.jpg", 1)
    bad = tmp_path / "b.jpg"
    bad.write_text("not a photo")
    embed = BatchEmbedder("clip", spec=tiny_spec)
    out = embed({"path": np.asarray([str(good), str(bad)])})
    assert out["vector"].shape == (2, embed.encoder.dim) and out["vector"].dtype == np.float32
    assert np.isclose(np.linalg.norm(out["vector"][0]), 1.0, atol=1e-5) and not out["vector"][1].any()
    assert out["error"][0] == "" and "not a supported image" in out["error"][1]


# ---- precision and the batch preprocess (docs/speed.md) -------------------------------------------------------------

def test_bf16_vectors_match_fp32_of_the_same_model(tiny_spec: ModelSpec) -> None:
    fp32 = create_encoder("clip", spec=tiny_spec, precision="fp32")
    bf16 = create_encoder("clip", spec=tiny_spec, precision="bf16")
    assert fp32.precision == "fp32" and bf16.precision == "bf16"
    imgs = [photo(i, (160, 120)) for i in range(8)]
    a, b = fp32.embed_images(imgs), bf16.embed_images(imgs)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(axis=1).min()) >= 0.999
    assert not np.array_equal(a, b)  # the bf16 path really ran in bf16
    # bf16 and fp32 vectors mix in one index, so precision is not part of what made the vectors
    assert fp32.fingerprint() == bf16.fingerprint()


def test_precision_auto_follows_the_cpu_and_typos_are_one_line(tiny_spec: ModelSpec, monkeypatch) -> None:
    from imagesim.encoders import clip

    monkeypatch.setattr(clip, "cpu_has_bf16", lambda: False)
    assert clip.resolve_precision("auto") == "fp32"
    monkeypatch.setattr(clip, "cpu_has_bf16", lambda: True)
    assert clip.resolve_precision("auto") == "bf16"
    assert clip.resolve_precision("fp32") == "fp32"
    with pytest.raises(ModelError, match="unknown precision 'fp16'"):
        create_encoder("clip", spec=tiny_spec, precision="fp16")


def test_batch_preprocess_gives_open_clip_vectors(tiny_spec: ModelSpec) -> None:
    enc = create_encoder("clip", spec=tiny_spec, precision="fp32")
    assert enc.fast_preprocess is not None  # open_clip's standard transform is recognised
    imgs = [photo(i, (200, 90)) for i in range(4)]
    fast = enc.embed_images(imgs)
    enc.fast_preprocess = None
    assert np.allclose(fast, enc.embed_images(imgs), atol=1e-5)


@pytest.mark.slow
def test_bf16_matches_fp32_on_real_photos(datasets: Path) -> None:
    """The real ViT-B-32 architecture (random weights, one model) on Flowers-17: bf16 within cosine 0.999 of fp32."""
    import torch

    from imagesim.images import load_image

    torch.manual_seed(0)
    fp32 = create_encoder("clip", spec=ModelSpec(name="ViT-B-32", pretrained=None), precision="fp32")
    bf16 = create_encoder("clip", spec=ModelSpec(name="ViT-B-32", pretrained=None), precision="bf16")
    bf16.model.load_state_dict(fp32.model.state_dict())  # copies (and casts) the very same weights
    files = sorted((datasets / "flowers17").glob("*/*.jpg"))[::45]
    images = [load_image(f, draft_size=224) for f in files]
    cos = (fp32.embed_images(images) * bf16.embed_images(images)).sum(axis=1)
    assert float(cos.min()) >= 0.999


def test_a_gpu_asked_for_where_there_is_none_is_one_line(tiny_spec: ModelSpec) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="no cuda device here"):
        create_encoder("clip", spec=tiny_spec, device="cuda")
