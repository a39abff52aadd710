"""Looking into a catalog from outside, the way a crash test must: read-only, while another process may write."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def committed_paths(db: Path) -> set[str]:
    """The paths a database folder has committed as indexed (empty before its catalog exists or while it is locked)."""
    path = db / "catalog.sqlite"
    if not path.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return {r[0] for r in conn.execute("SELECT path FROM files WHERE status='ok'")}
    except sqlite3.OperationalError:
        return set()
