"""Families of looks for the style benchmark: each family draws random parameters into look instances.

A family is a recipe a photo app or a film simulation would offer (a duotone, a halftone, an HDR-like tone map...);
an instance is one draw of its parameters (which two colours, which dot size...), the way one preset differs from
another. The benchmark's relevant set is one instance, so two instances of a family must be looks a person would
tell apart: the family's main parameter is drawn from the instance's own stratum of its range (`u` in [0, 1)), the
others freely. Everything is seeded: an instance is `(family, u, rng)`, its grain and paper from its own rng.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps
from scipy import ndimage

Look = Callable[[Image.Image], Image.Image]
Rng = np.random.Generator


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _img(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")


def _luma(a: np.ndarray) -> np.ndarray:
    return a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _hue(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _saturate(a: np.ndarray, s: float) -> np.ndarray:
    y = _luma(a)[..., None]
    return y + s * (a - y)


def _sigmoid(x: np.ndarray, k: float, mid: float = 0.5) -> np.ndarray:
    lo, hi = 1 / (1 + np.exp(k * mid)), 1 / (1 + np.exp(-k * (1 - mid)))
    return (1 / (1 + np.exp(-k * (x - mid))) - lo) / (hi - lo)


def _radius(shape: tuple[int, ...], aspect: float = 1.0) -> np.ndarray:
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.sqrt(((xx - w / 2) / (w / 2)) ** 2 * aspect + ((yy - h / 2) / (h / 2)) ** 2 / aspect) / np.sqrt(2)


def _seed(img: Image.Image, rng_seed: int) -> Rng:
    """Per photo noise that is the same every run: the instance's seed and the photo's first pixels."""
    import zlib

    return np.random.default_rng([rng_seed, zlib.crc32(img.tobytes()[:4096])])


# ---- colour grades --------------------------------------------------------------------------------------------------


def film(u: float, rng: Rng) -> Look:
    """Film emulation: toe and shoulder per channel, lifted blacks, a tint in the highlights and another in the
    shadows, muted or rich colour."""
    hue_hi = u
    hue_lo = hue_hi + rng.uniform(0.3, 0.7)
    k = rng.uniform(4, 8, 3)
    lift, sat = rng.uniform(0.02, 0.1), rng.uniform(0.55, 1.25)
    t_hi, t_lo = (_hue(hue_hi, 1, 1) - 0.5) * rng.uniform(0.1, 0.22), (_hue(hue_lo, 1, 1) - 0.5) * rng.uniform(0.1, 0.2)

    def look(img: Image.Image) -> Image.Image:
        a = _saturate(_arr(img), sat)
        a = np.stack([_sigmoid(np.clip(a[..., c], 0, 1), k[c]) for c in range(3)], axis=2)
        y = _luma(a)[..., None]
        return _img(lift + (1 - lift) * a + y * t_hi + (1 - y) * t_lo)
    return look


def lut(u: float, rng: Rng) -> Look:
    """A LUT-like grade: a hue rotation and channel mixing, then a gamma per channel."""
    angle = 2 * np.pi * u
    c, s = np.cos(angle), np.sin(angle)
    k = 1 / 3
    rot = np.array([[c + (1 - c) * k, k * (1 - c) - np.sqrt(k) * s, k * (1 - c) + np.sqrt(k) * s],
                    [k * (1 - c) + np.sqrt(k) * s, c + k * (1 - c), k * (1 - c) - np.sqrt(k) * s],
                    [k * (1 - c) - np.sqrt(k) * s, k * (1 - c) + np.sqrt(k) * s, c + k * (1 - c)]], np.float32)
    mix = rot + rng.normal(0, 0.12, (3, 3)).astype(np.float32)
    gamma = np.exp(rng.uniform(-0.4, 0.4, 3)).astype(np.float32)
    return lambda img: _img(np.clip(_arr(img) @ mix.T, 0, 1) ** gamma)


def split_tone(u: float, rng: Rng) -> Look:
    """Teal-orange and its cousins: one hue in the shadows, a near-opposite one in the highlights, more contrast."""
    hue_lo = u
    hue_hi = hue_lo + 0.5 + rng.uniform(-0.08, 0.08)
    strength, contrast = rng.uniform(0.18, 0.3), rng.uniform(1.05, 1.3)
    t_lo, t_hi = _hue(hue_lo, 1, 1) - 0.5, _hue(hue_hi, 1, 1) - 0.5

    def look(img: Image.Image) -> Image.Image:
        a = _arr(img)
        y = _luma(a)[..., None]
        return _img(0.5 + contrast * (a - 0.5) + strength * ((1 - y) ** 1.5 * t_lo + y ** 1.5 * t_hi))
    return look


def cross_process(u: float, rng: Rng) -> Look:
    """Cross-processed film: a steep curve on one channel, a gamma on another, the third flattened and lifted."""
    order = [(0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (1, 0, 2), (2, 1, 0)][int(u * 6) % 6]
    k, g = rng.uniform(6, 10), rng.uniform(0.6, 0.85)
    lift, span = rng.uniform(0.15, 0.3), rng.uniform(0.45, 0.65)

    def look(img: Image.Image) -> Image.Image:
        a = _arr(img)
        out = np.empty_like(a)
        out[..., order[0]] = _sigmoid(a[..., order[0]], k)
        out[..., order[1]] = a[..., order[1]] ** g
        out[..., order[2]] = lift + span * a[..., order[2]]
        return _img(out)
    return look


def key(u: float, rng: Rng) -> Look:
    """High-key (bright, soft, airy) or low-key (dark, crushed shadows, a light falling off to the edges), with a
    tint."""
    high = int(u * 3) % 2 == 0
    g, tint = rng.uniform(1.8, 3.2), (_hue(u, 1, 1) - 0.5) * rng.uniform(0.05, 0.1)
    sat = rng.uniform(0.5, 0.9) if high else rng.uniform(0.8, 1.2)

    def look(img: Image.Image) -> Image.Image:
        a = _saturate(_arr(img), sat)
        if high:
            return _img(1 - 0.75 * (1 - np.clip(a, 0, 1)) ** g + tint)
        fall = np.clip(1.15 - 0.9 * _radius(a.shape), 0.2, 1)[..., None]
        return _img(np.clip(a, 0, 1) ** g * fall + tint)
    return look


def night(u: float, rng: Rng) -> Look:
    """Day for night: darker and desaturated, with a cold blue, a green-cyan or a violet cast."""
    g = rng.uniform(1.4, 2.2)
    cast = [np.array([0.5, 0.72, 1.2], np.float32), np.array([0.4, 0.95, 1.0], np.float32),
            np.array([0.8, 0.55, 1.15], np.float32)][int(u * 3) % 3] * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    sat = rng.uniform(0.3, 0.7)
    return lambda img: _img(_saturate(_arr(img), sat) ** g * cast + np.array([0, 0.02, 0.06], np.float32))


def hdr(u: float, rng: Rng) -> Look:
    """HDR-like tone mapping: the large-scale light compressed, local detail boosted (with its halos): gritty and
    grey, vivid, or natural."""
    variant = int(u * 3) % 3  # gritty and grey, vivid, natural
    compress = [rng.uniform(0.2, 0.3), rng.uniform(0.3, 0.4), rng.uniform(0.55, 0.7)][variant]
    detail = [rng.uniform(2.4, 2.9), rng.uniform(1.8, 2.2), rng.uniform(1.3, 1.6)][variant]
    sat = [rng.uniform(0.45, 0.7), rng.uniform(1.5, 1.8), rng.uniform(1.0, 1.2)][variant]
    sigma = rng.uniform(4, 12)

    def look(img: Image.Image) -> Image.Image:
        a = _arr(img)
        y = np.log(_luma(a) + 0.02)
        base = ndimage.gaussian_filter(y, sigma)
        mapped = np.exp(compress * (base - base.mean()) + detail * (y - base) + np.log(0.45))
        ratio = (mapped / (_luma(a) + 0.02))[..., None]
        return _img(_saturate(np.clip(a * ratio, 0, 1.2), sat))
    return look


def faded(u: float, rng: Rng) -> Look:
    """Faded pastel: blacks lifted far, contrast and saturation low, a soft pastel tint."""
    lift = rng.uniform(0.18, 0.35)
    span, sat = rng.uniform(0.45, 0.65), rng.uniform(0.25, 0.6)
    tint = (_hue(u, 1, 1) - 0.5) * rng.uniform(0.08, 0.14)
    return lambda img: _img(lift + span * _saturate(_arr(img), sat) + tint)


def duotone(u: float, rng: Rng) -> Look:
    """Duotone: brightness mapped onto a ramp between two inks."""
    dark = _hue(u, rng.uniform(0.6, 1), rng.uniform(0.15, 0.4))
    light = _hue(rng.uniform(0, 1), rng.uniform(0.2, 0.6), rng.uniform(0.85, 1))
    g = rng.uniform(0.8, 1.3)

    def look(img: Image.Image) -> Image.Image:
        y = np.clip(_luma(_arr(img)), 0, 1)[..., None] ** g
        return _img(dark + y * (light - dark))
    return look


def toned_mono(u: float, rng: Rng) -> Look:
    """Black and white, plain or toned (sepia, selenium, cyanotype), with its own contrast curve."""
    tone = [np.ones(3, np.float32), np.array([1.0, 0.8, 0.58], np.float32), np.array([0.62, 0.82, 1.0], np.float32)]
    colour = tone[int(u * 3) % 3] * rng.uniform(0.9, 1.0)
    k = rng.uniform(3, 10)
    return lambda img: _img(_sigmoid(np.clip(_luma(_arr(img)), 0, 1), k)[..., None] * colour)


def vignette(u: float, rng: Rng) -> Look:
    """A strong vignette: dark, white or coloured corners, round or oval, hard or soft."""
    kind = int(u * 3) % 3
    colour = [np.zeros(3, np.float32), np.ones(3, np.float32), _hue(rng.uniform(0, 1), 0.8, 0.5)][kind]
    strength, start = rng.uniform(0.7, 0.95), rng.uniform(0.25, 0.5)
    power, aspect = rng.uniform(1.5, 3), rng.uniform(0.7, 1.4)

    def look(img: Image.Image) -> Image.Image:
        a = _arr(img)
        m = strength * np.clip((_radius(a.shape, aspect) - start) / (1 - start), 0, 1) ** (1 / power)
        return _img(a * (1 - m[..., None]) + colour * m[..., None])
    return look


# ---- texture and rendering ------------------------------------------------------------------------------------------


def grain(u: float, rng: Rng) -> Look:
    """Heavy film grain: strong noise, fine or clumped, in brightness or in colour, on a muted picture."""
    sigma = 0.06 + 0.12 * u + rng.uniform(0, 0.03)
    size, colour, sat = rng.uniform(0, 1.2), rng.uniform() < 0.5, rng.uniform(0.4, 1.0)
    seed = int(rng.integers(1 << 31))

    def look(img: Image.Image) -> Image.Image:
        a = _saturate(_arr(img), sat)
        r = _seed(img, seed)
        noise = r.normal(0, 1, a.shape if colour else a.shape[:2])
        if size > 0.2:
            noise = ndimage.gaussian_filter(noise, (size, size, 0) if colour else size)
        noise = sigma * noise / max(float(noise.std()), 1e-6)
        return _img(a + (noise if colour else noise[..., None]))
    return look


def posterize(u: float, rng: Rng) -> Look:
    """Posterised: a handful of flat colours (an adaptive palette), with or without dark outlines."""
    colours = int(round(3 * 5 ** u))  # 3 to 15 colours, each instance in its own geometric stratum
    outline, smooth = rng.uniform() < 0.5, int(rng.choice([3, 5]))

    def look(img: Image.Image) -> Image.Image:
        flat = img.filter(ImageFilter.MedianFilter(smooth)).quantize(colours, dither=Image.Dither.NONE).convert("RGB")
        if not outline:
            return flat
        edges = np.asarray(img.convert("L").filter(ImageFilter.FIND_EDGES), np.float32) / 255
        return _img(_arr(flat) * (1 - np.clip(edges * 3, 0, 1))[..., None])
    return look


def halftone(u: float, rng: Rng) -> Look:
    """Halftone print: a screen of dots whose size follows brightness, in one ink or in CMY, on tinted paper."""
    cell = 3 + 4 * u + rng.uniform(0, 1.3)
    angle = np.deg2rad(rng.uniform(0, 45))
    colour = rng.uniform() < 0.5
    paper = _hue(rng.uniform(0, 1), rng.uniform(0, 0.15), rng.uniform(0.9, 1))

    def screen(ink: np.ndarray, theta: float) -> np.ndarray:
        h, w = ink.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        xr, yr = xx * np.cos(theta) + yy * np.sin(theta), -xx * np.sin(theta) + yy * np.cos(theta)
        d = np.hypot((xr / cell) % 1 - 0.5, (yr / cell) % 1 - 0.5)  # distance to the cell's centre
        return (d < np.sqrt(np.clip(ink, 0, 1) / np.pi)).astype(np.float32)

    def look(img: Image.Image) -> Image.Image:
        a = _arr(img)
        if colour:
            dots = np.stack([screen(1 - a[..., c], angle + 0.26 * c) for c in range(3)], axis=2)
            return _img(paper * (1 - dots))
        return _img(paper * (1 - screen(1 - _luma(a), angle))[..., None])
    return look


def pixel_art(u: float, rng: Rng) -> Look:
    """Pixel art: big square pixels in few levels."""
    block = int(round(4 * 4 ** u))  # 4 to 16 px
    bits = int(rng.integers(2, 4))

    def look(img: Image.Image) -> Image.Image:
        small = img.resize((max(1, img.width // block), max(1, img.height // block)), Image.Resampling.BOX)
        return ImageOps.posterize(small, bits).resize(img.size, Image.Resampling.NEAREST)
    return look


def painterly(u: float, rng: Rng) -> Look:
    """Oil painting: colours pooled into brush-sized patches (mode filter over an edge-preserving smoothing), richer
    colour."""
    variant = int(u * 3) % 3  # fine and rich, broad and muted, broad and bright
    size = [5, 11, 9][variant]
    sat = [rng.uniform(1.4, 1.7), rng.uniform(0.6, 0.8), rng.uniform(1.1, 1.3)][variant]
    sigma_r = rng.uniform(0.3, 0.6)

    def look(img: Image.Image) -> Image.Image:
        smooth = cv2.edgePreservingFilter(np.asarray(img.convert("RGB")), flags=cv2.RECURS_FILTER, sigma_s=40,
                                          sigma_r=sigma_r)
        out = Image.fromarray(smooth).filter(ImageFilter.ModeFilter(size)).filter(ImageFilter.MedianFilter(3))
        a = _saturate(_arr(out), sat)
        return _img(0.15 + 0.9 * a if variant == 2 else a)
    return look


def watercolour(u: float, rng: Rng) -> Look:
    """Watercolour: cv2.stylization's washes, lightened and desaturated, with darker pigment edges and paper grain."""
    variant = int(u * 3) % 3  # rich, pale, washed-out grey
    sigma_s, sigma_r = rng.uniform(30, 90), rng.uniform(0.3, 0.6)
    light = [rng.uniform(0.03, 0.1), rng.uniform(0.3, 0.4), rng.uniform(0.15, 0.25)][variant]
    sat = [rng.uniform(1.1, 1.3), rng.uniform(0.7, 0.9), rng.uniform(0.3, 0.5)][variant]
    paper = rng.uniform(0.03, 0.08)
    seed = int(rng.integers(1 << 31))

    def look(img: Image.Image) -> Image.Image:
        washed = cv2.stylization(np.asarray(img.convert("RGB")), sigma_s=sigma_s, sigma_r=sigma_r)
        a = _saturate(np.asarray(washed, np.float32) / 255, sat)
        a = light + (1 - light) * a
        tex = ndimage.gaussian_filter(_seed(img, seed).normal(0, 1, a.shape[:2]), 1.5)
        return _img(a * (1 + paper * tex / max(float(tex.std()), 1e-6))[..., None])
    return look


