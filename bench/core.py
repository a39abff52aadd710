"""Core figures: photos/s indexed (tiny config and ViT-B-32 with random weights) and query latency.

`python -m bench core [--photos N] [--quick]`. Reads Flowers-17 from the shared datasets (skips when absent).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.report import median, write_section
from imagesim.config import ModelSpec, Settings
from imagesim.encoders import create_encoder
from imagesim.indexer import run_index
from imagesim.search import Gallery
from tests.support.photos import datasets_dir

TINY = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny_clip.json"


def _photos(n: int) -> list[Path]:
    root = datasets_dir() / "flowers17"
    return sorted(root.glob("*/*.jpg"))[:: max(1, 1360 // n)][:n]


def _index_rate(spec: ModelSpec, photos: list[Path], threads: int) -> tuple[float, Path, object]:
    tmp = Path(tempfile.mkdtemp(prefix="imagesim-bench-"))
    pics = tmp / "pics"
    pics.mkdir()
    for p in photos:
        shutil.copy(p, pics / f"{p.parent.name}_{p.name}")
    encoder = create_encoder("clip", spec=spec, torch_threads=threads)
    t = time.perf_counter()
    report = run_index(Settings.for_db(tmp / "db", model=spec, threads=threads), [pics], encoders=[encoder],
                       progress=False)
    return report.added / (time.perf_counter() - t), tmp, encoder


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench core")
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not (datasets_dir() / "flowers17").is_dir():
        print("bench core: flowers17 not found; skipped")
        return 0
    n = 40 if args.quick else args.photos
    photos = _photos(n)
    rows, data = [], {}
    for label, spec in (("tiny config (tests/data/tiny_clip.json)", ModelSpec(str(TINY), None)),
                        ("ViT-B-32, random weights", ModelSpec("ViT-B-32", None))):
        rate, tmp, encoder = _index_rate(spec, photos, args.threads)
        with Gallery.open(tmp / "db", encoder=encoder) as g:
            stored, fresh = [], []
            g.search(photos[0], k=10)  # warm up: graph load and the model's first call
            g.search(photos[-1], k=10)
            for p in photos[:20]:
                t = time.perf_counter()
                g.search(tmp / "pics" / f"{p.parent.name}_{p.name}", k=10)
                stored.append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                g.search(p, k=10)  # outside the gallery folder: decoded and encoded
                fresh.append((time.perf_counter() - t) * 1e3)
        shutil.rmtree(tmp, ignore_errors=True)
        data[label] = {"photos": n, "photos_per_s": rate, "query_stored_ms_p50": median(stored),
                       "query_new_photo_ms_p50": median(fresh)}
        rows.append(f"| {label} | {n} | {rate:.1f} | {median(stored):.2f} | {median(fresh):.1f} |")
        print(rows[-1], flush=True)
    md = "\n".join([
        "## Core: indexing and query (`python -m bench core`)",
        "",
        f"Flowers-17 JPEGs as they are (about 500 px), {args.threads} threads, the content space only, "
        "`run_index` end to end (scan, hash, decode, encode, commit, save; `imagesim index` adds the style and "
        "duplicate spaces, see the speed section). Query: k=10, median of 20; *stored* = a gallery photo (its vector "
        "is reused), *new photo* = decoded and encoded first.",
        "",
        "| model | photos | photos/s | query, stored photo (ms) | query, new photo (ms) |",
        "|---|---|---|---|---|",
        *rows,
    ])
    write_section("core", md, {"results": data, "threads": args.threads})
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
