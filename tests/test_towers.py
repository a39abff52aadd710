"""The exported towers (imagesim.encoders.towers, export.py): same vectors as open_clip, a text query without torch,
a new-photo query without the text tower, and a stale or damaged export never used (one line, the full model)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imagesim.config import ModelSpec, Settings
from imagesim.encoders import create_encoder
from imagesim.encoders.towers import MANIFEST, TOWERS_DIR, TowersUnusable, export_dir, open_tower
from imagesim.indexer import run_index
from imagesim.search import Gallery
from tests.support.photos import ROOT, TINY_CONFIG, photo, write_gallery

TEXTS = ["a red flower", "Two DOGS on a beach, at sunset!", "", "l'été — 日本 🌸", " ".join(["long"] * 40)]


def _weights(path: Path, seed: int) -> ModelSpec:
    """A tiny model with seeded random weights, saved as a user's checkpoint file."""
    import torch

    torch.manual_seed(seed)
    enc = create_encoder("clip", spec=ModelSpec(name=str(TINY_CONFIG), pretrained=None), precision="fp32")
    enc.save_weights(path)  # type: ignore[attr-defined]
    return ModelSpec(name=str(TINY_CONFIG), pretrained=None, weights=str(path))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two galleries of the same photos indexed (fp32) with two different random models, each with its export."""
    base = tmp_path_factory.mktemp("towers")
    write_gallery(base / "pics", 8)
    out: dict[str, object] = {"pics": base / "pics"}
    for name, seed in (("a", 1), ("b", 2)):
        spec = _weights(base / f"{name}.pt", seed)
        run_index(Settings.for_db(base / f"db-{name}", model=spec, precision="fp32"), [base / "pics"])
        out[name] = (base / f"db-{name}", spec)
    return out


@pytest.fixture
def db_a(built, tmp_path: Path) -> tuple[Path, ModelSpec]:
    """A private copy of gallery a (tests damage it)."""
    db, spec = built["a"]
    shutil.copytree(db, tmp_path / "db")
    return tmp_path / "db", spec


def _fingerprint(db: Path) -> str:
    with Gallery.open(db) as g:
        info = g.store.catalog.space("content")
        assert info is not None
        return info.fingerprint


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_index_writes_one_export_per_model_with_both_towers(built) -> None:
    db, _ = built["a"]
    folders = list((db / TOWERS_DIR).iterdir())
    assert [f.name for f in folders] == [_fingerprint(db)]
    manifest = json.loads((folders[0] / MANIFEST).read_text())
    assert manifest["text"]["context_length"] == 16 and manifest["visual"]["input_size"] == 32
    assert set(manifest["files"]) == {"text.onnx", "text.data", "tokenizer.json", "visual.onnx", "visual.data"}


def test_export_vectors_match_open_clip(built) -> None:
    db, spec = built["a"]
    enc = create_encoder("clip", spec=spec, precision="fp32")
    fp = enc.fingerprint()
    assert fp == _fingerprint(db)
    text = open_tower(db, fp, "text")
    assert (text.tokenize(TEXTS) == enc.tokenizer(TEXTS).numpy()).all()  # type: ignore[union-attr, attr-defined]
    assert _cos(text.embed_texts(TEXTS), enc.embed_texts(TEXTS)).min() >= 0.9999  # type: ignore[union-attr, attr-defined]
    images = [photo(i, size) for i, size in enumerate([(96, 72), (40, 120), (300, 200), (32, 32), (20, 10)])]
    visual = open_tower(db, fp, "visual")
    assert _cos(visual.embed_images(images), enc.embed_images(images)).min() >= 0.9999  # type: ignore[union-attr]


def test_a_new_photo_through_the_tower_matches_its_indexed_vector(built) -> None:
    """Preprocessing as the index did it: a gallery photo given as pixels (so not looked up) gets its stored vector."""
    db, _ = built["a"]
    pics = sorted(Path(built["pics"]).iterdir())  # type: ignore[arg-type]
    with Gallery.open(db) as g:
        stored = np.stack([g.store.stored_vector(p, "content") for p in pics])
        from PIL import Image

        fresh = np.stack([g.vector(Image.open(p).convert("RGB")) for p in pics])
        assert g.loaded_encoder is None and set(g._towers) == {"visual"}  # no full model, no text tower
    assert _cos(fresh, stored).min() >= 0.9999


QUERY = """
import json, sys
from imagesim.search import Gallery
with Gallery.open(sys.argv[1]) as g:
    if sys.argv[2] == "text":
        hits, vec = g.search_text("a red flower", k=3), g._text_vector("a red flower")
    else:
        hits, vec = g.search(sys.argv[3], k=3), g.vector(sys.argv[3])
    towers = sorted(g._towers)
