"""The `imagesim` command. Heavy modules (torch, open_clip, hnswlib) load inside the commands, so `--help` is fast."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import (
    BATCH_SIZE,
    EXACT_SEARCH_MAX,
    Settings,
    default_threads,
)
from ..errors import ImagesimError, first_line
from . import faces, model, people
from .filters import add_filter_flags, add_paging_flags, filters_from, terms_from
from .options import add_db, add_model, model_spec, positive_int

if TYPE_CHECKING:
    from ..search.filters import Filters


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagesim", description="Search your photo gallery by photo or text.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="add new, changed, moved and deleted photos to the database")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="folders (or files) of photos")
    add_db(p)
    add_model(p)
    p.add_argument("--rebuild", action="store_true", help="re-embed every photo (needed after changing the model)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"photos encoded together (default: {BATCH_SIZE})")
    p.add_argument("--json", action="store_true", help="print one JSON object with the counts and failures")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="decode and encode on a Ray cluster: no ADDRESS starts a local Ray for this run, 'auto' joins "
                        "the cluster in $RAY_ADDRESS; every node must see the photos at the same paths")
    p.add_argument("--ray-actors", type=int, metavar="N",
                   help="model actors on the cluster (default: the cluster's CPUs minus one, over --ray-threads)")
    p.add_argument("--ray-threads", type=int, default=1, metavar="N",
                   help="CPUs each actor reserves and runs the model on (default: 1)")
    faces.add_index_flags(p)

    p = sub.add_parser("search", help="find photos like IMAGE, or matching --text")
    p.add_argument("image", nargs="?", help="a photo (in the gallery or not); N:PHOTO weighs it N")
    p.add_argument("--text", action="append", default=[],
                   help="describe what the photo shows (with IMAGE: add it to the photo); N:TEXT weighs it N, "
                        "e.g. '2:golden retriever'; repeatable")
    p.add_argument("--minus", action="append", default=[], metavar="IMAGE", help="away from this photo; repeatable")
    p.add_argument("--minus-text", action="append", default=[], metavar="TEXT",
                   help="away from this description, e.g. --minus-text people; repeatable")
    add_db(p)
    add_model(p)
    p.add_argument("-k", type=positive_int, default=10, help="how many results (default: 10)")
    p.add_argument("--mode", choices=["content", "style", "blend"], default="content",
                   help="content: shows the same thing (default); style: looks the same; blend: both")
    p.add_argument("--style-weight", type=float, default=0.5, metavar="W",
                   help="blend only: 0 = content only, 1 = style only (default: 0.5)")
    p.add_argument("--json", action="store_true",
                   help='print {"results": [{"path", "score", ...}], "sort", "offset"[, "filters"]}')
    add_paging_flags(p)
    add_filter_flags(p)

    p = sub.add_parser("duplicates", help="groups of copies and of similar shots, or the copies of one IMAGE")
    p.add_argument("image", nargs="?", help="a photo: is it (or an edited copy) already in the gallery?")
    add_db(p)
    add_filter_flags(p)
    p.add_argument("--kind", choices=["copies", "similar"],
                   help="copies: the same shot edited (crop, resize, borders, filters...); similar: other shots of "
                        "the same scene (bursts). Default: both")
    p.add_argument("--json", action="store_true",
                   help='print {"groups": [{"kind", "score", "members": [{"path", "keep", "score", "explanation"}]}]}'
                        ' (or {"results": [...]} for IMAGE)')
    p.add_argument("--move-extras-to", metavar="DIR",
                   help="move every copy but the suggested keeper of each copies group (among the photos the "
                        "filters let through) into DIR (never deletes; writes an undo list there)")
    p.add_argument("--undo", metavar="UNDO_LIST", help="put back the files an earlier --move-extras-to moved")

    p = sub.add_parser("status", help="what the database holds")
    add_db(p)
    p.add_argument("--failed", action="store_true", help="list the files that could not be read")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("serve", help="open the web page: upload a photo, browse the matches")
    add_db(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--auth", metavar="USER:PASS", default=os.environ.get("IMAGESIM_AUTH"),
                   help="require this login (default: $IMAGESIM_AUTH; none)")
    p.add_argument("--max-upload", default="25mb", metavar="SIZE", help="largest upload accepted (default: 25mb)")
    p.add_argument("--threads", type=int, default=default_threads(), help="CPU threads (default: all cores)")

    p = sub.add_parser("repair", help="check the database and rebuild its search indexes from the stored vectors")
    add_db(p)
    p = sub.add_parser("verify", help="check every row of the database and its saved graphs now (opens check only "
                                      "what changed since the last verification; queries check each row they read)")
    add_db(p)
    faces.add_parser(sub)
    people.add_parser(sub)
    model.add_parser(sub)
    return parser


def cmd_index(args: argparse.Namespace) -> int:
    from ..indexer import run_index

    settings = Settings.for_db(args.db, model=model_spec(args), threads=args.threads, batch_size=args.batch_size,
                               precision=args.precision, torch_threads=args.threads)
    ray = None
    if args.ray is not None:
        from ..indexer.cluster import RayOptions

        ray = RayOptions(address=None if args.ray == "local" else args.ray, actors=args.ray_actors,
                         threads=args.ray_threads)
    elif args.ray_actors is not None or args.ray_threads != 1:
        raise ImagesimError("--ray-actors and --ray-threads need --ray")
    report = run_index(settings, args.dirs, rebuild=args.rebuild, progress=None if not args.json else False,
                       faces=args.faces, face_detector=args.face_detector, ray=ray)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(f"imagesim: {report.summary()}")
        for path, error in report.failed:
            print(f"  failed: {path}: {error}")
    if report.waiting_for_model:  # one line, also beside --json: a person reads stderr
        print(f"imagesim: {report.waiting_for_model}", file=sys.stderr)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..search import Gallery
    from ..search.compose import Text

    if not args.image and not args.text:
        raise ImagesimError("give either a photo or --text (or both, to combine them)")
    filters = filters_from(args)
    terms = terms_from(args.image, args.text, args.minus, args.minus_text)
    page = {"filters": filters, "offset": args.offset, "sort": args.sort}
    with Gallery.open(args.db, model=model_spec(args), threads=args.threads, precision=args.precision,
                      torch_threads=args.threads) as gallery:
        if (args.text or args.minus or args.minus_text) and args.mode != "content":
            raise ImagesimError("--text, --minus and --minus-text search by content only; drop --mode")
        term = terms[0][0]
        if len(terms) > 1 or terms[0][1] != 1.0:
            results = gallery.compose(terms, args.k, **page)
        elif isinstance(term, Text):
            results = gallery.search_text(term.text, args.k, **page)
        else:
            results = gallery.search(term, args.k, mode=args.mode, style_weight=args.style_weight, **page)
    if args.json:
        print(json.dumps({"results": [m.to_json() for m in results], "sort": args.sort, "offset": args.offset,
                          **({"filters": filters.to_json()} if filters else {})}))
    elif not results:
        print("no photo matches these filters" if filters else "no photos indexed yet" if not args.offset
              else "no more results")
    else:
        for m in results:
            taken = f"{m.taken or 'undated':19s}  " if args.sort == "date" else ""
            terms_shown = "; ".join(f"{t} {s:.2f}" for t, s in m.terms) if m.terms and len(m.terms) > 1 else ""
            why = "; ".join(x for x in (m.why, terms_shown) if x)
            print(f"{m.score:.3f}  {taken}{m.path}" + (f"  ({why})" if why else ""))
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from ..search import Gallery

    filters = filters_from(args)
    if args.undo or args.move_extras_to:
        return _move_duplicates(args, filters)
    with Gallery.open(args.db) as gallery:
        if args.image:
            results = gallery.find_duplicates(args.image, filters=filters)
            if args.json:
                print(json.dumps({"results": [m.to_json() for m in results]}))
            elif not results:
                print("no copy or similar shot in the gallery")
            for m in results if not args.json else []:
                print(f"{m.score:.3f}  {m.path}  ({m.why})")
            return 0
        groups = gallery.duplicate_groups(args.kind, filters=filters)
    if args.json:
        print(json.dumps({"groups": [g.to_json() for g in groups]}))
    elif not groups:
        print("no duplicates found")
    else:
        for i, group in enumerate(groups, 1):
            label = "copies" if group.kind == "copies" else "similar shots"
            print(f"group {i}: {len(group.members)} {label} (score {group.score:.2f})")
            for member in group.members:
                print(f"  {'KEEP ' if member.keep else '     '}{member.path}  ({member.explanation})")
    return 0


def _move_duplicates(args: argparse.Namespace, filters: Filters | None) -> int:
    """--move-extras-to DIR (the non-keepers of every copies group) or --undo LIST; the catalog follows."""
    from ..indexer.moves import move_files, undo_moves
    from ..search import Gallery

    with Gallery.open(args.db) as gallery:
        if args.undo:
            report = undo_moves(gallery.store, args.undo)
        else:
            extras = [p for g in gallery.duplicate_groups("copies", filters=filters) for p in g.extras]
            report = move_files(gallery.store, extras, args.move_extras_to)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        for src, dst in report.moved:
            print(f"moved {src} -> {dst}")
        for path, error in report.failed:
            print(f"not moved: {path}: {error}", file=sys.stderr)
        if report.undo_file:
            print(f"undo with: imagesim duplicates --db {args.db} --undo {report.undo_file}")
    return 0 if not report.failed else 1


def cmd_status(args: argparse.Namespace) -> int:
    from ..search import Gallery

    with Gallery.open(args.db) as gallery:
        info = gallery.status()
        failed = gallery.store.catalog.failed_files() if args.failed else []
    if args.json:
        print(json.dumps({**info, **({"failed_files": [{"path": p, "error": e} for p, e in failed]} if args.failed
                                     else {})}))
        return 0
    print(f"database   {info['db']}")
    print(f"photos     {info['photos']} ({info['distinct_photos']} distinct), {info['failed']} unreadable")
    waiting = "waiting for its weights: content and text search are off (see `imagesim model --help`)"
    print(f"model      {info['model'] or (waiting if info['photos'] else '-')}")
    print(f"spaces     {', '.join(info['spaces']) or '-'}")
    print(f"folders    {', '.join(info['roots']) or '-'}")
    faces = f"on, {info['faces']} found" if info.get("faces_enabled") else "off (index with --faces to turn them on)"
    print(f"faces      {faces}")
    for path, error in failed:
        print(f"  failed: {path}: {error}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..store import Store
    from ..store.schema import damaged

    with contextlib.closing(Store.open(args.db)) as store:
        with store.lock:
            problems = store.catalog.verify(full=True)
            if problems:
                raise damaged(store.catalog.path, sqlite3.DatabaseError(problems[0]))
            graphs = store.verify_graphs()
    print(f"imagesim: {store.folder} is sound: every catalog row checked, graphs {', '.join(graphs) or '-'} match "
          "their records")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    from ..store import CATALOG_NAME, Store
    from ..store.repair import open_for_repair, repair

    folder = Path(args.db).expanduser().resolve()
    if not (folder / CATALOG_NAME).is_file():
        raise ImagesimError(f"no imagesim database at {folder}")
    catalog = open_for_repair(folder / CATALOG_NAME)
    store = Store(folder, catalog, threads=default_threads(), exact_max=EXACT_SEARCH_MAX)
    try:
        with store.writer():
            report = repair(catalog)
            spaces = store.rebuild()
    except sqlite3.DatabaseError as exc:  # met while rebuilding the graphs: nothing more repair can do
        raise ImagesimError(f"the catalog is damaged beyond repair ({str(exc)[:120]}): move {folder} away and index "
                            "again") from None
    finally:
        store.close()
    if report.damaged_copy:
        print(f"imagesim: copied every readable row into a new catalog (the damaged file is kept as "
              f"{report.damaged_copy}); run `imagesim index` on your folders to read again any photo it lost")
    if report.removed:
        rows = ", ".join(f"{table} {n}" for table, n in sorted(report.removed.items()))
        print(f"imagesim: removed damaged rows ({rows}); run `imagesim index` on your folders to read those photos "
              "again")
    print(f"imagesim: rebuilt {', '.join(spaces) or 'no'} index(es) from the stored vectors")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not (sep and user and password):
            raise ImagesimError("--auth takes USER:PASS, e.g. --auth alice:correct-horse")
        auth = (user, password)
    from imagesim_ui.serve import serve  # gradio loads only for this command

    serve(args.db, host=args.host, port=args.port, auth=auth, max_file_size=args.max_upload, threads=args.threads)
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "status": cmd_status, "repair": cmd_repair, "verify": cmd_verify,
            "serve": cmd_serve,
            "duplicates": cmd_duplicates, "faces": faces.cmd_faces, "people": people.cmd_people,
            "model": model.cmd_model}


def main(argv: Sequence[str] | None = None) -> int:
    # A file name that is not UTF-8 goes out as the bytes it is (as `ls` prints it), so `imagesim ... | xargs` works;
    # --json escapes it losslessly (\udcXX) instead.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ImagesimError as exc:
        print(f"imagesim: error: {exc}", file=sys.stderr)
        return 1
    except (sqlite3.DatabaseError, OSError) as exc:
        if not _disk_full(exc):
            if isinstance(exc, OSError):
                raise
            _damaged(args, exc)
            return 1
        db = getattr(args, "db", "the database folder")
        print(f"imagesim: error: the disk holding {db} is full ({first_line(exc)}): nothing is damaged"
              f"{_indexed_so_far(db)}; free some space and run the command again", file=sys.stderr)
        return 1
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # damaged rows read late
        _damaged(args, exc)
        return 1
    except BrokenPipeError:  # `imagesim ... | head`: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("imagesim: interrupted; everything committed so far is kept, run the command again to resume",
              file=sys.stderr)
        return 130


def _damaged(args: argparse.Namespace, exc: BaseException) -> None:
    db = getattr(args, "db", "the database folder")
    print(f"imagesim: error: the catalog in {db} is damaged ({first_line(exc)}): run `imagesim repair --db {db}`; "
          "if that fails, move the folder away and index again", file=sys.stderr)


def _disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL, or a write the file system refused for want of space (or quota)."""
    if isinstance(exc, sqlite3.DatabaseError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _indexed_so_far(db: str) -> str:
    """", N photos are indexed and kept" from the catalog (committed batches), when it can be read."""
    from ..store import Store

    try:
        store = Store.open(db)
    except Exception:  # noqa: BLE001 - the count is a courtesy; the error line stands without it
        return ""
    try:
        return f"; {store.catalog.counts()['files']} photos are indexed and kept"
    finally:
        store.close()
