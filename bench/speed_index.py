"""Indexing speed: camera-sized JPEGs into the content space, end to end, against a naive loop in the same run.

Every end-to-end run is `imagesim.indexer.index_gallery` into a fresh database (scan, hash, decode, encode, commit,
save), with the real ViT-B-32 architecture and random weights. Variants run interleaved, round after round, so a
burst of load from other processes hits them all alike; figures are medians over the rounds.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .camera import CACHE, camera_photos, flower_files

MODEL = "ViT-B-32"
DEFAULT = "bf16, fast preprocess (default)"


def encoders(threads: int = 2) -> dict[str, Any]:
    """fp32 and bf16 ClipEncoders with the SAME random weights (same seed), built once."""
    import torch

    from imagesim.config import ModelSpec
    from imagesim.encoders.clip import ClipEncoder

    spec = ModelSpec(name=MODEL, pretrained=None)
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        out[precision] = ClipEncoder(spec, precision=precision, torch_threads=threads)
    a = out["fp32"].model.visual.conv1.weight.to(torch.bfloat16)
    assert torch.equal(a, out["bf16"].model.visual.conv1.weight), "fp32 and bf16 encoders must share weights"
    return out


def photo_set(n: int) -> Path:
    """A folder holding exactly the first `n` camera photos (hard links into the cache; copies across devices)."""
    files = camera_photos(n)
    folder = CACHE / "sets" / f"n{n}"
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = folder / f.name
        if not target.exists():
            try:
                os.link(f, target)
            except OSError:
                target.write_bytes(f.read_bytes())
    for f in files:  # warm the page cache: every variant reads from memory, none pays the first disk read
        f.read_bytes()
    return folder


def _median_ms(fn: Callable[[], object], items: int = 1, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000 / items)
    return float(statistics.median(times))


def stage_costs(encs: dict[str, Any], files: list[Path]) -> dict[str, float]:
    """Milliseconds per photo of each step on its own (decode on one core, encode on all torch threads)."""
    from imagesim.images import load_image

    enc = encs["bf16"]
    data = [f.read_bytes() for f in files[:8]]
    draft = [load_image(d, draft_size=enc.input_size) for d in data]
    out = {
        "decode_full_ms": _median_ms(lambda: [load_image(d) for d in data[:4]], 4, 3),
        "decode_draft_ms": _median_ms(lambda: [load_image(d, draft_size=enc.input_size) for d in data], len(data)),
        "preprocess_open_clip_ms": _median_ms(lambda: [enc.preprocess(im) for im in draft], len(draft)),
        "preprocess_fast_ms": _median_ms(lambda: enc.fast_preprocess.batch(draft), len(draft)),
    }
    out.update(png_costs(files[0], enc))
    batch = (draft * 4)[:32]
    for precision, e in encs.items():
        e.embed_images(batch)  # warm up: oneDNN builds its kernels on the first call of a shape
        out[f"encode_{precision}_ms"] = _median_ms(lambda e=e: e.embed_images(batch), len(batch), 3)
    return out


def png_costs(jpeg: Path, enc: Any) -> dict[str, float]:
    """A 12 MP PNG (no draft decoding for it): full-size decode + preprocess, against decode + integer reduce."""
    from PIL import Image

    from imagesim.images import load_image

    png = CACHE / "camera12mp.png"
    if not png.is_file():
        with Image.open(jpeg) as img:
            img.convert("RGB").save(png, format="PNG", compress_level=1)
    data = png.read_bytes()
    full = load_image(data)
    reduced = load_image(data, draft_size=enc.input_size)
    return {"png_decode_full_ms": _median_ms(lambda: load_image(data), 1, 3),
            "png_preprocess_full_ms": _median_ms(lambda: enc.fast_preprocess.batch([full]), 1, 3),
            "png_decode_reduced_ms": _median_ms(lambda: load_image(data, draft_size=enc.input_size), 1, 3),
            "png_preprocess_reduced_ms": _median_ms(lambda: enc.fast_preprocess.batch([reduced]), 1, 3)}


def reduce_agreement(enc: Any, files: list[Path]) -> np.ndarray:
    """Cosine between vectors of full-size 12 MP images and of the same images box-reduced as load_image does."""
    from imagesim.images import load_image

    full = [load_image(f) for f in files]
    size = enc.input_size
    reduced = [im.reduce(min(im.size) // (2 * size)) for im in full]
    return (enc.embed_images(full) * enc.embed_images(reduced)).sum(axis=1)


def agreement(encs: dict[str, Any], n: int) -> dict[str, float]:
    """Cosine between variants on real photos (Flowers-17 originals): bf16 vs fp32, fast vs open_clip preprocess."""
    from imagesim.images import load_image

    files = flower_files(n)
    if not files:
        return {}
    images = [load_image(f, draft_size=224) for f in files]
    e32, e16 = encs["fp32"], encs["bf16"]
    ref = _embed(e32, images, fast=False)
    bf16 = _embed(e16, images, fast=False)
    fast = _embed(e32, images, fast=True)
    both = _embed(e16, images, fast=True)
    cos = {"bf16_vs_fp32": (ref * bf16).sum(1), "fast_vs_open_clip": (ref * fast).sum(1),
           "bf16_fast_vs_fp32_open_clip": (ref * both).sum(1)}
    out: dict[str, float] = {"photos": len(files)}
    cos["reduce_vs_full_12mp"] = reduce_agreement(e32, camera_photos(8, log=False))
    for name, values in cos.items():
        out[f"{name}_min"] = float(values.min())
        out[f"{name}_median"] = float(np.median(values))
    return out


def _embed(enc: Any, images: list[Any], *, fast: bool) -> np.ndarray:
    saved = enc.fast_preprocess
    if not fast:
        enc.fast_preprocess = None
    try:
        return np.concatenate([enc.embed_images(images[i:i + 32]) for i in range(0, len(images), 32)])
    finally:
        enc.fast_preprocess = saved


def _decode(path: str) -> tuple[int, int]:
    from imagesim.images import load_image

    return load_image(path, draft_size=224).size


def decode_pools(files: list[Path]) -> dict[str, float]:
    """Decode-only photos/s: a thread pool (1, 2 threads) against a process pool (2 processes)."""
    paths = [str(f) for f in files]
    pools: dict[str, Callable[[], Executor]] = {
        "threads_1": lambda: ThreadPoolExecutor(1),
        "threads_2": lambda: ThreadPoolExecutor(2),
        "processes_2": lambda: ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")),
    }
    out: dict[str, list[float]] = {name: [] for name in pools}
    for name, make in pools.items():
        with make() as pool:
            list(pool.map(_decode, paths[:4]))  # start the workers before timing
            for _ in range(2):
                t = time.perf_counter()
                list(pool.map(_decode, paths, chunksize=4 if name.startswith("processes") else 1))
                out[name].append(len(paths) / (time.perf_counter() - t))
    return {name: float(statistics.median(v)) for name, v in out.items()}


def index_once(folder: Path, enc: Any, *, batch_size: int, threads: int, fast: bool = True,
               draft: bool = True, extra: tuple[Any, ...] = ()) -> tuple[float, float]:
    """(photos/s, CPU ms per photo) of one end-to-end `index_gallery` run into a fresh database."""
    from imagesim.indexer import index_gallery
    from imagesim.store import Store

    saved = enc.fast_preprocess, enc.input_size
    if not fast:
        enc.fast_preprocess = None
    if not draft:
        enc.input_size = None  # the pipeline then decodes every JPEG at full size
    try:
        with tempfile.TemporaryDirectory(prefix="imagesim-bench-") as tmp:
            store = Store.open(Path(tmp) / "db", create=True, threads=2)
            try:
                t, cpu = time.perf_counter(), time.process_time()
                report = index_gallery(store, [folder], [enc, *extra], batch_size=batch_size, threads=threads,
                                       progress=False)
                seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            finally:
                store.close()
    finally:
        enc.fast_preprocess, enc.input_size = saved
    if report.failed or report.added == 0:
        raise RuntimeError(f"bench indexing failed: {report.summary()}")
    return report.added / seconds, cpu * 1000 / report.added


def naive_once(files: list[Path], enc: Any) -> tuple[float, float]:
    """Photos/s of the loop everyone writes first: PIL open, open_clip preprocess, encode one photo, fp32."""
    import torch
    from PIL import Image

    from imagesim.encoders import normalize

    t, cpu = time.perf_counter(), time.process_time()
    for f in files:
        with Image.open(f) as img:
            x = enc.preprocess(img.convert("RGB")).unsqueeze(0)
        with torch.inference_mode():
            normalize(enc.model.encode_image(x).float().numpy())
    return len(files) / (time.perf_counter() - t), (time.process_time() - cpu) * 1000 / len(files)


def run(*, n_photos: int, n_naive: int, rounds: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every indexing figure of the speed section."""
    folder = photo_set(n_photos)
    files = sorted(folder.glob("*.jpg"))
    log(f"  {len(files)} photos of ~12 MP in {folder}")
    encs = encoders()
    out: dict[str, Any] = {"photos": len(files), "naive_photos": min(n_naive, len(files)), "rounds": rounds}
    out["stages_ms"] = stage_costs(encs, files)
    log(f"  stages (ms/photo): {_fmt(out['stages_ms'])}")
    out["agreement"] = agreement(encs, 64 if rounds > 1 else 32)
    log(f"  agreement: {_fmt(out['agreement'])}")
    out["decode_pools"] = decode_pools(files[:48])
    log(f"  decode-only photos/s: {_fmt(out['decode_pools'])}")
    e32, e16 = encs["fp32"], encs["bf16"]
    weight_free = _weight_free()
    variants: dict[str, Callable[[], tuple[float, float]]] = {
        "core: fp32, open_clip preprocess": lambda: index_once(folder, e32, batch_size=32, threads=2, fast=False),
        "fp32, fast preprocess": lambda: index_once(folder, e32, batch_size=32, threads=2),
        "bf16, open_clip preprocess": lambda: index_once(folder, e16, batch_size=32, threads=2, fast=False),
        "bf16, fast preprocess (default)": lambda: index_once(folder, e16, batch_size=32, threads=2),
        "default without JPEG draft": lambda: index_once(folder, e16, batch_size=32, threads=2, draft=False),
        "default, batch 16": lambda: index_once(folder, e16, batch_size=16, threads=2),
        "default, batch 64": lambda: index_once(folder, e16, batch_size=64, threads=2),
        "default, 1 decode thread": lambda: index_once(folder, e16, batch_size=32, threads=1),
        "default, 3 decode threads": lambda: index_once(folder, e16, batch_size=32, threads=3),
        **({"default + style + duplicate spaces (what `imagesim index` runs)":
            lambda: index_once(folder, e16, batch_size=32, threads=2, extra=weight_free)} if weight_free else {}),
        "naive loop": lambda: naive_once(files[:n_naive], e32),
    }
    index_once(folder, e16, batch_size=32, threads=2)  # warm-up run, not counted
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, fn in variants.items():
            rate, ms = fn()
            rates[name].append(rate)
            cpu[name].append(ms)
        log(f"  round {r + 1}/{rounds} (photos/s, CPU ms/photo): " +
            ", ".join(f"{k} {rates[k][-1]:.1f} {cpu[k][-1]:.0f}" for k in variants))
    out["photos_per_s"] = {name: float(statistics.median(v)) for name, v in rates.items()}
    out["photos_per_s_runs"] = rates
    # CPU time (all threads of this process) per photo: what the work costs, nearly independent of other load
    out["cpu_ms_per_photo"] = {name: float(statistics.median(v)) for name, v in cpu.items()}
    # each variant's CPU cost over the default's in the same round, median over rounds: the steadiest comparison
    out["cpu_vs_default_paired"] = {name: float(statistics.median(a / b for a, b in zip(v, cpu[DEFAULT], strict=True)))
                                    for name, v in cpu.items()}
    best = out["photos_per_s"][DEFAULT]
    out["speedup_vs_naive"] = best / out["photos_per_s"]["naive loop"]
    out["cpu_speedup_vs_naive"] = out["cpu_ms_per_photo"]["naive loop"] / out["cpu_ms_per_photo"][DEFAULT]
    return out


def _weight_free() -> tuple[Any, ...]:
    """The weight-free encoders `run_index` adds beside CLIP (style, near-duplicates), where this tree has them."""
    try:
        from imagesim.encoders import create_encoder
        from imagesim.indexer import WEIGHT_FREE
    except ImportError:
        return ()
    return tuple(create_encoder(kind) for kind in WEIGHT_FREE)


def _fmt(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in d.items())
