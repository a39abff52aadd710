"""Fuzz the decode path with atheris: `python bench/fuzz_decode.py -runs=100000 -timeout=10 CORPUS_DIR`.

Any exception other than ImageError, any crash and any input slower than -timeout seconds is a finding.
Seeds: small valid files of every allowed format (written by `write_seeds`).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def write_seeds(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    rgba = img.convert("RGBA")
    for name, im, fmt, kw in [
        ("a.jpg", img, "JPEG", {}), ("b.png", rgba, "PNG", {}), ("c.gif", img.convert("P"), "GIF", {}),
        ("d.webp", img, "WEBP", {}), ("e.tif", img, "TIFF", {}), ("f.bmp", img, "BMP", {}),
        ("g.heic", img, "HEIF", {}), ("h.avif", img, "AVIF", {}), ("i.png", img.convert("I;16"), "PNG", {}),
        ("j.jpg", img.convert("CMYK"), "JPEG", {}), ("k.tif", img.convert("F"), "TIFF", {}),
        ("l.gif", img.convert("P"), "GIF", {"save_all": True, "append_images": [img.convert("P")]}),
    ]:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        (folder / name).write_bytes(buf.getvalue())


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["imagesim"]):
        from imagesim.errors import ImageError
        from imagesim.images import load_image

    def one_input(data: bytes) -> None:
        try:
            load_image(data, draft_size=224)
        except ImageError:
            pass

    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for c in corpus:
        write_seeds(Path(c))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
