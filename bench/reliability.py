"""Reliability figures for docs/reliability.md: `python -m bench reliability [--quick]`.

- crash: kill -9 the indexer at random moments, inside a catalog commit and inside an index save; after each kill,
  reopen, check catalog and graph agree and nothing committed is lost, then finish the job.
- store: damage saved graphs (truncate, flip bits, crafted headers and neighbour lists, damaged catalog, one old row
  a query reads) and open and query them in a child process: graph damage must be refused with a message; catalog
  damage refused, or the answers equal the undamaged ones and the full verification finds it; none may crash.
- open: what an open costs (checks since the verified mark) against the full verification, at 10k and 100k photos.
- hostile: odd and hostile files through the decoder, each in a child process: verdict, time and peak memory.
- fuzz: atheris on the decode path (`bench/fuzz_decode.py`), >= 100k inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import ROOT, write_section

TINY = ROOT / "tests" / "data" / "tiny_clip.json"
DOC = ROOT / "docs" / "reliability.md"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "IMAGESIM_THREADS": "1"}

# The child indexer: announces itself, then marks the two moments a test wants to kill it in.
_CHILD = """
import contextlib, os, sys, time
mode = os.environ["IMAGESIM_CRASH_MODE"]
if mode == "commit":
    from imagesim import catalog
    real = catalog.Catalog.transaction
    @contextlib.contextmanager
    def marked(self):
        with real(self) as conn:
            yield conn
            print("IN-COMMIT", flush=True)   # statements done, COMMIT not yet sent
            time.sleep(0.05)
    catalog.Catalog.transaction = marked
if mode == "save":
    real_replace = os.replace
    def marked_replace(a, b):
        print("IN-SAVE", flush=True)          # temp file written and fsynced, not yet renamed
        time.sleep(0.2)
        real_replace(a, b)
    os.replace = marked_replace
