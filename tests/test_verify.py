"""Opening a catalog and answering a query cost what the query needs, not the gallery's size; damage is still refused
before it gives an answer (store/integrity.py, docs/reliability.md). Work is counted in SQLite VM instructions and
statements, never timed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imagesim.cli import main
from imagesim.config import Settings
from imagesim.errors import StoreError
from imagesim.metadata import PhotoInfo
from imagesim.search import Gallery
from imagesim.search.filters import Filters
from imagesim.store import Store
from imagesim.store.catalog import CATALOG_NAME, Catalog
from imagesim.store.photos import PhotoTable

DIM = 32
DATED_2020 = 20  # photos taken in 2020, whatever the gallery's size: what the date filter below asks for


def _fill(db: Path, n: int, photo: Path) -> None:
    """A gallery of `n` photos through the store's write path with fake vectors; photo 0 is a real file (a query
    by a gallery photo finds its stored vector), the others only catalog rows."""
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes(b"not decoded: its stored vector answers")
    rng = np.random.default_rng(n)
    store = Store.open(db, create=True)
    try:
        with store.writer():
            store.ensure_space("content", "fake", {"encoder": "fake"}, DIM)
            vectors = rng.standard_normal((n, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            with store.catalog.transaction():
                table = PhotoTable(store.catalog)
                for i in range(n):
                    cid = store.catalog.add_content(f"{i:064x}", 40, 30)
                    if i == 0:
                        st = photo.stat()
                        store.catalog.put_file(str(photo.resolve()), st.st_size, st.st_mtime_ns, cid)
                    else:
                        store.catalog.put_file(f"/gallery/{i // 100:03d}/IMG_{i:05d}.jpg", 1000 + i, i, cid)
                    year = 2020 if i < DATED_2020 else 2000 + i % 20 if i % 20 != 0 else 2001
                    table.put(cid, PhotoInfo(taken_local=f"{year}-06-01 12:00:00", taken_source="exif"))
                    store.catalog.put_vectors("content", [cid], [cid], vectors[i:i + 1])
            store.index("content")
            store.save()
            assert store.catalog.verify() == []
    finally:
        store.close()


class Work:
    """Counts what every catalog connection opened meanwhile does: VM instructions and statements."""

    def __init__(self) -> None:
        self.instructions = 0
        self.statements = 0

    def _op(self) -> int:
        self.instructions += 1
        return 0

    def _sql(self, _: str) -> None:
        self.statements += 1


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[Work]:
    w = Work()
    real = Catalog.connect

    def counted(self: Catalog) -> None:
        real(self)
        self.conn.set_progress_handler(w._op, 1)
        self.conn.set_trace_callback(w._sql)

    monkeypatch.setattr(Catalog, "connect", counted)
    yield w


def _query_work(db: Path, photo: Path, work: Work, filters: Filters | None) -> tuple[int, int, list[str]]:
    work.instructions = work.statements = 0
    with Gallery(Store.open(db), Settings.for_db(db)) as g:
        hits = g.search(str(photo), k=5, filters=filters)
    return work.instructions, work.statements, [m.path for m in hits]


@pytest.mark.parametrize("filters", [None, Filters.parse(after="2020", before="2020")], ids=["photo", "by date"])
def test_open_and_query_read_the_same_whatever_the_gallery_size(tmp_path: Path, work: Work,
                                                                filters: Filters | None) -> None:
    seen = {}
    for n in (200, 2000):
        photo = tmp_path / f"pics{n}" / "query.jpg"
        _fill(tmp_path / f"db{n}", n, photo)
        seen[n] = _query_work(tmp_path / f"db{n}", photo, work, filters)
        assert len(seen[n][2]) == 5
        if filters is not None:  # only photos of 2020 (content ids 1..20) came back
            assert all("query.jpg" in p or int(p.rsplit("_", 1)[1][:5]) < DATED_2020 for p in seen[n][2])
    # The same statements and VM instructions at 10x the photos: nothing scales with the gallery. (Before: the open's
    # integrity_check and checksum of every row, every label of the space read to sync the graph, every photo_info
    # and files row read to answer a date filter: ~10x more work at 2000.)
    assert seen[2000][:2] == seen[200][:2], (seen[200][:2], seen[2000][:2])


def test_status_reads_no_photo_rows(tmp_path: Path, work: Work) -> None:
    counts = {}
    for n in (200, 2000):
        _fill(tmp_path / f"db{n}", n, tmp_path / f"pics{n}" / "query.jpg")
        work.instructions = 0
        with Gallery(Store.open(tmp_path / f"db{n}"), Settings.for_db(tmp_path / f"db{n}")) as g:
            assert g.status()["photos"] == n
        counts[n] = work.instructions
    assert counts[2000] == counts[200]


def _silently_change(db: Path, sql: str, params: tuple = ()) -> None:
    """Change a row without its checksum following, as damage on disk would (a writer whose checksum is wrong)."""
    with sqlite3.connect(db / CATALOG_NAME) as conn:
        conn.create_function("imagesim_crc", -1, lambda *_: 0)
        conn.execute(sql, params)


def test_damage_to_an_old_row_is_refused_by_the_query_that_reads_it(tmp_path: Path) -> None:
    photo = tmp_path / "pics" / "query.jpg"
    _fill(tmp_path / "db", 200, photo)
    with Gallery(Store.open(tmp_path / "db"), Settings.for_db(tmp_path / "db")) as g:
        good = [m.path for m in g.search(str(photo), k=5, filters=Filters.parse(after="2020", before="2020"))]
    # photo_info of a 2020 photo the date filter returns; written (and verified) before the damage
    _silently_change(tmp_path / "db", "UPDATE photo_info SET taken_local='2020-06-02 12:00:00' WHERE content_id=5")
    with Gallery(Store.open(tmp_path / "db"), Settings.for_db(tmp_path / "db")) as g:  # the open goes on
        assert [m.path for m in g.search(str(photo), k=5)] != []  # a query not reading that row answers
        with pytest.raises(StoreError, match="photo_info fails its checksum.*imagesim repair"):
            g.search(str(photo), k=5, filters=Filters.parse(after="2020", before="2020"))
    # the query photo's own vector: refused, never a wrong neighbour list
    _silently_change(tmp_path / "db", "UPDATE vectors SET vector=? WHERE content_id=1",
                     (np.ones(DIM, np.float32).tobytes(),))
    with Gallery(Store.open(tmp_path / "db"), Settings.for_db(tmp_path / "db")) as g:
        with pytest.raises(StoreError, match="vectors fails its checksum"):
            g.search(str(photo), k=5)
    assert main(["verify", "--db", str(tmp_path / "db")]) == 1
    assert good  # (the undamaged answer existed)


def test_rows_written_since_the_mark_are_checked_at_open(tmp_path: Path) -> None:
    photo = tmp_path / "pics" / "query.jpg"
    _fill(tmp_path / "db", 200, photo)
    store = Store.open(tmp_path / "db")
    with store.catalog.transaction():
        cid = store.catalog.add_content("f" * 64, 1, 1)
        store.catalog.put_file("/gallery/new.jpg", 1, 1, cid)
    store.close()
    _silently_change(tmp_path / "db", "UPDATE files SET size=2 WHERE path='/gallery/new.jpg'")
    with pytest.raises(StoreError, match="row .* of files fails its checksum.*imagesim repair"):
        Store.open(tmp_path / "db")
    assert main(["verify", "--db", str(tmp_path / "db")]) == 1


def test_verify_moves_the_mark_and_index_work_since_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    photo = tmp_path / "pics" / "query.jpg"
    _fill(tmp_path / "db", 200, photo)
    store = Store.open(tmp_path / "db")
    before = store.catalog.mark()
    with store.catalog.transaction():
        store.catalog.put_file("/gallery/new.jpg", 1, 1, None, "not a photo")
    assert store.catalog.verify(full=False) == []  # only the rows since the mark, and the mark moves over them
    after = store.catalog.mark()
    store.close()
    assert before is not None and after is not None and after.tops["files"] == before.tops["files"] + 1
    assert after.full_at == before.full_at
    assert main(["verify", "--db", str(tmp_path / "db")]) == 0
    assert "sound" in capsys.readouterr().out


def test_the_graph_catches_up_with_vectors_written_and_deleted_since_its_save(tmp_path: Path) -> None:
    photo = tmp_path / "pics" / "query.jpg"
    _fill(tmp_path / "db", 200, photo)
    writer = Store.open(tmp_path / "db")
    far = np.zeros((1, DIM), np.float32)
    far[0, 0] = 1
    with writer.catalog.transaction():  # another process's commit, never saved into the graph file
        cid = writer.catalog.add_content("e" * 64, 1, 1)
        writer.catalog.put_file("/gallery/new.jpg", 1, 1, cid)
        writer.catalog.put_vectors("content", [cid], [cid], far)
    writer.close()
    with Gallery(Store.open(tmp_path / "db"), Settings.for_db(tmp_path / "db")) as g:
        assert g.search_vector(far[0], k=1)[0].path == "/gallery/new.jpg"
    writer = Store.open(tmp_path / "db")
    with writer.catalog.transaction():
        writer.catalog.delete_files(["/gallery/new.jpg"])
        writer.catalog.delete_contents([cid])
    writer.close()
    with Gallery(Store.open(tmp_path / "db"), Settings.for_db(tmp_path / "db")) as g:
        assert all(m.path != "/gallery/new.jpg" for m in g.search_vector(far[0], k=3))
        assert len(g.store.index("content")) == 200


def test_the_background_verification_reports_damage_in_one_line(tmp_path: Path) -> None:
    photo = tmp_path / "pics" / "query.jpg"
    _fill(tmp_path / "db", 200, photo)
    store = Store.open(tmp_path / "db")
    lines: list[str] = []
    store.verify_in_background(lines.append).join()
    assert lines == []  # sound: nothing said
    _silently_change(tmp_path / "db", "UPDATE files SET size=7 WHERE path='/gallery/001/IMG_00150.jpg'")
    store.verify_in_background(lines.append).join()
    store.close()
    assert len(lines) == 1 and "fails its checksum" in lines[0] and "imagesim repair" in lines[0]
