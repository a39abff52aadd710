"""The `imagesim people` command: list, show, name, merge, split, move and forget the people found."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ..errors import ImagesimError
from .options import add_db

if TYPE_CHECKING:
    from ..faces.people import People


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("people", help="the people found in the gallery: list, show, name, merge, split, move, forget, "
                       "recluster")
    add_db(p)
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = ps.add_parser("list", help="everyone, most photos first")
    q.add_argument("--json", action="store_true")
    q = ps.add_parser("show", help="the faces (numbers, photos, boxes) of a person")
    q.add_argument("person", help="name or number")
    q.add_argument("--json", action="store_true")
    q = ps.add_parser("name", help="name a person (this also confirms their faces)")
    q.add_argument("person", help="name or number")
    q.add_argument("name")
    q = ps.add_parser("merge", help="OTHER people are PERSON too")
    q.add_argument("person", help="name or number")
    q.add_argument("others", nargs="+", metavar="OTHER")
    q = ps.add_parser("split", help="these faces of PERSON are someone else: make them a new person")
    q.add_argument("person", help="name or number")
    q.add_argument("face_ids", nargs="+", type=int, metavar="FACE")
    q = ps.add_parser("move", help="put faces in another person (--to), or take them out (--not: not this person)")
    q.add_argument("face_ids", nargs="+", type=int, metavar="FACE")
    how = q.add_mutually_exclusive_group(required=True)
    how.add_argument("--to", metavar="PERSON", help="name or number of the right person")
    how.add_argument("--not", dest="not_", action="store_true", help="the face is not its current person")
    q = ps.add_parser("forget", help="delete a person's faces and name from the database for good")
    q.add_argument("person", nargs="?", help="name or number")
    q.add_argument("--all-faces", action="store_true", help="delete every face and person and turn faces off")
    q = ps.add_parser("recluster", help="group every face into people anew (corrections kept); indexing only "
                      "updates people with the new faces")
    q.add_argument("--json", action="store_true")
    for action in ps.choices.values():  # `people list --db DB` works as well as `people --db DB list`
        action.add_argument("--db", default=argparse.SUPPRESS, help="database folder (as for `people`)")


def cmd_people(args: argparse.Namespace) -> int:
    from ..faces.people import People
    from ..store import Store

    store = Store.open(args.db)
    try:
        people = People(store)
        if args.action in ("list", "show"):
            return _show(people, args)
        with store.writer():
            if args.action == "name":
                p = people.rename(args.person, args.name)
                print(f"imagesim: person {p.id} is now {p.name} ({p.face_count} faces)")
            elif args.action == "merge":
                p = people.merge(args.person, args.others)
                print(f"imagesim: merged into {p.label} ({p.face_count} faces)")
            elif args.action == "split":
                p = people.split(args.person, args.face_ids)
                print(f"imagesim: face(s) {', '.join(map(str, args.face_ids))} now make up {p.label}")
            elif args.action == "move":
                moved = people.move(args.face_ids, None if args.not_ else args.to)
                print(f"imagesim: moved to {moved.label}" if moved
                      else "imagesim: taken out; they will not go back there")
            elif args.action == "recluster":
                done = people.recluster()
                if args.json:
                    print(json.dumps({"people": done.people, "faces": done.faces, "new_people": done.new_people}))
                else:
                    print(f"imagesim: {done.faces} faces grouped into {done.people} people "
                          f"({people.unassigned()} belong to no one)")
            elif args.action == "forget":
                if bool(args.person) == bool(args.all_faces):
                    raise ImagesimError("give a person to forget, or --all-faces")
                n = people.forget(None if args.all_faces else args.person)
                tail = "; faces are now off for this database (`index --faces` turns them on)" if args.all_faces else ""
                print(f"imagesim: deleted {n} faces{tail}")
                if not store.catalog.checkpoint():
                    print("imagesim: note: another process has the database open; the deleted bytes leave its "
                          "write-ahead log when that process closes it")
    finally:
        store.close()
    return 0


def _show(people: People, args: argparse.Namespace) -> int:
    if args.action == "list":
        everyone = people.list()
        if args.json:
            print(json.dumps({"people": [p.to_json() for p in everyone], "unassigned_faces": people.unassigned()}))
            return 0
        for p in everyone:
            print(f"{p.id:5d}  {p.label:30s} {p.face_count:5d} faces")
        print(f"{people.unassigned()} faces belong to no one yet")
        return 0
    person = people.person(args.person)
    faces = people.faces(person.id)
    if args.json:
        print(json.dumps({"person": person.to_json(), "faces": [f.to_json() for f in faces]}))
        return 0
    print(f"{person.label} (person {person.id}), {person.face_count} faces:")
    for f in faces:
        print(f"  face {f.face_id:6d}  {list(f.box)}  {', '.join(f.paths) or '(photo gone)'}")
    return 0
