"""Stage two of copy detection: ORB keypoints matched and checked with RANSAC, and what the alignment shows.

`features(img)` describes one photo (ORB on its grey image, on the mirrored one when first needed, plus the
small images the photometric checks need); `align(a, b)` matches two photos, fits a similarity transform
(rotation, uniform scale, shift; optionally mirrored) with RANSAC, warps `a` onto `b` and measures how well the
pixels agree once tone is set aside, and how the tone and colour changed. Two different photos of one kind (two
yellow flowers) share few geometrically consistent keypoints and, aligned, disagree in their pixels; an edited
copy agrees in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .dup import trim_box

SIDE = 512  # keypoints are found on the photo resized to this longer side
ORB_FEATURES = 800
THUMB = 128  # longer side of the thumbnail the aligned photos are compared on
RATIO = 0.8  # Lowe's ratio test
MIN_MATCHES = 8
FEW = 40  # photos with fewer keypoints than this and smaller than SMALL px a side (thumbnails) are compared
SMALL = 256  # frame to frame
RANSAC_PX = 6.0
ENOUGH = 40  # inliers that settle the orientation: the other one is not tried
CELLS = 16  # the photometric check compares the aligned photos on CELLS x CELLS blocks
OVERLAY_DROP = 0.2  # blocks left out of the agreement (a caption, sticker or watermark may cover them)


@dataclass
class Features:
    """One photo, ready to be matched: keypoints (plain and mirrored), its work image and borders."""

    width: int  # the photo's own size
    height: int
    pts: np.ndarray  # (n, 2) keypoints in work-image pixels
    desc: np.ndarray  # (n, 32) ORB descriptors
    grey: np.ndarray | None  # the grey work image, kept until the mirrored keypoints are needed (then dropped)
    thumb: np.ndarray  # (h, w, 3) uint8: the photo at THUMB px a side, for the photometric checks
    work_size: tuple[int, int]  # (width, height) of the work image the keypoints are in
    trim: tuple[int, int, int, int]  # (left, top, right, bottom) of the work image without uniform edge bands
    detail: float  # fine detail inside the trim (|Laplacian| over the grey spread): low for a blown-up tiny copy

    _mirror: tuple[np.ndarray, np.ndarray] | None = None

    def mirrored(self) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints and descriptors of the mirrored work image (x in mirrored pixels), computed on first use:
        most pairs are settled in one orientation."""
        if self._mirror is None:
            grey = self.grey if self.grey is not None else np.zeros((8, 8), np.uint8)
            self._mirror = _detect(np.ascontiguousarray(grey[:, ::-1]))
            self.grey = None
        return self._mirror

    @property
    def thumb_scale(self) -> float:
        return self.thumb.shape[1] / self.work_size[0]


@dataclass
class Alignment:
    """How photo `a` maps onto photo `b`: `matrix` takes a's work pixels to b's (2x3, a reflection when mirrored)."""

    matrix: np.ndarray
    mirrored: bool
    inliers: int
    agreement: float  # 0..1: correlation of the aligned, tone-equalised pixels over the blocks that agree best
    covered: float  # share of b's (trimmed) blocks that a's pixels cover
    overlay: float  # share of the covered blocks that disagree (caption, sticker, watermark)
    tone: dict[str, float]  # brightness, contrast, saturation ratios, warmth and grey-ness of b against a
    sharpness: float  # b's detail against a's, aligned (well under 1: a tiny copy blown up, or blurred)
    whole: bool = False  # too few keypoints (a tiny photo): compared frame to frame, without a fitted transform


