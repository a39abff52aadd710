"""The `imagesim faces` command and the face flags of `imagesim index` (dlib loads inside the command)."""

from __future__ import annotations

import argparse
import json

from .filters import add_filter_flags, filters_from
from .options import add_db, positive_int


def add_index_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("faces (opt-in, remembered for the database)")
    g.add_argument("--faces", dest="faces", action="store_true", default=None,
                   help="also find faces and group them into people (later runs keep it on)")
    g.add_argument("--no-faces", dest="faces", action="store_false",
                   help="stop indexing faces and delete every face, person and name from the database")
    g.add_argument("--face-detector", choices=["hog", "cnn"],
                   help="hog (default, fast) or cnn (dlib's CNN: finds turned faces HOG misses; seconds per photo "
                        "on a CPU)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faces", help="find the people of IMAGE elsewhere in the gallery")
    p.add_argument("image", help="a photo (in the gallery or not)")
    add_db(p)
    p.add_argument("-k", type=positive_int, default=10, help="matches per face (default: 10)")
    p.add_argument("--json", action="store_true",
                   help='print {"faces": [{"box", "quality", "note", "people": [{"person", "name", "label", "photos", '
                        '"distance", "faces", "same_person", "confidence", "quality", "low_band", "note"}], '
                        '"matches": [{"path", "box", "distance", "same_person", "confidence", "quality", "low_band", '
                        '"note"}]}]}; quality 0..1 (null: not measured), low_band: the half-width of the "low" '
                        'band around 0.6 for that pair (wider for poor faces)')
    add_filter_flags(p)


def cmd_faces(args: argparse.Namespace) -> int:
    from ..search import Gallery

    with Gallery.open(args.db) as gallery:
        results = gallery.faces(args.image, args.k, filters=filters_from(args))
    if args.json:
        print(json.dumps({"faces": [r.to_json() for r in results]}))
        return 0
    for n, result in enumerate(results, 1):
        print(f"face {n} at {list(result.box)}:" + (f" {result.note} (quality {result.quality:.2f}; verdicts "
                                                    "near 0.6 are low confidence over a wider band)"
                                                    if result.note and result.quality is not None else ""))
        if not result.matches:
            print("  no faces in the gallery yet")
        # who it is, judged on several of their faces, before the single faces (and who it may be: the low band)
        for p in (p for p in result.people if p.same_person or p.confidence == "low"):
            verdict = "is" if p.same_person else "is not"
            print(f"  {p.distance:.3f}  {verdict} {p.label} ({p.photos} photo{'s' * (p.photos != 1)}; "
                  f"{p.confidence} confidence, over {p.faces} of their faces)")
        for m in result.matches:
            verdict = "same person" if m.same_person else "someone else"
            poor = "  (low quality face)" if m.note and not result.note else ""  # the gallery face is the poor one
            print(f"  {m.distance:.3f}  {verdict:12s} ({m.confidence:6s})  {m.path}  {list(m.box)}{poor}")
    return 0