print(json.dumps({"hits": [h.path for h in hits], "vector": vec.tolist(), "towers": towers,
                  "loaded": [m for m in ("torch", "open_clip", "torchvision") if m in sys.modules]}))
"""


def _query(db: Path, kind: str, photo_path: Path | None = None) -> tuple[dict, list[str]]:
    """A one-shot query in a fresh interpreter: what it answered, what it imported, the lines it printed."""
    args = [sys.executable, "-c", QUERY, str(db), kind] + ([str(photo_path)] if photo_path else [])
    run = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout), [line for line in run.stderr.splitlines() if line.strip()]


def test_a_text_query_with_the_export_imports_neither_torch_nor_open_clip(db_a) -> None:
    db, spec = db_a
    out, lines = _query(db, "text")
    assert out["loaded"] == [] and out["towers"] == ["text"] and lines == []
    ref = create_encoder("clip", spec=spec, precision="fp32").embed_texts(["a red flower"])  # type: ignore[attr-defined]
    assert _cos(np.array([out["vector"]]), ref)[0] >= 0.9999
    with Gallery.open(db, encoder=create_encoder("clip", spec=spec, precision="fp32")) as g:
        assert [h.path for h in g.search_text("a red flower", k=3)] == out["hits"]  # the full model agrees


def test_a_new_photo_query_loads_only_the_visual_tower(db_a, tmp_path: Path) -> None:
    db, spec = db_a
    new = tmp_path / "new.jpg"
    photo(99, (150, 100)).save(new)
    out, lines = _query(db, "photo", new)
    assert out["loaded"] == [] and out["towers"] == ["visual"] and lines == []
    from imagesim.images import load_image

    enc = create_encoder("clip", spec=spec, precision="fp32")
    ref = enc.embed_images([load_image(new, draft_size=enc.input_size)])
    assert _cos(np.array([out["vector"]]), ref)[0] >= 0.9999


def _text_query(db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[np.ndarray, bool, list[str]]:
    """A text query in this process: its vector, whether the exported tower answered, the lines it printed."""
    capsys.readouterr()
    with Gallery.open(db) as g:
        vec = g._text_vector("a red flower")
        by_tower = g.loaded_encoder is None and "text" in g._towers
    return vec, by_tower, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _text_ref(spec: ModelSpec) -> np.ndarray:
    return create_encoder("clip", spec=spec, precision="fp32").embed_texts(["a red flower"])  # type: ignore[attr-defined]


def test_a_stale_export_is_never_used(built, tmp_path: Path, capsys) -> None:
    """Gallery b given gallery a's export, even under b's own name: refused (other weights), b's model answers,
    and b's export is written for the next query."""
    db_a, _ = built["a"]
    db, spec_b = built["b"]
    shutil.copytree(db, tmp_path / "db")
    db = tmp_path / "db"
    fp_a, fp_b = _fingerprint(db_a), _fingerprint(db)
    assert fp_a != fp_b
    shutil.rmtree(db / TOWERS_DIR)
    shutil.copytree(export_dir(db_a, fp_a), export_dir(db, fp_b))  # a's files where b's belong
    vec, by_tower, lines = _text_query(db, capsys)
    assert not by_tower and len(lines) == 1 and "stale" in lines[0] and "full model" in lines[0], lines
    assert _cos(vec[None], _text_ref(spec_b))[0] >= 0.9999
    assert json.loads((export_dir(db, fp_b) / MANIFEST).read_text())["fingerprint"] == fp_b  # rebuilt for b
    again, by_tower, lines = _text_query(db, capsys)
    assert by_tower and lines == [] and _cos(again[None], vec[None])[0] >= 0.9999


