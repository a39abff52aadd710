"""`python -m bench scale`: what each command costs as the gallery grows (2k, 20k, 100k photos; 1M on request).

Each database is filled through the real write path: tiny JPEGs (64x48, every one different) in dated folders, indexed
by `index_gallery` into all three spaces. The content space is the tiny CLIP config with random weights saved as a
user's `--weights` file (so `search --text` and new-photo queries run the real model); the style and near-duplicate
spaces keep their real encoders' fingerprints and dimensions but take a cheap stand-in vector per photo (their real
cost per photo is `bench speed`'s and `bench duplicates`' business, and would make a 1M fill take days). Faces: ~30 %
of photos get 1-3 faces drawn from a few thousand synthetic identities (`tests/support/facevectors.py`), written
through the face step's write path under the real dlib models' settings, then people are clustered.

Then every one-shot command runs as a user runs it (a fresh `python -m imagesim` process, wall time and peak RSS), and
`serve` is started and queried through its HTTP API. The ratio of each figure at 20k to 2k says whether a command
costs what the gallery's size costs (10 = linear) or what its own work costs (~1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagesim.encoders import Encoder, create_encoder

from .report import ROOT, median, write_section

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
FACE_SHARE = 0.3
ADDED = 1000
SEED = 5


class StandIn(Encoder):
    """The real encoder's space, dimensions and fingerprint, with a cheap deterministic vector per photo."""

    def __init__(self, real: Encoder) -> None:
        self.real = real
        self.space, self.dim, self.parts, self.input_size = real.space, real.dim, real.parts, 64

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.empty((len(images), self.dim), np.float32)
        for i, img in enumerate(images):
            seed = int.from_bytes(hashlib.sha256(img.tobytes()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            chunks = v.reshape(self.parts, -1)
            out[i] = (chunks / np.linalg.norm(chunks, axis=1, keepdims=True)).reshape(-1)
        return out

    def describe(self) -> dict[str, Any]:
        return self.real.describe()

    def fingerprint(self) -> str:
        return self.real.fingerprint()


def write_photos(root: Path, start: int, n: int, rng: np.random.Generator) -> list[Path]:
    """`n` different 64x48 JPEGs in root/YYYY/MM-DD/IMG_nnnnnnn.jpg, modification times spread over 2015-2026."""
    paths = []
    for i in range(start, start + n):
        when = 1.42e9 + rng.random() * 3.5e8
        day = time.gmtime(when)
        path = root / f"{day.tm_year}" / f"{day.tm_mon:02d}-{day.tm_mday:02d}" / f"IMG_{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((64, 48), Image.Resampling.BILINEAR).save(path, quality=85)
        os.utime(path, (when, when))
        paths.append(path)
    return paths


def tiny_weights(folder: Path) -> list[str]:
    """The tiny content model saved as a user's checkpoint; the CLI flags that load it."""
    import torch

    from imagesim.config import ModelSpec

    torch.manual_seed(0)
    config = str(ROOT / "tests" / "data" / "tiny_clip.json")
    enc = create_encoder("clip", spec=ModelSpec(name=config, pretrained=None), precision="fp32")
    weights = folder / "tiny.pt"
    torch.save(enc.model.state_dict(), weights)  # type: ignore[attr-defined]
    return ["--model", config, "--weights", str(weights)]


def encoders(model_flags: list[str]) -> list[Encoder]:
    from imagesim.config import ModelSpec

    spec = ModelSpec(name=model_flags[1], pretrained=None, weights=model_flags[3])
    return [create_encoder("clip", spec=spec), *(StandIn(create_encoder(kind)) for kind in ("style", "dup"))]


def fill(db: Path, root: Path, n: int, model_flags: list[str], rng: np.random.Generator) -> dict[str, Any]:
    """Photos, index (all spaces), faces for ~30 % of them, people clustered; seconds per step."""
    from dataclasses import asdict

    from imagesim.config import ModelSpec
    from imagesim.indexer import index_gallery
    from imagesim.indexer.job import CHECKPOINT_META_KEY
    from imagesim.store import MODEL_META_KEY, Store

    t = time.perf_counter()
    write_photos(root, 0, n, rng)
    out: dict[str, Any] = {"write_s": time.perf_counter() - t}
    store = Store.open(str(db), create=True)
    try:
        t = time.perf_counter()
        index_gallery(store, [root], encoders(model_flags), progress=False)
        out["index_s"] = time.perf_counter() - t
        spec = ModelSpec(name=model_flags[1], pretrained=None, weights=model_flags[3])
        with store.catalog.transaction():  # what `imagesim index` records of its model, the weights file with it
            store.catalog.set_meta(MODEL_META_KEY, json.dumps(asdict(spec)))
            store.catalog.set_meta(CHECKPOINT_META_KEY, model_flags[3])
        t = time.perf_counter()
        out["faces"] = add_faces(store, _all_contents(store), rng)
        out["faces_s"] = time.perf_counter() - t
        store.save()
    finally:
        store.close()
    out["recluster"] = _child_json([sys.executable, "-m", "bench.people", "--recluster", str(db)])
    # `imagesim index` ends by verifying what it wrote; the fill wrote around it, so verify as a user would
    out["verify"] = timed([sys.executable, "-m", "imagesim", "verify", "--db", str(db)], rounds=1)
    return out


def _all_contents(store: Any) -> list[int]:
    return [int(r[0]) for r in store.catalog.conn.execute("SELECT id FROM contents")]


def add_faces(store: Any, content_ids: Sequence[int], rng: np.random.Generator) -> int:
    """Faces for ~30 % of `content_ids` (1-3 each, a few thousand identities), no faces for the rest, written as
    the indexer writes them, under the real face models' settings (so `imagesim faces` and `index` accept them)."""
    from imagesim.faces.analyze import Face
    from imagesim.faces.stage import configure_faces
    from tests.support.facevectors import identities

    stage = configure_faces(store, True)
    assert stage is not None
    stage.begin(store)
    n_ids = max(50, min(5000, len(content_ids) // 20))
    ids = identities(n_ids, SEED)
    weights = rng.lognormal(0.0, 1.0, n_ids)
    graph_ids, graph_vecs, found = [], [], 0
    catalog = store.catalog
    for start in range(0, len(content_ids), 5000):
        with catalog.transaction():
            for cid in content_ids[start:start + 5000]:
                k = int(rng.integers(1, 4)) if rng.random() < FACE_SHARE else 0
                who = rng.choice(n_ids, size=k, replace=False, p=weights / weights.sum()) if k else []
                vecs = ids.faces(np.asarray(who, dtype=np.int64)) if k else []
                faces = [Face((4 + 18 * j, 4, 18 + 18 * j, 18), 1.0, vecs[j]) for j in range(k)]
                got, unit = stage.put(catalog, cid, faces)
                if got:
                    graph_ids.extend(got)
                    graph_vecs.append(unit)
                found += len(got)
    if graph_ids:
        store.index(stage.space).add(np.asarray(graph_ids), np.concatenate(graph_vecs))
    return found


def _update_people(db: str, n_new: int) -> int:
    """1,000 new faces on new photos, then the incremental people update (as `imagesim index` runs it)."""
    import resource

    from imagesim.faces.people import People
    from imagesim.store import Store

    rng = np.random.default_rng(SEED + 1)
    store = Store.open(db)
    try:
        with store.catalog.transaction():
            cids = [store.catalog.add_content(hashlib.sha256(rng.bytes(16)).hexdigest(), 64, 48)
                    for _ in range(n_new)]
        add_faces_exact(store, cids, rng)
        t = time.perf_counter()
        done = People(store).update()
        seconds = time.perf_counter() - t
        store.save()
    finally:
        store.close()
    print(json.dumps({"seconds": seconds, "mode": done.mode, "faces": done.faces, "joined": done.joined,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


def add_faces_exact(store: Any, content_ids: Sequence[int], rng: np.random.Generator) -> None:
    """One face per new photo, from the same identities as the gallery's."""
    from imagesim.faces.analyze import Face
    from imagesim.faces.stage import configure_faces
    from tests.support.facevectors import identities

    stage = configure_faces(store, None)
    assert stage is not None
    n_ids = max(50, min(5000, store.catalog.counts().get("contents", 0) // 20))
    vecs = identities(n_ids, SEED).faces(rng.integers(0, n_ids, len(content_ids)))
    ids, units = [], []
    with store.catalog.transaction():
        for cid, v in zip(content_ids, vecs, strict=True):
            got, unit = stage.put(store.catalog, cid, [Face((4, 4, 18, 18), 1.0, v)])
            ids.extend(got)
            units.append(unit)
    store.index(stage.space).add(np.asarray(ids), np.concatenate(units))


def _child_json(cmd: list[str]) -> dict[str, Any]:
    """Run a step in a fresh process started from a small one (its peak RSS is then its own) and read its JSON."""
    small = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))", *cmd]
    out = subprocess.run(small, capture_output=True, text=True, env=ENV)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[2:4]} failed: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# A small launcher runs each command: a child forked from this (large) process would count this process's pages in
# its peak RSS (Linux keeps ru_maxrss across fork + exec).
_LAUNCH = """
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
err = p.stderr.read().decode(errors="replace").strip()
print(json.dumps({"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024, "code": os.waitstatus_to_exitcode(status),
                  "err": err.splitlines()[-1] if err else ""}))
"""


def timed(cmd: list[str], rounds: int = 3) -> dict[str, Any]:
    """Median wall seconds and max peak RSS (MB) of a fresh process, over `rounds` runs."""
    walls, rss = [], 0.0
    for _ in range(rounds):
        out = subprocess.run([sys.executable, "-c", _LAUNCH, *cmd], capture_output=True, text=True, env=ENV)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if r["code"] != 0:
            return {"error": r["err"] or f"exit {r['code']}"}
        walls.append(r["wall_s"])
        rss = max(rss, r["rss_mb"])
    return {"wall_s": median(walls), "rss_mb": rss}


def commands(db: Path, root: Path, model_flags: list[str], tmp: Path) -> dict[str, dict[str, Any]]:
    """Each one-shot command, as a user types it."""
    cli = [sys.executable, "-m", "imagesim"]
    d = ["--db", str(db)]
    gallery_photo = str(sorted(root.rglob("*.jpg"))[len(list(root.glob("*"))) // 2])
    new_photo = tmp / "new.jpg"
    Image.fromarray(np.random.default_rng(99).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(new_photo)
    face_photo = _a_photo_with_faces(db)
    load = [sys.executable, "-c", "import sys; from imagesim.config import ModelSpec; "
            "from imagesim.encoders import create_encoder; "
            "create_encoder('clip', spec=ModelSpec(name=sys.argv[1], pretrained=None, weights=sys.argv[2]))",
            model_flags[1], model_flags[3]]
    return {
        "status": timed([*cli, "status", *d]),
        "search (gallery photo)": timed([*cli, "search", gallery_photo, *d, "--json"]),
        "search (new photo)": timed([*cli, "search", str(new_photo), *d, "--json"]),
        "search --text": timed([*cli, "search", "--text", "a red flower", *d, "--json"]),
        "open_clip model load (torch path, which one-shot queries skip)": timed(load),
        "faces (gallery photo)": timed([*cli, "faces", face_photo, *d, "--json"]),
        "people list": timed([*cli, "people", "list", *d]),
        "duplicates IMAGE": timed([*cli, "duplicates", gallery_photo, *d, "--json"]),
    }


def _a_photo_with_faces(db: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(db / "catalog.sqlite")
    try:
        row = conn.execute("SELECT f.path FROM files f JOIN faces x ON x.content_id = f.content_id LIMIT 1").fetchone()
    finally:
        conn.close()
    path = row[0]
    return path.decode() if isinstance(path, bytes) else str(path)


def indexing(db: Path, root: Path, model_flags: list[str], rng: np.random.Generator) -> dict[str, Any]:
    cli = [sys.executable, "-m", "imagesim", "index", str(root), "--db", str(db), *model_flags]
    unchanged = timed(cli, rounds=1)
    new = write_photos(root, 10_000_000, ADDED, rng)
    listed = root.parent / "added.txt"  # the new photos lie in dated folders among the old ones: named one by one
    listed.write_text("\n".join(str(p) for p in new))
    encode_s = _child_json([sys.executable, "-m", "bench.scale", "--encode", model_flags[1], model_flags[3],
                            str(listed)])["seconds"]
    added = timed(cli, rounds=1)
    return {"unchanged": unchanged, "added": added, "encode_s": encode_s}


def _encode(config: str, weights: str, listed: str) -> int:
    """Decode and encode photos with every space's real encoder and the face models, as `index` does (2 threads
    for the models); print the seconds: the encoding part of an `index` run over them."""
    from imagesim.config import ModelSpec
    from imagesim.faces.schema import analyzer_for
    from imagesim.images import load_image

    encs = [create_encoder("clip", spec=ModelSpec(name=config, pretrained=None, weights=weights)),
            *(create_encoder(kind) for kind in ("style", "dup"))]
    analyzer = analyzer_for({"detector": "hog"})
    paths = Path(listed).read_text().split("\n")
    t = time.perf_counter()
    for start in range(0, len(paths), 64):
        images = [load_image(p) for p in paths[start:start + 64]]
        for enc in encs:
            enc.embed_images(images)
        analyzer.faces(images)
    print(json.dumps({"seconds": time.perf_counter() - t, "photos": len(paths)}))
    return 0


def disk(db: Path, n: int) -> dict[str, float]:
    """Bytes per photo: the catalog (with its WAL), and each space's graph files."""
    out: dict[str, float] = {}
    for f in db.iterdir():
        if f.is_file() and f.stat().st_size:
            key = "catalog" if f.name.startswith("catalog") else f.name.split(".")[0]
            out[key] = out.get(key, 0.0) + f.stat().st_size / n
    out["total"] = sum(out.values())
    return out


def serve(db: Path, tmp: Path, queries: int = 30) -> dict[str, Any]:
    import httpx
    from gradio_client import Client, handle_file

    from bench.concurrency import _free_port, _wait_until_up
    from bench.speed_app import api_inputs, raw_search

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    photos = []
    for i in range(queries + 1):
        p = tmp / f"upload{i}.jpg"
        Image.fromarray(np.random.default_rng(1000 + i).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(p)
        photos.append(p)
    t = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "imagesim", "serve", "--db", str(db), "--port", str(port)],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(url, server, deadline_s=600)
        ready = time.perf_counter() - t
        client = Client(url, download_files=False, verbose=False)
        t = time.perf_counter()
        client.predict(handle_file(str(photos[0])), 10, api_name="/search")
        first = time.perf_counter() - t
        times = []
        for p in photos[1:]:
            t = time.perf_counter()
            client.predict(handle_file(str(p)), 10, api_name="/search")
            times.append((time.perf_counter() - t) * 1e3)
        # The same queries through Gradio's HTTP API (what curl or any language's client does): gradio_client polls
        # its message queue every 50 ms, which the server's own latency does not include.
        http = httpx.Client(base_url=url, timeout=60)
        inputs = api_inputs(http)
        raw = []
        for p in photos[1:]:
            t = time.perf_counter()
            if len(raw_search(http, p, inputs)) != 10:
                raise RuntimeError("/search over HTTP did not answer with 10 results")
            raw.append((time.perf_counter() - t) * 1e3)
        rss = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    times.sort()
    raw.sort()
    return {"ready_s": ready, "first_query_s": first, "p50_ms": median(times), "p99_ms": times[-1],
            "http_p50_ms": median(raw), "http_p99_ms": raw[-1], "rss_mb": rss}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(n: int, with_serve: bool) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    tmp = Path(tempfile.mkdtemp(prefix=f"imagesim-scale-{n}-"))
    try:
        model_flags = tiny_weights(tmp)
        db, root = tmp / "db", tmp / "photos"
        out: dict[str, Any] = {"photos": n, "fill": fill(db, root, n, model_flags, rng)}
        out["disk_bytes_per_photo"] = disk(db, n)
        out["commands"] = commands(db, root, model_flags, tmp)
        out["people_update"] = _child_json([sys.executable, "-m", "bench.scale", "--update-people", str(db)])
        out["index"] = indexing(db, root, model_flags, rng)
        if with_serve:
            out["serve"] = serve(db, tmp)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cell(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"failed: {r['error'][:60]}"
    return f"{r['wall_s']:.2f} s, {r['rss_mb']:.0f} MB"


def markdown(results: list[dict[str, Any]]) -> str:
    sizes = [r["photos"] for r in results]
    by = {r["photos"]: r for r in results}
    head = "| command | " + " | ".join(f"{n:,} photos" for n in sizes) + " | 20k / 2k |"
    rows = [head, "|---" * (len(sizes) + 2) + "|"]

    def ratio(get: Any) -> str:
        if 2000 in by and 20000 in by:
            a, b = get(by[2000]), get(by[20000])
            if a and b:
                return f"{b / a:.2f}"
        return ""

    for name in results[0]["commands"]:
        rows.append(f"| `{name}` | " + " | ".join(_cell(r["commands"][name]) for r in results) + " | " +
                    ratio(lambda r, k=name: r["commands"][k].get("wall_s")) + " |")
    for key, label in (("unchanged", "`index`, unchanged tree"), ("added", f"`index` after adding {ADDED:,} photos")):
        rows.append(f"| {label} | " + " | ".join(_cell(r["index"][key]) for r in results) + " | " +
                    ratio(lambda r, k=key: r["index"][k].get("wall_s")) + " |")
    rows.append(f"| encoding those {ADDED:,} photos alone (all spaces + faces, one process) | " + " | ".join(
        f"{r['index']['encode_s']:.2f} s" for r in results) + " | |")
    rows.append("| `verify` (the full check, once after the fill) | " + " | ".join(
        _cell(r["fill"]["verify"]) for r in results) + " | " +
        ratio(lambda r: r["fill"]["verify"].get("wall_s")) + " |")
    rows.append("| people: full re-cluster (k-NN) | " + " | ".join(
        f"{r['fill']['recluster']['seconds']:.2f} s, {r['fill']['recluster']['peak_rss_mb']:.0f} MB "
        f"({r['fill']['faces']:,} faces)" for r in results) + " | " +
        ratio(lambda r: r["fill"]["recluster"]["seconds"]) + " |")
    rows.append(f"| people: update after {ADDED:,} new faces | " + " | ".join(
        f"{r['people_update']['seconds']:.2f} s ({r['people_update']['mode']})" for r in results) + " | " +
        ratio(lambda r: r["people_update"]["seconds"]) + " |")
    disk_rows = ["| bytes per photo | " + " | ".join(f"{n:,}" for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for key in results[-1]["disk_bytes_per_photo"]:
        disk_rows.append(f"| {key} | " + " | ".join(f"{r['disk_bytes_per_photo'].get(key, 0):,.0f}"
                                                   for r in results) + " |")
    serve_rows = []
    for r in results:
        if "serve" in r:
            s = r["serve"]
            serve_rows.append(f"| {r['photos']:,} | {s['ready_s']:.1f} s | {s['rss_mb']:.0f} MB | "
                              f"{s['first_query_s'] * 1e3:.0f} ms | {s['http_p50_ms']:.0f} ms | "
                              f"{s['http_p99_ms']:.0f} ms | {s['p50_ms']:.0f} ms | {s['p99_ms']:.0f} ms |")
    fills = ", ".join(f"{r['photos']:,}: {r['fill']['index_s']:.0f} s" for r in results)
    return f"""## A gallery at scale (`python -m bench scale`)

Databases filled through the real write path (`bench/scale.py`): tiny 64x48 JPEGs in dated folders, `index_gallery`
into all three spaces (content: the tiny CLIP config with random weights, loaded from a `--weights` file as a user's;
style and near-duplicate: their real fingerprints and sizes, stand-in vectors), ~30 % of photos with 1-3 faces from
a few thousand synthetic identities, people clustered. Each command is a fresh process as a user runs it: median
wall time of 3 and peak RSS. The last column is the 20k figure over the 2k one: ~1 means the command costs its own
work, 10 means it costs the gallery's size. Indexing (fill) took {fills}.

{chr(10).join(rows)}

Disk, bytes per photo (catalog with its WAL, and each space's graph files):

{chr(10).join(disk_rows)}

`imagesim serve`, queried with uploaded 640x480 photos (30 queries after the first, k=10): through Gradio's HTTP API
(upload, `POST /gradio_api/call/search`, read the event stream; what curl or a script in any language does) and
through `gradio_client` (`Client.predict`, which polls its message queue every 50 ms: most of its extra time):

| photos | ready | RSS | first query | HTTP p50 | HTTP p99 | gradio_client p50 | gradio_client p99 |
|---|---|---|---|---|---|---|---|
{chr(10).join(serve_rows)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale")
    parser.add_argument("--quick", action="store_true", help="2k and 20k photos only")
    parser.add_argument("--sizes", default="2000,20000,100000", help="comma-separated gallery sizes")
    parser.add_argument("--update-people", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--encode", nargs=3, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.encode:
        return _encode(*args.encode)
    if args.update_people:
        return _update_people(args.update_people, ADDED)
    sizes = [2000, 20000] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = []
    for n in sizes:
        print(f"-- {n:,} photos", flush=True)
        results.append(run(n, with_serve=n == sizes[-1]))
        print(json.dumps(results[-1]["commands"]), flush=True)
    md = markdown(results)
    write_section("scale", md, {"results": results, "quick": args.quick})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
