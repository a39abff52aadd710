"""Faces benchmark on faces-small: detection per labelled person, verification, rank-1, and indexing speed side by
side with the face_recognition library (face_locations + face_encodings) on the same photos, in the same run.

Labels are per photo (`labels.csv`). A single-person photo's face is its largest face. In a photo of several people,
the labelled people are matched to its faces by the least total distance to each person's mean descriptor from the
single-person photos (every assignment tried); a person counts as found when the matched face is within the 0.6
tolerance. Byte-identical copies are counted once (deduplicated by SHA-256) before any pair is formed.

The face_recognition baseline is installed with `pip install --no-deps face_recognition` (its `dlib` requirement
would build dlib from source beside dlib-bin). It imports face_recognition_models, which needs pkg_resources, gone
from setuptools >= 81: this benchmark puts a tiny `pkg_resources` shim in sys.modules when the real one is missing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import itertools
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import median, write_section
from tests.support.photos import datasets_dir

THRESHOLDS = [0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75]


def load_labels(folder: Path) -> list[tuple[str, str, list[str]]]:
    """[(absolute path, sha256, people)] for distinct photos (first path of byte-identical copies)."""
    seen: set[str] = set()
    out = []
    with open(folder / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            path = folder / row["path"]
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if sha in seen:
                continue
            seen.add(sha)
            out.append((str(path), sha, [p for p in row["people"].split(";") if p]))
    return out


# ---- imagesim ----------------------------------------------------------------------------------------------------

def run_imagesim(analyzer: Any, photos: list[tuple[str, str, list[str]]]) -> tuple[float, dict[str, list]]:
    """Index the distinct photos with faces on (no content model); return seconds and faces by sha.

    The models are loaded before the clock starts, as face_recognition loads its own at import."""
    from imagesim.faces.catalog import descriptors, face_rows
    from imagesim.faces.stage import FaceStage, configure_faces
    from imagesim.indexer import index_gallery
    from imagesim.store import Store

    work = Path(tempfile.mkdtemp(prefix="imagesim-faces-bench-"))
    try:
        gallery = work / "photos"
        gallery.mkdir()
        for i, (path, _, _) in enumerate(photos):  # the distinct photos only, like the baseline sees them
            shutil.copyfile(path, gallery / f"{i:03d}{Path(path).suffix}")
        store = Store.open(work / "db", create=True, threads=2)
        try:
            configure_faces(store, True)
            stage = FaceStage(analyzer)
            start = time.perf_counter()
            index_gallery(store, [gallery], [], faces=stage, progress=False, threads=2)
            seconds = time.perf_counter() - start
            rows = face_rows(store.catalog)
            descs = descriptors(store.catalog, [r.id for r in rows])
            sha_of = dict(store.catalog.conn.execute("SELECT id, sha256 FROM contents").fetchall())
            faces: dict[str, list] = {sha: [] for _, sha, _ in photos}
            for r in rows:
                faces[sha_of[r.content_id]].append((r.box, descs[r.id]))
        finally:
            store.close()
        return seconds, faces
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- face_recognition --------------------------------------------------------------------------------------------

def import_face_recognition() -> Any | None:
    if importlib.util.find_spec("face_recognition") is None:
        return None
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # setuptools >= 81 has no pkg_resources: give face_recognition_models what it asks for
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, name: str) -> str:
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.submodule_search_locations
            return str(Path(next(iter(spec.submodule_search_locations))) / name)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    import face_recognition

    return face_recognition


def run_face_recognition(fr: Any, photos: list[tuple[str, str, list[str]]]) -> tuple[float, dict[str, list]]:
    faces: dict[str, list] = {}
    start = time.perf_counter()
    for path, sha, _ in photos:
        img = fr.load_image_file(path)
        locations = fr.face_locations(img)  # HOG, upsampled once: the library's defaults
        encodings = fr.face_encodings(img, locations)
        faces[sha] = [((left, top, right, bottom), np.asarray(enc, dtype=np.float32))
                      for (top, right, bottom, left), enc in zip(locations, encodings, strict=True)]
    return time.perf_counter() - start, faces


# ---- accuracy ----------------------------------------------------------------------------------------------------

def label_faces(photos: list[tuple[str, str, list[str]]], faces: dict[str, list],
                tolerance: float = 0.6) -> tuple[list[tuple[str, str, np.ndarray]], dict[str, list[bool]]]:
    """([(sha, person, descriptor)] for every labelled face found, {person: [found? per photo]})."""
    labelled: list[tuple[str, str, np.ndarray]] = []
    found: dict[str, list[bool]] = {}
    for _, sha, people in photos:
        if len(people) == 1 and faces[sha]:
            box, desc = max(faces[sha], key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
            labelled.append((sha, people[0], desc))
    means = {p: np.mean([d for _, q, d in labelled if q == p], axis=0) for p in {q for _, q, _ in labelled}}
    for _, sha, people in photos:
        if len(people) == 1:
            found.setdefault(people[0], []).append(bool(faces[sha]))
            continue
        descs = [d for _, d in faces[sha]]
        best: tuple[float, tuple[int, ...]] | None = None
        for perm in itertools.permutations(range(len(descs)), min(len(people), len(descs))):
            cost = sum(float(np.linalg.norm(descs[f] - means[p])) for p, f in zip(people, perm, strict=False))
            if best is None or cost < best[0]:
                best = (cost, perm)
        chosen = dict(zip(people, best[1] if best else (), strict=False))
        for person in people:
            f = chosen.get(person)
            ok = f is not None and person in means and float(np.linalg.norm(descs[f] - means[person])) < tolerance
            found.setdefault(person, []).append(ok)
            if ok:
                labelled.append((sha, person, descs[f]))  # type: ignore[index]
    return labelled, found


def accuracy(labelled: list[tuple[str, str, np.ndarray]], faces: dict[str, list], tolerance: float = 0.6
             ) -> dict[str, Any]:
    """Verification over all pairs of labelled faces from distinct photos, error rates per threshold, rank-1."""
    same, diff = [], []
    for (sa, pa, da), (sb, pb, db) in itertools.combinations(labelled, 2):
        if sa != sb:
            (same if pa == pb else diff).append(float(np.linalg.norm(da - db)))
    same_a, diff_a = np.asarray(same), np.asarray(diff)
    rates = [{"threshold": t, "false_accept": float((diff_a < t).mean()), "false_reject": float((same_a >= t).mean())}
             for t in THRESHOLDS]
    correct = int((same_a < tolerance).sum() + (diff_a >= tolerance).sum())
    # Rank-1: the nearest face in any other photo (unlabelled faces included) must be the same person.
    every = [(sha, desc) for sha, fs in faces.items() for _, desc in fs]
    identity = {(sha, desc.tobytes()): person for sha, person, desc in labelled}
    counts = {p: sum(1 for _, q, _ in labelled if q == p) for _, p, _ in labelled}
    probes = [x for x in labelled if counts[x[1]] > 1]  # a person seen once has no other photo to find
    hits = 0
    for sha, person, desc in probes:
        others = [(float(np.linalg.norm(desc - d)), s, d) for s, d in every if s != sha]
        _, s, d = min(others, key=lambda o: o[0])
        hits += identity.get((s, d.tobytes())) == person
    return {"pairs_same": len(same), "pairs_different": len(diff),
            "verification_accuracy": correct / max(1, len(same) + len(diff)),
            "max_same_distance": float(same_a.max()) if len(same_a) else None,
            "min_different_distance": float(diff_a.min()) if len(diff_a) else None,
            "rank1": hits / max(1, len(probes)), "rank1_probes": len(probes), "labelled_faces": len(labelled),
            "rates": rates}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench faces")
    parser.add_argument("--quick", action="store_true", help="one timing round instead of three")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    folder = datasets_dir() / "faces-small"
    if not (folder / "labels.csv").is_file():
        print(f"faces: skipped, no {folder}/labels.csv")
        return 0
    photos = load_labels(folder)
    rounds = args.rounds or (1 if args.quick else 3)
    load_start = os.getloadavg()[0]
    fr = import_face_recognition()
    from imagesim.faces.analyze import FaceAnalyzer
    from imagesim.faces.detect import FaceDetector
    from imagesim.images import load_image

    analyzer = FaceAnalyzer()
    # The same pipeline with fewer passes or one thread, timed in the same rounds: what the turned passes and the
    # second thread cost or give.
    variants = {"upright passes only, 2 threads": FaceAnalyzer(FaceDetector(rotate="never")),
                "before (upright only, <=2x up, 1 thread)": FaceAnalyzer(
                    FaceDetector(rotate="never", max_upsample=2.0, portrait=0.0), threads=1)}
    for a in [analyzer, *variants.values()]:
        a.faces([load_image(photos[0][0])])  # load the models once, outside the timings
    ours_s, theirs_s = [], []
    variant_s: dict[str, list[float]] = {name: [] for name in variants}
    variant_faces: dict[str, int] = {}
    ours = theirs = None
    for _ in range(rounds):  # take turns, so all see the same machine load
        seconds, ours = run_imagesim(analyzer, photos)
        ours_s.append(seconds)
        if fr is not None:
            seconds, theirs = run_face_recognition(fr, photos)
            theirs_s.append(seconds)
        for name, other in variants.items():
            seconds, found_v = run_imagesim(other, photos)
            variant_s[name].append(seconds)
            variant_faces[name] = sum(len(f) for f in found_v.values())
    assert ours is not None
    results: dict[str, Any] = {"photos": len(photos), "rounds": rounds, "load": [load_start, os.getloadavg()[0]]}
    for name, faces, times in (("imagesim", ours, ours_s), ("face_recognition", theirs, theirs_s)):
        if faces is None:
            continue
        labelled, found = label_faces(photos, faces)
        n_faces = sum(len(f) for f in faces.values())
        results[name] = {"seconds": times, "photos_per_s": len(photos) / median(times),
                         "faces_per_s": n_faces / median(times), "faces": n_faces,
                         "found": {p: f"{sum(v)}/{len(v)}" for p, v in sorted(found.items())},
                         "all_found": all(all(v) for v in found.values()), **accuracy(labelled, faces)}
    results["variants"] = {name: {"seconds": variant_s[name], "photos_per_s": len(photos) / median(variant_s[name]),
                                  "faces": variant_faces[name]} for name in variants}
    write_section("faces", render(results), results)
    print(render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    names = [n for n in ("imagesim", "face_recognition") if n in r]
    lines = [f"## Faces (faces-small, {r['photos']} distinct photos, median of {r['rounds']} rounds)", "",
             "`python -m bench faces`. imagesim: `index --faces` pipeline (read, hash, JPEG draft decode, HOG at "
             "640 px, then 1280 px unless one big face was found, then 2560 px for groups, then a +-30 degree "
             "turned pass towards the tilt when a found face is tilted 12 degrees or more; a batch's photos on 2 "
             "threads; 5-point alignment, "
             "batched ResNet descriptors, SQLite commit), no content model. "
             "face_recognition 1.3: `load_image_file` + `face_locations` (HOG, upsample 1) + `face_encodings`.", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(r[n]) for n in names) + " |")

    row("photos/s", lambda x: f"{x['photos_per_s']:.2f}")
    row("faces/s", lambda x: f"{x['faces_per_s']:.2f}")
    row("faces found (all photos)", lambda x: str(x["faces"]))
    row("labelled people found", lambda x: "all" if x["all_found"] else "not all")
    row("verification accuracy (t=0.6)", lambda x: f"{x['verification_accuracy']:.4f}")
    row("identity rank-1", lambda x: f"{x['rank1']:.4f}")
    row("same/different pairs", lambda x: f"{x['pairs_same']}/{x['pairs_different']}")
    row("largest same-person distance", lambda x: f"{x['max_same_distance']:.3f}")
    row("smallest different-person distance", lambda x: f"{x['min_different_distance']:.3f}")
    if len(names) == 2:
        speed = r["imagesim"]["photos_per_s"] / r["face_recognition"]["photos_per_s"]
        lines += ["", f"imagesim indexes faces {speed:.2f}x as fast as face_recognition on the same photos."]
    if r.get("variants"):
        lines += ["", "The same run, other settings of imagesim's detector (same photos, same rounds):", "",
                  "| imagesim setting | photos/s | faces found |", "|---|---|---|",
                  f"| default: upright cascade + turned pass when a face is tilted, 2 threads | "
                  f"{r['imagesim']['photos_per_s']:.2f} | {r['imagesim']['faces']} |"]
        lines += [f"| {name} | {v['photos_per_s']:.2f} | {v['faces']} |" for name, v in r["variants"].items()]
    if r.get("load"):
        lines += ["", f"Load average at the start and end of the run: {r['load'][0]:.1f} / {r['load'][1]:.1f} on "
                  f"{os.cpu_count()} cores (other jobs were running when above ~2): the rates are then low, the "
                  "ratios come from the same interleaved rounds."]
    lines += ["", "Found per person (imagesim): " + ", ".join(f"{p} {v}" for p, v in r["imagesim"]["found"].items())
              + "."]
    return "\n".join(lines)
