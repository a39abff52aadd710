"""`imagesim repair` for the catalog: keep every sound row, drop the damaged ones and whatever hangs off them.

In order: indexes rebuilt from their tables (REINDEX); when a table's own b-tree is broken, every readable row is
copied into a new catalog (the damaged file is kept beside it); checksum triggers recreated; rows failing their
checksum deleted; rows left pointing at nothing deleted. The next `imagesim index` reads those photos again.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreError, first_line
from . import schema as cat
from .catalog import Catalog
from .schema import present_sets, table_set

# Giving up on a table after this many unreadable rowid ranges bounds the time spent on a shredded file.
SALVAGE_FAILURE_BUDGET = 20_000


@dataclass
class RepairReport:
    removed: dict[str, int] = field(default_factory=dict)  # rows dropped per table
    damaged_copy: str | None = None  # where the damaged file went, when its rows had to be copied out


def open_for_repair(path: Path) -> Catalog:
    """Open a catalog without its checks; when its schema does not even parse, drop the triggers (repair makes them
    anew) through `writable_schema` and try again."""
    try:
        return Catalog(path, create=False, check=False)
    except StoreError:
        try:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA writable_schema=ON")
            conn.execute("DELETE FROM sqlite_master WHERE type='trigger'")
            conn.execute("PRAGMA writable_schema=OFF")
            conn.close()
            return Catalog(path, create=False, check=False)
        except (sqlite3.DatabaseError, StoreError):
            raise StoreError(f"{path} cannot be opened even for repair (not a catalog, or its first pages are "
                             f"damaged): move {path.parent} away and index again") from None


def repair(catalog: Catalog) -> RepairReport:
    report = RepairReport()
    remedy = f"move {catalog.path.parent} away and index again"
    try:
        if not _intact(catalog.conn) and not _reindexed(catalog.conn):
            report.damaged_copy = _salvage(catalog)
        conn = catalog.conn
        conn.execute("PRAGMA foreign_keys=OFF")  # damaged rows go in any order; _tidy does what cascades would
        with catalog.transaction():
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
                conn.execute(f'DROP TRIGGER "{name}"')
            cat.add_checksum_triggers(conn)
        if cat.schema_of(conn) != cat.expected_schema(present_sets(conn)):
            raise StoreError(f"the catalog's schema is not one this imagesim made: {remedy}")
        with catalog.transaction():
            for table, rowid in list(catalog.bad_rows()):
                conn.execute(f"DELETE FROM {table} WHERE rowid=?", (rowid,))
                _count(report.removed, table, 1)
            _tidy(catalog, report.removed)
            _mend_counters(conn)
            catalog.set_meta("schema_version", str(cat.SCHEMA_VERSION))
        conn.execute("PRAGMA foreign_keys=ON")
        problem = next(iter(catalog.verify()), None)  # everything checked again; sound, it records a fresh mark
    except sqlite3.DatabaseError as exc:
        problem = first_line(exc)
    if problem is not None:
        raise StoreError(f"the catalog is damaged beyond repair ({problem[:120]}): {remedy}")
    return report


def _intact(conn: sqlite3.Connection) -> bool:
    try:
        return next(iter(conn.execute("PRAGMA integrity_check(1)")))[0] == "ok"
    except sqlite3.DatabaseError:
        return False


def _reindexed(conn: sqlite3.Connection) -> bool:
    """Rebuild every index from its table: enough when only indexes were damaged."""
    try:
        conn.execute("REINDEX")
    except sqlite3.DatabaseError:
        return False
    return _intact(conn)


def _count(removed: dict[str, int], table: str, n: int) -> None:
    if n > 0:
        removed[table] = removed.get(table, 0) + n


def _tidy(catalog: Catalog, removed: dict[str, int]) -> None:
    """After damaged rows went: drop whatever now points at nothing, so the catalog is whole again."""
    sets = [table_set(n) for n in present_sets(catalog.conn)]
    own_labels = [sp for ts in sets for sp in ts.spaces]  # spaces whose labels are not content ids
    not_own = "space NOT IN ({})".format(",".join("?" * len(own_labels))) if own_labels else "1"
    rules: list[tuple[str, str, tuple]] = [
        (table, where.format(own=not_own), tuple(own_labels) if "{own}" in where else ())
        for table, where in cat.CORE_ORPHANS]
    rules += [(table, where, ()) for ts in sets for table, where in ts.orphans]
    for table, where, params in rules:
        _count(removed, table, catalog.conn.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount)
    for ts in sets:
        for statement in ts.mend:
            catalog.conn.execute(statement)


def _mend_counters(conn: sqlite3.Connection) -> None:
    """AUTOINCREMENT counters never below the highest id in use (ids of deleted faces are never reused)."""
    conn.execute("DELETE FROM sqlite_sequence WHERE name NOT IN (SELECT name FROM sqlite_master WHERE type='table')")
    for (name,) in conn.execute("SELECT name FROM sqlite_sequence").fetchall():
        conn.execute(f'UPDATE sqlite_sequence SET seq=MAX(COALESCE((SELECT MAX(rowid) FROM "{name}"), 0), '
                     "CASE WHEN typeof(seq)='integer' THEN seq ELSE 0 END) WHERE name=?", (name,))


def _salvage(catalog: Catalog) -> str:
    """Copy every readable, checksum-sound row into a new catalog file and put it in place of the damaged one."""
    path = catalog.path
    fresh = path.with_name(path.name + ".salvage")
    for f in (fresh, fresh.with_name(fresh.name + "-journal")):
        f.unlink(missing_ok=True)
    src = catalog.conn
    try:
        sets = present_sets(src)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the catalog's schema cannot be read ({exc})") from None
    dst = sqlite3.connect(fresh, isolation_level=None)
    cat.register_checksums(dst)
    dst.execute("BEGIN")
    cat.create_schema(dst, cat.full_ddl(sets))
    for table in cat.user_tables(dst):
        _copy_table(src, dst, table, cat.data_columns(dst, table))
    try:
        counters = src.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    except sqlite3.DatabaseError:
        counters = []
    for name, seq in counters:
        if isinstance(seq, int):
            dst.execute("UPDATE sqlite_sequence SET seq=MAX(seq, ?) WHERE name=?", (seq, name))
    dst.execute("COMMIT")
    dst.close()
    src.close()
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, kept)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, kept.with_name(kept.name + suffix))
    os.replace(fresh, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    catalog.connect()
    return str(kept)


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str, columns: list[str]) -> None:
    """Copy rows by rowid range; a range SQLite cannot read is split in two until single unreadable rows remain."""
    names = ", ".join(columns)
    select = f"SELECT rowid, {names}, {cat.CRC} IS {cat.crc_call(columns)} FROM {table} WHERE rowid BETWEEN ? AND ?"
    insert = f"INSERT INTO {table}(rowid, {names}) VALUES({', '.join('?' * (len(columns) + 1))})"
    try:
        src.execute(select + " AND 0", (0, 0)).fetchall()  # the table and its columns are there at all
    except sqlite3.DatabaseError:
        return
    try:
        top = int(src.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0] or 0)
    except sqlite3.DatabaseError:
        top = 1 << 22
    budget = SALVAGE_FAILURE_BUDGET
    ranges = [(1, top)]
    while ranges and budget > 0:
        lo, hi = ranges.pop()
        try:
            rows = src.execute(select, (lo, hi)).fetchall()
        except sqlite3.DatabaseError:
            budget -= 1
            if lo < hi:
                mid = (lo + hi) // 2
                ranges += [(mid + 1, hi), (lo, mid)]
            continue
        dst.executemany(insert, [r[:-1] for r in rows if r[-1]])