def sketch(u: float, rng: Rng) -> Look:
    """Pencil sketch (cv2.pencilSketch): grey or coloured pencil, fine or broad strokes, on white or tinted paper."""
    variant = int(u * 3) % 3  # fine grey on white, coloured pencil, broad grey on tinted paper
    sigma_s = [rng.uniform(15, 35), rng.uniform(30, 60), rng.uniform(60, 90)][variant]
    shade = [rng.uniform(0.01, 0.03), rng.uniform(0.02, 0.05), rng.uniform(0.06, 0.1)][variant]
    colour = variant == 1
    paper = _hue(rng.uniform(0, 1), 0.0 if variant == 0 else rng.uniform(0.1, 0.25), 1.0)

    def look(img: Image.Image) -> Image.Image:
        grey, coloured = cv2.pencilSketch(np.asarray(img.convert("RGB")), sigma_s=sigma_s, sigma_r=0.07,
                                          shade_factor=shade)
        a = np.asarray(coloured, np.float32) / 255 if colour else (np.asarray(grey, np.float32) / 255)[..., None]
        return _img(a * paper)
    return look


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[float, Rng], Look]


FAMILIES: list[Family] = [Family(n, f) for n, f in [
    ("film emulation", film), ("LUT grade", lut), ("teal-orange / split tone", split_tone),
    ("cross-process", cross_process), ("high-key / low-key", key), ("day for night", night),
    ("HDR tone mapping", hdr), ("faded pastel", faded), ("duotone", duotone), ("toned B&W", toned_mono),
    ("vignette", vignette), ("heavy grain", grain), ("posterize", posterize), ("halftone", halftone),
    ("pixel art", pixel_art), ("painterly (oil)", painterly), ("watercolour", watercolour),
    ("pencil sketch", sketch)]]


def instances(per_family: int, seed: int) -> list[tuple[int, Look]]:
    """`per_family` looks of every family, drawn with `seed`: (family index, look). Instance j of a family draws its
    main parameter from stratum j of `per_family` (with its own jitter), so instances are different looks."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, Look]] = []
    for fi, fam in enumerate(FAMILIES):
        offset = rng.uniform(0, 1)  # a split's strata start at its own place in the range
        for j in range(per_family):
            u = (offset + (j + rng.uniform(0, 0.5)) / per_family) % 1.0
            out.append((fi, fam.make(u, np.random.default_rng(rng.integers(1 << 62)))))
    return out