from imagesim.cli import main
print("STARTED", flush=True)
sys.exit(main(sys.argv[1:]))
"""


def _committed(db: Path) -> dict[str, int]:
    path = db / "catalog.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return dict(conn.execute("SELECT path, content_id FROM files WHERE status='ok'").fetchall())


def _consistent(db: Path) -> list[str]:
    """Open the database as a searcher would and list what disagrees."""
    from imagesim.search import Gallery

    problems = []
    with Gallery.open(db) as g:
        cat = g.store.catalog
        if cat.space("content") is None:
            return problems
        labels = set(cat.labels("content").tolist())
        live = g.store.index("content").live
        if labels != live:
            problems.append(f"graph has {len(live)} live items, catalog {len(labels)}")
        contents = {r[0] for r in cat.conn.execute("SELECT id FROM contents")}
        if contents - labels:
            problems.append(f"{len(contents - labels)} contents without a vector")
        linked = {r[0] for r in cat.conn.execute("SELECT content_id FROM files WHERE status='ok'")}
        if linked - contents:
            problems.append(f"{len(linked - contents)} files point at missing contents")
    return problems


def crash_trials(trials: int, photos: int, seed: int = 0) -> dict:
    """Kill the indexer `trials` times at random moments while the gallery changes; report what went wrong."""
    import torch

    from imagesim.config import ModelSpec, Settings
    from imagesim.encoders import create_encoder
    from imagesim.indexer import run_index
    from tests.support.photos import write_photo

    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="imagesim-crash-"))
    pics, db = tmp / "pics", tmp / "db"
    torch.manual_seed(0)
    enc = create_encoder("clip", spec=ModelSpec(str(TINY), None), torch_threads=1)
    weights = tmp / "tiny.pt"
    torch.save(enc.model.state_dict(), weights)
    spec = ModelSpec(str(TINY), None, str(weights))
    enc = create_encoder("clip", spec=spec)
    next_seed = 0
    for _ in range(photos):
        write_photo(pics / f"p{next_seed:05d}.jpg", next_seed)
        next_seed += 1
    cmd = [sys.executable, "-c", _CHILD, "index", str(pics), "--db", str(db), "--model", str(TINY),
           "--weights", str(weights), "--batch-size", "8", "--json"]
    out = {"trials": 0, "inconsistencies": 0, "lost": 0, "resume_failures": 0, "by_moment": {}, "notes": []}
    for trial in range(trials):
        # Change the gallery: delete, move, add a share of the photos, so every kind of work is in flight.
        files = sorted(pics.rglob("*.jpg"))
        for p in rng.sample(files, k=min(len(files) // 10, len(files))):
            p.unlink()
        for p in rng.sample(sorted(pics.rglob("*.jpg")), k=len(files) // 20):
            dest = pics / f"moved{trial}" / p.name
            dest.parent.mkdir(exist_ok=True)
            p.rename(dest)
        for _ in range(photos // 3):
            write_photo(pics / f"p{next_seed:05d}.jpg", next_seed)
            next_seed += 1
        on_disk = {str(p) for p in pics.rglob("*.jpg")}
        before = {p for p in _committed(db) if p in on_disk}  # committed earlier and still there
        moment = ("random", "commit", "save")[trial % 3]
        proc = subprocess.Popen(cmd, env={**ENV, "IMAGESIM_CRASH_MODE": moment}, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # STARTED: imports done
        if moment == "random":
            time.sleep(rng.uniform(0.0, 3.0))
        else:
            wanted, seen = (rng.randint(1, 8) if moment == "commit" else 1), 0
            for line in proc.stdout:
                seen += line.startswith("IN-")
                if seen >= wanted:
                    break
        killed_running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out["trials"] += 1
        label = moment if killed_running else f"{moment} (finished before the kill)"
        out["by_moment"][label] = out["by_moment"].get(label, 0) + 1
        after = _committed(db)
        lost = before - set(after)
        problems = _consistent(db)
        out["lost"] += len(lost)
        out["inconsistencies"] += bool(problems)
        if problems or lost:
            out["notes"].append(f"trial {trial} ({moment}): lost {len(lost)}; {problems}")
        report = run_index(Settings.for_db(db, model=spec), [pics], encoders=[enc], progress=False)
        final = _committed(db)
        if set(final) != on_disk or report.failed or _consistent(db):
            out["resume_failures"] += 1
            out["notes"].append(f"trial {trial}: resume left {len(on_disk - set(final))} photos out")
    shutil.rmtree(tmp, ignore_errors=True)
    return out


# ---- damaged stores ----------------------------------------------------------------------------------------------

# The child: open, status, a search by a gallery photo (its stored vector) and one by a vector; the answers, then
# what a full verification (`imagesim verify`) says of the same file.
_OPENER = """
import sys, json
from pathlib import Path
import numpy as np, torch
from imagesim.errors import ImagesimError
from imagesim.search import Gallery
from imagesim.store.catalog import Catalog
photo = sys.argv[1]
for line in sys.stdin:
    db = line.strip()
    out = {"db": db}
    try:
        torch.manual_seed(0)  # a lookup that misses re-encodes the photo: with the indexer's (seeded) tiny model
        with Gallery.open(db) as g:
            g.status()  # the spaces table through the library first: its damage is a refusal, not a raw sqlite error
            dim = g.store.catalog.space("content").dim
            hits = g.search(photo, k=5) + g.search_vector(np.ones(dim, np.float32), k=5)
        out.update(outcome="opened", hits=[[m.path, round(float(m.score), 4)] for m in hits])
    except ImagesimError as exc:
        out.update(outcome="refused", one_line="\\n" not in str(exc))
    except Exception as exc:
        out.update(outcome="error:" + type(exc).__name__)
    try:
        cat = Catalog(Path(db) / "catalog.sqlite", create=False, check=False)
        try:
            out["verify"] = "refused" if cat.verify() else "sound"
        finally:
            cat.close()
    except ImagesimError:
        out["verify"] = "refused"
    except Exception as exc:
        out["verify"] = "error:" + type(exc).__name__
    print(json.dumps(out), flush=True)
"""

# The repair path for a refused catalog: `imagesim repair`, then `imagesim index` again (same seeded tiny model),
# then the same open + search, and the photo count.
_REPAIRER = """
import contextlib, io, json, sys
import numpy as np, torch
from imagesim.cli import main
from imagesim.config import ModelSpec, Settings
from imagesim.errors import ImagesimError
from imagesim.indexer import run_index
from imagesim.search import Gallery
tiny, pics = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    db = line.strip()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["repair", "--db", db])
    if rc != 0:
        lines = err.getvalue().strip().splitlines()
        print(json.dumps({"db": db, "outcome": "repair refused" + ("" if len(lines) == 1 else " (multi-line)")}),
              flush=True)
        continue
    try:
        torch.manual_seed(0)
        run_index(Settings.for_db(db, model=ModelSpec(tiny, None)), [pics], progress=False)
        with Gallery.open(db) as g:
            photos = g.status()["photos"]
            hits = g.search_vector(np.ones(g.store.catalog.space("content").dim, np.float32), k=5)
        outcome = "repaired, every photo back" if photos == 300 and len(hits) == 5 else f"repaired, {photos} photos"
    except ImagesimError as exc:
        outcome = "refused after repair: " + str(exc)[:80]
    print(json.dumps({"db": db, "outcome": outcome}), flush=True)
