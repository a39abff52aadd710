"""`python -m bench startup`: what a one-shot query costs from a cold process, beside rclip on the same model.

For each model (the tiny test config, and ViT-B-32-256 with random weights, saved as a user's checkpoint) the same
120 flowers17 photos are indexed with `imagesim index`; then, repeated and interleaved, each one-shot command runs in
a fresh process and its wall time and peak RSS (os.wait4) are taken:

- `imagesim search --text "a red flower"` and `imagesim search NEWPHOTO` (a photo outside the gallery), with the
  exported towers and, as the "before" rows, the same commands run by the main checkout's imagesim (IMAGESIM_MAIN,
  default /work/main), which has no towers: the full open_clip path (torch, both towers built, weights loaded);
- rclip 3.3 on ViT-B-32-256 (its own venv, `.venv-rclip`, offline: RCLIP_DATADIR holds visual.onnx/textual.onnx
  exported from the same random model and open_clip's BPE vocabulary), `rclip --no-indexing QUERY` in the photo
  folder, after one indexing run;
- the model load alone, apart: the exported tower in ONNX Runtime vs the same tower as TorchScript in torch
  (import + load + first vector), which is how the runtime was chosen.

Medians over the runs; the machine is shared with other jobs, so the load average is reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.photos import TINY_CONFIG, datasets_dir

from .report import ROOT, median, write_section

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
IMAGESIM = [sys.executable, "-m", "imagesim"]
# "before": the main checkout's imagesim (no exported towers: the full open_clip path) on the same database
MAIN = Path(os.environ.get("IMAGESIM_MAIN", "/work/main"))
MAIN_IMAGESIM = [str(MAIN / ".venv" / "bin" / "python"), "-m", "imagesim"]
MAIN_ENV = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
RCLIP = ROOT / ".venv-rclip" / "bin" / "rclip"
RCLIP_MODEL = "ViT-B-32-256-datacomp_s34b_b86k"
TEXT = "a red flower"


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float, str, str]:
    """Run `cmd` in a fresh process: (wall seconds, its peak RSS in MB, stdout, stderr); fails loudly on a non-zero
    exit. The peak RSS is GNU time's (%M), taken in a small parent: a child forked from this benchmark's process
    would count this process's memory at the fork in its own high-water mark."""
    with tempfile.NamedTemporaryFile("r") as usage, tempfile.TemporaryFile("w+") as out, \
            tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", usage.name, *cmd], cwd=cwd, env=env or ENV,
                              stdout=out, stderr=err, text=True, check=False)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
        rss_kb = usage.read().strip().splitlines()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {errors.strip()[-500:]}")
    return wall, float(rss_kb[-1]) / 1024, text, errors


