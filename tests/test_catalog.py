"""The catalog's own defences: row checksums, the schema check, the upgrade from schema 1, and `repair`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imagesim.cli import main
from imagesim.config import ModelSpec, Settings
from imagesim.encoders import Encoder
from imagesim.errors import StoreError
from imagesim.indexer import run_index
from imagesim.search import Gallery
from imagesim.store import Store
from imagesim.store.catalog import CATALOG_NAME, Catalog
from imagesim.store.schema import SCHEMA_VERSION, row_crc
from tests.support.facefakes import index_with_fakes, write_face_photo
from tests.support.photos import write_gallery

# Schema 1 as it shipped (frozen here: catalogs made by it must keep opening).
SCHEMA_1 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE roots(path TEXT PRIMARY KEY);
CREATE TABLE contents(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL UNIQUE,
    width INTEGER, height INTEGER);
CREATE TABLE files(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    content_id INTEGER REFERENCES contents(id),
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    indexed_at REAL NOT NULL);
CREATE INDEX files_by_content ON files(content_id);
CREATE TABLE spaces(
    name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, description TEXT NOT NULL, dim INTEGER NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE vectors(
    space TEXT NOT NULL, label INTEGER NOT NULL, content_id INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (space, label));
CREATE INDEX vectors_by_content ON vectors(content_id, space);
CREATE TABLE index_files(
    space TEXT PRIMARY KEY, generation INTEGER NOT NULL, filename TEXT NOT NULL, size INTEGER NOT NULL,
    crc32 INTEGER NOT NULL, elements INTEGER NOT NULL, labels_sum INTEGER NOT NULL, fingerprint TEXT NOT NULL);
CREATE TABLE people(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, created_at REAL NOT NULL);
CREATE TABLE faces(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
    left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    score REAL NOT NULL,
    descriptor BLOB NOT NULL,
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL);
CREATE INDEX faces_by_content ON faces(content_id);
CREATE INDEX faces_by_person ON faces(person_id);
CREATE TABLE face_scans(
    content_id INTEGER PRIMARY KEY REFERENCES contents(id) ON DELETE CASCADE, faces INTEGER NOT NULL);
CREATE TABLE face_marks(
    sha256 TEXT NOT NULL, left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    is_person INTEGER NOT NULL,
    PRIMARY KEY (sha256, left, top, right, bottom, person_id));
"""


@pytest.fixture
def db(tmp_path: Path, tiny_spec: ModelSpec) -> Path:
    write_gallery(tmp_path / "pics", 6)
    run_index(Settings.for_db(tmp_path / "db", model=tiny_spec), [tmp_path / "pics"], progress=False)
    return tmp_path / "db"


def _reindex(db: Path, tiny_spec: ModelSpec) -> None:
    run_index(Settings.for_db(db, model=tiny_spec), [db.parent / "pics"], progress=False)


def _damage(db: Path, needle: bytes, occurrence: int = 0, page: bool = False, byte: int | None = None) -> None:
    """Change one byte of `needle` where it sits in the catalog file."""
    path = db / CATALOG_NAME
    with sqlite3.connect(path) as conn:  # everything into the main file first
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    data = bytearray(path.read_bytes())
    at, found = -1, []
    while (at := data.find(needle, at + 1)) >= 0:
        found.append(at)
    assert found, "needle not in the catalog file"
    spot = found[occurrence] + len(needle) // 2
    if page:  # the whole page holding it: a table b-tree SQLite cannot walk
        start = spot - spot % 4096
        data[start:start + 4096] = bytes(4096)
    else:
        data[spot] = data[spot] ^ 0x20 if byte is None else byte
    path.write_bytes(bytes(data))


def _all_found(db: Path) -> int:
    with Gallery.open(db) as g:
        return len(g.search_vector(np.ones(g.store.catalog.space("content").dim, np.float32), k=50))


def test_row_checksum_tells_types_and_boundaries_apart() -> None:
    assert row_crc(1, "a") != row_crc("1", "a") != row_crc(1.0, "a")
    assert row_crc("ab", "c") != row_crc("a", "bc")
    assert row_crc(None) != row_crc(0) != row_crc(b"")
    assert row_crc(b"x") != row_crc("x")