def test_an_export_of_another_model_only_is_stale(built, tmp_path: Path) -> None:
    db_a, _ = built["a"]
    db, _ = built["b"]
    shutil.copytree(db, tmp_path / "db")
    db = tmp_path / "db"
    shutil.rmtree(db / TOWERS_DIR)
    shutil.copytree(export_dir(db_a, _fingerprint(db_a)), db / TOWERS_DIR / _fingerprint(db_a))
    with pytest.raises(TowersUnusable, match="stale"):
        open_tower(db, _fingerprint(db), "text")


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip text.data", "truncate text.data", "garbage manifest", "flip text.onnx",
                                    "flip tokenizer.json"])
def test_a_damaged_export_falls_back_with_one_line(db_a, damage: str, capsys) -> None:
    db, spec = db_a
    folder = export_dir(db, _fingerprint(db))
    action, name = damage.split()
    if action == "flip":
        _flip(folder / name)
    elif action == "truncate":
        (folder / name).write_bytes((folder / name).read_bytes()[:-100])
    else:
        (folder / MANIFEST).write_text("{not json")
    vec, by_tower, lines = _text_query(db, capsys)
    assert not by_tower and len(lines) == 1 and "damaged" in lines[0] and "full model" in lines[0], lines
    assert _cos(vec[None], _text_ref(spec))[0] >= 0.9999  # the full model's answer, not the damaged one's
    again, by_tower, lines = _text_query(db, capsys)
    assert by_tower and lines == [] and _cos(again[None], vec[None])[0] >= 0.9999  # rebuilt, used again


def test_a_damaged_visual_tower_falls_back_for_a_photo(db_a, tmp_path: Path, capsys) -> None:
    db, spec = db_a
    _flip(export_dir(db, _fingerprint(db)) / "visual.data")
    new = tmp_path / "new.png"
    photo(7, (64, 64)).save(new)
    capsys.readouterr()
    with Gallery.open(db) as g:
        vec = g.vector(new)
        assert g.loaded_encoder is not None
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "damaged" in lines[0] and "visual.data" in lines[0], lines
    from imagesim.images import load_image

    enc = create_encoder("clip", spec=spec, precision="fp32")
    assert _cos(vec[None], enc.embed_images([load_image(new, draft_size=enc.input_size)]))[0] >= 0.9999
def test_an_unexportable_model_is_said_once_at_index_and_then_quiet(tmp_path: Path, tiny_spec: ModelSpec,
                                                                     monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from imagesim.encoders import export

    def broken(*_: object) -> None:
        raise RuntimeError("this exporter cannot")

    monkeypatch.setattr(export, "_write", broken)
    monkeypatch.setattr(export, "_MADE", {})
    write_gallery(tmp_path / "pics", 3)
    run_index(Settings.for_db(tmp_path / "db", model=tiny_spec), [tmp_path / "pics"])
    err = [line for line in capsys.readouterr().err.splitlines() if "export" in line]
    assert len(err) == 1 and "this exporter cannot" in err[0] and "full model" in err[0]
    with Gallery.open(tmp_path / "db") as g:
        assert len(g.search_text("a red flower", k=2)) == 2
        assert g.loaded_encoder is not None  # the full model answered...
    assert "export" not in capsys.readouterr().err  # ...without a line: nothing is wrong