"""


def _damage(db: Path, kind: str, rng: random.Random) -> str | None:
    from imagesim.store.graphfile import file_crc32
    from imagesim.store.schema import register_checksums

    (graph,) = db.glob("content.*.hnsw")
    raw = bytearray(graph.read_bytes())
    crafted = kind.startswith("crafted")
    if kind == "truncate":
        raw = raw[: rng.randrange(0, len(raw))]
    elif kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif kind == "zero-range":
        a = rng.randrange(len(raw))
        raw[a:a + rng.randint(1, 4096)] = bytes(min(len(raw) - a, rng.randint(1, 4096)))[: len(raw[a:a + 4096])]
    elif kind == "append":
        raw += os.urandom(rng.randint(1, 512))
    elif kind == "crafted-header":
        field = rng.randrange(13)
        offsets = [0, 8, 16, 24, 32, 40, 48, 52, 56, 64, 72, 80, 88]
        width = 4 if field in (6, 7) else 8
        raw[offsets[field]:offsets[field] + width] = rng.getrandbits(8 * width).to_bytes(width, "little")
    elif kind == "crafted-links":
        per_el = int.from_bytes(raw[24:32], "little")
        count = int.from_bytes(raw[16:24], "little")
        el = rng.randrange(count)
        at = 96 + el * per_el + 4 + 4 * rng.randrange(4)
        raw[at:at + 4] = rng.randrange(count, 2**32).to_bytes(4, "little")
        raw[96 + el * per_el:96 + el * per_el + 2] = max(5, int.from_bytes(raw[96 + el * per_el:
                                                                               96 + el * per_el + 2], "little")
                                                            ).to_bytes(2, "little")
    elif kind == "catalog":
        cat = db / "catalog.sqlite"
        data = bytearray(cat.read_bytes())
        for _ in range(rng.randint(1, 64)):
            data[rng.randrange(100, len(data))] = rng.randrange(256)
        cat.write_bytes(data)
        return
    elif kind == "old-row":
        return _damage_old_row(db, rng)
    if bytes(raw) == graph.read_bytes():
        return "unchanged"  # e.g. zeros written over zeros: nothing to refuse
    graph.write_bytes(raw)
    if crafted:  # someone rewrote the catalog's record too: only our own validation stands between file and hnswlib
        size, crc = file_crc32(graph)
        with sqlite3.connect(db / "catalog.sqlite") as conn:
            register_checksums(conn)  # the row keeps a valid checksum: a careful forger, not random damage
            conn.execute("UPDATE index_files SET size=?, crc32=?", (size, crc))


def _damage_old_row(db: Path, rng: random.Random) -> str:
    """One byte changed inside a row the query reads, written before the catalog's last verification (the index run
    ended with one): the query photo's vector, a path (in the table or in its index), a space's or a graph's record,
    the model's meta row, a photo's metadata. Its bytes are found in the file and one in the middle flipped."""
    import numpy as np

    from imagesim.store.catalog import Catalog

    cat = Catalog(db / "catalog.sqlite", create=False)
    try:
        assert cat.mark() is not None and not cat.mark().tops.get("vectors", 0) < cat.vectors_top()  # type: ignore
        cid = cat.file(str((db.parent / "pics" / "photo_000.jpg").resolve())).content_id  # type: ignore[union-attr]
        vector = cat.vector_for_content("content", cid)
        assert vector is not None
        others = sorted(p for ps in cat.paths_for(range(1, 400)).values() for p in ps)
    finally:
        cat.close()
    target = rng.choice(["query vector", "query path", "another photo's path", "space", "graph record", "model",
                         "taken"])
    needle = {"query vector": np.asarray(vector, np.float32).tobytes()[:256],
              "query path": b"photo_000.jpg", "another photo's path": rng.choice(others).rsplit("/", 1)[1].encode(),
              "space": b'"model"', "graph record": b"content.1.hnsw", "model": b"tiny_clip.json",
              "taken": b"mtime"}[target]
    path = db / "catalog.sqlite"
    data = bytearray(path.read_bytes())
    found, at = [], -1
    while (at := data.find(needle, at + 1)) >= 0:
        found.append(at)
    assert found, target
    pick = rng.randrange(len(found))
    data[found[pick] + rng.randrange(len(needle))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"{target} ({pick + 1} of {len(found)} copies)" if len(found) > 1 else target


def _dump(db: Path) -> str | None:
    """The catalog's rows and the state of its indexes as text, or None when SQLite cannot read them all."""
    try:
        with sqlite3.connect(f"file:{db / 'catalog.sqlite'}?mode=ro", uri=True) as conn:
            check = [r[0] for r in conn.execute("PRAGMA integrity_check")]  # an index that disagrees with its table
            return "\n".join([*check, *conn.iterdump()])
    except (sqlite3.DatabaseError, UnicodeDecodeError):
        return None