def features(img: Image.Image) -> Features:
    import cv2  # here: OpenCV is imported only by work that verifies

    img = img if img.mode == "RGB" else img.convert("RGB")
    w, h = img.size
    f = SIDE / max(w, h)
    small = img.resize((max(8, round(w * f)), max(8, round(h * f))), Image.Resampling.BILINEAR) if f < 1 else img
    rgb = np.ascontiguousarray(np.asarray(small, dtype=np.uint8))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    pts, desc = _detect(grey)
    left, top, right, bottom = trim = trim_box(small)
    inner = grey[top:bottom, left:right] if right - left >= 8 and bottom - top >= 8 else grey
    detail = float(np.abs(cv2.Laplacian(inner, cv2.CV_32F)).mean() / (inner.std() + 1.0))
    t = THUMB / max(small.size)
    thumb = np.asarray(small.resize((max(4, round(small.width * t)), max(4, round(small.height * t))),
                                    Image.Resampling.BOX), dtype=np.uint8)
    return Features(w, h, pts, desc, grey, thumb, small.size, trim, detail)


def _detect(g: np.ndarray, wanted: int = ORB_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """ORB keypoints (x, y) and descriptors: the strongest corners per cell of a 4x4 grid, so a watermark's or
    caption's sharp letters cannot take every keypoint, and a soft photo keeps some of its own."""
    orb, found, xy, response = _corners(g, wanted)
    return _describe(orb, g, [found[i] for i in _per_cell(xy, response, g.shape, wanted).tolist()])


def _detect_with_mirror(g: np.ndarray, wanted: int, mirrored: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_detect` of `g`, and `mirrored` keypoints of the left-right mirrored image: the same corners mirrored (FAST
    and the Harris score do not care about a mirror, so they are not searched for again), each cell's strongest,
    described on the mirrored pixels."""
    import cv2

    orb, found, xy, response = _corners(g, wanted)
    pts, desc = _describe(orb, g, [found[i] for i in _per_cell(xy, response, g.shape, wanted).tolist()])
    flipped_xy = xy.copy()
    flipped_xy[:, 0] = g.shape[1] - 1 - flipped_xy[:, 0]
    flipped = [cv2.KeyPoint(float(flipped_xy[i, 0]), found[i].pt[1], found[i].size, (180.0 - found[i].angle) % 360.0,
                            found[i].response, found[i].octave)
               for i in _per_cell(flipped_xy, response, g.shape, mirrored).tolist()]
    return (pts, desc, *_describe(orb, np.ascontiguousarray(g[:, ::-1]), flipped))


def _corners(g: np.ndarray, wanted: int) -> tuple[Any, Sequence, np.ndarray, np.ndarray]:
    """ORB's detector for `wanted` keypoints, its corners (four times as many), their (x, y) and responses."""
    import cv2

    orb = cv2.ORB_create(nfeatures=4 * wanted, fastThreshold=8, edgeThreshold=15)  # type: ignore[attr-defined]
    found = orb.detect(g, None)
    xy = cv2.KeyPoint_convert(found) if len(found) else np.zeros((0, 2), np.float32)  # type: ignore[attr-defined]
    return orb, found, xy.reshape(-1, 2), np.fromiter((k.response for k in found), np.float64, len(found))


def _per_cell(xy: np.ndarray, response: np.ndarray, shape: tuple[int, ...], wanted: int) -> np.ndarray:
    """Indices of the wanted / 16 strongest keypoints of each cell of a 4x4 grid over an image of `shape`: cells in
    order of their first keypoint, strongest first within a cell (numpy; a Python loop over ~1,000 keypoints cost
    ~1 ms a photo)."""
    if not len(xy):
        return np.zeros(0, np.int64)
    hh, ww = shape[:2]
    cell = (4 * xy[:, 0] / ww).astype(np.int64) * 4 + (4 * xy[:, 1] / hh).astype(np.int64)
    _, first, inverse = np.unique(cell, return_index=True, return_inverse=True)
    group = first[inverse]  # each keypoint's cell, named by the cell's first keypoint
    order = np.lexsort((-response, group))  # stable: equal responses keep their detection order
    group = group[order]
    starts = np.r_[True, group[1:] != group[:-1]]
    rank = np.arange(len(order)) - np.flatnonzero(starts)[np.cumsum(starts) - 1]
    return order[rank < max(1, wanted // 16)]


def _describe(orb: Any, g: np.ndarray, chosen: list) -> tuple[np.ndarray, np.ndarray]:
    kps, desc = orb.compute(g, chosen)
    if desc is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in kps], np.float32), desc


def _matches(d1: np.ndarray, d2: np.ndarray) -> list[tuple[int, int]]:
    import cv2

    if len(d1) < 2 or len(d2) < 2:
        return []
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(d1, d2, k=2)
    return [(m[0].queryIdx, m[0].trainIdx) for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]


def align(a: Features, b: Features, mirror_first: bool = False, both: bool = True) -> Alignment | None:
    """The best similarity transform from a to b (plain or mirrored) with its checks, or None without one.

    The likelier orientation (`mirror_first`: what the candidate search saw) is tried first; the other only when
    it does not already explain the pair, and only with `both` (the gallery pass trusts the candidate search)."""
    import cv2

    if any(len(f.pts) < FEW and max(f.width, f.height) < SMALL for f in (a, b)):
        # a thumbnail-sized photo has too few keypoints: frame onto frame, no rotation or crop; a large photo
        # without keypoints (flat synthetic art) is never called a copy
        (al, at, ar, ab), (bl, bt, br, bb) = a.trim, b.trim
        sx, sy = (br - bl) / max(ar - al, 1), (bb - bt) / max(ab - at, 1)
        frame = np.array([[sx, 0.0, bl - al * sx], [0.0, sy, bt - at * sy]])
        found = _compare(a, b, frame, False, 0)
        found.whole = True
        return found
    best: tuple[int, np.ndarray, bool] | None = None
    for mirror in (mirror_first, not mirror_first) if both else (mirror_first,):
        if best is not None and best[0] >= ENOUGH:
            break
        pts_b, desc_b = b.mirrored() if mirror else (b.pts, b.desc)
        m = _matches(a.desc, desc_b)
        if len(m) < MIN_MATCHES:
            continue
        src = a.pts[[i for i, _ in m]]
        dst = pts_b[[j for _, j in m]]
        cv2.setRNGSeed(0)  # RANSAC draws samples: the same photos give the same answer
        matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                                   maxIters=2000, confidence=0.995)
        if matrix is None:
            continue
        inliers = int(mask.sum())
        scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
        if not 0.1 < scale < 10 or (best is not None and inliers <= best[0]):
            continue
        if mirror:  # back to b's own pixels: x -> width - 1 - x
            flip = np.array([[-1.0, 0.0, b.work_size[0] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            matrix = (flip @ np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
        best = (inliers, matrix, mirror)
    if best is None or best[0] < MIN_MATCHES:
        return None
    inliers, matrix, mirror = best
    return _compare(a, b, matrix, mirror, inliers)


def _blocks(img: np.ndarray, box: tuple[int, ...]) -> np.ndarray:
    """Mean of each of CELLS x CELLS blocks of `img` (h, w[, c]) inside `box`."""
    import cv2

    left, top, right, bottom = box
    return cv2.resize(img[top:bottom, left:right].astype(np.float32), (CELLS, CELLS), interpolation=cv2.INTER_AREA)


def _ranks(v: np.ndarray) -> np.ndarray:
    r = np.empty(len(v), np.float32)
    r[np.argsort(v, kind="stable")] = np.arange(len(v), dtype=np.float32)
    return r / max(len(v) - 1, 1) - 0.5


def _toned_hue(lab: np.ndarray) -> float:
    """The hue angle (degrees, Lab a/b) when a photo's coloured blocks all share one hue; NaN otherwise."""
    a, b = lab[:, 1] - 128.0, lab[:, 2] - 128.0
    coloured = np.hypot(a, b) > 4
    if coloured.mean() < 0.5:
        return float("nan")
    angles = np.arctan2(b[coloured], a[coloured])
    mean = np.hypot(np.cos(angles).mean(), np.sin(angles).mean())  # 1 when every block has the same hue
    return float(np.degrees(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean()))) if mean > 0.95 else float(
        "nan")


def _compare(a: Features, b: Features, matrix: np.ndarray, mirror: bool, inliers: int) -> Alignment:
    """Warp a onto b and compare blocks inside b's trimmed frame: pixel agreement, overlays, tone and colour."""
    import cv2

    sa, sb = a.thumb_scale, b.thumb_scale
    small = np.hstack([matrix[:, :2] * (sb / sa), matrix[:, 2:] * sb])  # the same map between the thumbnails
    h, w = b.thumb.shape[:2]
    warped = cv2.warpAffine(a.thumb, small, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(np.full(a.thumb.shape[:2], 255, np.uint8), small, (w, h), flags=cv2.INTER_NEAREST)
    box = tuple(round(v * sb) for v in b.trim)
    if box[2] - box[0] < 8 or box[3] - box[1] < 8:
        box = (0, 0, w, h)
    lab_a = _blocks(cv2.cvtColor(warped, cv2.COLOR_RGB2LAB), box).reshape(-1, 3)
    lab_b = _blocks(cv2.cvtColor(b.thumb, cv2.COLOR_RGB2LAB), box).reshape(-1, 3)
    cover = _blocks(valid, box).ravel() > 250
    covered = float(cover.mean())
    empty = {"brightness": 0.0, "contrast": 1.0, "saturation": 1.0, "warmth": 0.0, "grey": 0.0}
    if cover.sum() < 16:
        return Alignment(matrix, mirror, inliers, 0.0, covered, 0.0, empty, 1.0)
    la, lb = lab_a[cover, 0], lab_b[cover, 0]
    ra, rb = _ranks(la), _ranks(lb)  # tone-blind: ranks of brightness
    diff = np.abs(ra - rb)
    keep = np.argsort(diff)[:max(8, int(len(diff) * (1 - OVERLAY_DROP)))]
    agreement = float(np.corrcoef(ra[keep], rb[keep])[0, 1]) if np.std(rb[keep]) > 0 and np.std(ra[keep]) > 0 else 0.0
    good = np.zeros(len(diff), bool)
    good[keep] = True
    # an overlay: blocks far from the copy's tone curve (a linear fit of b's brightness on a's), or far off in colour
    fit = np.polyfit(la[good], lb[good], 1) if good.sum() >= 8 and np.std(la[good]) > 0 else np.array([1.0, 0.0])
    off = np.abs(lb - np.polyval(fit, la)) > 30
    chroma_a = np.hypot(lab_a[cover, 1] - 128, lab_a[cover, 2] - 128)[good]
    chroma_b = np.hypot(lab_b[cover, 1] - 128, lab_b[cover, 2] - 128)[good]
    tone = {"brightness": float((lb[good].mean() - la[good].mean()) * 100 / 255),
            "contrast": float((lb[good].std() + 1) / (la[good].std() + 1)),
            "saturation": float((chroma_b.mean() + 1) / (chroma_a.mean() + 1)),
            "warmth": float((lab_b[cover, 2][good] - lab_a[cover, 2][good]).mean()),  # Lab b: towards yellow
            "grey": float(chroma_b.mean() < 3.0 <= chroma_a.mean())}
    # all of b's colours of one hue (sepia, a duotone): NaN when not; a's too, to tell a toned copy from a photo
    # that was of one hue already
    tone["toned_hue"], tone["toned_hue_before"] = _toned_hue(lab_b[cover][good]), _toned_hue(lab_a[cover][good])
    overlay = float(off.mean())
    sharp = (b.detail + 1e-3) / (a.detail + 1e-3)
    return Alignment(matrix, mirror, inliers, agreement if np.isfinite(agreement) else 0.0, covered, overlay, tone,
                     sharp)


# ---- the sketch: a cheap first check before the full alignment -----------------------------------------------------

SKETCH_SIDE = 256  # the sketch's keypoints are found on the trimmed photo at this longer side
SKETCH_FEATURES = 256  # plain keypoints; the mirrored image keeps half as many (mirrored copies are rarer)
SKETCH_RATIO = 0.8
SKETCH_RANSAC_PX = 4.0
SKETCH_FEW = 30  # a sketch with fewer keypoints says nothing: the pair goes to the full check


@dataclass
class Sketch:
    """A photo's cheap verification data: ORB keypoints of its trimmed frame at SKETCH_SIDE, plain and mirrored
    (about 13 KB). Two different photos share almost no keypoints that one similarity transform explains; every
    edited copy in the benchmark shares 20 or more (bench/duplicates.py)."""

    width: int  # the photo's own size
    height: int
    pts: np.ndarray  # (n, 2) float32, in the sketch frame
    desc: np.ndarray  # (n, 32) uint8
    mpts: np.ndarray  # the mirrored frame's keypoints
    mdesc: np.ndarray

    @property
    def telling(self) -> bool:
        """Whether the sketch has enough keypoints for its check to mean anything (a thumbnail or flat art has not)."""
        return len(self.pts) >= SKETCH_FEW and max(self.width, self.height) >= SMALL


def sketch(img: Image.Image) -> Sketch:
    """The sketch of a photo (decoded at any size from SKETCH_SIDE up: a JPEG draft decode is enough)."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    w, h = img.size
    factor = min(img.size) // SKETCH_SIDE
    small = img.reduce(factor) if factor > 1 else img
    left, top, right, bottom = trim_box(small)
    if right - left >= 16 and bottom - top >= 16:
        small = small.crop((left, top, right, bottom))
    f = SKETCH_SIDE / max(small.size)
    if f < 1:
        small = small.resize((max(8, round(small.width * f)), max(8, round(small.height * f))),
                             Image.Resampling.BILINEAR)
    grey = np.ascontiguousarray(np.asarray(small.convert("L"), dtype=np.uint8))
    pts, desc, mpts, mdesc = _detect_with_mirror(grey, SKETCH_FEATURES, SKETCH_FEATURES // 2)
    return Sketch(w, h, pts, desc, mpts, mdesc)


def sketch_inliers(a: Sketch, b: Sketch) -> int:
    """Keypoints of `a` that one similarity transform puts on matching keypoints of `b`, plain or mirrored (the
    better of the two)."""
    return max(_inliers(a.pts, a.desc, b.pts, b.desc), _inliers(a.pts, a.desc, b.mpts, b.mdesc))


def _inliers(pa: np.ndarray, da: np.ndarray, pb: np.ndarray, db: np.ndarray) -> int:
    import cv2

    if len(da) < 2 or len(db) < 2:
        return 0
    dist, nearest = cv2.batchDistance(da, db, -1, normType=cv2.NORM_HAMMING, K=2)
    good = np.flatnonzero(dist[:, 0] < SKETCH_RATIO * dist[:, 1])
    if len(good) < MIN_MATCHES:
        return 0
    # one keypoint of b taken by many of a (a star field, flat art) proves nothing: each counts once
    targets = nearest[good, 0]
    good = good[np.unique(targets, return_index=True)[1]]
    if len(good) < MIN_MATCHES:
        return 0
    cv2.setRNGSeed(0)
    matrix, mask = cv2.estimateAffinePartial2D(pa[good], pb[nearest[good, 0]], method=cv2.RANSAC,
                                               ransacReprojThreshold=SKETCH_RANSAC_PX, maxIters=500, confidence=0.99)
    if matrix is None or not 0.1 < float(np.hypot(matrix[0, 0], matrix[1, 0])) < 10:
        return 0
    return int(mask.sum())
