"""Filtered search: recall@10 against an exact search over the filtered set, and p50 latency (filter + k-NN), for
filters matching 0.1 %, 1 %, 10 % and 50 % of a 100k gallery; plus what reading metadata adds per photo.

The gallery: 100k clustered 512-d vectors (`speed_knn.clustered`, shaped like CLIP photo embeddings) written through
the store's own write path (contents, files, vectors, photo_info rows, the HNSW graph), with dates spread over 25
years, 20 cameras, 4 file types and 1000 folders. Filters come from families with random parameters (a date window,
a date window and a camera, a set of folders, a date window and a file type), each sized to the target share; a
tuning split chooses the switch point between exact search over the allowed vectors and hnswlib's filtered graph
walk (`FILTER_EXACT_MAX`), a held-out split reports the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.photos import datasets_dir

from .report import median, write_section
from .speed_knn import clustered

DIM = 512
K = 10
SHARES = (0.001, 0.01, 0.1, 0.5)
SWEEP = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5)  # tuning: where does exact stop being the faster exact answer?
CAMERAS = [f"Make{i} Model{i}" for i in range(20)]
TYPES = ("jpeg", "heic", "png", "webp")
FOLDERS = 1000
YEARS = 25
START = time.mktime((2000, 1, 1, 0, 0, 0, 0, 0, -1))


def build(folder: Path, n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Write `n` photos (fake vectors, random metadata) through the store; return (vectors, metadata columns)."""
    from imagesim.metadata import LOCAL_FORMAT, PhotoInfo
    from imagesim.store import Store
    from imagesim.store.photos import PhotoTable

    rng = np.random.default_rng(seed)
    vecs = clustered(n, seed=seed)
    meta = {"when": START + rng.uniform(0, YEARS * 365.25 * 86400, n), "camera": rng.integers(0, len(CAMERAS), n),
            "type": rng.choice(len(TYPES), n, p=[0.7, 0.15, 0.1, 0.05]), "folder": rng.integers(0, FOLDERS, n)}
    store = Store.open(folder, create=True)
    try:
        with store.writer():
            store.ensure_space("content", "bench", {"model": "fake"}, DIM)
            table = PhotoTable(store.catalog)
            for s in range(0, n, 5000):
                with store.catalog.transaction():
                    for i in range(s, min(n, s + 5000)):
                        cid = store.catalog.add_content(f"{i:064x}", 640, 480)
                        store.catalog.put_file(f"{_folder(meta['folder'][i])}/p{i}.jpg", 1, 1, cid)
                        store.catalog.put_vectors("content", [cid], [cid], vecs[i:i + 1])
                        make, model = CAMERAS[meta["camera"][i]].split()
                        when = float(meta["when"][i])
                        table.put(cid, PhotoInfo(taken_utc=when, taken_source="exif",
                                                 taken_local=time.strftime(LOCAL_FORMAT, time.localtime(when)),
                                                 make=make, model=model, width=640, height=480,
                                                 format=TYPES[meta["type"][i]]))
                store.index("content").add(np.arange(s + 1, min(n, s + 5000) + 1), vecs[s:s + 5000])
            store.save()
    finally:
        store.close()
    return vecs, meta


