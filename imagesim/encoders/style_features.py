"""The style encoder's raw features: hand-made statistics of how a photo looks, in four blocks (no weights).

colour (palette, the grade per tone band: tint, channel curves, gamut), tone (the tone curve, per channel, and how
light falls off towards the edges), texture (grain, noise colour, band energies, the spectrum: halftone screens and
pixel grids are periodic), rendering (posterised palettes, flat areas, outlines, strokes). `style.py` standardises
and whitens them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

SIDE = 256  # photos are described at this longer side: texture statistics depend on scale

# Block name -> what a user calls it (used in explanations). The order is the layout of the vector.
BLOCKS: dict[str, str] = {
    "colour": "colour palette",
    "tone": "tone curve",
    "texture": "texture/grain",
    "rendering": "rendering",
}
RINGS = 4  # concentric rings for the light's fall-off towards the edges (vignettes)


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (h, w, 3) -> CIE Lab (D65)."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124 / 0.95047, 0.3576 / 0.95047, 0.1805 / 0.95047],
                  [0.2126, 0.7152, 0.0722],
                  [0.0193 / 1.08883, 0.1192 / 1.08883, 0.9505 / 1.08883]], dtype=np.float32)
    xyz = lin @ m.T
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab = np.empty_like(xyz)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def prepare(img: Image.Image, side: int = SIDE) -> np.ndarray:
    """RGB float32 in [0, 1] with the longer side at most `side` (downscaled only, so nothing is invented)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    if min(img.size) < 16:  # a thumbnail-sized or 1-pixel image still gets every statistic, none undefined
        img = img.resize((max(16, img.width), max(16, img.height)), Image.Resampling.NEAREST)
    if max(img.size) > side:
        scale = side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.float32) / 255.0


