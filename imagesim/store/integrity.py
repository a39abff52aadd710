"""What a catalog checks about itself, and when: a full verification on demand, cheap bounded checks at every open,
and each row's checksum whenever a query reads that row.

A full verification (`verify`) runs `PRAGMA integrity_check`, the schema check and every row's checksum, then records
a *verified high-water mark* in meta: per table the highest rowid verified, and the page count then. An ordinary open
(`check_at_open`) checks only what is cheap and bounded: the file header against the file's size, the schema, the id
counters, and the rows written since the mark (rowids above it: bounded by the work done since, not by the catalog's
size). Rows below the mark are checked when a query reads them (`Catalog` selects each row's checksum verdict with its
values, see `row_ok`), so damage to an old row is refused before it gives an answer. docs/reliability.md says why.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import StoreError, first_line
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
    user_tables,
)

MARK_KEY = "verified"  # meta: the verified high-water mark (JSON of `Mark`)
# `imagesim index` runs the full verification at its end when the catalog grew by at least this share of its rows
# since the last one: checking a row costs ~15 us, encoding a photo 20-200 ms, so the full check then costs under 1 %
# of the run's own work; below it, the run checks only the rows it wrote (and moves the mark over them).
FULL_VERIFY_GROWTH = 0.1


@dataclass
class Mark:
    """What the last checks covered: `tops` the highest rowid per table whose rows were checked (by the full
    verification or, above it, by an index run checking what it wrote); `pages` the page count when it was recorded;
    `full_tops` and `full_at` what the last full verification covered and when."""

    tops: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    full_tops: dict[str, int] = field(default_factory=dict)
    full_at: float = 0.0


def row_ok(conn: sqlite3.Connection, table: str, prefix: str = "") -> str:
    """An SQL expression true when a row of `table` matches its checksum: a query selects it beside the row's values
    so the check reads exactly the values it returns (an index's copy of a column included)."""
    return f"({prefix}{CRC} IS {crc_call(data_columns(conn, table), prefix)})"


def tops(conn: sqlite3.Connection) -> dict[str, int]:
    """The highest rowid of every table (one b-tree seek each)."""
    return {t: int(conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {t}").fetchone()[0]) for t in user_tables(conn)}


def page_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA page_count").fetchone()[0])


def parse_mark(raw: str | None) -> Mark | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Mark({str(k): int(v) for k, v in data["tops"].items()}, int(data["pages"]),
                    {str(k): int(v) for k, v in data.get("full_tops", {}).items()}, float(data.get("full_at", 0)))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a mark that does not parse is no mark: the next open verifies everything


def dump_mark(mark: Mark) -> str:
    return json.dumps(asdict(mark), sort_keys=True)


def bad_rows(conn: sqlite3.Connection, limit: int | None = None,
             above: dict[str, int] | None = None) -> Iterator[tuple[str, int]]:
    """(table, rowid) of rows whose stored checksum does not match their values; with `above`, only the rows with a
    rowid above the given one per table (a rowid range: bounded by the rows written since)."""
    for t in user_tables(conn):
        where = f"{CRC} IS NOT {crc_call(data_columns(conn, t))}"
        params: tuple = ()
        if above is not None:
            where = f"rowid > ? AND {where}"
            params = (above.get(t, 0),)
        sql = f"SELECT rowid FROM {t} WHERE {where}" + (f" LIMIT {int(limit)}" if limit else "")
        for (rowid,) in conn.execute(sql, params):
            yield t, int(rowid)


def _schema_problem(conn: sqlite3.Connection) -> str | None:
    if schema_of(conn) != expected_schema(present_sets(conn)):
        return "schema differs from the one this imagesim creates"
    return None


def _counter_problems(conn: sqlite3.Connection) -> Iterator[str]:
    tables = set(user_tables(conn))
    for name, seq in conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall():
        top = conn.execute(f"SELECT MAX(rowid) FROM {name}").fetchone()[0] if name in tables else None
        if name not in tables or not isinstance(seq, int) or (top is not None and seq < top):
            yield "the id counters (sqlite_sequence) are damaged"


def full_problems(conn: sqlite3.Connection, limit: int = 100) -> Iterator[str]:
    """Everything: the b-trees and indexes, the schema, every row's checksum, the id counters."""
    for (line,) in conn.execute(f"PRAGMA integrity_check({int(limit)})"):
        if line != "ok":
            yield line
            return
    if (problem := _schema_problem(conn)) is not None:
        yield problem
        return
    for table, rowid in bad_rows(conn, limit):
        yield f"row {rowid} of {table} fails its checksum"
    yield from _counter_problems(conn)


def header_problem(path: Path) -> str | None:
    """The file's own header against its size: a catalog cut short (copied in part, a full disk) is refused at open
    instead of when a query reaches its missing pages. Only judged when no WAL holds pages the file does not yet."""
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return None
    with open(path, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\0"):
        return "not an SQLite file (its header is damaged)"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages, counter, valid_for = (int.from_bytes(head[a:a + 4], "big") for a in (28, 24, 92))
    if pages and counter == valid_for and os.path.getsize(path) < pages * page:
        return f"the file is shorter than its header says ({os.path.getsize(path)} of {pages * page} bytes)"
    return None


def quick_problems(conn: sqlite3.Connection, mark: Mark, limit: int = 100) -> Iterator[str]:
    """What an ordinary open checks: the schema, the id counters, and the rows written since the mark."""
    if (problem := _schema_problem(conn)) is not None:
        yield problem
        return
    for table, rowid in bad_rows(conn, limit, above=mark.tops):
        yield f"row {rowid} of {table} fails its checksum"
    yield from _counter_problems(conn)


def check_at_open(conn: sqlite3.Connection, path: Path, mark: Mark | None) -> tuple[str | None, Mark | None]:
    """(the first problem or None, the mark a full verification earned): the bounded checks when a usable mark exists,
    else everything (a catalog from before marks, or one whose file lost pages since its mark)."""
    if (problem := header_problem(path)) is not None:
        return problem, None
    if mark is None or mark.pages > page_count(conn):
        problems, earned = full_mark(conn)
        return (problems[0], None) if problems else (None, earned)
    return next(iter(quick_problems(conn, mark, limit=1)), None), None


def full_mark(conn: sqlite3.Connection) -> tuple[list[str], Mark]:
    """Run the full verification in one read snapshot; the problems found, and the mark it earns when there are none
    (rowids as of the snapshot: rows committed after it are above the mark, checked by the next open)."""
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")
    try:
        covered = tops(conn)
        problems = list(full_problems(conn))
        mark = Mark(covered, page_count(conn), dict(covered), time.time())
    finally:
        if began:
            conn.execute("COMMIT")
    return problems, mark


def advanced_mark(conn: sqlite3.Connection, mark: Mark) -> tuple[list[str], Mark]:
    """Check the rows written since `mark` (bounded by them) and, when they are sound, the mark moved over them."""
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")
    try:
        covered = tops(conn)
        problems = [p for p in (_schema_problem(conn),) if p] or [
            f"row {r} of {t} fails its checksum" for t, r in bad_rows(conn, 100, above=mark.tops)]
        moved = Mark(covered, page_count(conn), mark.full_tops, mark.full_at)
    finally:
        if began:
            conn.execute("COMMIT")
    return problems, moved


def wants_full(mark: Mark | None, conn: sqlite3.Connection) -> bool:
    """Whether the catalog grew by `FULL_VERIFY_GROWTH` of its rows since the last full verification (or never had
    one): then a full verification costs little beside the work that wrote those rows."""
    if mark is None or not mark.full_at:
        return True
    now = tops(conn)
    total = sum(now.values())
    since = sum(max(0, top - mark.full_tops.get(t, 0)) for t, top in now.items())
    return since >= FULL_VERIFY_GROWTH * max(total, 1)


class CheckedDb:
    """A catalog's connection with its checks: the open (bounded checks, or everything when there is no mark yet) and
    the schema upgrade, transactions, meta, the verified mark, and rows read with their checksum verdict (`ok` in the
    query, `sound` on the rows). `Catalog` builds its queries on it."""

    path: Path
    conn: sqlite3.Connection
    _ok: dict[tuple[str, str], str]

    def __init__(self, path: Path, *, create: bool, check: bool = True) -> None:
        """Open (or create) the catalog; with `check`, refuse one whose header, schema or rows written since its last
        verification are damaged (older rows are checked when a query reads them; `verify()` checks everything)."""
        self.path = path
        self._ok: dict[tuple[str, str], str] = {}
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
        earned: Mark | None = None  # a full verification at open (no usable mark yet) records its mark
        try:
            self.connect()
            if create and not user_tables(self.conn):
                with self.transaction():
                    create_schema(self.conn, SCHEMA)
                    self.set_meta("schema_version", str(SCHEMA_VERSION))
                    covered = tops(self.conn)
                    self.set_meta(MARK_KEY, dump_mark(Mark(covered, page_count(self.conn), dict(covered), time.time())))
            version = self._raw_version(check)
            if check:
                mark = self.mark() if version == str(SCHEMA_VERSION) else None
                problem, earned = check_at_open(self.conn, path, mark)
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
            if check:
                problems, earned = full_mark(self.conn)
                if problems:
                    raise damaged(path, sqlite3.DatabaseError(problems[0]))
        if earned is not None:
            self._record_mark(earned, wait=False)

    def _raw_version(self, check: bool) -> str | None:
        """The schema version as stored, its row checked when it has a checksum (a version-1 catalog has none); a
        damaged row is damage with `check`, and no version without (repair then judges by the columns)."""
        if "meta" not in user_tables(self.conn):
            return None
        sound = self.ok("meta") if CRC in [r[1] for r in self.conn.execute("PRAGMA table_info(meta)")] else "1"
        row = self.conn.execute(f"SELECT value, {sound} FROM meta WHERE key='schema_version'").fetchone()
        if row is not None and not row[1]:
            if check:
                raise sqlite3.DatabaseError("the schema version's row fails its checksum")
            return None
        return row[0] if row else None

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
            self._ok.clear()
            self.set_meta("schema_version", str(SCHEMA_VERSION))

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

    def meta(self, key: str) -> str | None:
        row = self._one("meta", f"SELECT value, {self.ok('meta')} FROM meta WHERE key=?", (key,))
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def delete_meta(self, key: str) -> None:
        self.conn.execute("DELETE FROM meta WHERE key=?", (key,))

    def problems(self, limit: int = 100) -> Iterator[str]:
        """What is damaged, first the b-trees and indexes, then the schema, then rows failing their checksum."""
        return full_problems(self.conn, limit)

    def bad_rows(self, limit: int | None = None) -> Iterator[tuple[str, int]]:
        """(table, rowid) of every row whose stored checksum does not match its values."""
        return bad_rows(self.conn, limit)

    def mark(self) -> Mark | None:
        """The verified high-water mark (None: never verified, or a mark that does not parse)."""
        return parse_mark(self.meta(MARK_KEY))

    def verify(self, *, full: bool = True) -> list[str]:
        """Check the catalog and, when it is sound, record the mark: `full` checks everything (`imagesim verify`),
        else only the rows written since the mark. Returns the problems found (empty: sound)."""
        try:
            mark = self.mark()
            if full or mark is None:
                problems, earned = full_mark(self.conn)
            else:
                problems, earned = advanced_mark(self.conn, mark)
        except sqlite3.DatabaseError as exc:  # a page SQLite cannot even parse
            return [first_line(exc)]
        except StoreError as exc:  # the mark's own row fails its checksum
            return [str(exc)]
        if not problems:
            self._record_mark(earned, wait=True)
        return problems

    def wants_full_verify(self) -> bool:
        """Whether the catalog grew enough since its last full verification for one to be cheap beside that work."""
        return wants_full(self.mark(), self.conn)

    def _record_mark(self, mark: Mark, *, wait: bool) -> None:
        """Store a mark; without `wait` only when the write lock is free at once (an open never waits on a writer)
        and the file writable: otherwise the next open checks again."""
        if wait:
            with self.transaction():
                self.set_meta(MARK_KEY, dump_mark(mark))
        else:
            self.set_meta_if_free(MARK_KEY, dump_mark(mark))

    def set_meta_if_free(self, key: str, value: str) -> bool:
        """Set a meta row in its own transaction only when the write lock is free at once and the file writable (a
        reader never waits on a writer for a record it can make later); False when it was not set."""
        try:
            self.conn.execute("PRAGMA busy_timeout=0")
            with self.transaction():
                self.set_meta(key, value)
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            self.conn.execute("PRAGMA busy_timeout=30000")

    def ok(self, table: str, prefix: str = "") -> str:
        """The SQL expression a query selects last, beside a row's values, to have the row checked (`sound`)."""
        key = (table, prefix)
        if key not in self._ok:
            self._ok[key] = row_ok(self.conn, table, prefix)
        return self._ok[key]

    def sound(self, table: str, rows: list) -> list:
        """The rows of a query that selected `ok(table)` last, without that column; refuse (StoreError, one line
        naming `imagesim repair`) at the first whose checksum fails: damage never reaches an answer."""
        for r in rows:
            if not r[-1]:
                raise damaged(self.path, sqlite3.DatabaseError(f"a row of {table} fails its checksum"))
        return [r[:-1] for r in rows]

    def _one(self, table: str, sql: str, params: tuple | list = ()) -> tuple | None:
        rows = self.sound(table, self.conn.execute(sql, params).fetchmany(1))
        return rows[0] if rows else None

