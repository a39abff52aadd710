"""Face verification on people not used for calibration: same/different pairs from every labelled face, plus
degraded copies, split by person into calibration and held-out people, with confidence intervals.

Faces. faces-small's labelled people (6, matched to faces as `bench faces` does) and faces-groups' 43 boxed faces,
each taken as a person of their own (PASCAL VOC group photos: strangers to each other and, as far as can be seen,
across photos; the benchmark prints the closest pair of them so a repeat would show). Every face is found by
imagesim's own pipeline (FaceAnalyzer on the photo; a group face is the detected face overlapping its box).

Degraded copies. For each labelled face, COPIES copies of a crop around it, each with a random mix of: downscale (face
to 28-70 px), Gaussian blur (1-4 % of the face side), JPEG (quality 8-50) and lighting (gamma 0.45-2.2, brightness
0.5-1.4, contrast 0.5-1.2); each is searched for faces again, and a copy whose face is not found is counted and left
out (it would not be in a gallery either). A copy and its original are a same-person pair (of one shot: easier than
two photos, which is why the two kinds are reported apart).

Splits. People, not pairs, are split: FOLDS-fold cross-validation by person, repeated REPEATS times with different
seeds. On each split the calibration people's pairs set the tolerance (the least balanced error, ties nearest 0.6)
and QUALITY_WIDEN (the least widening that puts every calibration error in the low band); the held-out people's
pairs are judged with (a) the shipped thresholds (config in imagesim/faces/verdicts.py) and (b) the split's own.
Intervals: Wilson 95 % on the pooled held-out counts (pairs share faces, so they are not independent: the intervals
are too narrow if anything), and the spread over splits.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import pickle
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_section
from tests.support.photos import datasets_dir

COPIES = 3
FOLDS = 5
REPEATS = 4
JITTERS = (0, 2, 5)
SEED = 15
CACHE = Path("/tmp/imagesim-faces-verify-cache.pkl")
BANDS = ("high", "medium", "low")
SPLIT_WIDEN = "0.6 + split's widening"
PHOTOS_WIDEN = "originals, 0.6 + split's widening from photos"


@dataclass
class FaceRec:
    """One face of the benchmark: who, from which shot, how it was degraded, what the pipeline saw."""

    person: str
    shot: str  # the photo (original) it comes from: copies share their original's shot
    copy: str  # "" for the original, else the degradations applied
    side: float
    score: float
    sharp: float
    turned: float
    descs: dict[int, np.ndarray] = field(repr=False, default_factory=dict)  # jitters -> descriptor


# ---- faces -------------------------------------------------------------------------------------------------------

def _group_boxes(folder: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    out: dict[str, list[tuple[int, int, int, int]]] = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(folder / name).getroot().iter("image"):
            for b in image.iter("box"):
                left, top, w, h = (int(b.get(k, "0")) for k in ("left", "top", "width", "height"))
                out.setdefault(image.get("file", ""), []).append((left, top, left + w, top + h))
    return out


def _degrade(img: Any, box: tuple[float, ...], rng: np.random.Generator) -> tuple[Any, tuple[float, ...], str]:
    """A crop around the face with a random mix of degradations; the face's box in it; what was done."""
    from PIL import Image, ImageEnhance, ImageFilter

    side = box[2] - box[0]
    crop = (max(0, int(box[0] - side)), max(0, int(box[1] - side)), min(img.width, int(box[2] + side)),
            min(img.height, int(box[3] + side)))
    out = img.crop(crop)
    fbox = [box[0] - crop[0], box[1] - crop[1], box[2] - crop[0], box[3] - crop[1]]
    ops = [op for op in ("down", "blur", "light", "jpeg") if rng.random() < 0.6] or [str(rng.choice(["blur", "jpeg"]))]
    done = []
    if "down" in ops:
        target = rng.uniform(28, 70)
        if target < side:
            f = target / side
            out = out.resize((max(8, round(out.width * f)), max(8, round(out.height * f))), Image.Resampling.BILINEAR)
            fbox = [v * f for v in fbox]
            done.append(f"down{target:.0f}px")
    if "blur" in ops:
        radius = rng.uniform(0.01, 0.04) * (fbox[2] - fbox[0])
        out = out.filter(ImageFilter.GaussianBlur(radius))
        done.append(f"blur{radius:.1f}")
    if "light" in ops:
        gamma, bright, contrast = rng.uniform(0.45, 2.2), rng.uniform(0.5, 1.4), rng.uniform(0.5, 1.2)
        arr = (np.asarray(out, dtype=np.float32) / 255.0) ** gamma
        out = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8))
        out = ImageEnhance.Contrast(ImageEnhance.Brightness(out).enhance(bright)).enhance(contrast)
        done.append(f"light(g{gamma:.2f},b{bright:.2f},c{contrast:.2f})")
    if "jpeg" in ops:
        import io

        q = int(rng.integers(8, 51))
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=q)
        buf.seek(0)
        out = Image.open(buf).convert("RGB")
        done.append(f"jpeg{q}")
    return out, tuple(fbox), "+".join(done) or "none"


