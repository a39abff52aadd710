"""Options several commands share: the database folder and result counts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def default_db() -> str:
    return os.environ.get("IMAGESIM_DB", str(Path("~/.imagesim").expanduser()))


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=default_db(), help="database folder (default: $IMAGESIM_DB or ~/.imagesim)")


def positive_int(text: str) -> int:
    """argparse type for counts like -k: a whole number of at least 1 (0 or less is a usage error, not "nothing")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
