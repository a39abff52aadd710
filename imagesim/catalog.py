"""The SQLite catalog: files, their contents (by SHA-256), every vector of every space, and the state of the saved
graph files. It is the source of truth: one transaction commits a batch of files together with their vectors."""

from __future__ import annotations

import functools
import json
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import StoreError
from .vectors import IndexFileState

SCHEMA_VERSION = 2  # 2: row checksums
CATALOG_NAME = "catalog.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL, _crc INTEGER);
CREATE TABLE IF NOT EXISTS roots(path TEXT PRIMARY KEY, _crc INTEGER);
CREATE TABLE IF NOT EXISTS contents(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL UNIQUE,
    width INTEGER, height INTEGER, _crc INTEGER);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    content_id INTEGER REFERENCES contents(id),
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    indexed_at REAL NOT NULL, _crc INTEGER);
CREATE INDEX IF NOT EXISTS files_by_content ON files(content_id);
CREATE TABLE IF NOT EXISTS spaces(
    name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, description TEXT NOT NULL, dim INTEGER NOT NULL,
    created_at REAL NOT NULL, _crc INTEGER);
CREATE TABLE IF NOT EXISTS vectors(
    space TEXT NOT NULL, label INTEGER NOT NULL, content_id INTEGER NOT NULL, vector BLOB NOT NULL, _crc INTEGER,
    PRIMARY KEY (space, label));
CREATE INDEX IF NOT EXISTS vectors_by_content ON vectors(content_id, space);
CREATE TABLE IF NOT EXISTS index_files(
    space TEXT PRIMARY KEY, generation INTEGER NOT NULL, filename TEXT NOT NULL, size INTEGER NOT NULL,
    crc32 INTEGER NOT NULL, elements INTEGER NOT NULL, labels_sum INTEGER NOT NULL, fingerprint TEXT NOT NULL,
    _crc INTEGER);
"""

# The face tables exist only in databases with faces turned on (see facestore).
FACE_SCHEMA = """
CREATE TABLE IF NOT EXISTS people(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, created_at REAL NOT NULL, _crc INTEGER);
CREATE TABLE IF NOT EXISTS faces(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
    left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    score REAL NOT NULL,
    descriptor BLOB NOT NULL,
    person_id INTEGER REFERENCES people(id) ON DELETE SET NULL, _crc INTEGER);
CREATE INDEX IF NOT EXISTS faces_by_content ON faces(content_id);
CREATE INDEX IF NOT EXISTS faces_by_person ON faces(person_id);
CREATE TABLE IF NOT EXISTS face_scans(
    content_id INTEGER PRIMARY KEY REFERENCES contents(id) ON DELETE CASCADE, faces INTEGER NOT NULL, _crc INTEGER);
CREATE TABLE IF NOT EXISTS face_marks(
    sha256 TEXT NOT NULL, left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    is_person INTEGER NOT NULL, _crc INTEGER,
    PRIMARY KEY (sha256, left, top, right, bottom, person_id));
"""

# Row checksums. SQLite keeps no page checksums, so damage that leaves its b-trees valid (a flipped byte inside a
# vector, a path, a count) would go unnoticed. Every table has a `_crc` column that triggers keep equal to
# row_crc(the row's other columns) on every insert and update, whatever code path writes; opening a catalog checks
# every row against it (about 0.9 s per 100k photos), plus `PRAGMA integrity_check` for the b-trees and indexes and
# the schema itself against the one this version creates.
CRC = "_crc"
CRC_FUNCTION = "imagesim_crc"


def row_crc(*values: object) -> int:
    """CRC32 of a row: each value type-tagged and length-prefixed, so different rows never share an encoding."""
    parts = []
    for v in values:
        if v is None:
            parts.append(b"n")
        elif isinstance(v, int):
            parts.append(b"i" + v.to_bytes(8, "little", signed=True))
        elif isinstance(v, float):
            parts.append(b"f" + struct.pack("<d", v))
        else:
            raw = v.encode("utf-8", "surrogatepass") if isinstance(v, str) else bytes(v)  # type: ignore[arg-type]
            parts.append((b"t" if isinstance(v, str) else b"b") + len(raw).to_bytes(8, "little") + raw)
    return zlib.crc32(b"".join(parts))


def register_checksums(conn: sqlite3.Connection) -> None:
    """Make the checksum function known to a connection; any connection that writes to a catalog needs it."""
    conn.create_function(CRC_FUNCTION, -1, row_crc, deterministic=True)


def user_tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def data_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] != CRC]


def crc_call(columns: list[str], prefix: str = "") -> str:
    # Text goes in as hex: damaged text need not be UTF-8, and Python could not even receive it. No other type
    # arrives as str, so the types stay apart (a text/blob flip is one bit of a record header).
    args = ", ".join(f"CASE WHEN typeof({prefix}{c})='text' THEN hex({prefix}{c}) ELSE {prefix}{c} END"
                     for c in columns)
    return f"{CRC_FUNCTION}({args})"


def add_checksum_triggers(conn: sqlite3.Connection) -> None:
    """Give every table the two triggers that keep `_crc` right (after insert, after update of any other column)."""
    for t in user_tables(conn):
        cols = data_columns(conn, t)
        call = crc_call(cols, "NEW.")
        conn.execute(f"CREATE TRIGGER IF NOT EXISTS {t}_crc_insert AFTER INSERT ON {t} BEGIN "
                     f"UPDATE {t} SET {CRC}={call} WHERE rowid=NEW.rowid; END;")
        conn.execute(f"CREATE TRIGGER IF NOT EXISTS {t}_crc_update AFTER UPDATE OF {', '.join(cols)} ON {t} BEGIN "
                     f"UPDATE {t} SET {CRC}={call} WHERE rowid=NEW.rowid; END;")


def create_schema(conn: sqlite3.Connection, ddl: str) -> None:
    """Run table DDL and add the checksum triggers (callers wrap it in a transaction: never half a schema)."""
    for statement in ddl.split(";"):
        if statement.strip():
            conn.execute(statement)
    add_checksum_triggers(conn)


@functools.cache
def expected_schema(with_faces: bool) -> frozenset[tuple]:
    """The schema this version creates (built once per process in an in-memory database)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    register_checksums(conn)
    create_schema(conn, SCHEMA + (FACE_SCHEMA if with_faces else ""))
    schema = frozenset(schema_of(conn))
    conn.close()
    return schema