def _measure(analyzer: Any, img: Any, want: tuple[float, ...] | None) -> list[tuple[Any, np.ndarray]]:
    """[(face record fields, aligned chip)] for the faces of `img` (only the one overlapping `want` when given)."""
    from imagesim.faces.detect import _iou
    from imagesim.faces.quality import sharpness, turn

    rgb = np.asarray(img.convert("RGB"))
    found = analyzer.detector.face_locations(img.convert("RGB"))
    if want is not None:
        found = [f for f in found if _iou(f[0], want) >= 0.3]
        found = sorted(found, key=lambda f: -_iou(f[0], want))[:1]
    out = []
    for box, score in found:
        chip = analyzer.embedder.chip(rgb, box)
        points = analyzer.quality.landmarks(rgb, box)
        out.append(((box, float(min(box[2] - box[0], box[3] - box[1])), float(score), sharpness(rgb, box),
                     turn(points)), chip))
    return out


def build_faces(quick: bool) -> tuple[list[FaceRec], dict[str, Any]]:
    """Every labelled face and its degraded copies, with descriptors at each jitter count."""
    from bench.faces import label_faces, load_labels
    from imagesim.faces.analyze import FaceAnalyzer
    from imagesim.images import load_image

    root = datasets_dir()
    analyzer = FaceAnalyzer()
    _, recognizer = analyzer.embedder._models()
    rng = np.random.default_rng(SEED)
    sources: list[tuple[str, str, Any, tuple[float, ...], Any, tuple]] = []  # person, shot, img, box, chip, fields
    # faces-small: people matched to faces as bench/faces.py does
    photos = load_labels(root / "faces-small")
    found: dict[str, list] = {}
    detail: dict[str, dict] = {}
    images = {}
    for path, sha, _ in photos:
        img = load_image(path)
        images[sha] = img
        faces = _measure(analyzer, img, None)
        found[sha] = [(f[0], np.asarray(recognizer.compute_face_descriptor(chip), np.float32)) for f, chip in faces]
        detail[sha] = {tuple(f[0]): (f, chip) for f, chip in faces}
    labelled, _ = label_faces(photos, {s: [(b, d) for b, d in v] for s, v in found.items()})
    for sha, person, desc in labelled:
        box = next(b for b, d in found[sha] if d.tobytes() == desc.tobytes())
        f, chip = detail[sha][tuple(box)]
        sources.append((person, sha[:12], images[sha], tuple(box), chip, f))
    # faces-groups: each boxed face a person of their own
    groups = root / "faces-groups"
    missed_groups = 0
    for name, boxes in sorted(_group_boxes(groups).items()):
        img = load_image(groups / name)
        for n, want in enumerate(boxes):
            got = _measure(analyzer, img, tuple(float(v) for v in want))
            if not got:
                missed_groups += 1
                continue
            f, chip = got[0]
            sources.append((f"{name}#{n}", name, img, tuple(f[0]), chip, f))
    recs: list[FaceRec] = []
    chips: list[np.ndarray] = []
    dropped = 0
    copies = 2 if quick else COPIES
    for person, shot, img, box, chip, f in sources:
        recs.append(FaceRec(person, shot, "", f[1], f[2], f[3], f[4]))
        chips.append(chip)
        for _ in range(copies):
            copy, fbox, done = _degrade(img, box, rng)
            got = _measure(analyzer, copy, fbox)
            if not got:
                dropped += 1
                continue
            g, c = got[0]
            recs.append(FaceRec(person, shot, done, g[1], g[2], g[3], g[4]))
            chips.append(c)
    cost: dict[int, float] = {}
    for j in JITTERS if not quick else (0, 2):
        start = time.perf_counter()
        out = recognizer.compute_face_descriptor(chips, j) if j else recognizer.compute_face_descriptor(chips)
        cost[j] = (time.perf_counter() - start) / max(1, len(chips))
        for rec, v in zip(recs, out, strict=True):
            rec.descs[j] = np.asarray(v, dtype=np.float32)
    info = {"sources": len(sources), "copies_dropped": dropped, "copies_made": len(sources) * copies,
            "group_faces_missed": missed_groups, "seconds_per_descriptor": cost,
            "people": len({r.person for r in recs})}
    return recs, info


