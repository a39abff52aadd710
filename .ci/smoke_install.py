"""After a plain `pip install -e .` (no dev extras): index, search, faces and serve work from the declared packages.

Run by .ci/run in the fresh virtualenv before the dev extras are installed, so an undeclared import fails here.
Uses the tiny test model with random weights saved the way a user saves a checkpoint, real dlib face models, and the
sample gallery; prints one line per step and exits non-zero on the first failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny_clip.json"


def run(*args: str) -> str:
    proc = subprocess.run(["imagesim", *args], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"smoke: `imagesim {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    import torch

    from imagesim.config import ModelSpec
    from imagesim.encoders import create_encoder

    tmp = Path(tempfile.mkdtemp(prefix="imagesim-smoke-"))
    weights = tmp / "tiny.pt"
    torch.manual_seed(0)
    torch.save(create_encoder("clip", spec=ModelSpec(str(TINY), None), precision="fp32").model.state_dict(), weights)
    db = str(tmp / "db")
    model = ["--model", str(TINY), "--weights", str(weights)]

    report = json.loads(run("index", str(ROOT / "gallery"), "--db", db, *model, "--faces", "--json"))
    assert report["added"] >= 10 and report.get("faces", 0) >= 1, report
    print(f"smoke: index ok ({report['added']} photos, {report['faces']} faces)")

    query = str(ROOT / "gallery" / "astronaut.jpg")
    results = json.loads(run("search", query, "--db", db, "--json"))["results"]
    assert results[0]["path"] == query and results[0]["score"] > 0.999, results[:2]
    assert json.loads(run("search", "--text", "a photo", "--db", db, "--json"))["results"], "text search"
    assert json.loads(run("search", query, "--mode", "style", "--db", db, "--json"))["results"], "style search"
    print("smoke: search ok (photo, text, style)")

    faces = json.loads(run("faces", query, "--db", db, "--json"))["faces"]
    assert faces and faces[0]["matches"][0]["path"] == query, faces
    print(f"smoke: faces ok ({len(faces)} in the query photo)")

    assert json.loads(run("search", query, "--mode", "blend", "--db", db, "--json"))["results"], "blend search"
    status = json.loads(run("status", "--db", db, "--json"))
    assert status["photos"] == report["added"] and status["faces_enabled"], status
    groups = json.loads(run("duplicates", "--db", db, "--json"))["groups"]
    assert any(any(m["path"].endswith("chelsea.jpg") for m in g["members"]) for g in groups), groups  # chelsea_small
    assert "people" in json.loads(run("people", "--db", db, "list", "--json"))
    assert "rebuilt" in run("repair", "--db", db)
    print("smoke: blend, status, duplicates, people, repair ok")

    port = free_port()
    server = subprocess.Popen(["imagesim", "serve", "--db", db, "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "0"})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    assert resp.status == 200 and b"imagesim" in resp.read().lower()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"smoke: serve did not answer: {(server.stderr.read() if server.stderr else '')[-400:]}")
                time.sleep(0.5)
        print("smoke: serve ok")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
