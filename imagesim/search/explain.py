"""What a copy is, in words: "cropped to 56 %, rotated 8°, recompressed", and which copy of a group to keep.

Reads an `Alignment` (stage two of copy detection, `encoders/keypoints.py`) and a few facts about each file (pixel
size, JPEG quality from its quantisation tables, date); the words are the ones photo apps use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..encoders.keypoints import Alignment, Features

# libjpeg's standard luminance table at quality 50: a file's own table against it gives its quality
_STD_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                      14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                      92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)


@dataclass(frozen=True)
class FileFacts:
    """What the keep suggestion weighs: pixels, JPEG quality (100 when lossless or unknown), date."""

    path: str
    width: int
    height: int
    quality: int
    mtime: float


def file_facts(path: str) -> FileFacts:
    """Header facts of one file (nothing is decoded); a file that cannot be read gets zeros, never an error."""
    try:
        mtime = os.stat(path).st_mtime
        with Image.open(path) as im:
            w, h = im.size
            tables = getattr(im, "quantization", None) or {}
            quality = jpeg_quality(np.asarray(tables[0], np.float64)) if 0 in tables else 100
    except (OSError, ValueError, SyntaxError):
        return FileFacts(path, 0, 0, 0, 0.0)
    return FileFacts(path, w, h, quality, mtime)


def jpeg_quality(luma: np.ndarray) -> int:
    """The libjpeg quality (1-100) whose scaled standard table is nearest to this luminance table."""
    if luma.size != 64:
        return 100
    scale = float(np.mean(luma / _STD_LUMA) * 100)
    q = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return int(np.clip(round(q), 1, 100))


def keep_order(facts: list[FileFacts], shares: list[float], feats: list[Features | None]) -> list[int]:
    """Indices best first: the most of the scene (not a crop of another), no borders the others lack, then most
    picture pixels, least compressed, oldest. `shares`: how wide a view each member shows (1.0 for the reference)."""
    inside = []
    for ft in feats:  # the share of each file that is picture, not bands
        left, top, right, bottom = ft.trim if ft is not None else (0, 0, 1, 1)
        size = ft.work_size if ft is not None else (1, 1)
        inside.append((right - left) * (bottom - top) / max(size[0] * size[1], 1))
    most = max(inside, default=1.0)

    def key(i: int) -> tuple[float, bool, float, int, float]:
        f = facts[i]
        return (-round(shares[i], 1), inside[i] < most - 0.05, -round(f.width * f.height * inside[i], -3),
                -f.quality, f.mtime)
    return sorted(range(len(facts)), key=key)


def _overlap(matrix: np.ndarray, src: tuple[float, ...], dst: tuple[float, ...]) -> float:
    """Share of the `dst` box covered by the `src` box mapped through `matrix` (2x3)."""
    import cv2

    x0, y0, x1, y1 = src
    poly = (np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64) @ matrix[:, :2].T + matrix[:, 2])
    poly = poly.astype(np.float32)
    d1, d2 = poly[1] - poly[0], poly[2] - poly[1]
    if d1[0] * d2[1] - d1[1] * d2[0] < 0:  # a mirrored frame runs the other way round
        poly = poly[::-1].copy()
    l_, t, r, btm = dst
    frame = np.array([[l_, t], [r, t], [r, btm], [l_, btm]], np.float32)
    area, _ = cv2.intersectConvexConvex(frame, np.ascontiguousarray(poly))
    return float(np.clip(area / max((r - l_) * (btm - t), 1), 0.0, 1.0))


def crop_share(al: Alignment, a: Features, b: Features) -> float:
    """Share of a's picture (bands trimmed) that b shows: b's whole frame mapped back into a."""
    import cv2

    return _overlap(cv2.invertAffineTransform(al.matrix), (0, 0, *b.work_size), a.trim)


def _borders(f: Features) -> str | None:
    """Which edge bands a photo has: letterbox, pillarbox, frame or bars, with their share of the picture."""
    w, h = f.work_size
    left, top, right, bottom = f.trim
    sides = {"top": top / h, "bottom": (h - bottom) / h, "left": left / w, "right": (w - right) / w}
    present = {k for k, v in sides.items() if v >= 0.02}
    if not present:
        return None
    share = 1 - (right - left) * (bottom - top) / (w * h)
    if present == {"top", "bottom"}:
        name = "letterbox"
    elif present == {"left", "right"}:
        name = "pillarbox"
    elif present in ({"top"}, {"bottom"}):
        name = "caption bar (overlay)"
    elif len(present) == 4:
        name = "frame"
    else:
        name = "bars"
    return f"{name} border ({share:.0%} of the picture)".replace("%", " %")


def _reverse(al: Alignment) -> Alignment:
    """The same alignment seen from b: its matrix inverted (the other fields are not used by the crop measures)."""
    from dataclasses import replace

    import cv2

    return replace(al, matrix=cv2.invertAffineTransform(al.matrix))


def describe(al: Alignment, a: Features, b: Features, fa: FileFacts, fb: FileFacts) -> list[str]:
    """The edits that turn photo a (the one to keep) into photo b, in words, most visible first."""
    words: list[str] = []
    share = crop_share(al, a, b)
    if share < 0.93:
        words.append(f"cropped to {share:.0%}".replace("%", " %"))
    # a similarity [[c, -s], [s, c]], or its mirror [[-c, s], [s, c]]: the bottom row gives the angle either way
    angle = float(np.degrees(np.arctan2(al.matrix[1, 0], al.matrix[1, 1])))
    if al.mirrored:
        words.append("mirrored")
    if abs(angle) >= 1.0:
        words.append(f"rotated {abs(angle):.0f}°")
    mine, theirs = _borders(b), _borders(a)
    wider = crop_share(_reverse(al), b, a)  # the share of b's picture that a shows: under 1 when b shows more
    if wider < 0.93:  # b's picture goes beyond a's: b is the wider shot (what a user's query was cropped from)
        words.append(f"a wider view (the other is cropped to {wider:.0%} of it)".replace("%", " %"))
    elif mine and mine.split(" (")[0] != (theirs or "").split(" (")[0]:  # what b adds to a is only bands
        w, h = b.work_size
        tall = h >= 1.7 * w and w < h * (b.trim[2] - b.trim[0]) / max(b.trim[3] - b.trim[1], 1)  # a phone screen
        words.append("screenshot (bars and borders around it)" if tall else f"{mine} added")
    elif theirs and not mine:
        words.append("borders removed")
    if fa.width and fb.width:  # the transform's scale, in the files' own pixels
        scale = float(np.hypot(al.matrix[0, 0], al.matrix[1, 0])) * (fb.width / b.work_size[0]) / (
            fa.width / a.work_size[0])
        if abs(np.log(scale)) >= np.log(1.15):
            words.append(f"scaled to {scale:.0%} a side".replace("%", " %"))
    if al.sharpness < 0.45:
        words.append("upscaled from a small copy (blurred)")
    tone = al.tone
    if tone["grey"]:
        words.append("black and white")
    elif np.isfinite(tone["toned_hue"]) and (not np.isfinite(tone["toned_hue_before"]) or tone["saturation"] < 0.8):
        hue = tone["toned_hue"]
        words.append("warmer (sepia tone)" if 20 <= hue <= 110 else f"colour-toned (hue {hue:.0f}°)")
    elif tone["warmth"] >= 5:
        words.append("warmer (warm filter)")
    elif tone["warmth"] <= -6:
        words.append("cooler colours")
    if not tone["grey"] and abs(np.log(tone["saturation"])) >= np.log(1.35):
        words.append("more saturated" if tone["saturation"] > 1 else "less saturated")
    if abs(tone["brightness"]) >= 6:
        words.append("brighter" if tone["brightness"] > 0 else "darker")
    if abs(np.log(tone["contrast"])) >= np.log(1.25):
        words.append("more contrast" if tone["contrast"] > 1 else "less contrast")
    if al.overlay >= 0.02:
        words.append(f"overlay or caption over {al.overlay:.0%}".replace("%", " %"))
    if fb.quality and fa.quality and fb.quality <= fa.quality - 8:
        words.append(f"recompressed (JPEG quality ~{fb.quality})")
    return words or ["same picture"]
