"""The edits people make to photos, as families with random parameters (tests and `bench/duplicates.py`).

Each family is `fn(img, rng) -> (edited, words)`: `words` are what an explanation of the copy should mention.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

Edit = Callable[[Image.Image, np.random.Generator], tuple[Image.Image, list[str]]]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def crop(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """A crop keeping 50-90 % of the area, any aspect within reason, anywhere."""
    area = rng.uniform(0.5, 0.9)
    fx = float(np.clip(np.sqrt(area) * rng.uniform(0.85, 1.15), area, 1.0))
    fy = area / fx
    w, h = round(im.width * fx), round(im.height * fy)
    x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
    return im.crop((x, y, x + w, y + h)), ["cropped"]


def rotate(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Straighten: rotate 1-10 degrees either way, then zoom so no corner shows (as photo apps do)."""
    deg = float(rng.uniform(1, 10) * rng.choice([-1, 1]))
    t = np.radians(abs(deg))
    w, h = im.size
    # the largest centred box of the original aspect inside the rotated frame
    f = 1 / (np.cos(t) + np.sin(t) * max(w / h, h / w))
    out = im.rotate(deg, Image.Resampling.BICUBIC)
    cw, ch = w * f, h * f
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return out.resize((w, h), Image.Resampling.BICUBIC, box=box), ["rotated"]


def borders(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Letterbox, pillarbox or a frame, of any colour, 4-25 % of a side."""
    colour = tuple(int(c) for c in rng.integers(0, 256, 3)) if rng.random() < 0.6 else \
        ((0, 0, 0) if rng.random() < 0.5 else (255, 255, 255))
    kind = str(rng.choice(["letterbox", "pillarbox", "frame"]))
    w, h = im.size
    bx = round(w * rng.uniform(0.04, 0.25)) if kind != "letterbox" else 0
    by = round(h * rng.uniform(0.04, 0.25)) if kind != "pillarbox" else 0
    out = Image.new("RGB", (w + 2 * bx, h + 2 * by), colour)
    out.paste(im, (bx, by))
    return out, ["border"]


def mirror(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    return ImageOps.mirror(im), ["mirrored"]


def tiny(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Downscaled to 1/6-1/3 and blown back up."""
    f = rng.uniform(1 / 6, 1 / 3)
    small = im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))), Image.Resampling.BILINEAR)
    return small.resize(im.size, Image.Resampling.BICUBIC), ["upscaled"]


def jpeg(im: Image.Image, rng: np.random.Generator, quality: int | None = None) -> tuple[Image.Image, list[str]]:
    """Saved again at JPEG quality 15-40."""
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality or int(rng.integers(15, 41)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), []  # the file says it, the pixels barely do


def tone(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Gamma, brightness, contrast or saturation, strongly."""
    kind = str(rng.choice(["gamma", "brightness", "contrast", "saturation"]))
    if kind == "gamma":
        g = rng.uniform(0.5, 0.8) if rng.random() < 0.5 else rng.uniform(1.3, 2.0)
        lut = [round(255 * (i / 255) ** g) for i in range(256)] * 3
        return im.point(lut), ["brighter" if g < 1 else "darker"]
    if kind == "brightness":
        f = rng.uniform(0.55, 0.75) if rng.random() < 0.5 else rng.uniform(1.3, 1.6)
        return ImageEnhance.Brightness(im).enhance(f), ["brighter" if f > 1 else "darker"]
    if kind == "contrast":
        f = rng.uniform(0.5, 0.7) if rng.random() < 0.5 else rng.uniform(1.4, 1.8)
        return ImageEnhance.Contrast(im).enhance(f), ["contrast"]
    f = rng.uniform(0.2, 0.5) if rng.random() < 0.5 else rng.uniform(1.6, 2.2)
    return ImageEnhance.Color(im).enhance(f), ["saturat"]


def colour_filter(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Sepia, black and white, or "warm"."""
    kind = str(rng.choice(["sepia", "bw", "warm"]))
    if kind == "bw":
        return im.convert("L").convert("RGB"), ["black and white"]
    a = np.asarray(im, np.float32)
    if kind == "sepia":
        m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
        s = rng.uniform(0.7, 1.0)
        a = (1 - s) * a + s * (a @ m.T)
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), ["warmer"]
    k = rng.uniform(0.12, 0.25)
    a = a * np.array([1 + k, 1 + k / 3, 1 - k], np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), ["warmer"]


def overlay(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """A caption bar, a watermark or a sticker, covering up to 15 % of the photo."""
    out = im.copy()
    d = ImageDraw.Draw(out, "RGBA")
    w, h = im.size
    kind = str(rng.choice(["caption", "watermark", "sticker"]))
    if kind == "caption":
        bar = round(h * rng.uniform(0.06, 0.15))
        y = 0 if rng.random() < 0.3 else h - bar
        d.rectangle((0, y, w, y + bar), fill=tuple(int(c) for c in rng.integers(0, 256, 3)) + (230,))
        d.text((w // 20, y + bar // 6), "Summer 2024 at the lake", font=_font(max(8, bar * 2 // 3)),
               fill=(255, 255, 255))
    elif kind == "watermark":
        size = max(10, w // 10)
        d.text((rng.integers(0, w // 3), rng.integers(h // 4, 3 * h // 4)), "© stockphoto", font=_font(size),
               fill=(255, 255, 255, 140))
    else:
        r = np.sqrt(rng.uniform(0.04, 0.15) * w * h / np.pi)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)) + (255,))
        d.text((cx - r / 2, cy - r / 4), "LOL", font=_font(max(8, round(r / 2))), fill=(0, 0, 0))
    return out, ["overlay"]


def screenshot(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """A phone screenshot of the photo: portrait screen, status bar with clock and icons, the photo fitted between
    borders."""
    sw = int(rng.integers(360, 540))
    sh = round(sw * rng.uniform(1.9, 2.2))
    dark = rng.random() < 0.6
    bg = (0, 0, 0) if dark else (250, 250, 250)
    fg = (255, 255, 255) if dark else (20, 20, 20)
    out = Image.new("RGB", (sw, sh), bg)
    f = min(sw / im.width, (sh * 0.8) / im.height)
    photo = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)
    out.paste(photo, ((sw - photo.width) // 2, (sh - photo.height) // 2))
    d = ImageDraw.Draw(out)
    bar = sh // 28
    d.text((sw // 20, bar // 5), f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}",
           font=_font(bar * 2 // 3), fill=fg)
    d.rectangle((sw - sw // 8, bar // 4, sw - sw // 20, bar * 3 // 4), outline=fg)  # battery
    d.text((sw // 20, sh - bar * 2), "♡  ⤴  ⋯", font=_font(bar), fill=fg)
    return out, ["screenshot"]


FAMILIES: dict[str, Edit] = {"crop": crop, "rotate": rotate, "borders": borders, "mirror": mirror,
                             "downscale": tiny, "jpeg": jpeg, "tone": tone, "colour filter": colour_filter,
                             "overlay": overlay, "screenshot": screenshot}


def combined(im: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Any two families, one after the other."""
    names = list(FAMILIES)
    first, second = rng.choice(len(names), 2, replace=False).tolist()
    out, words = FAMILIES[names[first]](im, rng)
    out, more = FAMILIES[names[second]](out, rng)
    return out, words + more


ALL_FAMILIES: dict[str, Edit] = {**FAMILIES, "two combined": combined}
