"""Copy-detection benchmark: every edit family of issue 12, with random parameters, among all 1360 flowers17 photos.

Two splits: *tuning* (the photos and seed the thresholds were set on) and *held-out* (other photos, other seed);
README figures are held-out. Per family and split: the share of edited copies that land in one `copies` group with
their original (the whole-gallery pass: region k-NN + bounded ORB/RANSAC verification), beside today's v3 descriptor
(`bench/dup_v3.py`: its pair test passes) and pHash (Hamming <= 10), both given the pair directly. Wrong pairs: pairs
inside copies groups whose photos come from different originals. `python -m bench duplicates [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

from bench.flowers import flower_photos, thumbnail
from bench.report import write_section
from tests.support.edits import ALL_FAMILIES

SIDE = 512
THREADS = 2  # the gallery pass's threads (the machine has 2 cores)
PHASH_MAX = 10
SPLITS = {"tuning": 1, "held-out": 2}  # split -> seed; photos: even / odd positions of a shuffled list
# flowers17 pairs that are the same shot (re-cropped, bordered or colour-corrected) though not pixel copies, found
# by eye among earlier false groups: the second wrong-pair column counts them as one original
BY_EYE_SAME = [("dandelion/image_0997.jpg", "dandelion/image_1022.jpg"),
               ("fritillary/image_0646.jpg", "fritillary/image_0679.jpg"),
               ("fritillary/image_0676.jpg", "fritillary/image_0705.jpg"),
               ("lilyvalley/image_0217.jpg", "lilyvalley/image_0229.jpg"),
               ("sunflower/image_0729.jpg", "sunflower/image_0735.jpg"),
               ("sunflower/image_0746.jpg", "sunflower/image_0764.jpg"),
               ("bluebell/image_0242.jpg", "bluebell/image_0243.jpg"),
               ("bluebell/image_0242.jpg", "bluebell/image_0244.jpg")]


def same_pixels(images: list[Image.Image], max_mad: float = 4.0) -> np.ndarray:
    """Source id per photo: flowers17 holds pixel-identical photos under two names; they count as one source."""
    grey = np.stack([np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BOX), np.float32).ravel()
                     for im in images])
    ids = np.arange(len(images))
    for i in range(len(images)):
        mad = np.abs(grey[i + 1:] - grey[i]).mean(axis=1)
        for j in (np.nonzero(mad < max_mad)[0] + i + 1).tolist():
            ids[ids == ids[j]] = ids[i]
    return ids


def phash_bits(images: list[Image.Image]) -> np.ndarray:
    import imagehash

    return np.stack([imagehash.phash(im).hash.ravel() for im in images]).astype(bool)


def wrong_pairs(groups: list[list[int]], source: np.ndarray) -> tuple[int, int]:
    """(pairs inside groups, pairs whose two photos come from different originals)."""
    total = wrong = 0
    for g in groups:
        src = source[g]
        n = len(g)
        total += n * (n - 1) // 2
        _, counts = np.unique(src, return_counts=True)
        wrong += n * (n - 1) // 2 - int((counts * (counts - 1) // 2).sum())
    return total, wrong


def sift_same_shot(a: Image.Image, b: Image.Image, min_inliers: int = 30) -> bool:
    """An independent check (another detector, a homography) that two flowers17 files are one shot: the dataset
    holds dozens of crops and re-saves of its own photos (by eye: daisy 0819/0873, pansy 1305/1322, ...)."""
    import cv2

    sift = cv2.SIFT_create(1000)
    ka, da = sift.detectAndCompute(np.asarray(a.convert("L")), None)
    kb, db = sift.detectAndCompute(np.asarray(b.convert("L")), None)
    if da is None or db is None or len(da) < 2 or len(db) < 2:
        return False
    good = [m[0] for m in cv2.BFMatcher().knnMatch(da, db, k=2) if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
    if len(good) < min_inliers:
        return False
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
    return mask is not None and int(mask.sum()) >= min_inliers


def _query_ms(queries: list[Image.Image], index: object, paths: list, images: list[Image.Image]) -> float:
    """Median time of the work `imagesim duplicates IMAGE` does for one photo (`find_in_gallery`'s steps): codes,
    k-NN, sketches of the candidates (decoded from their files, small), the full check of those that pass."""
    from imagesim.encoders.dup import region_codes
    from imagesim.encoders.keypoints import align
    from imagesim.images import load_image
    from imagesim.search.duplicates.candidates import candidate_pairs
    from imagesim.search.duplicates.verify import Verifier, verdict

    def load(c: int, side: int) -> Image.Image:
        return load_image(paths[c], draft_size=side) if c < len(paths) else images[c]

    times = []
    for q in queries:
        t = time.perf_counter()
        codes = region_codes(q)
        found = candidate_pairs(np.array([-1]), codes[None], index.search)  # type: ignore[attr-defined]
        chosen = [b for (_, b), _ in sorted(found.items(), key=lambda kv: -kv[1][0])]
        verifier = Verifier(lambda c, q=q: q if c == -1 else load(c, 512),
                            lambda c, q=q: q if c == -1 else load(c, 256), threads=THREADS)
        passed = verifier.gate([(-1, c) for c in chosen])
        for _, c in passed:
            verdict(align(verifier.features(-1), verifier.features(c)))  # type: ignore[arg-type]
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench duplicates")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--per-family", type=int, default=None, help="edited copies per family and split "
                                                                     "(default 100; --quick 12)")
    args = parser.parse_args(argv)
    per = args.per_family or (12 if args.quick else 100)

    from bench.dup_v3 import DupEncoder as V3
    from bench.dup_v3 import is_duplicate as v3_duplicate
    from imagesim.encoders.dup import PART, DupEncoder, split_parts
    from imagesim.encoders.keypoints import features, sketch_inliers
    from imagesim.search.duplicates.candidates import KNN_EF, PARTS, candidate_pairs
    from imagesim.search.duplicates.verify import GATE_INLIERS, Verifier, verified_groups
    from imagesim.store.vectors import VectorIndex

    paths = flower_photos()
    if not paths:
        print("flowers17 not found: skipped")
        return 0
    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    originals = [thumbnail(p, SIDE) for p in paths]
    truth = same_pixels(originals)
    order = np.random.default_rng(0).permutation(len(originals))
    images: list[Image.Image] = list(originals)
    source, family, split = list(range(len(originals))), ["original"] * len(originals), ["-"] * len(originals)
    for name, seed in SPLITS.items():
        rng = np.random.default_rng(seed)
        pool = order[0::2] if name == "tuning" else order[1::2]
        for fam, edit in ALL_FAMILIES.items():
            for src in rng.choice(pool, per, replace=False).tolist():
                edited, _ = edit(originals[src], rng)
                images.append(edited)
                source.append(src)
                family.append(fam)
                split.append(name)
    src_arr = truth[np.asarray(source)]
    n = len(images)

    # ours: region codes -> HNSW -> candidate pairs -> verification -> groups
    enc = DupEncoder()
    t = time.perf_counter()
    rows = enc.embed_images(images)
    codes_ms = 1000 * (time.perf_counter() - t) / n
    index = VectorIndex(PART, exact_max=0, capacity=n * PARTS)  # the HNSW graph, as in a big gallery
    index.add(np.arange(n * PARTS, dtype=np.int64), split_parts(rows))
    ids = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    pairs = candidate_pairs(ids, rows.reshape(n, PARTS, PART),
                            lambda q, k: index.search(q, k, ef=KNN_EF, threads=THREADS))
    knn_ms = 1000 * (time.perf_counter() - t) / n
    verifier = Verifier(lambda i: images[i], threads=THREADS)
    t = time.perf_counter()
    found = verified_groups(pairs, verifier)
    verify_s = time.perf_counter() - t
    sketch_only = Verifier(lambda i: images[i])  # the sketch's cost alone, one thread (what indexing would pay)
    t = time.perf_counter()
    sketch_only.gate([(i, i + 1) for i in range(0, 200, 2)])
    sketch_ms = 1000 * (time.perf_counter() - t) / 200
    t = time.perf_counter()
    for im in images[:100]:
        features(im)
    features_ms = 1000 * (time.perf_counter() - t) / 100
    group_of = {x: gi for gi, g in enumerate(found["copies"]) for x in g}

    def with_original(i: int) -> bool:
        g = group_of.get(i)
        return g is not None and any(src_arr[j] == src_arr[i] and j < len(originals) for j in found["copies"][g])

    # baselines, given each pair directly
    v3 = V3()
    v3_vecs = v3.embed_images(images)
    v3_ok = v3_duplicate(v3, v3_vecs, v3_vecs[np.asarray(source)])
    ph = phash_bits(images)
    ph_ok = (ph != ph[np.asarray(source)]).sum(axis=1) <= PHASH_MAX

    fam_arr, split_arr = np.asarray(family), np.asarray(split)
    ours_ok = np.array([with_original(i) for i in range(n)])
    table, per_family = [], {}
    for fam in ALL_FAMILIES:
        cells, entry = [fam], {}
        for name in SPLITS:
            sel = (fam_arr == fam) & (split_arr == name)
            entry[name] = {"ours": float(ours_ok[sel].mean()), "v3": float(v3_ok[sel].mean()),
                           "phash": float(ph_ok[sel].mean())}
        for name in SPLITS:
            cells += [f"{entry[name]['ours']:.3f}", f"{entry[name]['v3']:.3f}", f"{entry[name]['phash']:.3f}"]
        per_family[fam] = entry
        table.append("| " + " | ".join(cells) + " |")
    overall = {name: {m: float(ok[split_arr == name].mean()) for m, ok in (("ours", ours_ok), ("v3", v3_ok),
                                                                           ("phash", ph_ok))} for name in SPLITS}
    worst = {name: min(per_family[f][name]["ours"] for f in ALL_FAMILIES) for name in SPLITS}
    total, wrong = wrong_pairs(found["copies"], src_arr)
    eye = src_arr.copy()
    index_of = {f"{p.parent.name}/{p.name}": i for i, p in enumerate(paths)}
    for a, b in BY_EYE_SAME:
        if a in index_of and b in index_of:
            eye[eye == truth[index_of[b]]] = truth[index_of[a]]
    _, wrong_eye = wrong_pairs(found["copies"], eye)
    # flowers17's own copies (crops and re-saves of one shot under two names), confirmed by SIFT + homography
    merged = eye.copy()
    confirmed = 0
    for g in found["copies"]:
        for x in g:
            for y in g:
                if x < y and merged[x] != merged[y] and sift_same_shot(originals[source[x]], originals[source[y]]):
                    merged[merged == merged[y]] = merged[x]
                    confirmed += 1
    _, wrong_sift = wrong_pairs(found["copies"], merged)
    wrong_list = [f"{family[x]}:{paths[source[x]].parent.name}/{paths[source[x]].name} ~ "
                  f"{family[y]}:{paths[source[y]].parent.name}/{paths[source[y]].name}"
                  for g in found["copies"] for x in g for y in g if x < y and merged[x] != merged[y]]
    missed = []
    for i in range(len(originals), n):
        if not with_original(i):
            key = (min(i, source[i]), max(i, source[i]))
            sk = verifier.sketches.get(key[0]), verifier.sketches.get(key[1])
            gate = sketch_inliers(*sk) if key in pairs and sk[0] is not None and sk[1] is not None else 0
            al = verifier.align(source[i], i) if key in pairs else None
            seen = f"candidate, {gate} sketch inliers, {al.inliers} inliers, agreement {al.agreement:.2f}" if al else (
                "candidate, no alignment" if key in pairs else "not a candidate")
            missed.append(f"{family[i]}:{paths[source[i]].parent.name}/{paths[source[i]].name} ({seen})")
    among_originals = [g for g in found["copies"] if all(x < len(originals) for x in g)]
    pass_ms = knn_ms + 1000 * verify_s / n
    est_100k_min = pass_ms * 100_000 / 1000 / 60
    GATE = GATE_INLIERS
    query_ms = _query_ms(images[len(originals):len(originals) + 40:2], index, paths, images)
    all_row = " | ".join(f"**{overall[sp]['ours']:.3f}** | {overall[sp]['v3']:.3f} | {overall[sp]['phash']:.3f}"
                         for sp in SPLITS)
    share = f"{wrong_sift / max(total, 1):.2%}"
    md = f"""## Copies and similar shots (flowers17: 1360 photos + {n - len(originals)} edited copies)

`python -m bench duplicates{' --quick' if args.quick else ''}`: {len(ALL_FAMILIES)} edit families
(`tests/support/edits.py`, random parameters), {per} copies per family and split; tuning and held-out splits use
different photos and seeds. Ours: is the copy in one *copies* group with its original after the whole-gallery pass
(k-NN over region codes, at most 10 candidates per photo, a sketch check, then ORB + RANSAC and pixel agreement),
every photo of the gallery (all 1360 originals as distractors) in the same pass. v3 (the descriptor before this
change) and pHash (Hamming <= {PHASH_MAX}) are given each copy and its original as a pair.

| family | tuning: ours | v3 | pHash | held-out: ours | v3 | pHash |
|---|---|---|---|---|---|---|
{chr(10).join(table)}
| **all** | {all_row} |

Weakest family: tuning {worst['tuning']:.3f}, held-out {worst['held-out']:.3f}. Wrong pairs in copies groups:
{wrong} of {total} ({wrong / max(total, 1):.2%}) counting every two flowers17 files as different photos;
{wrong_eye} ({wrong_eye / max(total, 1):.2%}) with the by-eye same shots counted as one; **{wrong_sift} ({share})**
with those and flowers17's other crops and re-saves of one shot counted as one photo ({confirmed} file pairs that an
independent SIFT + homography check, >= 30 inliers, confirms; by eye, e.g. daisy 0819/0873, pansy 1305/1322, bluebell
0249/0250 are one shot cropped differently). Copies groups among the untouched originals: {len(among_originals)};
similar-shot groups: {len(found['similar'])}. The remaining wrong pairs and the missed copies are listed in
`docs/bench/duplicates.json`.

