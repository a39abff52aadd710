"""The catalog's schema: table DDL by owner, row checksums kept by triggers, and the schema check at open.

Each table has one owner module that holds its DDL and its queries. The core tables (files, contents, vectors...)
are the catalog's; a feature that adds tables (faces) registers them here with `register_tables`, so the checks at
open, the upgrade and `imagesim repair` know every table without this layer importing the features above it.
"""

from __future__ import annotations

import functools
import sqlite3
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError, first_line

SCHEMA_VERSION = 3  # 2: row checksums; 3: photo_info (date, camera, place: what filters read)

# The core tables, always present: owned by `catalog.Catalog`.
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
CREATE TABLE IF NOT EXISTS photo_info(
    content_id INTEGER PRIMARY KEY REFERENCES contents(id) ON DELETE CASCADE,
    taken_utc REAL, taken_local TEXT, taken_source TEXT NOT NULL,
    make TEXT, model TEXT, lat REAL, lon REAL, width INTEGER, height INTEGER, orientation INTEGER, format TEXT,
    country_code TEXT, country TEXT, state TEXT, county TEXT, city TEXT, _crc INTEGER);
CREATE INDEX IF NOT EXISTS photo_info_by_local ON photo_info(taken_local);
CREATE INDEX IF NOT EXISTS photo_info_by_utc ON photo_info(taken_utc);
CREATE INDEX IF NOT EXISTS photo_info_by_lat ON photo_info(lat);
CREATE INDEX IF NOT EXISTS photo_info_by_city ON photo_info(city COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS photo_info_by_country ON photo_info(country COLLATE NOCASE);
"""

# What `imagesim repair` drops from the core tables when it points at nothing, as (table, WHERE); `{own}` stands for
# "the vector's space is not one of an optional set's" (spaces whose labels are not content ids).
CORE_ORPHANS = (
    ("files", "content_id IS NOT NULL AND content_id NOT IN (SELECT id FROM contents)"),
    ("vectors", "space NOT IN (SELECT name FROM spaces)"),
    ("vectors", "{own} AND content_id NOT IN (SELECT id FROM contents)"),
    ("index_files", "space NOT IN (SELECT name FROM spaces)"),
    ("photo_info", "content_id NOT IN (SELECT id FROM contents)"),
)

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
        elif isinstance(v, str):
            raw = v.encode("utf-8", "surrogatepass")
            parts.append(b"t" + len(raw).to_bytes(8, "little") + raw)
        else:
            raw = bytes(v)  # type: ignore[call-overload]  # a blob: bytes, memoryview or bytearray from SQLite
            parts.append(b"b" + len(raw).to_bytes(8, "little") + raw)
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


@dataclass(frozen=True)
class TableSet:
    """An optional set of tables beyond the core, created by its owner on demand (faces: `imagesim.faces.schema`).

    `marker`: the table whose presence means the set is there. `spaces`: vector spaces whose labels are this set's
    ids, not content ids. `orphans`: (table, WHERE) rules that `repair` uses to drop rows pointing at nothing;
    `mend`: statements it runs after them (what ON DELETE SET NULL would have done).
    """

    name: str
    marker: str
    ddl: str
    spaces: tuple[str, ...] = ()
    orphans: tuple[tuple[str, str], ...] = ()
    mend: tuple[str, ...] = ()


_TABLE_SETS: dict[str, TableSet] = {}


def register_tables(table_set: TableSet) -> None:
    """Declare an optional table set so the checks at open, the upgrade and repair know it."""
    _TABLE_SETS[table_set.name] = table_set
    expected_schema.cache_clear()


def table_set(name: str) -> TableSet:
    return _TABLE_SETS[name]


def table_set_ddl(name: str) -> str:
    return _TABLE_SETS[name].ddl


def present_sets(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The registered optional table sets this catalog holds."""
    tables = set(user_tables(conn))
    return tuple(sorted(n for n, ts in _TABLE_SETS.items() if ts.marker in tables))


def full_ddl(sets: tuple[str, ...]) -> str:
    """The core DDL plus that of the given optional sets."""
    return SCHEMA + "".join(_TABLE_SETS[n].ddl for n in sets)


@functools.cache
def expected_schema(sets: tuple[str, ...]) -> frozenset[tuple]:
    """The schema this version creates with these optional sets (built once per process in memory)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    register_checksums(conn)
    create_schema(conn, full_ddl(sets))
    schema = frozenset(schema_of(conn))
    conn.close()
    return schema


def schema_of(conn: sqlite3.Connection) -> set[tuple]:
    """What sqlite_master says, whitespace aside (the upgrade from schema 1 appends columns on the same line)."""
    return {(kind, name, table, " ".join(sql.split()) if sql else sql)
            for kind, name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")}


def damaged(path: Path, exc: BaseException) -> StoreError:
    """The one-line error for a catalog SQLite cannot read (or whose rows no longer decode)."""
    why = first_line(exc)
    return StoreError(f"catalog {path} is damaged or not a catalog ({why}): run `imagesim repair --db {path.parent}`; "
                      f"if that fails, move the folder away and index again")