# ---- pairs, splits, calibration --------------------------------------------------------------------------------

def _wilson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass
class Pairs:
    a: np.ndarray
    b: np.ndarray
    dist: np.ndarray
    same: np.ndarray
    quality: np.ndarray  # the worse face's
    kind: np.ndarray  # "photos" (two shots of one person), "copy" (a shot and its copy, or two copies), "different"
    originals: np.ndarray  # both faces are originals (no degraded copy)


def make_pairs(recs: list[FaceRec], qualities: np.ndarray, jitters: int = 0) -> Pairs:
    n = len(recs)
    ia, ib = np.triu_indices(n, 1)
    desc = np.stack([r.descs[jitters] for r in recs])
    dist = np.round(np.linalg.norm(desc[ia] - desc[ib], axis=1), 4)
    person = np.asarray([r.person for r in recs])
    shot = np.asarray([r.shot for r in recs])
    same = person[ia] == person[ib]
    kind = np.where(~same, "different", np.where(shot[ia] == shot[ib], "copy", "photos"))
    orig = np.asarray([r.copy == "" for r in recs])
    return Pairs(ia, ib, dist, same, np.minimum(qualities[ia], qualities[ib]), kind, orig[ia] & orig[ib])


def qualities_of(recs: list[FaceRec]) -> np.ndarray:
    from imagesim.faces.quality import score_quality

    return np.asarray([score_quality(r.side, r.sharp, r.turned, r.score).value for r in recs])


def bands(dist: np.ndarray, quality: np.ndarray | None, tolerance: float, widen: float) -> np.ndarray:
    """The confidence of each pair's verdict, as verdicts.verdict computes it (vectorised, same rounding)."""
    from imagesim.faces import verdicts as v

    q = np.ones_like(dist) if quality is None else np.clip(quality, 0, 1)
    w = np.round(v.LOW_BAND + widen * (1 - q), v.DECIMALS)
    extra = w - v.LOW_BAND
    low = (dist >= np.round(tolerance - w, v.DECIMALS)) & (dist < np.round(tolerance + w, v.DECIMALS))
    high = (dist < np.round(v.SURE_SAME - (tolerance - v.TOLERANCE) - extra, v.DECIMALS)) | (
        dist >= np.round(v.SURE_DIFFERENT + (tolerance - v.TOLERANCE) + extra, v.DECIMALS))
    return np.where(low, "low", np.where(high, "high", "medium"))


def calibrate(p: Pairs, mask: np.ndarray) -> tuple[float, float, float]:
    """From the calibration pairs: (tolerance with the least balanced error, ties nearest 0.6; the least widening that
    puts every error at that tolerance in the low band; the same widening at the shipped tolerance)."""
    from imagesim.faces.verdicts import TOLERANCE

    d, s, q = p.dist[mask], p.same[mask], p.quality[mask]
    grid = np.round(np.arange(0.40, 0.80001, 0.005), 3)
    err = [((d[s] >= t).mean() + (d[~s] < t).mean()) / 2 for t in grid]
    best = min(err)
    tol = float(min((t for t, e in zip(grid, err, strict=True) if e <= best + 1e-12), key=lambda t: abs(t - 0.6)))

    def widening(t: float) -> float:
        wrong = (d < t) != s
        for widen in np.round(np.arange(0.0, 0.401, 0.01), 2):
            if (bands(d[wrong], q[wrong], t, float(widen)) == "low").all():
                return float(widen)
        return 0.40

    return tol, widening(tol), widening(TOLERANCE)


