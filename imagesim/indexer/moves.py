"""Move files out of the gallery (the extra copies of a duplicate group) and back, with the catalog following.

Never deletes: each file is renamed into the target folder (a name taken there gets a numbered suffix), the
catalog's row moves with it at once (kept when the folder is inside an indexed root, dropped otherwise), and an
undo list (JSON) is written into the folder before the first move, so `undo_moves` can put everything back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImagesimError, first_line
from ..store import Store

UNDO_PREFIX = "imagesim-undo-"


@dataclass
class MoveReport:
    moved: list[tuple[str, str]] = field(default_factory=list)  # (from, to)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line reason)
    undo_file: str | None = None

    def to_json(self) -> dict:
        return {"moved": [{"from": a, "to": b} for a, b in self.moved],
                "failed": [{"path": p, "error": e} for p, e in self.failed], "undo": self.undo_file}


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 1
    while target.exists():
        target = folder / f"{stem}-{n}{suffix}"
        n += 1
    return target


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _move_one(store: Store, src: str, dst: str, roots: list[str], content_id: int | None) -> None:
    """Rename src to dst, then bring the catalog's file row along (one transaction)."""
    catalog = store.catalog
    row = catalog.file(src)
    shutil.move(src, dst)
    with catalog.transaction():
        catalog.delete_files([src])
        cid = row.content_id if row is not None else content_id
        if _under(dst, roots) and cid is not None:
            st = os.stat(dst)
            catalog.put_file(dst, st.st_size, st.st_mtime_ns, cid)


def move_files(store: Store, paths: list[str], folder: str | os.PathLike[str]) -> MoveReport:
    """Move `paths` into `folder` (made if needed), recording each move in an undo list there first."""
    target = Path(folder).resolve()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImagesimError(f"cannot make {target}: {first_line(exc)}") from exc
    report = MoveReport()
    undo = target / f"{UNDO_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    entries: list[dict] = []
    with store.writer():
        roots = store.catalog.roots()
        for path in paths:
            src = os.path.realpath(path)
            if not os.path.isfile(src):
                report.failed.append((path, "not a file (already moved?)"))
                continue
            dst = str(_free_name(target, os.path.basename(src)))
            row = store.catalog.file(src)
            entries.append({"from": src, "to": dst, "content_id": row.content_id if row else None})
            undo.write_text(json.dumps({"moves": entries}, indent=1))  # the undo list is written before the move
            try:
                _move_one(store, src, dst, roots, None)
            except OSError as exc:
                entries.pop()
                undo.write_text(json.dumps({"moves": entries}, indent=1))
                report.failed.append((path, first_line(exc)))
                continue
            report.moved.append((src, dst))
    if entries:
        report.undo_file = str(undo)
    elif undo.exists():
        undo.unlink()
    return report


def undo_moves(store: Store, undo_file: str | os.PathLike[str]) -> MoveReport:
    """Put back every file an undo list moved (newest first); the catalog follows."""
    try:
        moves = json.loads(Path(undo_file).read_text())["moves"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImagesimError(f"{undo_file} is not an imagesim undo list: {first_line(exc)}") from exc
    report = MoveReport()
    with store.writer():
        roots = store.catalog.roots()
        for entry in reversed(moves):
            src, dst = entry["to"], entry["from"]
            if not os.path.isfile(src):
                report.failed.append((src, "not there any more"))
                continue
            if os.path.exists(dst):
                report.failed.append((dst, "a file with this name is back in its place: left as it is"))
                continue
            try:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                _move_one(store, src, dst, roots, entry.get("content_id"))
            except OSError as exc:
                report.failed.append((src, first_line(exc)))
                continue
            report.moved.append((src, dst))
    return report