def _pct(values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Percentiles by selection (O(n)), several times faster than np.percentile's full sort."""
    flat = values.ravel()
    kth = np.clip(np.round(np.asarray(qs) / 100.0 * (flat.size - 1)).astype(np.int64), 0, flat.size - 1)
    return np.partition(flat, kth)[kth]


def _bins(values: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    return np.clip(((values - lo) * (bins / (hi - lo))).astype(np.int32), 0, bins - 1).ravel()


def _hist(values: np.ndarray, bins: int, lo: float, hi: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Square-rooted histogram as a share of pixels (Hellinger: small bins still count); bincount is fast."""
    h = np.bincount(_bins(values, bins, lo, hi), weights=None if weights is None else weights.ravel(), minlength=bins)
    return np.sqrt(h / max(values.size, 1))


Parts = tuple[list[np.ndarray], list[np.ndarray]]  # (statistics, histograms) of one block


def _colour(lab: np.ndarray, rgb: np.ndarray) -> Parts:
    L, a, b = lab[..., 0].ravel(), lab[..., 1].ravel(), lab[..., 2].ravel()
    chroma = np.hypot(a, b)
    hue = np.arctan2(b, a)
    shadows, highlights = L < _pct(L, [25])[0], L > _pct(L, [75])[0]
    r, g, bl = rgb[..., 0].ravel(), rgb[..., 1].ravel(), rgb[..., 2].ravel()
    rg, yb = r - g, 0.5 * (r + g) - bl
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    stats = [a.mean(), b.mean(), a.std(), b.std(), *_pct(chroma, [25, 50, 90]), chroma.std(),
             a[shadows].mean() if shadows.any() else 0.0, b[shadows].mean() if shadows.any() else 0.0,
             a[highlights].mean() if highlights.any() else 0.0, b[highlights].mean() if highlights.any() else 0.0,
             100 * colourfulness]
    # colour dimensionality: a monochrome grade (B&W, sepia, duotone) puts all pixels on one line in RGB
    flat_rgb = rgb.reshape(-1, 3) - rgb.reshape(-1, 3).mean(axis=0)
    cov = flat_rgb.T @ flat_rgb / len(flat_rgb) + np.eye(3, dtype=np.float32) * 1e-6
    eig = np.maximum(np.sort(np.linalg.eigvalsh(cov))[::-1], 1e-9)
    stats += [np.log(eig[1] / eig[0]), np.log(eig[2] / eig[0]), np.log(eig[0])]
    # the tint of each tone band (median is robust to the subject's own colours): grades tint bands, subjects don't
    band = np.minimum((L / 20).astype(np.int32), 4)
    for i in range(5):
        sel = band == i
        stats += [float(np.median(a[sel])), float(np.median(b[sel]))] if sel.sum() > 16 else [0.0, 0.0]
    # the gamut in shadows, mid-tones and highlights: where a and b spread to (a grade moves and squeezes it)
    tone3 = np.minimum((L / (100 / 3)).astype(np.int32), 2)
    for i in range(3):
        sel = tone3 == i
        stats += list(_pct(a[sel], [10, 90])) + list(_pct(b[sel], [10, 90])) if sel.sum() > 16 else [np.nan] * 4
    # the grade as a curve per channel: mean R, G, B and chroma in six brightness bands (a LUT moves these for every
    # photo the same way, a subject only a little)
    band6 = np.minimum((L / (100 / 6)).astype(np.int32), 5)
    counts = np.bincount(band6, minlength=6)
    seen = counts > 8
    for c in (r, g, bl, chroma / 100):
        means = np.bincount(band6, weights=c, minlength=6) / np.maximum(counts, 1)
        stats += list(np.where(seen, means, np.nan))  # an empty band is filled by the whitening's centre
    # hue histogram weighted by chroma: a grey photo has (almost) none, a graded one a narrow peak
    hue_hist = _hist(hue, 12, -np.pi, np.pi, weights=np.minimum(chroma, 60) / 60)
    ab_hist = np.bincount(_bins(a, 6, -48, 48) * 6 + _bins(b, 6, -48, 48), minlength=36)
    q = (np.minimum(rgb, 0.999) * 4).astype(np.int32)  # the palette itself: a coarse joint RGB histogram
    rgb_hist = np.sqrt(np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64) / L.size)
    return [np.asarray(stats, np.float32)], [hue_hist, np.sqrt(ab_hist / L.size), rgb_hist]



def _rings(shape: tuple[int, ...]) -> np.ndarray:
    """Ring index per pixel: 0 in the middle, RINGS - 1 in the corners (normalised, so any aspect ratio works)."""
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rad = np.sqrt(((xx + 0.5) / w - 0.5) ** 2 + ((yy + 0.5) / h - 0.5) ** 2) / np.sqrt(0.5)
    return np.minimum((rad * RINGS).astype(np.int32), RINGS - 1).ravel()


def _tone(L: np.ndarray, rgb: np.ndarray) -> Parts:
    flat = L.ravel()
    q = _pct(flat, [1, 5, 10, 25, 50, 75, 90, 95, 99])
    stats = [*q, flat.std(), q[-1] - q[0], q[7] - q[1], (flat < 3).mean() * 100, (flat > 97).mean() * 100]
    # black and white points of each channel: lifted blacks (faded), crushed or clipped channels (cross-processing)
    for c in range(3):
        stats += list(100 * _pct(rgb[..., c], [0.5, 2, 50, 98, 99.5]))
    # light towards the edges: each ring's mean, its darkest and brightest tenth, against the middle's (vignettes)
    ring = _rings(L.shape)
    n = np.maximum(np.bincount(ring, minlength=RINGS), 1)
    mean = np.bincount(ring, weights=flat, minlength=RINGS) / n
    sq = np.bincount(ring, weights=flat * flat, minlength=RINGS) / n
    spread = np.sqrt(np.maximum(sq - mean * mean, 0))
    stats += list(mean[1:] - mean[0]) + list(spread[1:] - spread[0]) + [spread[-1]]
    corner = flat[ring == RINGS - 1]
    stats += list(_pct(corner, [10, 90])) if corner.size else [q[2], q[6]]
    return [np.asarray(stats, np.float32)], [_hist(flat, 16, 0, 100)]


def _spectrum(Ln: np.ndarray) -> list[float]:
    """Radial power spectrum in log-spaced rings (its shape) and how peaked the fine rings are: a halftone screen or a
    pixel grid puts its energy in a few sharp peaks, grain and ordinary detail spread it."""
    h, w = Ln.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.rfft2((Ln - Ln.mean()) * win)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    rad = np.hypot(fy, fx).ravel()
    p = power.ravel()
    edges = np.geomspace(0.01, 0.71, 9)
    idx = np.clip(np.searchsorted(edges, rad) - 1, -1, 8)
    keep = (idx >= 0) & (idx < 8)
    energy = np.log(np.bincount(idx[keep], weights=p[keep], minlength=8) / np.maximum(
        np.bincount(idx[keep], minlength=8), 1) + 1e-8)
    out = list(energy - energy.mean())
    for lo, hi in ((0.08, 0.2), (0.2, 0.5)):
        ring = p[(rad >= lo) & (rad < hi)]
        out.append(float(np.log(_pct(ring, [99.9])[0] / (np.median(ring) + 1e-9) + 1e-6)) if ring.size else 0.0)
    return out


def _texture(Ln: np.ndarray, gx: np.ndarray, gy: np.ndarray, mag: np.ndarray, rgb: np.ndarray) -> Parts:
    from scipy import ndimage  # here: scipy costs ~0.2 s to import, paid only by work that encodes

    out = list(np.log(_pct(mag, [50, 75, 90, 99]) + 1e-4))
    out.append((mag > 0.05).mean())  # edge density
    out.append((mag < 0.004).mean())  # flat share: posterised and painted photos have big flat areas
    # high-pass residual: film grain and noise live here; the MAD is robust to the photo's own edges
    res = Ln - ndimage.uniform_filter(Ln, 3)
    res2 = res * res
    var = float(res2.mean())
    mad = _pct(np.abs(res), [50])[0]
    out += [np.log(mad + 1e-5), np.log(np.sqrt(var) + 1e-5), np.log(np.mean(res2 * res2) / (var * var + 1e-12) + 1)]
    # band energies of a small pyramid (relative): the shape of the spectrum separates grainy/sharp/soft/painted
    bands = []
    cur = Ln
    for _ in range(6 if min(Ln.shape) >= 64 else 4):
        low = ndimage.uniform_filter(cur, 3)
        bands.append(np.mean((cur - low) ** 2))
        cur = low[::2, ::2]
    bands_arr = np.log(np.asarray((bands + bands[-1:] * 6)[:6]) + 1e-8)  # tiny photos repeat the coarsest band
    out += list(bands_arr - bands_arr.mean()) + [bands_arr.mean()]
    # local against global contrast at three window sizes: HDR-like tone mapping flattens the large scale light and
    # keeps (boosts) the local; painted and washed photos lose the fine scale
    for size in (5, 15, 45):
        m = ndimage.uniform_filter(Ln, size)
        local_sd = np.sqrt(np.maximum(ndimage.uniform_filter(Ln * Ln, size) - m * m, 0))
        out += [float(np.log(np.mean(local_sd) / (Ln.std() + 1e-4) + 1e-4)), float(np.log(m.std() + 1e-4))]
    # sharpness: strongest local gradient against the tonal range it spans
    out.append(np.log(_pct(mag, [99.5])[0] / (_pct(Ln, [99])[0] - _pct(Ln, [1])[0] + 1e-3) + 1e-4))
    # grain in colour or in brightness: residual per channel and how alike the channels' residuals are
    chan = [rgb[..., c] - ndimage.uniform_filter(rgb[..., c], 3) for c in range(3)]
    sd = [float(x.std()) + 1e-5 for x in chan]
    out += [float(np.log(sd[0] / sd[1])), float(np.log(sd[2] / sd[1]))]
    out += [float((chan[i] * chan[j]).mean() / (sd[i] * sd[j])) for i, j in ((0, 1), (1, 2), (0, 2))]
    # noise where the picture is flat: grain sits everywhere, detail only near edges
    local = np.sqrt(np.maximum(ndimage.uniform_filter(res2, 7), 0))
    out += list(np.log(_pct(local, [10, 30]) + 1e-5))
    out += _spectrum(Ln)
    return [np.asarray(out, np.float32)], []


def _rendering(rgb: np.ndarray, rgb_full: np.ndarray, Ln: np.ndarray, gx: np.ndarray, gy: np.ndarray,
               mag: np.ndarray) -> Parts:
    q8 = np.round(rgb * 255).astype(np.int32)
    levels = [np.count_nonzero(np.bincount(q8[..., c].ravel(), minlength=256) > q8[..., c].size * 2e-4)
              for c in range(3)]
    codes = (q8[..., 0] >> 3) * 1024 + (q8[..., 1] >> 3) * 32 + (q8[..., 2] >> 3)
    counts = np.bincount(codes.ravel(), minlength=32768)
    nz = counts[counts > 0]
    # posterised: a few colours cover everything
    top32 = (np.partition(nz, len(nz) - 32)[-32:].sum() if len(nz) > 32 else nz.sum()) / codes.size
    distinct = np.count_nonzero(counts > codes.size * 1e-4)
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    strong = mag > _pct(mag, [80])[0]
    orient = np.bincount(_bins(ang[strong], 8, 0, np.pi), minlength=8).astype(np.float32)
    orient = np.sort(orient / max(orient.sum(), 1))[::-1]  # sorted: how directional strokes are, not which way
    # edge coherence (structure tensor over 8x8 blocks): pencil hatching and brush strokes are coherent
    jxx, jyy, jxy = (_block_mean(v, 8) for v in (gx * gx, gy * gy, gx * gy))
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-6)
    strong_blocks = _block_mean(strong.astype(np.float32), 8) > 0.5
    bright = (Ln > 0.9).mean()
    top = rgb.max(axis=2)
    hsv_s = (top - rgb.min(axis=2)) / (top + 1e-3)
    stroke = float(np.mean(coherence[strong_blocks])) if strong_blocks.any() else 0.0
    out = [np.log(lv + 1) for lv in levels] + [np.log(distinct + 1), top32, bright, hsv_s.mean(), hsv_s.std(),
                                                 stroke, float(np.median(coherence))]
    # big square pixels and flat fills: runs of identical neighbours along rows and columns
    same_x = (np.abs(np.diff(q8, axis=1)).sum(axis=2) == 0).mean()
    same_y = (np.abs(np.diff(q8, axis=0)).sum(axis=2) == 0).mean()
    # outlines: how dark the strongest edges are against the picture (posterised cartoons, sketches)
    edge = mag >= _pct(mag, [95])[0]
    edge_l = float(Ln[edge].mean()) if edge.any() else float(Ln.mean())
    # ... measured at full size as a run length (about the pixel size of pixel art)
    full = np.round(rgb_full * 255).astype(np.int32)
    run_x = (np.abs(np.diff(full, axis=1)).sum(axis=2) == 0).mean()
    run_y = (np.abs(np.diff(full, axis=0)).sum(axis=2) == 0).mean()
    out += [same_x, same_y, edge_l - float(Ln.mean()), float(np.log(len(nz) + 1)),
            -float(np.log(1.02 - run_x)), -float(np.log(1.02 - run_y)),
            # zero for an ordinary photo, growing as the palette shrinks: lets a posterised palette's size count
            # without ordinary photos' colour counts (which vary a lot) drowning it
            max(0.0, float(np.log(64 / (distinct + 1))))]
    return [np.asarray(out, np.float32)], [orient]


def _block_mean(x: np.ndarray, n: int) -> np.ndarray:
    h, w = (x.shape[0] // n) * n, (x.shape[1] // n) * n
    if h == 0 or w == 0:
        return np.asarray([[x.mean()]], dtype=np.float32)
    return x[:h, :w].reshape(h // n, n, w // n, n).mean(axis=(1, 3))


def raw_features(img: Image.Image) -> dict[str, np.ndarray]:
    """Unwhitened features per block (for calibration and explanations)."""
    rgb = prepare(img)
    lab = _srgb_to_lab(rgb)
    L = lab[..., 0]
    Ln = L / 100.0
    grads = np.gradient(Ln) if min(Ln.shape) > 1 else (np.zeros_like(Ln), np.zeros_like(Ln))
    gy, gx = np.asarray(grads[0]), np.asarray(grads[1])
    mag = np.hypot(gx, gy)
    # colour and tone statistics are as good from every other pixel in each direction, at a quarter of the cost
    lab_s, rgb_s = lab[::2, ::2], rgb[::2, ::2]
    blocks = {"colour": _colour(lab_s, rgb_s), "tone": _tone(lab_s[..., 0], rgb_s),
              "texture": _texture(Ln, gx, gy, mag, rgb), "rendering": _rendering(rgb_s, rgb, Ln, gx, gy, mag)}
    # NaN marks a statistic the photo does not have (an empty tone band): the encoder puts the usual value there
    return {k: np.concatenate([np.ravel(p) for p in (*st, *hi)]).astype(np.float32) for k, (st, hi) in blocks.items()}


def histogram_mask() -> dict[str, np.ndarray]:
    """Per block, True where a raw feature is a histogram bin (whitened with one shared scale, not its own)."""
    rgb = np.random.default_rng(0).uniform(0, 1, (16, 16, 3)).astype(np.float32)
    lab = _srgb_to_lab(rgb)
    Ln = lab[..., 0] / 100
    grads = np.gradient(Ln)
    gy, gx = np.asarray(grads[0]), np.asarray(grads[1])
    mag = np.hypot(gx, gy)
    blocks = {"colour": _colour(lab, rgb), "tone": _tone(lab[..., 0], rgb), "texture": _texture(Ln, gx, gy, mag, rgb),
              "rendering": _rendering(rgb, rgb, Ln, gx, gy, mag)}
    return {k: np.concatenate([np.zeros(sum(np.size(p) for p in st), bool), np.ones(sum(np.size(p) for p in hi), bool)])
            for k, (st, hi) in blocks.items()}