def store_fuzz(trials: int, seed: int = 0, repair: bool = False) -> dict:
    from imagesim.config import ModelSpec, Settings
    from imagesim.indexer import run_index
    from tests.support.photos import write_gallery

    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="imagesim-storefuzz-"))
    write_gallery(tmp / "pics", 300)
    import torch

    torch.manual_seed(0)
    run_index(Settings.for_db(tmp / "good", model=ModelSpec(str(TINY), None)), [tmp / "pics"], progress=False)
    kinds = ["truncate", "bitflip", "zero-range", "append", "crafted-header", "crafted-links", "catalog", "old-row"]
    cases = []
    targets: dict[str, str] = {}  # old-row trials: which row was damaged
    unchanged: set[str] = set()  # graph damage that left the file as it was
    for i in range(trials):
        kind = kinds[i % len(kinds)]
        db = tmp / f"case{i:04d}"
        shutil.copytree(tmp / "good", db)
        if (target := _damage(db, kind, rng)) == "unchanged":
            unchanged.add(str(db))
        elif target is not None:
            targets[str(db)] = target.split(" (")[0]
        cases.append((str(db), kind))
    results: dict[str, dict] = {}
    dumps = {db: _dump(Path(db)) for db, kind in cases if kind in CATALOG_KINDS}  # before anything opens them
    pending = list(cases)
    crashes = 0
    photo = str((tmp / "pics" / "photo_000.jpg").resolve())
    while pending:  # a crash ends the child: count it and go on with the rest
        proc = subprocess.run([sys.executable, "-c", _OPENER, photo], input="\n".join(db for db, _ in pending) + "\n",
                              env=ENV, capture_output=True, text=True)
        done = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        for d in done:
            results[d["db"]] = d
        pending = pending[len(done):]
        if proc.returncode != 0 and pending:
            crashes += 1
            results[pending[0][0]] = {"outcome": f"crash (exit {proc.returncode})"}
            pending = pending[1:]
    good_dump = _dump(tmp / "good")
    good_hits = _good_answer(tmp / "good", photo)
    table: dict[str, dict[str, int]] = {}
    by_target: dict[str, dict[str, int]] = {}
    for db, kind in cases:
        outcome = _outcome(results[db], kind, dumps.get(db) == good_dump, good_hits)
        if db in unchanged and outcome == "opened":
            outcome = "opened (file unchanged)"
        table.setdefault(kind, {}).setdefault(outcome, 0)
        table[kind][outcome] += 1
        if db in targets:
            by_target.setdefault(targets[db], {}).setdefault(outcome, 0)
            by_target[targets[db]][outcome] += 1
    repaired: dict[str, int] = {}
    refused = [db for db, kind in cases if kind in CATALOG_KINDS and "refused" in
               (results[db]["outcome"], results[db].get("verify"))]
    if repair and refused:
        proc = subprocess.run([sys.executable, "-c", _REPAIRER, str(TINY), str(tmp / "pics")],
                              input="\n".join(refused) + "\n", env=ENV, capture_output=True, text=True)
        done = [json.loads(line)["outcome"] for line in proc.stdout.splitlines() if line.startswith("{")]
        done += [f"crash (exit {proc.returncode})"] * (len(refused) - len(done))
        for outcome in done:
            repaired[outcome] = repaired.get(outcome, 0) + 1
    shutil.rmtree(tmp, ignore_errors=True)
    return {"trials": trials, "crashes": crashes, "by_kind": table, "repair": repaired, "old_rows": by_target,
            "missed": sum(n for v in table.values() for k, n in v.items() if "missed" in k)}