Cost ({THREADS} threads; load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on
{len(os.sched_getaffinity(0))} cores): region codes {codes_ms:.1f} ms per photo (the
indexing cost the dup space adds; the content space costs ~24 ms per photo, `bench speed`); k-NN candidates
{knn_ms:.2f} ms per photo ({len(pairs)} pairs, {len(pairs) / n:.1f} per photo). Verification {1000 * verify_s / n:.1f}
ms per photo: every candidate pair gets the sketch check first ({verifier.sketched} pairs; a sketch costs
{sketch_ms:.1f} ms per photo on one thread, decoded pixels given), and only the {verifier.checked} pairs that share
>= {GATE} consistent sketch keypoints (or have too few to say) get the full ORB + RANSAC check, which computes the
features of {len(verifier.feats)} of the {n} photos ({features_ms:.1f} ms each). Whole-gallery pass {pass_ms:.1f} ms
per photo with pixels in memory (no decoding: the sketches' small decodes come on top in a real gallery). One photo
against the gallery (`imagesim duplicates IMAGE`'s work: codes, k-NN, sketches of the candidates decoded from their
files, full check of those that pass): median {query_ms:.0f} ms.
"""
    write_section("duplicates", md, {"per_family": per_family, "overall": overall, "weakest": worst,
                                     "wrong_pairs": wrong, "pairs": total, "wrong_pairs_by_eye": wrong_eye,
                                     "wrong_pairs_sift": wrong_sift, "wrong_list": wrong_list, "missed": missed,
                                     "query_ms": query_ms,
                                     "codes_ms": codes_ms, "features_ms": features_ms, "knn_ms": knn_ms,
                                     "sketch_ms": sketch_ms, "sketched_pairs": verifier.sketched,
                                     "candidate_pairs": len(pairs), "featured_photos": len(verifier.feats),
                                     "verify_ms": 1000 * verify_s / n, "aligned_pairs": verifier.checked,
                                     "est_100k_min": est_100k_min, "seconds": time.perf_counter() - t0,
                                     "quick": args.quick, "load": [load_start, os.getloadavg()[0]]})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
