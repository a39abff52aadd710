"""Offline first run: no CLIP weights here (HF_HUB_OFFLINE=1, nothing cached), yet indexing builds what needs none
(style, near-duplicates, faces) and says in one line what waits; when the weights come, only content is added.
Also `imagesim model save` (weights for an offline machine) and a checkpoint for another architecture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imagesim import encoders
from imagesim.cli import main
from imagesim.config import ModelSpec, Settings
from imagesim.errors import ModelError
from imagesim.indexer import run_index
from imagesim.search import Gallery
from tests.support.counting import Counting
from tests.support.facefakes import fake_analyzer, write_face_photo
from tests.support.photos import TINY_CONFIG, photo, write_gallery, write_photo


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Counting]]:
    """Every encoder the indexer builds, wrapped so its photos are counted; CLIP builds are listed as they are."""
    built: dict[str, list[Counting]] = {}
    real = encoders.create_encoder

    def spy(kind: str, **kwargs: object) -> Counting:
        built.setdefault(kind, [])
        enc = Counting(real(kind, **kwargs))  # CLIP without weights raises here, before it is counted
        built[kind].append(enc)
        return enc

    monkeypatch.setattr(encoders, "create_encoder", spy)
    return built


def test_offline_first_run_then_the_model_adds_content_only(tmp_path: Path, tiny_spec: ModelSpec,
                                                            spied: dict[str, list[Counting]],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    pics = tmp_path / "pics"
    photos = write_gallery(pics, 4)
    write_photo(pics / "copy.png", 0)  # the same picture as photo 0 in other bytes: a near-duplicate
    faces = [write_face_photo(pics / f"face{i}.jpg", [0, 1], seed=i) for i in range(2)]
    db = tmp_path / "db"
    analyzer = fake_analyzer()
    report = run_index(Settings.for_db(db), [pics], faces=True, face_analyzer=analyzer, progress=False)
    assert report.added == 7 and report.failed == []
    assert report.waiting_for_model and "\n" not in report.waiting_for_model
    assert "content and text search wait for the model" in report.waiting_for_model
    assert all(s in report.waiting_for_model for s in ("--weights FILE", "imagesim model save", "network"))
    assert report.to_json()["waiting_for_model"] == report.waiting_for_model
    assert spied["clip"] == [] and [e.calls for e in spied["style"] + spied["dup"]] == [7, 7]
    detected, embedded = len(analyzer.detector.detector.calls), analyzer.embedder.calls  # type: ignore[attr-defined]
    assert detected > 0

    with Gallery.open(db, face_analyzer=fake_analyzer()) as g:
        assert g.status()["spaces"] == ["dup", "faces", "style"] and g.status()["model"] is None
        assert g.search(photos[1], k=2, mode="style")[0].path == str(photos[1])
        assert {str(pics / "copy.png"), str(photos[0])} in [set(group) for group in g.duplicates()]
        assert {m.path for m in g.faces(faces[0], k=3)[0].matches} >= {str(f) for f in faces}
    for args in (["search", str(photos[0])], ["search", "--text", "a dog"],
                 ["search", str(photos[0]), "--mode", "blend"]):
        assert main([*args, "--db", str(db)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "has no content vectors yet" in err and "imagesim model save" in err
    assert spied["clip"] == []  # refused before any model was built
    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "spaces     dup, faces, style" in out and "waiting for its weights" in out

    # The weights arrive (a file from `imagesim model save`): the next run adds the content vectors and nothing else.
    report = run_index(Settings.for_db(db, model=tiny_spec), [pics], face_analyzer=analyzer, progress=False)
    assert (report.added, report.updated, report.failed) == (0, 7, [])  # the same photos, given content vectors
    assert report.waiting_for_model is None
    assert [e.calls for e in spied["clip"]] == [7]
    assert [e.calls for e in spied["style"] + spied["dup"]] == [7, 0, 7, 0]  # each: first run, second run
    assert len(analyzer.detector.detector.calls) == detected and analyzer.embedder.calls == embedded  # type: ignore[attr-defined]
    with Gallery.open(db) as g:
        assert g.search(photos[2], k=1)[0].path == str(photos[2])
        assert g.status()["spaces"] == ["content", "dup", "faces", "style"]
        assert len(g.search_text("a photo", k=10)) == 7


def test_offline_index_on_the_command_line_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_gallery(tmp_path / "pics", 2)
    assert main(["index", str(tmp_path / "pics"), "--db", str(tmp_path / "db"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["added"] == 2
    assert captured.err.count("\n") == 1 and captured.err.startswith("imagesim: content and text search wait")
    assert "ViT-B-32" in captured.err
    # --rebuild re-embeds everything: without the model that is one error line, not a half rebuild
    assert main(["index", str(tmp_path / "pics"), "--db", str(tmp_path / "db"), "--rebuild"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot load weights" in err


def test_model_save_writes_weights_that_load_as_the_same_model(tmp_path: Path, tiny_spec: ModelSpec, tiny_encoder,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "offline" / "clip.pt"
    assert main(["model", "save", "--model", str(TINY_CONFIG), "--weights", str(tiny_spec.weights),
                 "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and f"--weights {out}" in line and f"--model {TINY_CONFIG}" in line
    again = encoders.create_encoder("clip", spec=ModelSpec(str(TINY_CONFIG), None, str(out)), precision="fp32")
    ref = encoders.create_encoder("clip", spec=tiny_spec, precision="fp32")
    images = [photo(i, (64, 48)) for i in range(3)]
    assert np.array_equal(again.embed_images(images), ref.embed_images(images))
    assert np.array_equal(again.embed_texts(["a red tulip"]), ref.embed_texts(["a red tulip"]))  # type: ignore[attr-defined]
    assert not list(out.parent.glob(".*.tmp"))


def test_model_save_offline_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "save", "--out", str(tmp_path / "w.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the hub" in err and not (tmp_path / "w.pt").exists()


def test_a_checkpoint_for_another_model_says_which_it_fits(tmp_path: Path, tiny_weights: Path,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    import open_clip
    import torch

    cfg = json.loads(TINY_CONFIG.read_text())
    cfg["embed_dim"], cfg["vision_cfg"]["width"] = 48, 96  # another (tiny) architecture, registered by name
    path = tmp_path / "tiny-wide.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    other = tmp_path / "wide.pt"
    torch.save(open_clip.create_model("tiny-wide", pretrained=None).state_dict(), other)

    with pytest.raises(ModelError) as info:
        encoders.create_encoder("clip", spec=ModelSpec(str(TINY_CONFIG), None, str(other)))
    msg = str(info.value)
    assert "\n" not in msg and f"{other} holds weights for tiny-wide, not for tiny_clip.json" in msg
    assert "--model tiny-wide" in msg
    with pytest.raises(ModelError) as info:  # a config file loaded before is named by its path
        encoders.create_encoder("clip", spec=ModelSpec("ViT-B-32", None, str(tiny_weights)))
    assert f"holds weights for {TINY_CONFIG}, not for ViT-B-32" in str(info.value)
    odd = tmp_path / "odd.pt"  # built from a config never registered: it fits nothing this process knows
    torch.save(open_clip.model.CLIP(**{**cfg, "embed_dim": 40}).state_dict(), odd)
    with pytest.raises(ModelError) as info:  # in no config open_clip knows (nor any loaded here but its own)
        encoders.create_encoder("clip", spec=ModelSpec("ViT-B-32", None, str(odd)))
    assert "does not fit ViT-B-32 nor any of open_clip's" in str(info.value)
    garbage = tmp_path / "notes.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ModelError) as info:
        encoders.create_encoder("clip", spec=ModelSpec(str(TINY_CONFIG), None, str(garbage)))
    assert "cannot read" in str(info.value) and "as a model checkpoint" in str(info.value)
    leaked = capfd.readouterr()
    assert "pos_embed" not in leaked.err + leaked.out and "weights_only" not in leaked.err + leaked.out


def test_a_bad_query_file_is_refused_before_any_model_loads(tmp_path: Path, tiny_spec: ModelSpec,
                                                            spied: dict[str, list[Counting]],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    pics = tmp_path / "pics"
    write_gallery(pics, 2)
    db = str(tmp_path / "db")
    model = ["--model", tiny_spec.name, "--weights", str(tiny_spec.weights)]
    assert main(["index", str(pics), "--db", db, *model, "--json"]) == 0
    capsys.readouterr()
    spied.clear()
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo at all")
    for extra in ([], model):  # the database's model, and one asked for on the command line
        assert main(["search", str(bad), "--db", db, *extra]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "notes.jpg" in err
    assert "clip" not in spied  # no model was built to refuse it
    assert main(["search", str(tmp_path / "missing.jpg"), "--db", db]) == 1
    assert capsys.readouterr().err.count("\n") == 1 and "clip" not in spied


def test_a_run_without_weights_keeps_the_databases_model(tmp_path: Path, tiny_spec: ModelSpec,
                                                         spied: dict[str, list[Counting]]) -> None:
    """Indexed with a model whose weights are not here now (another machine, a cleared cache): new photos get the
    weight-free spaces, the database still names its model, and the next run with it adds only their content."""
    pics = tmp_path / "pics"
    photos = write_gallery(pics, 3)
    db = tmp_path / "db"
    run_index(Settings.for_db(db, model=tiny_spec), [pics], progress=False)
    new = write_photo(pics / "new.jpg", 50)
    report = run_index(Settings.for_db(db, model=ModelSpec()), [pics], progress=False)  # the default: not cached
    assert report.added == 1 and report.waiting_for_model
    with Gallery.open(db) as g:
        assert g.model_spec() == tiny_spec  # not relabelled by the run that lacked its weights
        assert g.search(photos[0], k=5)[0].path == str(photos[0]) and len(g.search(photos[0], k=5)) == 3
        assert g.search(new, k=1, mode="style")[0].path == str(new)
    spied.clear()
    report = run_index(Settings.for_db(db), [pics], progress=False)  # the recorded model, whose file is here
    assert report.updated == 1 and [e.calls for e in spied["clip"]] == [1]
    with Gallery.open(db) as g:
        assert g.search(new, k=1)[0].path == str(new)


def test_an_unchanged_tree_builds_no_model_and_reads_no_graph(tmp_path: Path, tiny_spec: ModelSpec,
                                                               spied: dict[str, list[Counting]],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`imagesim index` over a tree where nothing changed is the scan alone; the first photo that needs a vector
    builds the recorded model, and weights changed in place under the same file name are refused before they embed."""
    import shutil

    import torch

    from imagesim.errors import ModelMismatch
    from imagesim.store.vectors import VectorIndex

    weights = tmp_path / "mine.pt"
    shutil.copy(tiny_spec.weights or "", weights)
    spec = ModelSpec(tiny_spec.name, None, str(weights))
    pics = tmp_path / "pics"
    write_gallery(pics, 3)
    db = tmp_path / "db"
    run_index(Settings.for_db(db, model=spec), [pics], progress=False)
    assert [e.calls for e in spied["clip"]] == [3]
    loads: list[str] = []
    real_load = VectorIndex.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(VectorIndex, "load", classmethod(lambda cls, folder, state, *a, **k: (
        loads.append(state.space), real_load(cls, folder, state, *a, **k))[1]))

    spied.clear()
    for model in (None, spec):  # the recorded model, by default or asked for by name
        report = run_index(Settings.for_db(db, model=model), [pics], progress=False)
        assert report.unchanged == 3 and report.added == 0
    assert spied.get("clip", []) == [] and loads == []

    new = write_photo(pics / "new.jpg", 40)
    report = run_index(Settings.for_db(db), [pics], progress=False)
    assert report.added == 1 and [e.calls for e in spied["clip"]] == [1]
    assert sorted(loads) == ["content", "dup", "style"]
    with Gallery.open(db) as g:
        assert g.search(new, k=1)[0].path == str(new)

    state = torch.load(weights, weights_only=True)  # other weights, written over the same file
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, weights)
    write_photo(pics / "newer.jpg", 41)
    with pytest.raises(ModelMismatch, match="--rebuild"):
        run_index(Settings.for_db(db), [pics], progress=False)
    with Gallery.open(db) as g:
        assert g.status()["photos"] == 4  # nothing embedded by the changed model