CATALOG_KINDS = ("catalog", "old-row")


def _good_answer(good: Path, photo: str) -> list:
    """The undamaged database's answers (through the same child, on a copy: a child may record a mark)."""
    copy = good.with_name("good-answer")
    shutil.copytree(good, copy)
    proc = subprocess.run([sys.executable, "-c", _OPENER, photo], input=f"{copy}\n", env=ENV, capture_output=True,
                          text=True, check=True)
    answer = json.loads(proc.stdout.splitlines()[-1])
    assert answer["outcome"] == "opened" and answer["verify"] == "sound", answer
    return answer["hits"]


def _outcome(r: dict, kind: str, unchanged: bool, good_hits: list) -> str:
    """What a damaged database did. For the catalog: refused; or it answered, and then the answer must equal the
    undamaged one (else *wrong answer: damage missed*), and a full verification must find the damage unless it
    changed nothing any query can read (the dump of every row equals the undamaged one: it hit free space)."""
    outcome = r["outcome"]
    if outcome == "refused" and not r.get("one_line", True):
        return "refused (multi-line message)"
    if kind not in CATALOG_KINDS or outcome != "opened":
        return outcome
    if r["hits"] != good_hits:
        return "wrong answer: damage missed"
    if r.get("verify") == "refused":
        return "answered right (damage not read), verify refused"
    if unchanged:
        return "opened (nothing changed)"
    return "answered right, verify: damage missed" if r.get("verify") == "sound" else f"verify {r.get('verify')}"


def open_cost(sizes: tuple[int, ...] = (10_000, 100_000), rounds: int = 3) -> list[dict]:
    """Seconds to open a catalog of N photos (3 spaces: 512-, 216- and 160-d) as a one-shot command does (checks
    since the verified mark), against the full verification (`imagesim verify`), split into its checks; and the open
    again after 1,000 photos written since the mark."""
    import numpy as np

    from imagesim.store.catalog import CATALOG_NAME, Catalog

    out = []
    rng = np.random.default_rng(0)

    def fill(cat: Catalog, lo: int, hi: int) -> None:
        for start in range(lo, hi, 5000):
            ids = range(start, min(hi, start + 5000))
            with cat.transaction():
                cids = [cat.add_content(f"{i:064x}", 4000, 3000) for i in ids]
                for i, cid in zip(ids, cids, strict=True):
                    cat.put_file(f"/photos/{i // 1000:04d}/IMG_{i:06d}.jpg", 4_000_000 + i, 1_700_000_000 * 10**9 + i,
                                 cid)
                for space, dim in (("content", 512), ("style", 216), ("dup", 160)):
                    cat.put_vectors(space, cids, cids, rng.standard_normal((len(cids), dim)).astype(np.float32))

    def median(v: list[float]) -> float:
        return sorted(v)[len(v) // 2]

    for n in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="imagesim-opencost-"))
        cat = Catalog(tmp / CATALOG_NAME, create=True)
        fill(cat, 0, n)
        t = time.perf_counter()
        assert cat.verify() == []
        first_verify = time.perf_counter() - t
        cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cat.close()
        size_mb = (tmp / CATALOG_NAME).stat().st_size / 1e6
        times: dict[str, list[float]] = {"open": [], "full verify": [], "integrity_check": [], "row checksums": []}
        for _ in range(rounds):
            t = time.perf_counter()
            cat = Catalog(tmp / CATALOG_NAME, create=False)
            times["open"].append(time.perf_counter() - t)
            t = time.perf_counter()
            assert cat.verify() == []
            times["full verify"].append(time.perf_counter() - t)
            t = time.perf_counter()
            cat.conn.execute("PRAGMA integrity_check").fetchall()
            times["integrity_check"].append(time.perf_counter() - t)
            t = time.perf_counter()
            assert not list(cat.bad_rows())
            times["row checksums"].append(time.perf_counter() - t)
            cat.close()
        cat = Catalog(tmp / CATALOG_NAME, create=False)
        fill(cat, n, n + 1000)  # written since the mark: the next opens check them
        cat.close()
        since = []
        for _ in range(rounds):
            t = time.perf_counter()
            Catalog(tmp / CATALOG_NAME, create=False).close()
            since.append(time.perf_counter() - t)
        shutil.rmtree(tmp, ignore_errors=True)
        out.append({"photos": n, "catalog_mb": size_mb, "first_verify": first_verify,
                    **{k: median(v) for k, v in times.items()}, "open, 1,000 since": median(since)})
    return out