def _photos(work: Path, n: int) -> tuple[Path, Path]:
    """`n` flowers17 photos spread over its classes, copied into work/photos, and one more outside them."""
    src = sorted(p for p in (datasets_dir() / "flowers17").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(src) < n + 1:
        raise SystemExit(f"need {n + 1} photos in {datasets_dir() / 'flowers17'}")
    step = len(src) // (n + 1)
    picked = src[::step][: n + 1]
    folder = work / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(picked[:n]):
        shutil.copyfile(p, folder / f"{i:03d}_{p.name}")
    new = work / f"new{picked[n].suffix}"
    shutil.copyfile(picked[n], new)
    return folder, new


def _model(work: Path, name: str) -> tuple[list[str], Any]:
    """Random weights for `name`, saved as a user's checkpoint: the CLI flags that load it, and the encoder."""
    import torch

    from imagesim.config import ModelSpec
    from imagesim.encoders import create_encoder

    torch.manual_seed(0)
    model = str(TINY_CONFIG) if name == "tiny" else name
    enc = create_encoder("clip", spec=ModelSpec(model, None), precision="fp32")
    weights = work / f"{name}.pt"
    enc.save_weights(weights)  # type: ignore[attr-defined]
    return ["--model", model, "--weights", str(weights)], enc


def _rclip_datadir(work: Path, enc: Any) -> Path:
    """What rclip 3.3 reads offline: DATADIR/MODEL/{visual,textual}.onnx (input/output) and the BPE vocabulary."""
    import torch
    from open_clip.tokenizer import default_bpe

    from imagesim.encoders.export import _silenced, _Text, _Visual

    datadir = work / "rclip"
    (datadir / RCLIP_MODEL).mkdir(parents=True, exist_ok=True)
    (datadir / "tokenizer").mkdir(exist_ok=True)
    shutil.copyfile(default_bpe(), datadir / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz")
    size = enc.input_size
    for module, example, name in ((_Text(enc.model), torch.zeros(2, 77, dtype=torch.long), "textual"),
                                  (_Visual(enc.model), torch.zeros(2, 3, size, size), "visual")):
        with torch.enable_grad(), _silenced():
            torch.onnx.export(module.eval(), (example,), str(datadir / RCLIP_MODEL / f"{name}.onnx"),
                              input_names=["input"], output_names=["output"], opset_version=18, dynamo=False,
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return datadir


TOWER_LOAD = """
import sys, time, json, resource
t = time.perf_counter()
from imagesim.encoders.towers import open_tower
tower = open_tower(sys.argv[1], sys.argv[2], sys.argv[3], threads=2)
if sys.argv[3] == "text":
    tower.embed_texts(["a red flower"])
else:
    from PIL import Image
    tower.embed_images([Image.open(sys.argv[4]).convert("RGB")])
print(json.dumps({"s": time.perf_counter() - t}))
"""

TORCH_LOAD = """
import sys, time, json
t = time.perf_counter()
import torch
torch.set_num_threads(2)
m = torch.jit.load(sys.argv[1])
n = int(sys.argv[3])
x = torch.zeros(1, n, dtype=torch.long) if sys.argv[2] == "text" else torch.zeros(1, 3, n, n)
with torch.inference_mode():
    m(x)
print(json.dumps({"s": time.perf_counter() - t}))
"""

RCLIP_LOAD = """
import sys, time, json
t = time.perf_counter()
from rclip import model
m = model.Model()
if sys.argv[1] == "text":
    m.compute_text_features(["a red flower"])
else:
    from PIL import Image
    m.compute_image_features([Image.open(sys.argv[2])])
print(json.dumps({"s": time.perf_counter() - t}))
"""


def _torchscript(work: Path, enc: Any, name: str) -> dict[str, Path]:
    """The same two towers as TorchScript files, for the torch-vs-ONNX Runtime load comparison."""
    import torch

    from imagesim.encoders.export import _silenced, _Text, _Visual

    size, ctx = enc.input_size, int(enc.tokenizer.context_length)
    out = {}
    for module, example, kind in ((_Text(enc.model), torch.zeros(1, ctx, dtype=torch.long), "text"),
                                  (_Visual(enc.model), torch.zeros(1, 3, size, size), "visual")):
        out[kind] = work / f"{name}-{kind}.ts"
        with torch.enable_grad(), _silenced():
            torch.jit.save(torch.jit.trace(module.eval(), (example,), check_trace=False), str(out[kind]))
    return out


def _fingerprint(db: Path) -> str:
    from imagesim.search import Gallery

    with Gallery.open(db) as g:
        info = g.store.catalog.space("content")
        assert info is not None
        return info.fingerprint


def _agreement(db: Path, photos: Path, enc: Any) -> dict[str, float]:
    """Export vs indexed vectors (the index's own precision) and vs the fp32 torch model, over the gallery."""
    import numpy as np

    from imagesim.encoders.towers import open_tower
    from imagesim.images import load_image
    from imagesim.search import Gallery

    fp = _fingerprint(db)
    visual = open_tower(db, fp, "visual")
    files = sorted(photos.iterdir())
    with Gallery.open(db) as g:
        stored = np.stack([g.store.stored_vector(p, "content") for p in files])
    imgs = [load_image(p, draft_size=visual.input_size) for p in files]  # type: ignore[union-attr]
    ours = np.concatenate([visual.embed_images(imgs[i:i + 16]) for i in range(0, len(imgs), 16)])  # type: ignore[union-attr]
    torch_fp32 = np.concatenate([enc.embed_images(imgs[i:i + 16]) for i in range(0, len(imgs), 16)])
    text = open_tower(db, fp, "text")
    texts = ["a red flower", "a field of yellow daffodils", "a close-up of a white daisy"]
    cos_text = np.sum(text.embed_texts(texts) * enc.embed_texts(texts), axis=1)  # type: ignore[union-attr]
    return {"visual_vs_index_min": float(np.min(np.sum(ours * stored, axis=1))),
            "visual_vs_fp32_min": float(np.min(np.sum(ours * torch_fp32, axis=1))),
            "text_vs_fp32_min": float(np.min(cos_text))}


def bench_model(work: Path, name: str, photos: Path, new: Path, runs: int, with_rclip: bool) -> dict[str, Any]:
    flags, enc = _model(work, name)
    db = work / f"db-{name}"
    t = time.perf_counter()
    _, index_rss, _, log = run([*IMAGESIM, "index", str(photos), "--db", str(db), *flags])
    index_s = time.perf_counter() - t
    fp = _fingerprint(db)
    towers = db / "towers"
    datadir = _rclip_datadir(work, enc) if with_rclip else None
    rclip_env = {**ENV, "RCLIP_DATADIR": str(datadir)} if datadir else None
    if datadir:
        run([str(RCLIP), "-t", "1", TEXT], cwd=photos, env=rclip_env)  # rclip indexes the folder once
    scripts = _torchscript(work, enc, name)
    agreement = _agreement(db, photos, enc)
    del enc
    manifest = json.loads((towers / fp / "manifest.json").read_text())
    size, ctx = manifest["visual"]["input_size"], manifest["text"]["context_length"]
    commands: dict[str, tuple[list[str], Path | None, dict[str, str] | None]] = {
        "imagesim text": ([*IMAGESIM, "search", "--db", str(db), "--text", TEXT, "-k", "10"], None, None),
        "imagesim photo": ([*IMAGESIM, "search", "--db", str(db), str(new), "-k", "10"], None, None),
        "load: ONNX Runtime text tower": ([sys.executable, "-c", TOWER_LOAD, str(db), fp, "text"], None, None),
        "load: ONNX Runtime visual tower": ([sys.executable, "-c", TOWER_LOAD, str(db), fp, "visual", str(new)],
                                            None, None),
        "load: torch (TorchScript) text tower": ([sys.executable, "-c", TORCH_LOAD, str(scripts["text"]), "text",
                                                  str(ctx)], None, None),
        "load: torch (TorchScript) visual tower": ([sys.executable, "-c", TORCH_LOAD, str(scripts["visual"]),
                                                    "visual", str(size)], None, None),
    }
    if datadir:
        rpy = str(RCLIP.parent / "python")
        commands.update({
            "rclip text": ([str(RCLIP), "--no-indexing", "-t", "10", TEXT], photos, rclip_env),
            "rclip photo": ([str(RCLIP), "--no-indexing", "-t", "10", str(new)], photos, rclip_env),
            "load: rclip text session": ([rpy, "-c", RCLIP_LOAD, "text"], None, rclip_env),
            "load: rclip visual session": ([rpy, "-c", RCLIP_LOAD, "visual", str(new)], None, rclip_env),
        })
    if (MAIN / ".venv" / "bin" / "python").exists():
        # run from the main checkout: `python -m` puts the working folder first on the path
        commands["main checkout text (full model)"] = ([*MAIN_IMAGESIM, *commands["imagesim text"][0][3:]], MAIN,
                                                       MAIN_ENV)
        commands["main checkout photo (full model)"] = ([*MAIN_IMAGESIM, *commands["imagesim photo"][0][3:]], MAIN,
                                                        MAIN_ENV)
    samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in commands}
    for _ in range(runs):
        for key, (cmd, cwd, env) in commands.items():  # interleaved: a burst of load hits every command alike
            wall, rss, out, _ = run(cmd, cwd, env)
            inner = json.loads(out.strip().splitlines()[-1])["s"] if key.startswith("load:") else float("nan")
            samples[key].append((wall, rss, inner))
    rows = {k: {"wall_s": median([s[0] for s in v]), "rss_mb": median([s[1] for s in v]),
                "in_process_s": median([s[2] for s in v]), "runs": len(v)} for k, v in samples.items()}
    export_line = next((line for line in log.splitlines() if "exported" in line), "")
    return {"model": name, "index_s": index_s, "index_rss_mb": index_rss, "export_line": export_line,
            "agreement": agreement, "rows": rows}


def _markdown(results: list[dict[str, Any]], load: tuple[float, float], runs: int) -> str:
    lines = ["## One-shot queries from a cold process (`python -m bench startup`)", "",
             f"Each command in a fresh process, {runs} runs interleaved, medians; peak RSS from GNU time (`%M`). 120 "
             f"flowers17 photos; the new photo is one more from flowers17. Load average during the runs "
             f"{load[0]:.1f} → {load[1]:.1f} on 2 cores: **measured with other jobs running**.", ""]
    for r in results:
        rows = r["rows"]
        lines += [f"### {r['model']} (random weights)", "",
                  "| command | wall (s) | peak RSS (MB) | in-process (s) |", "|---|---|---|---|"]
        for key, v in rows.items():
            inner = "" if v["in_process_s"] != v["in_process_s"] else f"{v['in_process_s']:.2f}"
            lines.append(f"| {key} | {v['wall_s']:.2f} | {v['rss_mb']:.0f} | {inner} |")
        a = r["agreement"]
        lines += ["", f"Export vs indexed vectors (index at default precision, bf16 image tower where the CPU has it): "
                      f"min cosine {a['visual_vs_index_min']:.5f}; vs the fp32 torch model: images "
                      f"{a['visual_vs_fp32_min']:.6f}, texts {a['text_vs_fp32_min']:.6f}. `imagesim index` "
                      f"{r['index_s']:.1f} s, peak RSS {r['index_rss_mb']:.0f} MB, export included "
                      f"({r['export_line'].removeprefix('imagesim: ')})."]
        if "rclip text" in rows:
            for kind in ("text", "photo"):
                ours, theirs = rows[f"imagesim {kind}"], rows[f"rclip {kind}"]
                lines.append(f"- {kind} query: imagesim {ours['wall_s']:.2f} s / {ours['rss_mb']:.0f} MB vs rclip "
                             f"{theirs['wall_s']:.2f} s / {theirs['rss_mb']:.0f} MB (ratio "
                             f"{ours['wall_s'] / theirs['wall_s']:.2f})"
                             + (f"; before (main, full model) {rows[before]['wall_s']:.2f} s / "
                                f"{rows[before]['rss_mb']:.0f} MB." if (before := f"main checkout {kind} (full model)")
                                in rows else "."))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--quick", action="store_true", help="tiny model only, 2 runs, no rclip")
    parser.add_argument("--work", help="keep the work folder here (default: a temporary one)")
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    with_rclip = not args.quick and RCLIP.exists()
    if not args.quick and not with_rclip:
        print(f"rclip not found at {RCLIP}: python -m venv .venv-rclip && .venv-rclip/bin/pip install 'rclip==3.3.*'")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="imagesim-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        photos, new = _photos(work, args.photos)
        before = os.getloadavg()[0]
        results = [bench_model(work, "tiny", photos, new, runs, False)]
        if not args.quick:
            results.append(bench_model(work, "ViT-B-32-256", photos, new, runs, with_rclip))
        load = (before, os.getloadavg()[0])
        md = _markdown(results, load, runs)
        print(md)
        write_section("startup", md, {"results": results, "load": load, "runs": runs})
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0
