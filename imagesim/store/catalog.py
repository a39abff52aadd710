"""The SQLite catalog: files, their contents (by SHA-256), every vector of every space, and the state of the saved
graph files. It is the source of truth: one transaction commits a batch of files together with their vectors."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StoreError
from .schema import (
    CRC,
    SCHEMA,
    SCHEMA_VERSION,
    add_checksum_triggers,
    crc_call,
    create_schema,
    damaged,
    data_columns,
    expected_schema,
    present_sets,
    register_checksums,
    schema_of,
    table_set_ddl,
    user_tables,
)
from .vectors import IndexFileState

CATALOG_NAME = "catalog.sqlite"
MODEL_META_KEY = "content_model"  # meta: the ModelSpec (JSON) the content space was built with


# Paths are stored as TEXT when they are UTF-8 (nearly always) and as a BLOB of the file system's bytes when they are
# not (names copied from an old NAS or a ZIP): Python hands such names over with surrogate escapes, which SQLite's text
# cannot hold. Both round-trip exactly, and BLOBs sort apart from TEXT, so prefix ranges stay index lookups.
DbPath = str | bytes


def db_path(path: str) -> DbPath:
    """A path as the catalog stores it."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def from_db_path(value: DbPath) -> str:
    """A stored path back as Python's str for it (surrogate escapes for bytes that are not UTF-8)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _text(message: str | None) -> str | None:
    """An error message fit for a TEXT column (a file name in it may hold bytes that are not UTF-8)."""
    return None if message is None else message.encode("utf-8", "backslashreplace").decode("utf-8")


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
            self._open(create, check)
        except BaseException:
            conn = getattr(self, "conn", None)
            if conn is not None:
                conn.close()  # a refused catalog leaves no connection (nor its WAL files) behind
            raise

    def _open(self, create: bool, check: bool) -> None:
        path = self.path
        try:
            self.connect()
            if create and not user_tables(self.conn):
                with self.transaction():
                    create_schema(self.conn, SCHEMA)
                    self.set_meta("schema_version", str(SCHEMA_VERSION))
            version = self.meta("schema_version") if "meta" in user_tables(self.conn) else None
            if check:
                problem = next(iter(self.problems(limit=1)), None)
                if problem is not None and version in ("1", "2") and problem.startswith("schema"):
                    problem = None  # checked again after the upgrade below
                if problem is not None:
                    raise sqlite3.DatabaseError(problem)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # a damaged header can break text decoding
            raise damaged(path, exc) from None
        if not check and not (version or "").isdigit():  # repair mends a damaged version row; judge by the columns
            version = ("1" if CRC not in [r[1] for r in self.conn.execute("PRAGMA table_info(meta)")] else
                       str(SCHEMA_VERSION) if "photo_info" in user_tables(self.conn) else "2")
        if version is None or not version.isdigit() or int(version) > SCHEMA_VERSION:
            raise StoreError(f"catalog {path} has schema version {version}; this imagesim reads {SCHEMA_VERSION}")
        if int(version) < SCHEMA_VERSION:
            self._upgrade(int(version))
            if check and (problem := next(iter(self.problems(limit=1)), None)) is not None:
                raise damaged(path, sqlite3.DatabaseError(problem))

    def connect(self) -> None:
        self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        register_checksums(self.conn)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA secure_delete=ON")  # deleted rows (face data) leave no bytes behind
        self.conn.execute("PRAGMA foreign_keys=ON")

    def _upgrade(self, version: int) -> None:
        """Bring an older catalog to this schema in one transaction. 1 -> 2: add the `_crc` column and its triggers
        to every table and fill it; 2 -> 3: the new core tables (photo_info, filled by the next index run)."""
        with self.transaction():
            if version < 2:
                for t in user_tables(self.conn):
                    self.conn.execute(f"ALTER TABLE {t} ADD COLUMN {CRC} INTEGER")
                add_checksum_triggers(self.conn)
                for t in user_tables(self.conn):
                    self.conn.execute(f"UPDATE {t} SET {CRC}={crc_call(data_columns(self.conn, t))}")
            create_schema(self.conn, SCHEMA)  # IF NOT EXISTS: only what this version added
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    def has_tables(self, table_set: str) -> bool:
        """Whether this catalog holds a registered optional table set (e.g. "faces")."""
        return table_set in present_sets(self.conn)

    def ensure_tables(self, table_set: str) -> None:
        """Create a registered optional table set (idempotent; a catalog that never needs it never gets it)."""
        if not self.has_tables(table_set):
            with self.transaction():
                create_schema(self.conn, table_set_ddl(table_set))

    # ---- damage ----------------------------------------------------------------------------------------------------

    def problems(self, limit: int = 100) -> Iterator[str]:
        """What is damaged, first the b-trees and indexes, then the schema, then rows failing their checksum."""
        conn = self.conn
        for (line,) in conn.execute(f"PRAGMA integrity_check({int(limit)})"):
            if line != "ok":
                yield line
                return
        if schema_of(conn) != expected_schema(present_sets(conn)):
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

    def delete_meta(self, key: str) -> None:
        self.conn.execute("DELETE FROM meta WHERE key=?", (key,))

    def checkpoint(self) -> bool:
        """Checkpoint the WAL into the database and truncate it (deleted bytes must not linger there either); False
        when a reader kept it from finishing."""
        busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return int(busy) == 0

    def roots(self) -> list[str]:
        return [from_db_path(r[0]) for r in self.conn.execute("SELECT path FROM roots ORDER BY path")]

    def add_roots(self, roots: Iterable[str]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO roots(path) VALUES(?)", [(db_path(r),) for r in roots])

    # ---- files and contents --------------------------------------------------------------------------------------

    def files_under(self, roots: Iterable[str]) -> dict[str, FileRow]:
        out: dict[str, FileRow] = {}
        for root in roots:
            prefix = root.rstrip("/") + "/"
            ranges = [(db_path(root), db_path(prefix))]
            if isinstance(ranges[0][1], str):  # names below a UTF-8 folder may still be bytes (BLOBs)
                ranges.append((os.fsencode(root), os.fsencode(prefix)))
            for whole, start in ranges:
                end = start[:-1] + "0" if isinstance(start, str) else start[:-1] + b"0"  # "/" + 1: all below root
                rows = self.conn.execute(
                    "SELECT path, size, mtime_ns, content_id, status, error FROM files WHERE path = ? OR "
                    "(path >= ? AND path < ?)", (whole, start, end))
                for r in rows:
                    path = from_db_path(r[0])
                    out[path] = FileRow(path, *r[1:])
        return out

    def file(self, path: str) -> FileRow | None:
        row = self.conn.execute("SELECT size, mtime_ns, content_id, status, error FROM files WHERE path=?",
                                (db_path(path),)).fetchone()
        return FileRow(path, *row) if row else None

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
            (db_path(path), size, mtime_ns, content_id, "failed" if error else "ok", _text(error), time.time()))

    def delete_files(self, paths: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM files WHERE path=?", [(db_path(p),) for p in paths])

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
                out.setdefault(int(cid), []).append(from_db_path(path))
        return out

    def shared_contents(self) -> list[int]:
        """Contents that more than one indexed file holds (byte-identical copies)."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT content_id FROM files WHERE status='ok' AND content_id IS NOT NULL "
            "GROUP BY content_id HAVING COUNT(*) > 1")]

    def failed_files(self) -> list[tuple[str, str]]:
        rows = self.conn.execute("SELECT path, error FROM files WHERE status='failed' ORDER BY path")
        return [(from_db_path(r[0]), r[1]) for r in rows]

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

    def delete_vectors(self, space: str, labels: Iterable[int]) -> None:
        self.conn.executemany("DELETE FROM vectors WHERE space=? AND label=?", [(space, int(lb)) for lb in labels])

    def content_hashes(self) -> dict[int, str]:
        """Content id -> the photo bytes' SHA-256."""
        return {int(r[0]): r[1] for r in self.conn.execute("SELECT id, sha256 FROM contents")}

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


class ContentReader:
    """Contents by SHA-256 from any thread (the indexer's readers): one read-only connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def content_id(self, sha256: str) -> int | None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, check_same_thread=False)
            self._local.conn = conn
        row = conn.execute("SELECT id FROM contents WHERE sha256=?", (sha256,)).fetchone()
        return int(row[0]) if row else None


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
