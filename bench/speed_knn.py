"""k-NN query speed: latency p50/p99 at k=10, recall@10 against exact search, build rate and RAM per vector.

Each (size, M, ef_construction) is built in a fresh subprocess (`python -m bench.speed_knn --one ...`), so the RSS
growth it reports belongs to that graph alone (hnswlib's arrays, its label map and locks, and VectorIndex's Python
label sets) and the memory goes back when it ends.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .report import ROOT

DIM = 512
K = 10
EF_SWEEP = (10, 16, 24, 32, 48, 64, 96, 128, 192)


def clustered(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """`n` unit vectors shaped like CLIP photo embeddings: clusters in a 64-d subspace plus small noise in all 512.

    Real image embeddings are anisotropic and clustered (many photos of one scene or subject), with a low intrinsic
    dimension; uniform random vectors would make HNSW look much worse than it is on photos, and pure clusters better.
    """
    rng = np.random.default_rng(1234)  # the space (basis, centres) is fixed; `seed` draws the points
    latent, n_centres = 64, 2000
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    centres = rng.standard_normal((n_centres, latent)).astype(np.float32)
    spread = rng.uniform(0.4, 1.0, n_centres).astype(np.float32)  # some subjects vary more than others
    draw = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        which = draw.integers(0, n_centres, m)
        z = centres[which] + spread[which, None] * draw.standard_normal((m, latent)).astype(np.float32)
        x = z @ basis + 0.15 * draw.standard_normal((m, dim)).astype(np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Brute-force top-k labels (row numbers), the ground truth for recall."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 256):
        scores = queries[s:s + 256] @ base.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[s:s + 256] = np.take_along_axis(top, order, axis=1)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def latencies(index: Any, queries: np.ndarray, ef: int | None) -> tuple[np.ndarray, list[float]]:
    """Query one vector at a time, as the app does; return (labels, per-query milliseconds)."""
    found, ms = [], []
    for q in queries:
        t = time.perf_counter_ns()
        labels, _ = index.search(q, K, ef=ef)
        ms.append((time.perf_counter_ns() - t) / 1e6)
        found.append(labels[0])
    return np.asarray(found), ms


def _rss() -> int:
    """Resident bytes, after handing free heap pages back to the OS (else a freed temporary's pages get reused by
    the graph and its growth is under-counted)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure may then be a little low
        pass
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(n: int, m: int, efc: int, efs: list[int], n_queries: int, threads: int) -> dict[str, Any]:
    """Build one HNSW graph of `n` clustered vectors in this process and measure it."""
    import tempfile

    from imagesim import vectors
    from imagesim.store.vectors import VectorIndex

    base = clustered(n, seed=1)
    queries = clustered(n_queries, seed=2)
    truth = exact_top_k(base, queries)
    vectors.HNSW_M, vectors.HNSW_EF_CONSTRUCTION = m, efc
    before = _rss()
    index = VectorIndex(DIM, threads=threads, exact_max=0, capacity=n)
    start = time.perf_counter()
    for s in range(0, n, 10_000):  # in chunks, as a long indexing run adds them
        index.add(np.arange(s, min(n, s + 10_000)), base[s:s + 10_000])
    build_s = time.perf_counter() - start
    rss = _rss() - before
    with tempfile.TemporaryDirectory() as tmp:
        state = index.save(Path(tmp), "bench", 1, "x")
    out: dict[str, Any] = {"n": n, "M": m, "ef_construction": efc, "build_s": build_s, "build_rate": n / build_s,
                           "rss_bytes_per_vector": rss / n, "file_bytes_per_vector": state.size / n, "ef": {}}
    for ef in efs:
        latencies(index, queries[:20], ef)  # warm the caches
        found, ms = latencies(index, queries, ef)
        out["ef"][str(ef)] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                              "recall": recall(found, truth)}
    return out


def run_one(n: int, m: int, efc: int, efs: list[int] | tuple[int, ...], n_queries: int, threads: int = 2,
            timeout: float = 900) -> dict[str, Any]:
    """`one` in a fresh interpreter (clean RSS), returning its JSON."""
    cmd = [sys.executable, "-m", "bench.speed_knn", "--one", str(n), str(m), str(efc), ",".join(map(str, efs)),
           str(n_queries), str(threads)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def crossover(sizes: list[int], n_queries: int, threads: int = 2) -> list[dict[str, Any]]:
    """Exact search vs HNSW (current parameters) on the same growing collection: where does HNSW start to win?"""
    from imagesim.store.vectors import VectorIndex

    base = clustered(max(sizes), seed=3)
    queries = clustered(n_queries, seed=4)
    index = VectorIndex(DIM, threads=threads, exact_max=0, capacity=max(sizes))
    rows, have = [], 0
    for n in sorted(sizes):
        index.add(np.arange(have, n), base[have:n])
        have = n
        truth = exact_top_k(base[:n], queries)
        row: dict[str, Any] = {"n": n}
        for name, limit in (("exact", n), ("hnsw", 0)):
            index.exact_max = limit
            latencies(index, queries[:20], None)
            found, ms = latencies(index, queries, None)
            row[name] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                         "recall": recall(found, truth)}
        rows.append(row)
    return rows


def pick(sweep: list[dict[str, Any]], target_recall: float) -> dict[str, Any] | None:
    """The (M, ef_construction, ef) with the lowest p50 that reaches `target_recall`."""
    best = None
    for run in sweep:
        for ef, fig in run["ef"].items():
            if fig["recall"] >= target_recall and (best is None or fig["p50_ms"] < best["p50_ms"]):
                best = {"M": run["M"], "ef_construction": run["ef_construction"], "ef": int(ef), **fig}
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed_knn")
    parser.add_argument("--one", nargs=6, metavar=("N", "M", "EFC", "EFS", "QUERIES", "THREADS"))
    args = parser.parse_args(argv)
    if not args.one:
        parser.error("run through `python -m bench speed`")
    n, m, efc, efs, nq, threads = args.one
    print(json.dumps(one(int(n), int(m), int(efc), [int(e) for e in efs.split(",")], int(nq), int(threads))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