def load_or_build(folder: Path, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`build` into folder/db, or reuse what an earlier run with --keep built there."""
    saved = folder / f"gallery-{n}.npz"
    if saved.is_file() and (folder / "db").is_dir():
        data = np.load(saved)
        return data["vecs"], {k: data[k] for k in ("when", "camera", "type", "folder")}
    vecs, meta = build(folder / "db", n)
    np.savez(saved, vecs=vecs, **meta)
    return vecs, meta


def _folder(leaf: int) -> str:
    """1000 leaf folders in 10 top folders: /gallery/d3/e42."""
    return f"/gallery/d{leaf // 100}/e{leaf % 100:02d}"


def random_filter(rng: np.random.Generator, share: float, meta: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    """A filter from a random family sized to about `share` of the gallery: (Filters.parse kwargs, allowed rows)."""
    family = int(rng.integers(0, 4))
    if family == 1 and share > 0.05:  # one camera of 20 holds 5 % of the photos
        family = 0
    when = meta["when"]
    if family == 2:  # folders as a user names them: a few top folders, a glob, or a few leaf folders
        m = max(1, round(share * FOLDERS))
        if m >= 100:
            tops = rng.choice(10, max(1, round(m / 100)), replace=False)
            return {"folders": [f"/gallery/d{t}" for t in tops]}, np.isin(meta["folder"] // 100, tops)
        if m >= 10:
            groups = rng.choice(100, max(1, round(m / 10)), replace=False)
            return ({"folders": [f"/gallery/d{g // 10}/e{g % 10}?" for g in groups]},
                    np.isin(meta["folder"] // 10, groups))
        chosen = rng.choice(FOLDERS, m, replace=False)
        return {"folders": [_folder(c) for c in chosen]}, np.isin(meta["folder"], chosen)
    if family == 1:  # camera and a date window: the window is widened by the camera's share (1/20)
        cam = int(rng.integers(0, len(CAMERAS)))
        share = min(1.0, share * len(CAMERAS))
        kwargs: dict[str, Any] = {"camera": CAMERAS[cam]}
        extra = meta["camera"] == cam
    elif family == 3:  # jpeg and a date window
        share = min(1.0, share / 0.7)
        kwargs, extra = {"types": ["jpeg"]}, meta["type"] == 0
    else:
        kwargs, extra = {}, np.ones(len(when), dtype=bool)
    span = share * YEARS * 365.25 * 86400
    lo = START + rng.uniform(0, YEARS * 365.25 * 86400 - span)
    fmt = "%Y-%m-%d %H:%M:%S"
    after, before = time.strftime(fmt, time.localtime(lo)), time.strftime(fmt, time.localtime(lo + span))
    local = np.asarray([time.strftime(fmt, time.localtime(w)) for w in when]) if "local" not in meta else meta["local"]
    meta["local"] = local
    allowed = (local >= after) & (local <= before) & extra
    return {"after": after, "before": before, **kwargs}, allowed


def run_cases(db: Path, vecs: np.ndarray, meta: dict[str, np.ndarray], shares: tuple[float, ...], n_cases: int,
              seed: int, exact_max: int | None) -> dict[float, dict[str, float]]:
    """Per share: recall@10 against the exact filtered top 10, p50/p90 of filter + k-NN, and the share matched."""
    from imagesim.search.filters import Filters, select
    from imagesim.store import Store

    rng = np.random.default_rng(seed)
    store = Store.open(db)
    index = store.index("content")
    if exact_max is not None:
        index.filter_exact_max = exact_max
    out: dict[float, dict[str, float]] = {}
    store.search("content", vecs[:1], K)  # load the graph before timing
    t = time.perf_counter()
    select(store, Filters.parse(after="1900"))  # the first filter after a change builds the columns in memory
    columns_ms = (time.perf_counter() - t) * 1e3
    print(f"  columns built in {columns_ms:.0f} ms", flush=True)
    try:
        for share in shares:
            recalls, ms, sel_ms, matched = [], [], [], []
            for _ in range(n_cases):
                kwargs, mask = random_filter(rng, share, meta)
                q = vecs[int(rng.integers(0, len(vecs)))] + 0.3 * rng.standard_normal(DIM).astype(np.float32) / 22
                q /= np.linalg.norm(q)
                t0 = time.perf_counter()
                sel = select(store, Filters.parse(**kwargs))
                t1 = time.perf_counter()
                labels, _ = store.search("content", q[None, :], K, allowed=sel.contents if sel else None)
                t2 = time.perf_counter()
                rows = np.flatnonzero(mask)
                truth = rows[np.argsort(-(vecs[rows] @ q))[:K]] + 1
                if len(truth):
                    recalls.append(len(set(labels[0].tolist()) & set(truth.tolist())) / len(truth))
                ms.append((t2 - t0) * 1e3)
                sel_ms.append((t1 - t0) * 1e3)
                matched.append(len(rows) / len(vecs))
            out[share] = {"recall": float(np.mean(recalls)), "p50_ms": median(ms),
                          "p90_ms": float(np.percentile(ms, 90)), "filter_p50_ms": median(sel_ms),
                          "matched": float(np.mean(matched)), "columns_ms": columns_ms}
            print(f"  share {share:.3%}: {out[share]}", flush=True)
    finally:
        store.close()
    return out


def choose_switch(exact: dict[float, dict[str, float]], graph: dict[float, dict[str, float]], n: int) -> int:
    """Allowed vectors below which exact search is used: between the largest share where it is faster than the graph
    walk (or the walk misses recall 0.99) and the next share (geometric middle), rounded to 2 significant digits."""
    shares = sorted(exact)
    last = shares[0]
    for s in shares:
        if exact[s]["p50_ms"] <= graph[s]["p50_ms"] or graph[s]["recall"] < 0.99:
            last = s
    nxt = next((s for s in shares if s > last), last)
    value = float(np.sqrt(last * nxt) * n)
    return int(float(f"{value:.2g}"))


def metadata_cost(n: int) -> dict[str, float]:
    """ms per photo of `read_info` on flowers17 JPEGs and on camera-sized JPEGs with EXIF written here, beside the
    decode the indexer does anyway."""
    from PIL import Image

    from imagesim.images import load_image
    from imagesim.metadata import read_info

    flowers = sorted((datasets_dir() / "flowers17").rglob("*.jpg"))[:n]
    out: dict[str, float] = {}
    sets: dict[str, list[bytes]] = {"flowers17": [p.read_bytes() for p in flowers]}
    with_exif = []
    for i, p in enumerate(flowers[: max(1, n // 4)]):
        img = Image.open(p).convert("RGB").resize((4000, 3000))
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
        exif.get_ifd(0x8769)[0x9003] = f"2019:07:{1 + i % 28:02d} 18:03:00"
        exif.get_ifd(0x8769)[0x9011] = "+01:00"
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2], gps[3], gps[4] = "N", (38.0, 43.0, 20.0), "W", (9.0, 8.0, 21.0)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
        with_exif.append(buf.getvalue())
    sets["12MP with EXIF"] = with_exif
    for name, blobs in sets.items():
        if not blobs:
            continue
        read = []
        for data in blobs:
            t = time.perf_counter()
            read_info(data, 0)
            read.append((time.perf_counter() - t) * 1e3)
        decode = []
        for data in blobs[:50]:
            t = time.perf_counter()
            load_image(data, draft_size=224)
            decode.append((time.perf_counter() - t) * 1e3)
        out[f"{name} read_info p50 ms"] = median(read)
        out[f"{name} read_info mean ms"] = float(np.mean(read))
        out[f"{name} decode p50 ms"] = median(decode)
        out[f"{name} photos"] = len(blobs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench filters")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="build the gallery here once and reuse it on later runs")
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else args.size
    cases = 5 if args.quick else args.cases
    from imagesim.store.vectors import FILTER_EXACT_MAX

    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        t = time.perf_counter()
        vecs, meta = load_or_build(tmp, n)
        print(f"gallery of {n} photos ready in {time.perf_counter() - t:.0f} s", flush=True)
        print("tuning: exact search over the allowed vectors vs hnswlib's filter", flush=True)
        tune_exact = run_cases(Path(tmp) / "db", vecs, meta, SWEEP, cases, 1, exact_max=n)
        tune_graph = run_cases(Path(tmp) / "db", vecs, meta, SWEEP, cases, 1, exact_max=0)
        switch = choose_switch(tune_exact, tune_graph, n)
        print(f"held out (switch at {switch} allowed vectors; imagesim's FILTER_EXACT_MAX is {FILTER_EXACT_MAX})",
              flush=True)
        held = run_cases(Path(tmp) / "db", vecs, meta, SHARES, cases, 2, exact_max=switch)
    cost = metadata_cost(40 if args.quick else 400)
    print(json.dumps(cost, indent=1))
    rows = "\n".join(f"| {s:.1%} | {held[s]['matched']:.2%} | {held[s]['recall']:.3f} | {held[s]['p50_ms']:.1f} | "
                     f"{held[s]['p90_ms']:.1f} | {held[s]['filter_p50_ms']:.1f} |" for s in SHARES)
    tune = "\n".join(f"| {s:.1%} | {tune_exact[s]['p50_ms']:.1f} | {tune_graph[s]['p50_ms']:.1f} | "
                     f"{tune_graph[s]['recall']:.3f} |" for s in SWEEP)
    meta_rows = "\n".join(f"| {name} | {int(cost[f'{name} photos'])} | {cost[f'{name} read_info p50 ms']:.2f} | "
                          f"{cost[f'{name} read_info mean ms']:.2f} | {cost[f'{name} decode p50 ms']:.1f} |"
                          for name in ("flowers17", "12MP with EXIF") if f"{name} photos" in cost)
    md = f"""## Filters (`python -m bench filters`)

{n:,} photos (clustered 512-d vectors written through the store with random dates over {YEARS} years, {len(CAMERAS)}
cameras, {len(TYPES)} file types, {FOLDERS} folders); {cases} random filters per row from four families (date window,
camera + dates, folders, type + dates), k = 10. Latency is one query at a time: the filter (over columns kept in
memory, built from the catalog in {held[SHARES[0]]['columns_ms']:.0f} ms by the first filtered query after a
change) plus the k-NN.
Measured on an otherwise idle machine, one query at a time.

Held-out split (switch at {switch:,} allowed vectors, chosen on the tuning split below; imagesim's
`FILTER_EXACT_MAX` = {FILTER_EXACT_MAX:,}):

| target share | matched | recall@10 vs exact filtered | p50 ms | p90 ms | of which filter p50 ms |
|---|---|---|---|---|---|
{rows}

Tuning split: where the switch between exact search over the allowed vectors and hnswlib's filtered walk goes
(p50 ms of the whole query; the walk's recall@10):

| share | exact over allowed | hnswlib filter | filter recall |
|---|---|---|---|
{tune}

Metadata (`imagesim.metadata.read_info`: header and EXIF only, no decode) per photo, beside the draft decode the
indexer does anyway:

| photos | n | read_info p50 ms | mean ms | decode p50 ms |
|---|---|---|---|---|
{meta_rows}
"""
    write_section("filters", md, {"held_out": held, "tuning_exact": tune_exact, "tuning_graph": tune_graph,
                                  "metadata": cost, "size": n, "cases": cases, "switch": switch})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
