"""Incremental indexing: add, unchanged, change, delete, rename, move, copy, failures, interrupt and resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imagesim.config import ModelSpec, Settings
from imagesim.errors import ModelMismatch
from imagesim.indexer import run_index
from imagesim.search import Gallery
from tests.support.catalog import committed_paths
from tests.support.counting import Counting
from tests.support.photos import ROOT, write_gallery, write_photo


@pytest.fixture
def index(tmp_path: Path, tiny_spec: ModelSpec, tiny_encoder):
    """index(dirs...) -> (report, photos embedded in that run)."""
    db = tmp_path / "db"

    def run(*dirs: Path, **kw):
        enc = Counting(tiny_encoder)
        report = run_index(Settings.for_db(db, model=tiny_spec, batch_size=4), list(dirs), encoders=[enc], **kw)
        return report, enc.calls

    run.db = db
    return run


def _paths(db: Path) -> set[str]:
    with Gallery.open(db) as g:
        return set(g.store.catalog.files_under(g.store.catalog.roots()))


def test_first_run_then_nothing_to_do(tmp_path: Path, index) -> None:
    photos = write_gallery(tmp_path / "pics", 10)
    report, embedded = index(tmp_path / "pics")
    assert (report.added, embedded, report.failed) == (10, 10, [])
    report, embedded = index(tmp_path / "pics")
    assert (report.unchanged, report.added, embedded) == (10, 0, 0)
    assert _paths(index.db) == {str(p) for p in photos}


def test_unchanged_files_are_not_even_read(tmp_path: Path, index, monkeypatch: pytest.MonkeyPatch) -> None:
    write_gallery(tmp_path / "pics", 5)
    index(tmp_path / "pics")
    import imagesim.indexer.pipeline as indexer

    def boom(*a, **k):
        raise AssertionError("an unchanged file was read")

    monkeypatch.setattr(indexer, "read_bytes", boom)
    assert index(tmp_path / "pics")[0].unchanged == 5


def test_changed_deleted_renamed_moved_copied(tmp_path: Path, index) -> None:
    pics = tmp_path / "pics"
    photos = write_gallery(pics, 8)
    index(pics)
    write_photo(photos[0], seed=100)  # changed content
    os.utime(photos[0], ns=(1, 1))
    photos[1].unlink()  # deleted
    photos[2].rename(pics / "renamed.jpg")  # renamed
    (pics / "sub").mkdir()
    photos[3].rename(pics / "sub" / "moved.jpg")  # moved
    shutil.copy(photos[4], pics / "copy.jpg")  # copied
    report, embedded = index(pics)
    assert report.to_json() == {"added": 1, "updated": 1, "removed": 1, "moved": 2, "unchanged": 4, "failed": []}
    assert embedded == 1  # only the changed photo; moves and the copy reuse stored vectors
    with Gallery.open(index.db) as g:
        hits = g.search(pics / "copy.jpg", k=2)
        assert {m.path for m in hits} == {str(pics / "copy.jpg"), str(photos[4])}
        assert all(m.score >= 0.99 for m in hits)
        assert g.status()["photos"] == 8 and g.status()["distinct_photos"] == 7


def test_byte_identical_copies_in_one_run_are_encoded_once(tmp_path: Path, index) -> None:
    src = write_photo(tmp_path / "pics" / "a.jpg", 1)
    for i in range(3):
        shutil.copy(src, tmp_path / "pics" / f"copy{i}.jpg")
    report, embedded = index(tmp_path / "pics")
    assert report.added == 4 and embedded == 1


def test_bad_files_are_listed_and_never_stop_the_run(tmp_path: Path, index) -> None:
    pics = tmp_path / "pics"
    write_gallery(pics, 3)
    (pics / "empty.jpg").write_bytes(b"")
    (pics / "text.png").write_text("I am not a photo")
    good = write_photo(pics / "trunc.jpg", 9, (300, 200))
    good.write_bytes(good.read_bytes()[:400])
    report, _ = index(pics)
    assert report.added == 3
    reasons = dict(report.failed)
    assert set(reasons) == {str(pics / n) for n in ("empty.jpg", "text.png", "trunc.jpg")}
    assert "empty" in reasons[str(pics / "empty.jpg")] and all("\n" not in r for r in reasons.values())
    again, embedded = index(pics)  # failed, unchanged files are not retried, but still listed as failed
    assert again.unchanged == 3 and embedded == 0 and again.failed == report.failed and again.still_failing == 3
    assert again.to_json()["still_failing"] == 3 and len(again.to_json()["failed"]) == 3
    assert "3 failed (3 unchanged since they failed before)" in again.summary()
    write_photo(pics / "trunc.jpg", 9, (300, 200))  # mended: read again, indexed, no longer listed
    third, embedded = index(pics)
    assert embedded == 1 and third.updated == 1 and third.still_failing == 2 and len(third.failed) == 2


def test_a_file_that_turns_bad_loses_its_old_vector(tmp_path: Path, index) -> None:
    pics = tmp_path / "pics"
    photos = write_gallery(pics, 3)
    index(pics)
    photos[0].write_text("broken now")
    report, _ = index(pics)
    assert [p for p, _ in report.failed] == [str(photos[0])]
    with Gallery.open(index.db) as g:
        assert str(photos[0]) not in {m.path for m in g.search(photos[1], k=10)}


def test_other_roots_are_left_alone(tmp_path: Path, index) -> None:
    a, b = write_gallery(tmp_path / "a", 2), write_gallery(tmp_path / "b", 2, start_seed=10)
    index(tmp_path / "a")
    index(tmp_path / "b")
    assert _paths(index.db) == {str(p) for p in a + b}


def test_a_different_model_needs_rebuild(tmp_path: Path, index, tiny_spec: ModelSpec) -> None:
    import torch

    from imagesim.encoders import create_encoder

    write_gallery(tmp_path / "pics", 3)
    index(tmp_path / "pics")
    torch.manual_seed(5)
    other = create_encoder("clip", spec=ModelSpec(tiny_spec.name, None))
    settings = Settings.for_db(index.db, model=ModelSpec(tiny_spec.name, None))
    with pytest.raises(ModelMismatch, match="--rebuild"):
        run_index(settings, [tmp_path / "pics"], encoders=[other])
    report = run_index(settings, [tmp_path / "pics"], encoders=[other], rebuild=True)
    assert report.updated == 3
    with Gallery.open(index.db, encoder=other) as g:
        assert g.search(tmp_path / "pics" / "photo_000.jpg", k=1)[0].score >= 0.99


def test_second_indexer_is_refused_while_one_runs(tmp_path: Path, index) -> None:
    from imagesim.errors import StoreError
    from imagesim.store import Store

    write_gallery(tmp_path / "pics", 2)
    index(tmp_path / "pics")
    store = Store.open(index.db)
    with store.writer(), pytest.raises(StoreError, match="another imagesim process"):
        index(tmp_path / "pics")
    store.close()


_SLOW_INDEXER = """
import sys, time
from imagesim.encoders.clip import ClipEncoder
_orig = ClipEncoder.embed_images
def slow(self, images):
    time.sleep(0.15)  # make each batch slow enough to be killed in the middle of the run
    return _orig(self, images)
