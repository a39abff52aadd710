"""The SQLite catalog: files, their contents (by SHA-256), every vector of every space, and the state of the saved
graph files. It is the source of truth: one transaction commits a batch of files together with their vectors."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import integrity
from .graphfile import IndexFileState
from .integrity import CheckedDb
from .schema import (
    create_schema,
    damaged,
    present_sets,
    register_checksums,
    table_set_ddl,
)

CATALOG_NAME = "catalog.sqlite"
MODEL_META_KEY = "content_model"  # meta: the ModelSpec (JSON) the content space was built with
DELETES_KEY = "vectors_deletes"  # meta: bumped by every change that deletes vectors (a graph must then sync in full)
GRAPH_SYNC_KEY = "graph_sync:"  # meta + space: (generation, vectors rowid, deletes) its saved graph reflects
# meta + space: the stat stamp (`graphfile.file_stamp`) of its graph file when that was last written or fully checked
GRAPH_CHECKED_KEY = "graph_checked:"


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


class Catalog(CheckedDb):
    """Thin typed access to the catalog; every write goes through `transaction()`."""

    def has_tables(self, table_set: str) -> bool:
        """Whether this catalog holds a registered optional table set (e.g. "faces")."""
        return table_set in present_sets(self.conn)

    def ensure_tables(self, table_set: str) -> None:
        """Create a registered optional table set (idempotent; a catalog that never needs it never gets it)."""
        if not self.has_tables(table_set):
            with self.transaction():
                create_schema(self.conn, table_set_ddl(table_set))

    # ---- damage ----------------------------------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def data_version(self) -> int:
        """Changes when another connection commits: a cheap 'has the catalog changed?' check."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # ---- meta and roots ------------------------------------------------------------------------------------------

    def checkpoint(self) -> bool:
        """Checkpoint the WAL into the database and truncate it (deleted bytes must not linger there either); False
        when a reader kept it from finishing."""
        busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return int(busy) == 0

    def roots(self) -> list[str]:
        rows = self.conn.execute(f"SELECT path, {self.ok('roots')} FROM roots ORDER BY path").fetchall()
        return [from_db_path(r[0]) for r in self.sound("roots", rows)]

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
                    f"SELECT path, size, mtime_ns, content_id, status, error, {self.ok('files')} FROM files WHERE "
                    "path = ? OR (path >= ? AND path < ?)", (whole, start, end)).fetchall()
                for r in self.sound("files", rows):
                    path = from_db_path(r[0])
                    out[path] = FileRow(path, *r[1:])
        return out

    def file(self, path: str) -> FileRow | None:
        row = self._one("files", f"SELECT size, mtime_ns, content_id, status, error, {self.ok('files')} FROM files "
                                 "WHERE path=?", (db_path(path),))
        return FileRow(path, *row) if row else None

    def content_id(self, sha256: str) -> int | None:
        row = self._one("contents", f"SELECT id, {self.ok('contents')} FROM contents WHERE sha256=?", (sha256,))
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

    def _deleted_vectors(self, n: int) -> None:
        """Record that vectors went (saved graphs' sync records then no longer hold: the next load syncs in full)."""
        if n > 0:
            self.set_meta(DELETES_KEY, str(self.vectors_deletes() + 1))

    def vectors_deletes(self) -> int:
        return int(self.meta(DELETES_KEY) or 0)

    def orphan_contents(self) -> list[int]:
        """Contents no file points to any more (their vectors can go)."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT id FROM contents WHERE NOT EXISTS (SELECT 1 FROM files WHERE files.content_id = contents.id)")]

    def delete_contents(self, ids: list[int]) -> dict[str, list[int]]:
        """Delete contents and all their vectors; return the removed labels per space."""
        removed: dict[str, list[int]] = {}
        with self.transaction():
            for cid in ids:
                for space, label in self.conn.execute("SELECT space, label FROM vectors WHERE content_id=?", (cid,)):
                    removed.setdefault(space, []).append(int(label))
            self.conn.executemany("DELETE FROM vectors WHERE content_id=?", [(c,) for c in ids])
            self.conn.executemany("DELETE FROM contents WHERE id=?", [(c,) for c in ids])
            self._deleted_vectors(sum(len(v) for v in removed.values()))
        return removed

    def paths_for(self, content_ids: Iterable[int]) -> dict[int, list[str]]:
        ids = list({int(c) for c in content_ids})
        out: dict[int, list[str]] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for cid, path in self.sound("files", self.conn.execute(
                    f"SELECT content_id, path, {self.ok('files')} FROM files WHERE status='ok' AND content_id IN "
                    f"({marks}) ORDER BY path", chunk).fetchall()):
                out.setdefault(int(cid), []).append(from_db_path(path))
        return out

    def shared_contents(self) -> list[int]:
        """Contents that more than one indexed file holds (byte-identical copies)."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT content_id FROM files WHERE status='ok' AND content_id IS NOT NULL "
            "GROUP BY content_id HAVING COUNT(*) > 1")]

    def failed_files(self) -> list[tuple[str, str]]:
        rows = self.conn.execute(f"SELECT path, error, {self.ok('files')} FROM files WHERE status='failed' "
                                 "ORDER BY path").fetchall()
        return [(from_db_path(r[0]), r[1]) for r in self.sound("files", rows)]

    def counts(self) -> dict[str, int]:
        """Indexed files, unreadable ones, distinct contents. Reads no row of an indexed photo: a bare COUNT(*) is one
        b-tree count in SQLite, and only failed files lack a content id (the index range of NULLs holds just them)."""
        one = self.conn.execute
        failed = int(one("SELECT COUNT(*) FROM files WHERE content_id IS NULL AND status='failed'").fetchone()[0])
        unlinked_ok = int(one("SELECT COUNT(*) FROM files WHERE content_id IS NULL AND status='ok'").fetchone()[0])
        return {
            "files": int(one("SELECT COUNT(*) FROM files").fetchone()[0]) - failed - unlinked_ok,
            "failed": failed,
            "contents": int(one("SELECT COUNT(*) FROM contents").fetchone()[0]),
        }

    # ---- spaces and vectors --------------------------------------------------------------------------------------

    def space(self, name: str) -> SpaceInfo | None:
        row = self._one("spaces", f"SELECT name, fingerprint, description, dim, {self.ok('spaces')} FROM spaces "
                                  "WHERE name=?", (name,))
        return SpaceInfo(row[0], row[1], json.loads(row[2]), int(row[3])) if row else None

    def spaces(self) -> list[SpaceInfo]:
        rows = self.sound("spaces", self.conn.execute(
            f"SELECT name, fingerprint, description, dim, {self.ok('spaces')} FROM spaces ORDER BY name").fetchall())
        return [SpaceInfo(r[0], r[1], json.loads(r[2]), int(r[3])) for r in rows]

    def put_space(self, name: str, fingerprint: str, description: dict, dim: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO spaces(name, fingerprint, description, dim, created_at) "
                          "VALUES(?,?,?,?,?)", (name, fingerprint, json.dumps(description, sort_keys=True), dim,
                                                time.time()))

    def drop_space(self, name: str) -> None:
        with self.transaction():
            self._deleted_vectors(self.conn.execute("DELETE FROM vectors WHERE space=?", (name,)).rowcount)
            self.conn.execute("DELETE FROM spaces WHERE name=?", (name,))
            self.conn.execute("DELETE FROM index_files WHERE space=?", (name,))
            self.delete_meta(GRAPH_SYNC_KEY + name)
            self.delete_meta(GRAPH_CHECKED_KEY + name)

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
        with self.transaction():
            cur = self.conn.executemany("DELETE FROM vectors WHERE space=? AND label=?",
                                        [(space, int(lb)) for lb in labels])
            self._deleted_vectors(cur.rowcount)

    def content_hashes(self) -> dict[int, str]:
        """Content id -> the photo bytes' SHA-256."""
        rows = self.conn.execute(f"SELECT id, sha256, {self.ok('contents')} FROM contents").fetchall()
        return {int(r[0]): r[1] for r in self.sound("contents", rows)}

    def labels(self, space: str) -> np.ndarray:
        rows = self.conn.execute("SELECT label FROM vectors WHERE space=?", (space,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors(self, space: str, labels: Iterable[int] | None = None, dim: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(labels, float32 vectors) for the given labels, or for the whole space."""
        ok = self.ok("vectors")
        if labels is None:
            rows = self.sound("vectors", self.conn.execute(
                f"SELECT label, vector, {ok} FROM vectors WHERE space=? ORDER BY label", (space,)).fetchall())
        else:
            rows = []
            for chunk in _chunks([int(x) for x in labels], 500):
                marks = ",".join("?" * len(chunk))
                rows += self.sound("vectors", self.conn.execute(
                    f"SELECT label, vector, {ok} FROM vectors WHERE space=? AND label IN ({marks})",
                    [space, *chunk]).fetchall())
        out_labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return out_labels, np.zeros((0, dim), dtype=np.float32)
        return out_labels, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)

    def vector_for_content(self, space: str, content_id: int) -> np.ndarray | None:
        row = self._one("vectors", f"SELECT vector, {self.ok('vectors')} FROM vectors WHERE space=? AND content_id=? "
                                   "LIMIT 1", (space, content_id))
        return np.frombuffer(row[0], dtype=np.float32).copy() if row else None

    def vectors_top(self) -> int:
        """The highest rowid of `vectors`: every vector written later has a higher one (REPLACE included)."""
        return int(self.conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM vectors").fetchone()[0])

    def vectors_since(self, space: str, top: int, dim: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(labels, vectors, highest rowid seen) of the space's vectors written after rowid `top`: a rowid range,
        bounded by the writes since, whatever the space's size (`+space`: never the (space, label) index, which would
        walk the whole space)."""
        rows = self.sound("vectors", self.conn.execute(
            f"SELECT rowid, label, vector, {self.ok('vectors')} FROM vectors WHERE rowid > ? AND +space=? "
            "ORDER BY rowid", (int(top), space)).fetchall())
        labels = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        vectors = (np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1) if rows
                   else np.zeros((0, dim), dtype=np.float32))
        return labels, vectors, max([int(top), *(int(r[0]) for r in rows)])

    def graph_sync(self, space: str) -> tuple[int, int, int] | None:
        """(generation, vectors rowid, deletes) the space's saved graph reflects, as recorded when it was saved."""
        raw = self.meta(GRAPH_SYNC_KEY + space)
        try:
            generation, top, deletes = json.loads(raw or "null")
            return int(generation), int(top), int(deletes)
        except (TypeError, ValueError):
            return None  # none recorded (or unreadable): the graph syncs in full

    def put_graph_sync(self, space: str, generation: int, top: int, deletes: int) -> None:
        self.set_meta(GRAPH_SYNC_KEY + space, json.dumps([int(generation), int(top), int(deletes)]))

    def graph_checked(self, space: str) -> str | None:
        """The stamp of the space's graph file when it was last written or fully checked (None: never recorded)."""
        return self.meta(GRAPH_CHECKED_KEY + space)

    def put_graph_checked(self, space: str, stamp: str) -> None:
        self.set_meta(GRAPH_CHECKED_KEY + space, stamp)

    def record_graph_checked(self, space: str, stamp: str) -> bool:
        """Record the stamp only when the write lock is free at once (serve's background check never waits on an
        indexer for it); False when it was not recorded."""
        return self.set_meta_if_free(GRAPH_CHECKED_KEY + space, stamp)

    # ---- saved graph files ---------------------------------------------------------------------------------------

    def index_file(self, space: str) -> IndexFileState | None:
        row = self._one("index_files", "SELECT space, generation, filename, size, crc32, elements, labels_sum, "
                        f"fingerprint, {self.ok('index_files')} FROM index_files WHERE space=?", (space,))
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
            register_checksums(conn)
            self._local.conn = conn
        row = conn.execute(f"SELECT id, {integrity.row_ok(conn, 'contents')} FROM contents WHERE sha256=?",
                           (sha256,)).fetchone()
        if row is not None and not row[1]:
            raise damaged(self.path, sqlite3.DatabaseError("a row of contents fails its checksum"))
        return int(row[0]) if row else None


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
