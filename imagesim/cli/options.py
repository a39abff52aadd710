"""Options several commands share: the database folder, result counts and the content model."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import DEFAULT_MODEL, DEFAULT_PRETRAINED, PRECISIONS, ModelSpec, default_threads
from ..errors import ImagesimError


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


def add_model_source(g: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """--model, --pretrained, --weights: which content model, and where its weights come from."""
    g.add_argument("--model", help="open_clip model name, or path to an open_clip model config JSON")
    g.add_argument("--pretrained", metavar="TAG", help="open_clip pretrained tag (downloaded once into the hub cache)")
    g.add_argument("--weights", metavar="FILE",
                   help="local checkpoint (a state dict saved with torch.save, e.g. by `imagesim model save`)")


def add_model(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (default: the one the database was built with, else "
                             f"{DEFAULT_MODEL} / {DEFAULT_PRETRAINED})")
    add_model_source(g)
    g.add_argument("--threads", type=int, default=default_threads(), help="CPU threads (default: all cores)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="image model arithmetic: bf16 is ~3x faster where the CPU has AVX512-BF16/AMX and gives the "
                        "same results to 0.001; auto picks it there (default: auto)")


def model_spec(args: argparse.Namespace) -> ModelSpec | None:
    """The model asked for on the command line, or None to use the database's own."""
    if not (args.model or args.pretrained or args.weights):
        return None
    name = args.model or DEFAULT_MODEL
    is_config = name.endswith(".json") or os.path.isfile(name)
    if is_config and not args.weights:
        raise ImagesimError(f"model config {name} has no weights: pass --weights FILE")
    pretrained = args.pretrained
    if pretrained is None and not args.weights and not is_config:
        if name != DEFAULT_MODEL:
            raise ImagesimError(f"say which weights to use for {name}: --pretrained TAG or --weights FILE")
        pretrained = DEFAULT_PRETRAINED
    if is_config:
        name = str(Path(name).expanduser().resolve())
    weights = str(Path(args.weights).expanduser().resolve()) if args.weights else None
    return ModelSpec(name=name, pretrained=pretrained, weights=weights)
