"""The filter, composition and paging flags of `search`, `duplicates` and `faces` (the same strings `Filters.parse`
takes from the page)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..search.compose import Term
    from ..search.filters import Filters


def add_filter_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (every one given must hold; dates are local time where the photo was taken)")
    g.add_argument("--after", metavar="DATE", help="taken on or after DATE (YYYY, YYYY-MM, YYYY-MM-DD [HH:MM])")
    g.add_argument("--before", metavar="DATE", help="taken on or before DATE (the whole of it: --before 2019 "
                                                    "includes 31 December 2019)")
    g.add_argument("--in", dest="folders", action="append", default=[], metavar="FOLDER",
                   help="in FOLDER or below it; a glob matches the whole path (--in '*/Trips/*'); repeat for any of "
                        "several")
    g.add_argument("--camera", metavar="TEXT", help="camera make or model containing TEXT (any case)")
    g.add_argument("--near", metavar="LAT,LON[,KM]", help="taken within KM (default 10) of a GPS position")
    g.add_argument("--place", metavar="NAME", help="taken in a city, region or country of this name (offline "
                                                   "GeoNames data)")
    g.add_argument("--person", dest="people", action="append", default=[], metavar="NAME",
                   help="showing this person (see `imagesim people`); repeat: all of them in the photo")
    g.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                   help="file type: jpeg, heic, png, webp, tiff, gif, bmp, avif; repeat for any of several")


def add_paging_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sort", choices=["score", "date"], default="score",
                   help="score: best match first (default); date: the 200 best matches, newest first")
    p.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N results (next pages)")


def filters_from(args: argparse.Namespace) -> Filters | None:
    """The filters given on the command line, or None when there are none."""
    from ..search.filters import Filters

    filters = Filters.parse(after=args.after, before=args.before, folders=args.folders, camera=args.camera,
                            near=args.near, place=args.place, people=args.people, types=args.types)
    return None if filters.empty else filters


def terms_from(image: str | None, texts: list[str], minus: list[str],
               minus_texts: list[str]) -> list[tuple[Term, float]]:
    """(term, weight) pairs from the photo, --text, --minus and --minus-text values ("2:golden retriever" weighs 2)."""
    from ..search.compose import Text, parse_weighted

    def photo(value: str) -> tuple[str, float]:
        path, weight = parse_weighted(value)
        if os.path.exists(value) or not os.path.exists(path):  # a file named like "2:beach.jpg" is that file
            return value, 1.0  # (a missing photo is reported where it is read, after the database is found)
        return path, weight

    terms: list[tuple[Term, float]] = []
    if image:
        terms.append(photo(image))
    for text in texts:
        body, weight = parse_weighted(text)
        terms.append((Text(body), weight))
    for value in minus:
        path, weight = photo(value)
        terms.append((path, -weight))
    for text in minus_texts:
        body, weight = parse_weighted(text)
        terms.append((Text(body), -weight))
    return terms