def schema_of(conn: sqlite3.Connection) -> set[tuple]:
    """What sqlite_master says, whitespace aside (the upgrade from schema 1 appends columns on the same line)."""
    return {(kind, name, table, " ".join(sql.split()) if sql else sql)
            for kind, name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")}


def damaged(path: Path, exc: BaseException) -> StoreError:
    """The one-line error for a catalog SQLite cannot read (or whose rows no longer decode)."""
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
    return StoreError(f"catalog {path} is damaged or not a catalog ({why}): run `imagesim repair --db {path.parent}`; "
                      f"if that fails, move the folder away and index again")


@dataclass(frozen=True)
class FileRow:
    path: str
    size: int
    mtime_ns: int
    content_id: int | None
    status: str
    error: str | None


@dataclass(frozen=True)
class SpaceInfo:
    name: str
    fingerprint: str
    description: dict
    dim: int


class Catalog:
    """Thin typed access to the catalog; every write goes through `transaction()`."""

    def __init__(self, path: Path, *, create: bool, check: bool = True) -> None:
        """Open (or create) the catalog; with `check`, refuse one whose b-trees, schema or any row are damaged."""
        self.path = path
        if not create and not path.is_file():
            raise StoreError(f"no catalog at {path}")
        try:
            self.connect()
            if create and not user_tables(self.conn):
                with self.transaction():
                    create_schema(self.conn, SCHEMA)
                    self.set_meta("schema_version", str(SCHEMA_VERSION))
            version = self.meta("schema_version") if "meta" in user_tables(self.conn) else None
            if check:
                problem = next(iter(self.problems(limit=1)), None)
                if problem is not None and version == "1" and problem.startswith("schema"):
                    problem = None  # checked again after the upgrade below
                if problem is not None:
                    raise sqlite3.DatabaseError(problem)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # a damaged header can break text decoding
            raise damaged(path, exc) from None
        if not check and not (version or "").isdigit():  # repair mends a damaged version row; judge by the columns
            version = str(SCHEMA_VERSION) if CRC in [r[1] for r in self.conn.execute("PRAGMA table_info(meta)")] \
                else "1"
        if version is None or not version.isdigit() or int(version) > SCHEMA_VERSION:
            raise StoreError(f"catalog {path} has schema version {version}; this imagesim reads {SCHEMA_VERSION}")
        if int(version) < 2:
            self._add_checksums()
            if check and (problem := next(iter(self.problems(limit=1)), None)) is not None:
                raise damaged(path, sqlite3.DatabaseError(problem))

    def connect(self) -> None:
        self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        register_checksums(self.conn)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA secure_delete=ON")  # deleted rows (face data) leave no bytes behind
        self.conn.execute("PRAGMA foreign_keys=ON")

    def _add_checksums(self) -> None:
        """Schema 1 -> 2: add the `_crc` column and its triggers to every table and fill it, in one transaction."""
        with self.transaction():
            for t in user_tables(self.conn):
                self.conn.execute(f"ALTER TABLE {t} ADD COLUMN {CRC} INTEGER")
            add_checksum_triggers(self.conn)
            for t in user_tables(self.conn):
                self.conn.execute(f"UPDATE {t} SET {CRC}={crc_call(data_columns(self.conn, t))}")
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    def has_face_tables(self) -> bool:
        return "faces" in user_tables(self.conn)

    def ensure_face_tables(self) -> None:
        """Create the face tables (idempotent; a database without faces never gets them)."""
        if not self.has_face_tables():
            with self.transaction():
                create_schema(self.conn, FACE_SCHEMA)

    # ---- damage ----------------------------------------------------------------------------------------------------

    def problems(self, limit: int = 100) -> Iterator[str]:
        """What is damaged, first the b-trees and indexes, then the schema, then rows failing their checksum."""
        conn = self.conn
        for (line,) in conn.execute(f"PRAGMA integrity_check({int(limit)})"):
            if line != "ok":
                yield line
                return
        if schema_of(conn) != expected_schema(self.has_face_tables()):
            yield "schema differs from the one this imagesim creates"
            return
        for table, rowid in self.bad_rows(limit):
            yield f"row {rowid} of {table} fails its checksum"
        tables = set(user_tables(conn))
        for name, seq in conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall():
            top = conn.execute(f"SELECT MAX(rowid) FROM {name}").fetchone()[0] if name in tables else None
            if name not in tables or not isinstance(seq, int) or (top is not None and seq < top):
                yield "the id counters (sqlite_sequence) are damaged"

    def bad_rows(self, limit: int | None = None) -> Iterator[tuple[str, int]]:
        """(table, rowid) of every row whose stored checksum does not match its values."""
        for t in user_tables(self.conn):
            sql = f"SELECT rowid FROM {t} WHERE {CRC} IS NOT {crc_call(data_columns(self.conn, t))}"
            for (rowid,) in self.conn.execute(sql + (f" LIMIT {int(limit)}" if limit else "")):
                yield t, int(rowid)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: all or nothing, even under kill -9."""
        if self.conn.in_transaction:  # nested use joins the outer transaction
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes when another connection commits: a cheap 'has the catalog changed?' check."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # ---- meta and roots ------------------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def roots(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM roots ORDER BY path")]

    def add_roots(self, roots: Iterable[str]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO roots(path) VALUES(?)", [(r,) for r in roots])

    # ---- files and contents --------------------------------------------------------------------------------------

    def files_under(self, roots: Iterable[str]) -> dict[str, FileRow]:
        out: dict[str, FileRow] = {}
        for root in roots:
            prefix = root.rstrip("/") + "/"
            rows = self.conn.execute(
                "SELECT path, size, mtime_ns, content_id, status, error FROM files WHERE path = ? OR "
                "(path >= ? AND path < ?)", (root, prefix, prefix[:-1] + "0"))
            out.update((r[0], FileRow(*r)) for r in rows)
        return out

    def file(self, path: str) -> FileRow | None:
        row = self.conn.execute("SELECT path, size, mtime_ns, content_id, status, error FROM files WHERE path=?",
                                (path,)).fetchone()
        return FileRow(*row) if row else None

    def content_id(self, sha256: str) -> int | None:
        row = self.conn.execute("SELECT id FROM contents WHERE sha256=?", (sha256,)).fetchone()
        return int(row[0]) if row else None

    def add_content(self, sha256: str, width: int, height: int) -> int:
        cur = self.conn.execute("INSERT INTO contents(sha256, width, height) VALUES(?, ?, ?)", (sha256, width, height))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def put_file(self, path: str, size: int, mtime_ns: int, content_id: int | None, error: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO files(path, size, mtime_ns, content_id, status, error, indexed_at) VALUES(?,?,?,?,?,?,?) "
            "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
            "content_id=excluded.content_id, status=excluded.status, error=excluded.error, "
            "indexed_at=excluded.indexed_at",
            (path, size, mtime_ns, content_id, "failed" if error else "ok", error, time.time()))

    def delete_files(self, paths: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM files WHERE path=?", [(p,) for p in paths])

    def orphan_contents(self) -> list[int]:
        """Contents no file points to any more (their vectors can go)."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT id FROM contents WHERE NOT EXISTS (SELECT 1 FROM files WHERE files.content_id = contents.id)")]

    def delete_contents(self, ids: list[int]) -> dict[str, list[int]]:
        """Delete contents and all their vectors; return the removed labels per space."""
        removed: dict[str, list[int]] = {}
        for cid in ids:
            for space, label in self.conn.execute("SELECT space, label FROM vectors WHERE content_id=?", (cid,)):
                removed.setdefault(space, []).append(int(label))
        self.conn.executemany("DELETE FROM vectors WHERE content_id=?", [(c,) for c in ids])
        self.conn.executemany("DELETE FROM contents WHERE id=?", [(c,) for c in ids])
        return removed

    def paths_for(self, content_ids: Iterable[int]) -> dict[int, list[str]]:
        ids = list({int(c) for c in content_ids})
        out: dict[int, list[str]] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for cid, path in self.conn.execute(
                    f"SELECT content_id, path FROM files WHERE status='ok' AND content_id IN ({marks}) ORDER BY path",
                    chunk):
                out.setdefault(int(cid), []).append(path)
        return out

    def failed_files(self) -> list[tuple[str, str]]:
        rows = self.conn.execute("SELECT path, error FROM files WHERE status='failed' ORDER BY path")
        return [(r[0], r[1]) for r in rows]

    def counts(self) -> dict[str, int]:
        one = self.conn.execute
        return {
            "files": int(one("SELECT COUNT(*) FROM files WHERE status='ok'").fetchone()[0]),
            "failed": int(one("SELECT COUNT(*) FROM files WHERE status='failed'").fetchone()[0]),
            "contents": int(one("SELECT COUNT(*) FROM contents").fetchone()[0]),
        }

    # ---- spaces and vectors --------------------------------------------------------------------------------------

    def space(self, name: str) -> SpaceInfo | None:
        row = self.conn.execute("SELECT name, fingerprint, description, dim FROM spaces WHERE name=?",
                                (name,)).fetchone()
        return SpaceInfo(row[0], row[1], json.loads(row[2]), int(row[3])) if row else None

    def spaces(self) -> list[SpaceInfo]:
        rows = self.conn.execute("SELECT name, fingerprint, description, dim FROM spaces ORDER BY name")
        return [SpaceInfo(r[0], r[1], json.loads(r[2]), int(r[3])) for r in rows]

    def put_space(self, name: str, fingerprint: str, description: dict, dim: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO spaces(name, fingerprint, description, dim, created_at) "
                          "VALUES(?,?,?,?,?)", (name, fingerprint, json.dumps(description, sort_keys=True), dim,
                                                time.time()))

    def drop_space(self, name: str) -> None:
        self.conn.execute("DELETE FROM vectors WHERE space=?", (name,))
        self.conn.execute("DELETE FROM spaces WHERE name=?", (name,))
        self.conn.execute("DELETE FROM index_files WHERE space=?", (name,))

    def contents_missing(self, space: str) -> list[int]:
        """Contents that have a file but no vector in `space` (e.g. after a model change)."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT id FROM contents c WHERE NOT EXISTS "
            "(SELECT 1 FROM vectors v WHERE v.space=? AND v.content_id=c.id)",
            (space,))]

    def put_vectors(self, space: str, labels: Iterable[int], content_ids: Iterable[int], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.conn.executemany(
            "INSERT OR REPLACE INTO vectors(space, label, content_id, vector) VALUES(?,?,?,?)",
            [(space, int(lb), int(cid), vec.tobytes())
             for lb, cid, vec in zip(labels, content_ids, vectors, strict=True)])

    def labels(self, space: str) -> np.ndarray:
        rows = self.conn.execute("SELECT label FROM vectors WHERE space=?", (space,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors(self, space: str, labels: Iterable[int] | None = None, dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(labels, float32 vectors) for the given labels, or for the whole space."""
        if labels is None:
            rows = self.conn.execute("SELECT label, vector FROM vectors WHERE space=? ORDER BY label",
                                     (space,)).fetchall()
        else:
            rows = []
            for chunk in _chunks([int(x) for x in labels], 500):
                marks = ",".join("?" * len(chunk))
                rows += self.conn.execute(f"SELECT label, vector FROM vectors WHERE space=? AND label IN ({marks})",
                                          [space, *chunk]).fetchall()
        out_labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return out_labels, np.zeros((0, dim), dtype=np.float32)
        return out_labels, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)

    def vector_for_content(self, space: str, content_id: int) -> np.ndarray | None:
        row = self.conn.execute("SELECT vector FROM vectors WHERE space=? AND content_id=? LIMIT 1",
                                (space, content_id)).fetchone()
        return np.frombuffer(row[0], dtype=np.float32).copy() if row else None

    # ---- saved graph files ---------------------------------------------------------------------------------------

    def index_file(self, space: str) -> IndexFileState | None:
        row = self.conn.execute("SELECT space, generation, filename, size, crc32, elements, labels_sum, fingerprint "
                                "FROM index_files WHERE space=?", (space,)).fetchone()
        return IndexFileState(*row) if row else None

    def put_index_file(self, st: IndexFileState) -> None:
        self.conn.execute("INSERT OR REPLACE INTO index_files(space, generation, filename, size, crc32, elements, "
                          "labels_sum, fingerprint) VALUES(?,?,?,?,?,?,?,?)",
                          (st.space, st.generation, st.filename, st.size, st.crc32, st.elements, st.labels_sum,
                           st.fingerprint))


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