# ---- hostile files -----------------------------------------------------------------------------------------------

_DECODE_ONE = """
import resource, sys, time
from imagesim.errors import ImageError
from imagesim.images import load_image
t = time.perf_counter()
try:
    img = load_image(sys.argv[1], draft_size=224)
    verdict = f"accepted {img.size[0]}x{img.size[1]} {img.mode}"
except ImageError as exc:
    verdict = "refused: " + exc.reason
ms = (time.perf_counter() - t) * 1e3
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{verdict}\\t{ms:.1f}\\t{rss:.0f}")
"""


def hostile_files(folder: Path) -> list[tuple[str, str, float, float]]:
    from tests.support.hostile import write_hostile_files

    rows = []
    for name, path in write_hostile_files(folder).items():
        done = subprocess.run([sys.executable, "-c", _DECODE_ONE, str(path)], env=ENV, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            rows.append((name, f"CRASH exit {done.returncode}: {done.stderr.strip()[-200:]}", 0.0, 0.0))
            continue
        verdict, ms, rss = done.stdout.strip().rsplit("\t", 2)
        rows.append((name, verdict, float(ms), float(rss)))
    return rows


def decode_fuzz(runs: int) -> dict:
    corpus = Path(tempfile.mkdtemp(prefix="imagesim-fuzz-"))
    t = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz_decode.py"), f"-runs={runs}", "-timeout=10",
                           "-rss_limit_mb=4096", "-print_final_stats=1", str(corpus)], env=ENV, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t
    stats = {k.strip(): v.strip() for k, v in (ln[len("stat::"):].split(":", 1) for ln in done.stderr.splitlines()
                                               if ln.startswith("stat::"))}
    findings = [ln for ln in done.stderr.splitlines() if "ERROR" in ln or "Uncaught" in ln or "timeout" in ln.lower()]
    shutil.rmtree(corpus, ignore_errors=True)
    return {"runs_requested": runs, "executed": int(stats.get("number_of_executed_units", "0") or 0),
            "exit": done.returncode, "seconds": seconds, "findings": findings[:10]}


