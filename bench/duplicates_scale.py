"""The whole-gallery copies pass at scale, run for real: `python -m bench duplicates-scale [--photos N]`.

A gallery of N photos is written through the store's write path (contents, files, the 21 region codes per photo in
the catalog and the dup graph, saved), then `gallery_groups` (what `imagesim duplicates --json` runs) is timed on
it. The photos: all 1360 flowers17 originals (their own files), edited copies of some of them (written as JPEGs),
and synthetic photos up to N: 1/f-noise colour fields (the power spectrum of natural photos) with a few random
shapes, 320 x 240 JPEGs, each one distinct. The database is cached in the temp dir, keyed by N.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.flowers import flower_photos, thumbnail
from bench.report import write_section
from tests.support.edits import ALL_FAMILIES

CACHE = Path(tempfile.gettempdir()) / "imagesim-dupscale"
COPIES_PER_FAMILY = 20


def synthetic(rng: np.random.Generator, w: int = 320, h: int = 240) -> Image.Image:
    """A distinct photo-like image: 1/f noise in three colour channels, plus two random shapes."""
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.rfftfreq(w), indexing="ij")
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(w, h)) ** rng.uniform(0.9, 1.3)
    chans = []
    for _ in range(3):
        spec = amp * np.exp(2j * np.pi * rng.random(amp.shape))
        c = np.fft.irfft2(spec, s=(h, w))
        chans.append((c - c.mean()) / (c.std() + 1e-9))
    mix = rng.normal(0, 1, (3, 3))
    a = np.tensordot(mix, np.stack(chans), axes=1)
    a = 128 + 40 * a + rng.uniform(-40, 40, (3, 1, 1))
    img = Image.fromarray(np.clip(a.transpose(1, 2, 0), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(2):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(8, 40)
        d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def build(folder: Path, n: int) -> dict:
    """Write the gallery's photos and their catalog rows + graph (skipped when cached)."""
    from imagesim.encoders.dup import DupEncoder
    from imagesim.store import Store

    done = folder / "done"
    files = folder / "photos"
    if done.is_file():
        return {"build_s": float(done.read_text())}
    files.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = Store.open(folder / "db", create=True, threads=2)
    # as the indexer writes: under the writer lock, so the saved graph records the catalog state it holds (without
    # it the graph's sync record stays at 0 and every open re-adds all its vectors: 250 s at 20k photos)
    with store.writer():
        enc = DupEncoder()
        store.ensure_space(enc.space, enc.fingerprint(), enc.describe(), enc.dim // enc.parts)
        index = store.index(enc.space)
        rng = np.random.default_rng(7)
        originals = flower_photos()
        entries: list[tuple[str, Image.Image]] = [(str(p), thumbnail(p, 512)) for p in originals]
        for fam, edit in ALL_FAMILIES.items():
            for src in rng.choice(len(originals), COPIES_PER_FAMILY, replace=False).tolist():
                path = files / f"copy-{fam.replace(' ', '_')}-{src}.jpg"
                edit(entries[src][1], rng)[0].save(path, quality=90)
                entries.append((str(path), Image.open(path).convert("RGB")))
        batch: list[tuple[str, Image.Image]] = []
        cid = 0

        def flush() -> None:
            nonlocal cid
            rows = enc.embed_images([im for _, im in batch])
            labels, vecs = [], []
            with store.catalog.transaction():
                for (path, im), row in zip(batch, rows, strict=True):
                    cid = store.catalog.add_content(f"{path}-sha", *im.size)
                    st = Path(path).stat()
                    store.catalog.put_file(path, st.st_size, st.st_mtime_ns, cid)
                    part_labels = [cid * enc.parts + i for i in range(enc.parts)]
                    store.catalog.put_vectors(enc.space, part_labels, [cid] * enc.parts, row.reshape(enc.parts, -1))
                    labels += part_labels
                    vecs.append(row.reshape(enc.parts, -1))
            index.add(np.asarray(labels), np.concatenate(vecs))
            batch.clear()

        for path, im in entries:
            batch.append((path, im))
            if len(batch) == 256:
                flush()
        for i in range(n - len(entries)):
            path = files / f"synthetic-{i:06d}.jpg"
            if not path.is_file():
                synthetic(rng).save(path, quality=90)
            batch.append((str(path), Image.open(path).convert("RGB")))
            if len(batch) == 256:
                flush()
                if i % 10240 < 256:
                    print(f"  {i + len(entries)} photos written", flush=True)
        if batch:
            flush()
        store.save()
    store.close()
    build_s = time.perf_counter() - t0
    done.write_text(str(build_s))
    return {"build_s": build_s}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench duplicates-scale")
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="5,000 photos")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else args.photos
    if not flower_photos():
        print("flowers17 not found: skipped")
        return 0
    from imagesim.encoders.dup import VERSION
    from imagesim.search.duplicates import queries as duplicates  # where gallery_groups finds its Verifier
    from imagesim.store import Store

    folder = CACHE / f"{n}-dup{VERSION}-writer"  # a gallery cached by an older build is not reused
    load_start = os.getloadavg()[0]
    built = build(folder, n)
    times, counts = [], {}
    made: list = []
    original = duplicates.Verifier

    class Counting(original):  # type: ignore[misc, valid-type]
        """The pass's own verifier, kept so its work counters can be read after the pass."""

        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, **k)  # type: ignore[arg-type]
            made.append(self)

    for _ in range(args.runs):
        store = Store.open(folder / "db", threads=2)
        made.clear()
        duplicates.Verifier = Counting  # type: ignore[misc]
        try:
            t = time.perf_counter()
            groups = duplicates.gallery_groups(store, "copies")
            times.append(time.perf_counter() - t)
        finally:
            duplicates.Verifier = original  # type: ignore[misc]
            store.close()
        v = made[0]
        counts = {"groups": len(groups), "sketched_pairs": v.sketched, "full_checks": v.checked,
                  "featured_photos": len(v.feats), "sketched_photos": len(v.sketches)}
    best = float(np.median(times))
    # one photo against the gallery (`imagesim duplicates IMAGE`'s function), from a store already open and its
    # graph loaded (as the web page holds it): edited copies and distinct synthetic photos, median
    store = Store.open(folder / "db", threads=2)
    queries = sorted((folder / "photos").glob("copy-*.jpg"))[::22][:10] + sorted(
        (folder / "photos").glob("synthetic-*.jpg"))[:10]
    duplicates.find_in_gallery(store, str(queries[0]))  # loads the graph
    query_ms, query_hits = [], 0
    for q in queries:
        t = time.perf_counter()
        query_hits += bool(duplicates.find_in_gallery(store, str(q)))
        query_ms.append(1000 * (time.perf_counter() - t))
    store.close()
    q_med = float(np.median(query_ms))
    md = f"""## Copies pass at scale ({n} photos, run for real)

`python -m bench duplicates-scale --photos {n}`: a gallery of {n} photos written through the store (1360 flowers17
originals, {COPIES_PER_FAMILY} edited copies per family, the rest distinct synthetic 320x240 JPEGs: 1/f-noise
colour fields with shapes), then `gallery_groups(store, "copies")`, what `imagesim duplicates --kind copies --json`
runs, timed from an opened store ({args.runs} run(s), median; the graph loads on first use and is included).

Whole-gallery pass: **{best:.0f} s** ({1000 * best / n:.1f} ms per photo, 2 threads; load average
{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {len(os.sched_getaffinity(0))} cores);
{counts['sketched_pairs']} candidate pairs sketch-checked ({counts['sketched_pairs'] / n:.1f} per photo,
{counts['sketched_photos']} photos decoded small and sketched), {counts['full_checks']} verified in full
({counts['featured_photos']} photos given full features); {counts['groups']} copies groups. Building the gallery
(files, region codes, catalog rows, graph): {built['build_s']:.0f} s.

One photo against it (`find_in_gallery`, what `imagesim duplicates IMAGE` runs, on an opened store with its graph
loaded; {len(queries)} queries, half of them edited copies of gallery photos, half gallery photos without copies):
median **{q_med:.0f} ms** (max {max(query_ms):.0f} ms; {query_hits} queries found a copy besides themselves).
"""
    write_section("duplicates-scale", md, {"photos": n, "pass_s": times, "median_s": best, **counts, **built,
                                            "query_ms": query_ms, "query_median_ms": q_med,
                                            "load": [load_start, os.getloadavg()[0]]})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