def splits(people: list[str], repeats: int) -> list[set[str]]:
    """Held-out people of each split: FOLDS folds, `repeats` shuffles."""
    out = []
    for r in range(repeats):
        order = np.random.default_rng(SEED + r).permutation(len(people))
        for f in range(FOLDS):
            out.append({people[i] for i in order[f::FOLDS]})
    return out


def evaluate(recs: list[FaceRec], p: Pairs, repeats: int) -> dict[str, Any]:
    from imagesim.faces import verdicts as v

    person = np.asarray([r.person for r in recs])
    people = sorted(set(person.tolist()))
    per_split = []
    pooled: dict[str, dict[str, list[int]]] = {}  # scheme -> band -> [pairs, wrong]

    def tally(name: str, b: np.ndarray, said_same: np.ndarray, wrong: np.ndarray, good: np.ndarray,
              kind: np.ndarray) -> dict[str, Any]:
        t = pooled.setdefault(name, {})
        for band in BANDS:
            for verdict_same in (True, False):
                m = (b == band) & (said_same == verdict_same)
                key = f"{'same' if verdict_same else 'different'}/{band}"
                cell = t.setdefault(key, [0, 0])
                cell[0] += int(m.sum())
                cell[1] += int((m & wrong).sum())
        cell = t.setdefault("good pairs shown low", [0, 0])
        cell[0] += int(good.sum())
        cell[1] += int(((b == "low") & good).sum())
        cell = t.setdefault("correct shown low", [0, 0])
        cell[0] += int((~wrong).sum())
        cell[1] += int(((b == "low") & ~wrong).sum())
        for k in ("photos", "copy", "different"):
            cell = t.setdefault(f"wrong/{k}", [0, 0])
            cell[0] += int((kind == k).sum())
            cell[1] += int((wrong & (kind == k)).sum())
        return {"accuracy": float(1 - wrong.mean()) if len(wrong) else float("nan"), "wrong": int(wrong.sum()),
                "wrong_low": int((wrong & (b == "low")).sum()), "pairs": int(len(wrong))}

    for held in splits(people, repeats):
        held_face = np.isin(person, list(held))
        cal = ~held_face[p.a] & ~held_face[p.b]
        test = held_face[p.a] & held_face[p.b]
        tol, widen, widen_shipped = calibrate(p, cal)
        widen_photos = calibrate(p, cal & p.originals)[2]  # from the calibration people's photos, no copies
        row: dict[str, Any] = {"tolerance": tol, "widen": widen, "widen_at_shipped": widen_shipped,
                               "widen_photos": widen_photos,
                               "held_people": len(held),
                               "held_same": int(p.same[test].sum()), "held_different": int((~p.same[test]).sum())}
        for name, t, w, quality, only in (("shipped, no quality", v.TOLERANCE, 0.0, False, False),
                                          ("shipped + quality", v.TOLERANCE, v.QUALITY_WIDEN, True, False),
                                          ("split's own", tol, widen, True, False),
                                          ("0.6 + split's widening", v.TOLERANCE, widen_shipped, True, False),
                                          ("originals, shipped, no quality", v.TOLERANCE, 0.0, False, True),
                                          ("originals, shipped + quality", v.TOLERANCE, v.QUALITY_WIDEN, True, True),
                                          (PHOTOS_WIDEN, v.TOLERANCE, widen_photos, True, True)):
            m = test & p.originals if only else test
            d, s, q, kind = p.dist[m], p.same[m], p.quality[m], p.kind[m]
            said_same = d < t
            row[name] = tally(name, bands(d, q if quality else None, t, w), said_same, said_same != s, q >= 1.0, kind)
        per_split.append(row)
    return {"splits": per_split, "pooled": pooled}


