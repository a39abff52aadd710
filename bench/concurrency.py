"""Concurrent use: N gradio_client clients query `imagesim serve` while `imagesim index` adds photos to the same DB.

Checks every response for torn results (unsorted scores, duplicate or foreign paths, too few rows, a query photo not
finding itself first) and reports errors and latencies. Used by `python -m bench reliability` and a slow test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.report import ROOT, median

TINY = ROOT / "tests" / "data" / "tiny_clip.json"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "IMAGESIM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"imagesim serve exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("imagesim serve did not come up in time")


def concurrency_trial(initial: int = 200, added: int = 2000, clients: int = 8, k: int = 10) -> dict:
    import torch
    from gradio_client import Client, handle_file

    from imagesim.config import ModelSpec
    from imagesim.encoders import create_encoder
    from tests.support.photos import write_gallery

    tmp = Path(tempfile.mkdtemp(prefix="imagesim-conc-"))
    gallery, db = tmp / "pics", tmp / "db"
    torch.manual_seed(0)
    weights = tmp / "tiny.pt"
    torch.save(create_encoder("clip", spec=ModelSpec(str(TINY), None)).model.state_dict(), weights)
    model = ["--model", str(TINY), "--weights", str(weights)]
    queries = write_gallery(gallery / "a", initial)
    subprocess.run([sys.executable, "-m", "imagesim", "index", str(gallery), "--db", str(db), *model, "--json"],
                   env=ENV, check=True, capture_output=True)
    write_gallery(tmp / "incoming", added, start_seed=10_000)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([sys.executable, "-m", "imagesim", "serve", "--db", str(db), "--port", str(port)],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    result: dict = {"clients": clients, "initial": initial, "added": added, "requests": 0, "errors": [],
                    "torn": [], "latency_ms": {"/search": [], "/search_text": []}}
    lock = threading.Lock()
    try:
        _wait_until_up(url, server)
        shutil.move(str(tmp / "incoming"), str(gallery / "b"))  # the new photos appear in the gallery at once
        indexer = subprocess.Popen([sys.executable, "-m", "imagesim", "index", str(gallery), "--db", str(db),
                                    "--batch-size", "16", "--json"], env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        root = str(gallery)

        def one_client(n: int) -> None:
            client = Client(url, download_files=False, verbose=False)
            i = 0
            while indexer.poll() is None or i < 4:  # at least a few requests after the indexer ends
                q = queries[(n * 7 + i) % len(queries)]
                api = "/search" if i % 2 == 0 else "/search_text"
                t = time.perf_counter()
                try:
                    if api == "/search":
                        rows = client.predict(handle_file(str(q)), k, api_name=api)
                    else:
                        rows = client.predict(f"photo number {i}", k, api_name=api)
                    ms = (time.perf_counter() - t) * 1e3
                    problem = _torn(rows, k, root, str(q) if api == "/search" else None)
                    with lock:
                        result["requests"] += 1
                        result["latency_ms"][api].append(ms)
                        if problem:
                            result["torn"].append(problem)
                except Exception as exc:  # noqa: BLE001 - every failure is a finding
                    with lock:
                        result["requests"] += 1
                        result["errors"].append(f"{api}: {type(exc).__name__}: {str(exc)[:160]}")
                i += 1

        threads = [threading.Thread(target=one_client, args=(n,)) for n in range(clients)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        out, err = indexer.communicate(timeout=1800)
        result["index_seconds"] = time.perf_counter() - t0
        result["index_exit"] = indexer.returncode
        result["index_report"] = out.decode().strip()[-300:]
        for th in threads:
            th.join(timeout=600)
        final = Client(url, download_files=False, verbose=False).predict("anything", 200, api_name="/search_text")
        result["final_rows"] = len(final)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    for api, values in result["latency_ms"].items():
        values.sort()
        result[f"{api}_p50_ms"] = median(values)
        result[f"{api}_p99_ms"] = values[int(0.99 * (len(values) - 1))] if values else float("nan")
    return result


def _torn(rows: object, k: int, root: str, query: str | None) -> str | None:
    """Why a response is not a whole, consistent answer (None when it is)."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) and {"file", "score"} <= set(r) for r in rows):
        return f"not a list of results: {str(rows)[:100]}"
    if len(rows) != k:
        return f"{len(rows)} rows for k={k}"
    paths = [r["file"] for r in rows]  # the API names a result's photo `file` (plain text, not a file payload)
    if len(set(paths)) != len(paths) or not all(p.startswith(root + os.sep) for p in paths):
        return "duplicate or foreign paths"
    scores = [r["score"] for r in rows]
    if scores != sorted(scores, reverse=True) or not all(-1.0 <= s <= 1.0 for s in scores):
        return "scores out of order or range"
    if query is not None and (rows[0]["score"] < 0.99 or rows[0]["file"] != query):
        return f"query photo not first: {rows[0]}"
    return None
