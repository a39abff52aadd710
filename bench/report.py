"""Write benchmark figures: one section per benchmark in docs/benchmarks.md, raw numbers in docs/bench/NAME.json."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
RAW = ROOT / "docs" / "bench"
HEADER = """# Benchmarks

Written by `python -m bench` (one section per benchmark; `python -m bench NAME` reruns one). Every figure is the
median over the runs stated, measured in one run on the machine named in its section: the machines are shared and
noisy, so compare figures within a section, not across sections.
"""


def machine() -> dict[str, Any]:
    """CPU model, cores and library versions, to print beside every figure."""
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "open-clip-torch", "hnswlib", "numpy", "pillow", "dlib-bin", "gradio", "onnxruntime",
                "ray"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_tile" in flags, "versions": versions,
            "date": time.strftime("%Y-%m-%d")}


def machine_line(m: dict[str, Any] | None = None) -> str:
    m = m or machine()
    libs = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    isa = [name for key, name in (("avx512_bf16", "AVX512-BF16"), ("amx", "AMX")) if m.get(key)]
    cpu = f"{m['cpu']} ({', '.join(isa)})" if isa else f"{m['cpu']} (no AVX512-BF16, no AMX)"
    return f"*Machine: {cpu}, {m['cores']} cores, Python {m['python']}; {libs}; {m['date']}.*"


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def write_section(name: str, markdown: str, data: dict[str, Any]) -> None:
    """Replace (or append) the section `name` in docs/benchmarks.md and write its raw figures as JSON."""
    RAW.mkdir(parents=True, exist_ok=True)
    m = machine()
    (RAW / f"{name}.json").write_text(json.dumps({"machine": m, **data}, indent=2, default=str) + "\n")
    body = f"<!-- bench:{name} -->\n{markdown.strip()}\n\n{machine_line(m)}\n<!-- /bench:{name} -->"
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: body, text) if pattern.search(text) else text.rstrip() + "\n\n" + body + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def embed_timed(encoder: Any, images: list[Any]) -> tuple[Any, list[float]]:
    """Embed photos one at a time (as a single query would be): (vectors, seconds per photo)."""
    import numpy as np

    times: list[float] = []
    out = np.zeros((len(images), encoder.dim), np.float32)
    for i, img in enumerate(images):
        t = time.perf_counter()
        out[i] = encoder.embed_images([img])[0]
        times.append(time.perf_counter() - t)
    return out, times