def rank1(recs: list[FaceRec], jitters: int = 0) -> dict[str, Any]:
    """Identity rank-1: (a) each original face's nearest face from another shot; (b) each degraded copy's nearest
    original; (c) person-level, as imagesim's PersonMatch judges (mean of a person's PERSON_FACES nearest faces
    among other shots), for the originals."""
    from imagesim.faces.search import PERSON_FACES

    desc = np.stack([r.descs[jitters] for r in recs])
    person = np.asarray([r.person for r in recs])
    shot = np.asarray([r.shot for r in recs])
    orig = np.asarray([r.copy == "" for r in recs])
    d = np.linalg.norm(desc[:, None, :] - desc[None, :, :], axis=2)
    out: dict[str, Any] = {}
    # (a) originals whose person has another shot
    hits = probes = 0
    p_hits = 0
    for i in np.nonzero(orig)[0]:
        other = shot != shot[i]
        if not (other & (person == person[i])).any():
            continue
        probes += 1
        j = np.nonzero(other)[0][np.argmin(d[i, other])]
        hits += person[j] == person[i]
        scores = {}
        for who in set(person[other].tolist()):
            m = other & (person == who)
            scores[who] = float(np.sort(d[i, m])[:PERSON_FACES].mean())
        p_hits += min(scores, key=lambda w: scores[w]) == person[i]
    out["face"] = {"hits": int(hits), "probes": probes}
    out["person"] = {"hits": int(p_hits), "probes": probes}
    # (b) copies against every original
    cols = np.nonzero(orig)[0]
    rows = np.nonzero(~orig)[0]
    nearest = cols[np.argmin(d[np.ix_(rows, cols)], axis=1)]
    out["copy"] = {"hits": int((person[nearest] == person[rows]).sum()), "probes": int(len(rows))}
    return out


def jitter_study(recs: list[FaceRec], qualities: np.ndarray, repeats: int, cost: dict[int, float]
                 ) -> list[dict[str, Any]]:
    out = []
    for j in sorted(recs[0].descs):
        p = make_pairs(recs, qualities, j)
        ev = evaluate(recs, p, repeats)
        acc = [s["shipped + quality"]["accuracy"] for s in ev["splits"]]
        wrong = sum(s["shipped + quality"]["wrong"] for s in ev["splits"])
        same, diff = p.dist[p.same], p.dist[~p.same]
        out.append({"jitters": j, "ms_per_face": 1000 * cost[j], "held_accuracy_median": float(np.median(acc)),
                    "held_wrong": wrong, "all_pairs_wrong": int((same >= 0.6).sum() + (diff < 0.6).sum()),
                    "rank1": rank1(recs, j),
                    "mean_same": float(same.mean()), "mean_different": float(diff.mean())})
    return out


# ---- report ------------------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench faces-verify")
    parser.add_argument("--quick", action="store_true", help="2 copies per face, 1 repeat, 2 jitter settings")
    parser.add_argument("--cached", action="store_true", help=f"reuse the faces measured last time ({CACHE})")
    args = parser.parse_args(argv)
    root = datasets_dir()
    if not (root / "faces-small" / "labels.csv").is_file() or not (root / "faces-groups").is_dir():
        print(f"faces-verify: skipped, no faces-small / faces-groups under {root}")
        return 0
    start = time.perf_counter()
    if args.cached and CACHE.is_file():
        recs, info = pickle.loads(CACHE.read_bytes())
    else:
        recs, info = build_faces(args.quick)
        info["build_seconds"] = time.perf_counter() - start
        CACHE.write_bytes(pickle.dumps((recs, info)))
    repeats = 1 if args.quick else REPEATS
    q = qualities_of(recs)
    p = make_pairs(recs, q)
    ev = evaluate(recs, p, repeats)
    groups = [i for i, r in enumerate(recs) if "#" in r.person and r.copy == ""]
    gd = [(float(np.linalg.norm(recs[i].descs[0] - recs[j].descs[0])), recs[i].person, recs[j].person)
          for i, j in itertools.combinations(groups, 2) if recs[i].shot != recs[j].shot]
    result: dict[str, Any] = {
        **info, "faces": len(recs), "originals": sum(r.copy == "" for r in recs),
        "pairs_same": int(p.same.sum()), "pairs_different": int((~p.same).sum()),
        "pairs_by_kind": {k: int((p.kind == k).sum()) for k in ("photos", "copy", "different")},
        "closest_group_strangers": min(gd) if gd else None, "evaluation": ev, "rank1": rank1(recs),
        "jitter": jitter_study(recs, q, repeats, info["seconds_per_descriptor"]),
        "quality_share_poor": float((q < 0.5).mean()), "seconds": time.perf_counter() - start - info.get(
            "build_seconds", 0.0) * (not args.cached),
        "fingerprint": hashlib.sha256(b"".join(r.descs[0].tobytes() for r in recs)).hexdigest()[:12]}
    write_section("faces-verify", render(result), result)
    print(render(result))
    return 0