PARTS = ["crash", "store", "open", "hostile", "fuzz", "concurrency"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench reliability")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=PARTS, action="append")
    ap.add_argument("--open-sizes", help="photos per catalog for the open-cost table, e.g. 10000,100000")
    ap.add_argument("--store-trials", type=int, help="damaged-store trials (default 350, --quick 35)")
    args = ap.parse_args(argv)
    parts = args.only or PARTS
    quick = args.quick
    sections, data = [], {}
    if "crash" in parts:
        r = crash_trials(6 if quick else 60, 90 if quick else 300)
        data["crash"] = r
        moments = ", ".join(f"{k}: {v}" for k, v in sorted(r["by_moment"].items()))
        sections.append(f"## Crash safety\n\n`kill -9` of `imagesim index` ({r['trials']} trials on a gallery of "
                        f"{90 if quick else 300}+ photos that changes before each trial: deletes, moves, new photos). "
                        f"Moments: {moments}.\n\n| trials | inconsistencies | items lost | resumes that did not "
                        f"finish the job |\n|---|---|---|---|\n| {r['trials']} | {r['inconsistencies']} | {r['lost']} "
                        f"| {r['resume_failures']} |\n" + "".join(f"\n- {n}" for n in r["notes"]))
    if "store" in parts:
        r = store_fuzz(args.store_trials or (35 if quick else 350), repair=True)
        data["store"] = r
        lines = [f"| {kind} | {sum(v.values())} | " + ", ".join(f"{k}: {n}" for k, n in sorted(v.items())) + " |"
                 for kind, v in r["by_kind"].items()]
        targets = "; ".join(f"{t}: " + ", ".join(f"{k} {n}" for k, n in sorted(v.items()))
                            for t, v in sorted(r["old_rows"].items()))
        sections.append("## Damaged stores\n\nEach damaged database opened by a child process (`Gallery.open`, "
                        "`status`, a search by a gallery photo and one by a vector), then fully verified (what "
                        "`imagesim verify` runs). *crafted* damage also rewrites the catalog's size and CRC32, so only "
                        "imagesim's own header and neighbour-list checks stand between the file and hnswlib. "
                        "*catalog* damages random bytes of `catalog.sqlite`; *old-row* flips one bit inside a row the "
                        "searches read, written before the catalog's last verification (the index run ended with "
                        f"one).\n\nTrials: {r['trials']}, crashes: **{r['crashes']}**, damage missed: "
                        f"**{r['missed']}**.\n\n| damage | trials | outcomes |\n|---|---|---|\n" + "\n".join(lines)
                        + "\n\nAn open checks what is cheap and bounded (header, schema, id counters, the rows "
                        "written since the verified mark); every row a query reads is checked against its checksum "
                        "(a `_crc` column that triggers keep up to date on every insert and update) as it is read, and "
                        "SQLite refuses pages it cannot parse. So a catalog may open and answer while damage sits in "
                        "rows that answer did not read. *Damage missed* (goal 0) is either a *wrong answer* (the "
                        "searches' paths and scores differ from the undamaged database's) or a damaged catalog that "
                        "the full verification then passes as sound although its rows differ (*opened (nothing "
                        "changed)*: damage in free space, the dump of every row and the integrity check equal the "
                        "undamaged catalog's). *answered right (damage not read), verify refused*: the answers "
                        "equal the undamaged ones, and `imagesim verify` (or `serve`'s background check) reports the "
                        "damage. A refused catalog names `imagesim repair`, which rebuilds indexes, removes damaged "
                        "rows with what hangs off them, and leaves those photos to the next `imagesim index`.\n\n"
                        f"*old-row* by the row damaged: {targets}. A path damaged in its primary-key index (not its "
                        "table) makes the lookup by that path miss: the photo's stored vector is then found by its "
                        "bytes' SHA-256 (another b-tree), and the answer stays right.\n\nEach damaged catalog that "
                        "was refused or failed verification, then `imagesim repair` and `imagesim index` again: "
                        + ", ".join(f"{k}: {n}" for k, n in sorted(r["repair"].items())) + ".")
    if "open" in parts:
        sizes = tuple(int(x) for x in args.open_sizes.split(",")) if args.open_sizes else (
            (2_000,) if quick else (10_000, 100_000))
        rows = open_cost(sizes)
        data["open"] = rows
        sections.append("## What the checks at open cost\n\nA catalog of N photos (3 spaces: 512-, 216- and 160-d "
                        "vectors), median of 3, page cache warm. *open* is what every command pays (one-shot CLI "
                        "included): the file header against its size, the schema, the id counters, and the rows "
                        "written since the verified mark (none here; the last column after 1,000 photos written since "
                        "it). *full verify* is `imagesim verify` (and the end of an index run that grew the catalog "
                        "by a tenth, and `serve`'s background thread): `PRAGMA integrity_check`, the schema, every "
                        "row's checksum, then the new mark.\n\n| photos | catalog MB | open s | full verify s | of "
                        "which integrity_check s | row checksums s | open, 1,000 photos since the mark s |\n"
                        "|---|---|---|---|---|---|---|\n"
                        + "\n".join(f"| {r['photos']:,} | {r['catalog_mb']:.0f} | {r['open']:.4f} | "
                                    f"{r['full verify']:.2f} | {r['integrity_check']:.2f} | {r['row checksums']:.2f} "
                                    f"| {r['open, 1,000 since']:.3f} |" for r in rows)
                        + "\n\nBefore the mark every open ran the full verification (1.52 s at 100k photos on this "
                        "machine, docs history): a one-shot CLI search paid it on every call.")
    if "hostile" in parts:
        folder = Path(tempfile.mkdtemp(prefix="imagesim-hostile-"))
        rows = hostile_files(folder)
        shutil.rmtree(folder, ignore_errors=True)
        data["hostile"] = rows
        sections.append("## Hostile and odd files\n\nEach file decoded by `load_image` (draft 224) in its own "
                        "process; time and peak RSS of that process (Python + Pillow baseline included).\n\n"
                        "| file | verdict | ms | peak RSS MiB |\n|---|---|---|---|\n"
                        + "\n".join(f"| {n} | {v} | {ms:.1f} | {rss:.0f} |" for n, v, ms, rss in rows))
    if "fuzz" in parts:
        r = decode_fuzz(10_000 if quick else 100_000)
        data["fuzz"] = r
        sections.append(f"## Decode fuzzing\n\n`python bench/fuzz_decode.py -runs={r['runs_requested']} "
                        f"-timeout=10` (atheris, seeds: small files of every allowed format): "
                        f"{r['executed']} inputs in {r['seconds']:.0f} s, exit {r['exit']}, findings: "
                        f"{len(r['findings'])}." + "".join(f"\n- `{f}`" for f in r["findings"]))
    if "concurrency" in parts:
        from bench.concurrency import concurrency_trial

        r = concurrency_trial(initial=200, added=200 if quick else 2000, clients=8)
        r.pop("latency_ms")
        data["concurrency"] = r
        sections.append(f"## Concurrent use\n\n{r['clients']} `gradio_client` clients query `imagesim serve` "
                        f"(alternating `/search` with a gallery photo and `/search_text`, k=10) while `imagesim index` "
                        f"adds {r['added']} photos to the {r['initial']}-photo database it serves "
                        f"({r['index_seconds']:.0f} s, exit {r['index_exit']}). Every response is checked: k rows, "
                        "sorted scores, no duplicate or foreign paths, the query photo first.\n\n"
                        "| requests | errors | torn results | /search p50 / p99 ms | /search_text p50 / p99 ms |\n"
                        "|---|---|---|---|---|\n"
                        f"| {r['requests']} | {len(r['errors'])} | {len(r['torn'])} | {r['/search_p50_ms']:.0f} / "
                        f"{r['/search_p99_ms']:.0f} | {r['/search_text_p50_ms']:.0f} / {r['/search_text_p99_ms']:.0f} |"
                        "\n\nLatencies include the Gradio queue and the 2 search slots shared by 8 clients, with the "
                        "indexer on the same 2 cores." + "".join(f"\n- {e}" for e in (r["errors"] + r["torn"])[:10]))
    body = _merged(_current_body(), sections) if args.only else "\n\n".join(sections)
    write_section("reliability", body, data)
    _write_doc(body)
    print(body)
    return 0


def _current_body() -> str:
    """The reliability section as docs/benchmarks.md holds it now, without its machine line."""
    from bench.report import DOC as BENCH_DOC

    text = BENCH_DOC.read_text() if BENCH_DOC.exists() else ""
    start, end = text.find("<!-- bench:reliability -->"), text.find("<!-- /bench:reliability -->")
    if start < 0 or end < 0:
        return ""
    lines = text[start + len("<!-- bench:reliability -->"):end].strip().splitlines()
    return "\n".join(line for line in lines if not line.startswith("*Machine:")).strip()


def _split(text: str) -> list[str]:
    """Markdown cut into its "## ..." sections (what comes before the first is dropped)."""
    return ["## " + part.strip() for part in ("\n" + text).split("\n## ")[1:]]


def _merged(old: str, sections: list[str]) -> str:
    """`--only` runs replace their own sections ("## ..." headings) and keep the others as they were."""
    fresh = {sec.splitlines()[0]: sec for sec in sections}
    kept = [fresh.pop(sec.splitlines()[0], sec) for sec in _split(old)]
    return "\n\n".join(kept + list(fresh.values()))


def _write_doc(body: str) -> None:
    from bench.report import machine_line

    # hand-written sections (the design notes) stay, after the measured ones
    old = DOC.read_text().split("\n*Machine:")[0] if DOC.exists() else ""
    ours = {sec.splitlines()[0] for sec in _split(body)}
    notes = [sec for sec in _split(old) if sec.startswith("## How") and sec.splitlines()[0] not in ours]
    DOC.write_text("# Reliability\n\nWritten by `python -m bench reliability` (figures also in "
                   "docs/benchmarks.md), apart from the sections headed *How ...*, written by hand. The same checks "
                   "run, smaller, in `tests/test_reliability.py`.\n\n"
                   + "\n\n".join([body, *notes]) + f"\n\n{machine_line()}\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
