"""The database folder: catch-up after a crash, refusing damaged or foreign index files, repair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagesim.cli import main
from imagesim.config import ModelSpec, Settings
from imagesim.errors import StoreError
from imagesim.indexer import run_index
from imagesim.search import Gallery
from imagesim.store import Store
from tests.support.photos import write_gallery


@pytest.fixture
def db(tmp_path: Path, tiny_spec: ModelSpec) -> Path:
    write_gallery(tmp_path / "pics", 6)
    run_index(Settings.for_db(tmp_path / "db", model=tiny_spec), [tmp_path / "pics"])
    return tmp_path / "db"


def _graph(db: Path) -> Path:
    (path,) = db.glob("content.*.hnsw")
    return path


def test_graph_lagging_the_catalog_is_caught_up(db: Path, tmp_path: Path) -> None:
    """A crash after a commit but before the graph was saved: the stored vectors fill the gap on open."""
    store = Store.open(db)
    with store.catalog.transaction():
        vec = np.zeros((1, store.catalog.space("content").dim), np.float32)
        vec[0, 0] = 1
        cid = store.catalog.add_content("f" * 64, 1, 1)
        store.catalog.put_vectors("content", [cid], [cid], vec)
        store.catalog.put_file(str(tmp_path / "pics" / "late.jpg"), 1, 1, cid)
        victim = str(tmp_path / "pics" / "photo_000.jpg")
        store.catalog.delete_files([victim])
        store.catalog.delete_contents(store.catalog.orphan_contents())
    store.close()
    with Gallery.open(db) as g:
        paths = [m.path for m in g.search_vector(vec[0], k=10)]
        assert paths[0].endswith("late.jpg") and victim not in paths and len(paths) == 6


@pytest.mark.parametrize("damage", ["truncate", "delete", "swap"])
def test_damaged_graph_is_refused_with_the_repair_command(db: Path, damage: str) -> None:
    graph = _graph(db)
    if damage == "truncate":
        graph.write_bytes(graph.read_bytes()[:100])
    elif damage == "delete":
        graph.unlink()
    else:
        graph.write_bytes(graph.read_bytes()[:-8] + b"\x01" * 8)
    with Gallery.open(db) as g, pytest.raises(StoreError, match="imagesim repair"):
        g.search_vector(np.ones(g.store.catalog.space("content").dim, np.float32))
    assert main(["repair", "--db", str(db)]) == 0
    with Gallery.open(db) as g:
        assert len(g.search_vector(np.ones(g.store.catalog.space("content").dim, np.float32), k=10)) == 6


def test_graph_from_another_model_is_refused(db: Path) -> None:
    store = Store.open(db)
    with store.catalog.transaction():
        store.catalog.conn.execute("UPDATE index_files SET fingerprint='other'")
    store.close()
    with Gallery.open(db) as g, pytest.raises(StoreError, match="another model"):
        g.search_vector(np.ones(g.store.catalog.space("content").dim, np.float32))


def test_damaged_catalog_is_one_clear_error(db: Path) -> None:
    (db / "catalog.sqlite").write_bytes(b"garbage" * 100)
    for wal in db.glob("catalog.sqlite-*"):
        wal.unlink()
    with pytest.raises(StoreError, match="damaged or not a catalog"):
        Gallery.open(db)


def test_saves_replace_files_atomically_and_leave_no_litter(db: Path, tmp_path: Path, tiny_spec: ModelSpec) -> None:
    first = _graph(db).name
    write_gallery(tmp_path / "pics2", 2, start_seed=40)
    run_index(Settings.for_db(db, model=tiny_spec), [tmp_path / "pics2"])
    assert _graph(db).name != first and not list(db.glob(".*.tmp"))


def test_an_unchanged_graph_file_is_not_read_through_again_but_any_write_to_it_is(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load checks CRC32 and neighbour lists (reading the whole file) only when the file changed since it was written
    or fully checked; a write with the modification time put back is still seen (ctime), and refused."""
    import os

    from imagesim.store import graphfile

    reads: list[str] = []
    real = graphfile.file_crc32
    monkeypatch.setattr(graphfile, "file_crc32", lambda p: (reads.append(p.name), real(p))[1])

    def search() -> int:
        with Gallery.open(db) as g:
            return len(g.search_vector(np.ones(g.store.catalog.space("content").dim, np.float32), k=10))

    assert search() == 6 and reads == []  # stamped when the indexer saved it
    store = Store.open(db)
    with store.catalog.transaction():
        store.catalog.delete_meta("graph_checked:content")  # e.g. a database copied elsewhere (another inode)
    store.close()
    assert search() == 6 and reads == [_graph(db).name]
    assert main(["verify", "--db", str(db)]) == 0  # a full check records the stamp again
    reads.clear()
    assert search() == 6 and reads == []

    graph = _graph(db)
    before = graph.stat()
    raw = bytearray(graph.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    graph.write_bytes(raw)
    os.utime(graph, ns=(before.st_atime_ns, before.st_mtime_ns))
    with Gallery.open(db) as g, pytest.raises(StoreError, match="imagesim repair"):
        g.search_vector(np.ones(g.store.catalog.space("content").dim, np.float32))
    assert reads == [graph.name]