def QUALITY_WIDEN_SHIPPED() -> float:  # noqa: N802
    from imagesim.faces.verdicts import QUALITY_WIDEN

    return QUALITY_WIDEN


def _rate(cell: list[int]) -> str:
    n, k = cell
    if n == 0:
        return "0 pairs"
    lo, hi = _wilson(k, n)
    return f"{k} / {n} ({100 * k / n:.2f} %, CI {100 * lo:.2f}–{100 * hi:.2f} %)"


def render(r: dict[str, Any]) -> str:
    ev = r["evaluation"]
    splits_ = ev["splits"]
    lines = [f"## Face verification on held-out people ({r['people']} people, {r['faces']} faces)", "",
             "`python -m bench faces-verify`: faces-small's 6 labelled people and faces-groups' boxed faces (one "
             f"person each), {r['originals']} faces found by imagesim's pipeline, plus degraded copies (downscale, "
             f"blur, JPEG, lighting, random mix; {r['copies_dropped']} of {r['copies_made']} copies lost their face "
             f"to the detector and are left out). Pairs: {r['pairs_by_kind']['photos']} same person in two "
             f"photos (either may be a copy), "
             f"{r['pairs_by_kind']['copy']} same shot and its copies, {r['pairs_by_kind']['different']} different "
             f"people. {FOLDS}-fold cross-validation by person x {len(splits_) // FOLDS} repeats = {len(splits_)} "
             "splits; thresholds set on the calibration people, judged on the held-out people's pairs "
             "(pooled over splits; Wilson 95 % intervals; pairs share faces, so the intervals are optimistic).", ""]
    lines += ["| held-out, per split | median | min | max |", "|---|---|---|---|"]
    for name in ("shipped, no quality", "shipped + quality", "split's own", SPLIT_WIDEN,
                 "originals, shipped, no quality", "originals, shipped + quality", PHOTOS_WIDEN):
        acc = [s[name]["accuracy"] for s in splits_]
        lines.append(f"| accuracy, {name} | {np.median(acc):.4f} | {min(acc):.4f} | {max(acc):.4f} |")
    tol = [s["tolerance"] for s in splits_]
    wid = [s["widen"] for s in splits_]
    lines.append(f"| calibrated tolerance | {np.median(tol):.3f} | {min(tol):.3f} | {max(tol):.3f} |")
    lines.append(f"| calibrated quality widening | {np.median(wid):.2f} | {min(wid):.2f} | {max(wid):.2f} |")
    wid = [s["widen_at_shipped"] for s in splits_]
    lines.append(f"| calibrated quality widening at 0.6 | {np.median(wid):.2f} | {min(wid):.2f} | {max(wid):.2f} |")
    wid = [s["widen_photos"] for s in splits_]
    lines.append(f"| same, from photos only (no copies) | {np.median(wid):.2f} | {min(wid):.2f} | {max(wid):.2f} |")
    lines += ["", "Where the held-out verdicts fall (pooled over all splits): pairs in each band, and how many of them "
              "are wrong.", "", f"| verdict / band | shipped, no quality | shipped + quality | {SPLIT_WIDEN} |",
              "|---|---|---|---|"]
    pooled = ev["pooled"]
    keys = [k for k in pooled["shipped + quality"] if "/" in k and not k.startswith("wrong")]
    label = {"same/high": "said same, high: false accepts", "same/medium": "said same, medium: false accepts",
             "same/low": "said same, low: false accepts", "different/low": "said different, low: false rejects",
             "different/medium": "said different, medium: false rejects",
             "different/high": "said different, high: false rejects",
             "wrong/photos": "all: same person, two photos (a copy or not): false rejects",
             "wrong/copy": "all: a shot and its copy: false rejects", "wrong/different": "all: different people: "
             "false accepts", "correct shown low": "correct verdicts shown low (the cost)",
             "good pairs shown low": "pairs of two good faces (quality 1.0) shown low"}
    for key in [*keys, "wrong/photos", "wrong/copy", "wrong/different", "correct shown low", "good pairs shown low"]:
        lines.append(f"| {label.get(key, key)} | {_rate(pooled['shipped, no quality'][key])} | "
                     f"{_rate(pooled['shipped + quality'][key])} | {_rate(pooled[SPLIT_WIDEN][key])} |")
    w_plain = sum(s["shipped, no quality"]["wrong"] for s in splits_)
    w_low_plain = sum(s["shipped, no quality"]["wrong_low"] for s in splits_)
    w_q = sum(s["shipped + quality"]["wrong"] for s in splits_)
    w_low_q = sum(s["shipped + quality"]["wrong_low"] for s in splits_)
    w_s = sum(s[SPLIT_WIDEN]["wrong"] for s in splits_)
    w_low_s = sum(s[SPLIT_WIDEN]["wrong_low"] for s in splits_)
    lines += ["", f"Wrong held-out verdicts in the low band: {w_low_plain} of {w_plain} without quality, "
              f"{w_low_q} of {w_q} with the shipped widening ({QUALITY_WIDEN_SHIPPED()}), {w_low_s} of {w_s} with "
              "each split's own widening (set on its calibration people)."]
    for name in ("originals, shipped, no quality", "originals, shipped + quality", PHOTOS_WIDEN):
        cells = pooled[name]
        n_wrong = sum(s[name]["wrong"] for s in splits_)
        n_low = sum(s[name]["wrong_low"] for s in splits_)
        n_pairs = sum(s[name]["pairs"] for s in splits_)
        lines.append(f"Originals only ({name.split(', ', 1)[1]}): {n_wrong} wrong of {n_pairs} held-out pairs "
                     f"(pooled), {n_low} of them low; correct pairs shown low: {_rate(cells['correct shown low'])}.")
    lines.append("")
    rk = r["rank1"]
    lines += ["| identity rank-1 | hits / probes |", "|---|---|",
              f"| face: an original's nearest face from another photo (faces-small) | {rk['face']['hits']} / "
              f"{rk['face']['probes']} |",
              f"| person: mean of the person's {3} nearest faces (as PersonMatch) | {rk['person']['hits']} / "
              f"{rk['person']['probes']} |",
              f"| copy: a degraded copy's nearest original (all people) | {rk['copy']['hits']} / "
              f"{rk['copy']['probes']} |", ""]
    lines += ["| descriptor jitters | ms per face | held-out accuracy (median) | held-out wrong (pooled) | "
              "wrong over all pairs | copy rank-1 |", "|---|---|---|---|---|---|"]
    for j in r["jitter"]:
        lines.append(f"| {j['jitters']} | {j['ms_per_face']:.1f} | {j['held_accuracy_median']:.4f} | "
                     f"{j['held_wrong']} | {j['all_pairs_wrong']} | {j['rank1']['copy']['hits']} / "
                     f"{j['rank1']['copy']['probes']} |")
    if r.get("closest_group_strangers"):
        d, a, b = r["closest_group_strangers"]
        lines += ["", f"Closest two group-photo faces from different photos: {d:.3f} ({a}, {b}): no repeat "
                  "person among them at the 0.6 line." if d >= 0.6 else
                  f"Closest two group-photo faces from different photos: {d:.3f} ({a}, {b}): may be one person."]
    built = r.get("build_seconds")
    took = f"finding and describing the faces took {built:.0f} s, " if built else ""
    lines += ["", f"{100 * r['quality_share_poor']:.0f} % of the faces have quality below 0.5. In this run {took}the "
              f"analysis {r['seconds']:.0f} s, with other jobs on the machine (so the ms per face above are not "
              "comparable across rows: the load changed between them)."]
    return "\n".join(lines)
