"""After a plain `pip install -e .` (no dev extras): index, search, faces and serve work from the declared packages.

Run by .ci/run in the fresh virtualenv before the dev extras are installed, so an undeclared import fails here.
Uses the tiny test model with random weights saved the way a user saves a checkpoint, real dlib face models, and the
sample gallery; first an offline first run (no weights: style, duplicates and faces, then the weights add content);
prints one line per step and exits non-zero on the first failure.
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


OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}  # no hub: what a machine without internet sees


def run(*args: str, env: dict[str, str] | None = None, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["imagesim", *args], capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != expect:
        sys.exit(f"smoke: `imagesim {' '.join(args)}` exited {proc.returncode}, not {expect}: "
                 f"{proc.stderr.strip()[-400:]}")
    return proc


def offline_first_run(tmp: Path, model: list[str]) -> None:
    """No weights here: index builds style, duplicates and faces and says content waits; the weights then add
    content vectors only (every photo "updated", no face found again)."""
    db = str(tmp / "offline-db")
    proc = run("index", str(ROOT / "gallery"), "--db", db, "--faces", "--json", env=OFFLINE)
    report = json.loads(proc.stdout)
    assert report["added"] >= 10 and report["faces"] >= 1 and report.get("waiting_for_model"), report
    assert proc.stderr.count("\n") == 1 and "content and text search wait for the model" in proc.stderr, proc.stderr
    query = str(ROOT / "gallery" / "astronaut.jpg")
    style = json.loads(run("search", query, "--mode", "style", "--db", db, "--json", env=OFFLINE).stdout)["results"]
    assert style[0]["path"] == query, style[:2]
    groups = json.loads(run("duplicates", "--db", db, "--json", env=OFFLINE).stdout)["groups"]
    assert any(any(m["path"].endswith("chelsea.jpg") for m in g["members"]) for g in groups), groups
    faces = json.loads(run("faces", query, "--db", db, "--json", env=OFFLINE).stdout)["faces"]
    assert faces and faces[0]["matches"][0]["path"] == query, faces
    refused = run("search", query, "--db", db, env=OFFLINE, expect=1).stderr
    assert refused.count("\n") == 1 and "imagesim model save" in refused, refused
    spaces = json.loads(run("status", "--db", db, "--json", env=OFFLINE).stdout)["spaces"]
    assert spaces == ["dup", "faces", "style"], spaces
    print("smoke: offline first run ok (style, duplicates, faces; content waits in one line)")

    later = json.loads(run("index", str(ROOT / "gallery"), "--db", db, *model, "--json", env=OFFLINE).stdout)
    assert (later["added"], later["updated"], later["faces"]) == (0, report["added"], 0), later
    assert "waiting_for_model" not in later, later
    results = json.loads(run("search", query, "--db", db, "--json", env=OFFLINE).stdout)["results"]
    assert results[0]["path"] == query, results[:2]
    print("smoke: the weights then added content vectors only")


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

    offline_first_run(tmp, model)

    report = json.loads(run("index", str(ROOT / "gallery"), "--db", db, *model, "--faces", "--json").stdout)
    assert report["added"] >= 10 and report.get("faces", 0) >= 1, report
    print(f"smoke: index ok ({report['added']} photos, {report['faces']} faces)")

    query = str(ROOT / "gallery" / "astronaut.jpg")
    results = json.loads(run("search", query, "--db", db, "--json").stdout)["results"]
    assert results[0]["path"] == query and results[0]["score"] > 0.999, results[:2]
    assert json.loads(run("search", "--text", "a photo", "--db", db, "--json").stdout)["results"], "text search"
    assert json.loads(run("search", query, "--mode", "style", "--db", db, "--json").stdout)["results"], "style search"
    print("smoke: search ok (photo, text, style)")

    faces = json.loads(run("faces", query, "--db", db, "--json").stdout)["faces"]
    assert faces and faces[0]["matches"][0]["path"] == query, faces
    print(f"smoke: faces ok ({len(faces)} in the query photo)")

    assert json.loads(run("search", query, "--mode", "blend", "--db", db, "--json").stdout)["results"], "blend search"
    status = json.loads(run("status", "--db", db, "--json").stdout)
    assert status["photos"] == report["added"] and status["faces_enabled"], status
    groups = json.loads(run("duplicates", "--db", db, "--json").stdout)["groups"]
    assert any(any(m["path"].endswith("chelsea.jpg") for m in g["members"]) for g in groups), groups  # chelsea_small
    assert "people" in json.loads(run("people", "--db", db, "list", "--json").stdout)
    assert "rebuilt" in run("repair", "--db", db).stdout
    assert "sound" in run("verify", "--db", db).stdout
    print("smoke: blend, status, duplicates, people, repair, verify ok")

    composed = run("search", query, "--text", "a photo", "--minus-text", "a dog", "--after", "1990", "--in",
                   str(ROOT / "gallery"), "--sort", "date", "--offset", "1", "--db", db, "--json").stdout
    assert json.loads(composed)["results"], "composed, filtered search"
    copies = json.loads(run("duplicates", "--kind", "copies", "--db", db, "--json").stdout)["groups"]
    assert copies and all(g["kind"] == "copies" for g in copies), copies
    assert "people" in json.loads(run("people", "--db", db, "recluster", "--json").stdout)
    saved = tmp / "saved.pt"
    run("model", "save", *model, "--out", str(saved), env=OFFLINE)
    assert saved.is_file() and saved.stat().st_size > 0
    print("smoke: composed and filtered search, duplicates --kind, people recluster, model save ok")

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