ClipEncoder.embed_images = slow
from imagesim.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupt_then_resume_loses_nothing(tmp_path: Path, tiny_spec: ModelSpec, sig: signal.Signals) -> None:
    photos = write_gallery(tmp_path / "pics", 60)
    db = tmp_path / "db"
    cmd = [sys.executable, "-c", _SLOW_INDEXER, "index", str(tmp_path / "pics"), "--db", str(db),
           "--model", tiny_spec.name, "--weights", str(tiny_spec.weights), "--batch-size", "4", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(committed_paths(db)) < 12 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    before = committed_paths(db)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert 12 <= len(before) < 60, "the signal did not land in the middle of the run"
    if sig == signal.SIGINT:  # Ctrl-C: one line that says the work is kept, exit 130
        assert proc.returncode == 130 and err.decode().strip().splitlines() == [
            "imagesim: interrupted; everything committed so far is kept, run the command again to resume"]
        before = committed_paths(db)
    # Reopening works at once and every committed photo is searchable (the graph catches up from the catalog).
    with Gallery.open(db) as g:
        hits = {m.path for m in g.search_vector(np.ones(g.store.catalog.space("content").dim, np.float32), k=100)}
        assert before <= hits
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    import json

    report = json.loads(out)
    assert report["added"] == 60 - len(before) and report["unchanged"] == len(before)
    assert committed_paths(db) == {str(p) for p in photos}


def test_a_new_space_embeds_only_what_it_lacks(tmp_path: Path, tiny_spec: ModelSpec, tiny_encoder) -> None:
    """Adding a space (here: style) to an indexed gallery runs that encoder alone; CLIP is not re-run."""
    from imagesim.encoders import create_encoder

    write_gallery(tmp_path / "pics", 6)
    db = tmp_path / "db"
    clip = Counting(tiny_encoder)
    run_index(Settings.for_db(db, model=tiny_spec), [tmp_path / "pics"], encoders=[clip])
    assert clip.calls == 6
    clip, style = Counting(tiny_encoder), Counting(create_encoder("style"))
    report = run_index(Settings.for_db(db, model=tiny_spec), [tmp_path / "pics"], encoders=[clip, style])
    assert (clip.calls, style.calls) == (0, 6) and report.failed == []
    with Gallery.open(db) as g:
        assert g.has_space("style") and len(g.store.index("style")) == 6