def test_every_write_path_keeps_every_checksum_right(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos = tmp_path / "photos"
    for i, people in enumerate([[0], [1], [0, 1]]):
        write_face_photo(photos / f"p{i}.jpg", people, seed=i)
    db = tmp_path / "db"
    index_with_fakes(db, [photos], [tiny_encoder])
    main(["people", "name", "1", "Ada", "--db", str(db)])
    (photos / "p0.jpg").rename(photos / "moved.jpg")
    index_with_fakes(db, [photos], [tiny_encoder])
    catalog = Catalog(db / CATALOG_NAME, create=False)
    try:
        assert list(catalog.problems()) == []
        counts = {t: catalog.conn.execute(f"SELECT COUNT(*), COUNT(_crc) FROM {t}").fetchone()
                  for t in ("files", "contents", "vectors", "faces", "people", "face_scans", "meta")}
        assert all(n == with_crc > 0 for n, with_crc in counts.values()), counts
        with pytest.raises(sqlite3.OperationalError, match="imagesim_crc"):  # a writer without the function fails
            with sqlite3.connect(db / CATALOG_NAME) as other:
                other.execute("UPDATE files SET size=size+1")
    finally:
        catalog.close()


def _search(db: Path, photo: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["search", "--db", str(db), str(db.parent / "pics" / photo)])
    captured = capsys.readouterr()
    return rc, captured.out if rc == 0 else captured.err


@pytest.mark.parametrize("where", ["vector", "path in its table", "path in its index"])
def test_changed_bytes_are_refused_then_repaired(db: Path, tiny_spec: ModelSpec, where: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Damage to rows the last verification covered: the open (which checks only what came after) goes on, a query
    that reads the damaged row refuses in one line, one that does not answers as before; `verify` finds it."""
    store = Store.open(db)
    vector = store.catalog.vector_for_content("content", store.indexed_content(db.parent / "pics" / "photo_002.jpg"))
    store.close()
    before = _search(db, "photo_000.jpg", capsys)
    if where == "vector":
        _damage(db, vector.tobytes()[:64])  # type: ignore[union-attr]
    else:  # a path is stored twice: in the files table and in its primary-key index
        _damage(db, b"photo_003.jpg", occurrence=0 if where == "path in its table" else -1)
    Gallery.open(db).close()  # rows below the mark are not read at open
    rc, said = _search(db, "photo_002.jpg" if where == "vector" else "photo_000.jpg", capsys)
    if where == "path in its index":  # a lookup by that path misses; no answer reads the index's copy
        assert (rc, said) == before
    else:  # the query reads the damaged row: refused, never a wrong answer
        assert rc == 1 and "damaged" in said and "imagesim repair" in said and said.count("\n") == 1
    assert main(["verify", "--db", str(db)]) == 1
    assert "imagesim repair" in capsys.readouterr().err
    assert main(["repair", "--db", str(db)]) == 0
    _reindex(db, tiny_spec)  # reads again whatever the damaged rows described
    assert _all_found(db) == 6
    catalog = Catalog(db / CATALOG_NAME, create=False)
    assert list(catalog.problems()) == []
    catalog.close()


def test_repair_reports_what_it_removed(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(db)
    blob = store.catalog.vectors("content")[1][0].tobytes()
    store.close()
    _damage(db, blob[:64])
    assert main(["repair", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "removed damaged rows (vectors 1)" in out and "imagesim index" in out
    assert _all_found(db) == 5  # until the next `imagesim index` reads that photo again


def test_a_dropped_trigger_is_a_changed_schema_and_repair_restores_it(db: Path) -> None:
    store = Store.open(db)
    store.catalog.conn.execute("DROP TRIGGER files_crc_update")
    store.close()
    with pytest.raises(StoreError, match="schema differs"):
        Gallery.open(db)
    assert main(["repair", "--db", str(db)]) == 0
    assert _all_found(db) == 6


def test_schema_1_catalogs_are_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / CATALOG_NAME
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_1)
        conn.execute("INSERT INTO meta VALUES('schema_version', '1')")
        conn.execute("INSERT INTO contents(sha256, width, height) VALUES('ab', 3, 4)")
        conn.execute("INSERT INTO files VALUES('/p/a.jpg', 1, 2, 1, 'ok', NULL, 3.5)")
        conn.execute("INSERT INTO vectors VALUES('content', 1, 1, ?)", (np.ones(4, np.float32).tobytes(),))
        conn.execute("INSERT INTO people(name, created_at) VALUES('Ada', 1.0)")
    catalog = Catalog(path, create=False)
    try:
        assert catalog.meta("schema_version") == str(SCHEMA_VERSION)
        assert list(catalog.problems()) == []  # same schema as a new catalog, every row checksummed
        assert catalog.file("/p/a.jpg").content_id == 1  # type: ignore[union-attr]
        with catalog.transaction():
            catalog.put_file("/p/a.jpg", 9, 9, 1)
        assert list(catalog.problems()) == []
    finally:
        catalog.close()


def test_damaged_version_row_is_mended_by_repair(db: Path) -> None:
    _damage(db, b"schema_version")  # the key in the table: a lookup reads the index's undamaged copy of it
    assert main(["verify", "--db", str(db)]) == 1
    assert main(["repair", "--db", str(db)]) == 0
    assert _all_found(db) == 6




def test_a_broken_table_is_copied_out_row_by_readable_row(db: Path, tiny_spec: ModelSpec,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(db)
    blob = store.catalog.vectors("content")[1][3].tobytes()
    store.close()
    _damage(db, blob[:64], page=True)
    assert main(["verify", "--db", str(db)]) == 1
    assert main(["repair", "--db", str(db)]) == 0
    assert "copied every readable row into a new catalog" in capsys.readouterr().out
    kept = sorted(p.name for p in db.glob("catalog.sqlite.damaged-*"))  # the damaged file is kept, not deleted,
    main_files = [n for n in kept if not n.endswith(("-wal", "-shm"))]  # with its WAL side files when it had any
    assert len(main_files) == 1 and all(n in (main_files[0], main_files[0] + "-wal", main_files[0] + "-shm")
                                        for n in kept), kept
    _reindex(db, tiny_spec)
    assert _all_found(db) == 6


def test_schema_text_that_no_longer_parses_is_repaired(db: Path) -> None:
    _damage(db, b"BEGIN UPDATE roots", byte=ord('"'))  # an unterminated string in a trigger's SQL
    with pytest.raises(StoreError, match="damaged"):
        Gallery.open(db)
    assert main(["repair", "--db", str(db)]) == 0
    assert _all_found(db) == 6


def test_a_catalog_repair_cannot_open_gets_one_line(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = db / CATALOG_NAME
    path.write_bytes(bytes(4096) + path.read_bytes()[4096:])  # the header page, with the schema, gone
    for side in db.glob("catalog.sqlite-*"):
        side.unlink()
    assert main(["repair", "--db", str(db)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "move" in err and "imagesim repair" not in err
