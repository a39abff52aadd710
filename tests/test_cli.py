"""The `imagesim` command end to end: JSON shapes, one-line errors, fast --help."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagesim.cli import main
from imagesim.config import ModelSpec
from tests.support.photos import ROOT, write_gallery, write_photo


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "imagesim", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _model_args(spec: ModelSpec) -> list[str]:
    return ["--model", spec.name, "--weights", str(spec.weights)]


def test_index_and_search_json(tmp_path: Path, tiny_spec: ModelSpec, capsys: pytest.CaptureFixture[str]) -> None:
    photos = write_gallery(tmp_path / "pics", 5)
    (tmp_path / "pics" / "bad.jpg").write_text("nope")
    db = str(tmp_path / "db")
    assert main(["index", str(tmp_path / "pics"), "--db", db, *_model_args(tiny_spec), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"added": 5, "updated": 0, "removed": 0, "moved": 0, "unchanged": 0,
                      "failed": [{"path": str(tmp_path / "pics" / "bad.jpg"), "error": report["failed"][0]["error"]}]}
    assert main(["search", str(photos[2]), "--db", db, "-k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3 and results[0] == {"path": str(photos[2]), "score": results[0]["score"]}
    assert results[0]["score"] >= 0.99 and all(set(r) == {"path", "score"} for r in results)
    assert main(["index", str(tmp_path / "pics"), "--db", db, "--json"]) == 0  # again: bad.jpg is still listed
    again = json.loads(capsys.readouterr().out)
    assert again["failed"] == report["failed"] and again["still_failing"] == 1 and again["unchanged"] == 5
    assert main(["index", str(tmp_path / "pics"), "--db", db]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert "1 failed (1 unchanged since they failed before)" in plain[0] and plain[1].startswith("  failed: ")
    assert main(["search", "--text", "a red tulip", "--db", db, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 5
    assert main(["search", str(photos[0]), "--db", db]) == 0  # the plain listing
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(str(photos[0])) and first.startswith("1.000")
    assert main(["status", "--db", db, "--failed", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["photos"] == 5 and status["failed"] == 1 and status["failed_files"][0]["path"].endswith("bad.jpg")
    assert status["model"].startswith("tiny_clip.json (config:")  # a config file by its name, not only its hash


def test_offline_default_model_indexes_what_needs_no_weights(tmp_path: Path) -> None:
    write_gallery(tmp_path / "pics", 1)
    done = _run("index", str(tmp_path / "pics"), "--db", str(tmp_path / "db"))
    assert done.returncode == 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # the one line saying content waits for the model, and the remedy
    assert "ViT-B-32" in lines[0] and "--weights FILE" in lines[0] and "imagesim model save" in lines[0]
    assert done.stdout.startswith("imagesim: 1 added")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["search", "x.jpg", "--db", "{tmp}/nothing"], "no imagesim database"),
        (["index", "{tmp}/missing-folder", "--db", "{tmp}/db"], "no such file or folder"),
        (["index", "{tmp}", "--db", "{tmp}/db", "--model", "tests/data/tiny_clip.json"], "--weights FILE"),
        (["search", "--db", "{tmp}/db"], "either a photo or --text"),
        (["index", "{tmp}", "--db", "{tmp}/afile"], "is a file, not a database folder"),
        (["status", "--db", "{tmp}/afile"], "is a file, not a database folder"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], fragment: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("not a folder")
    if args[0] == "search" and "nothing" not in " ".join(args):
        (tmp_path / "db").mkdir()
        (tmp_path / "db" / "catalog.sqlite").touch()
    code = main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and fragment in err and err.startswith("imagesim: error: ")


def test_serve_on_a_busy_port_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--db", str(tmp_path / "db"), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and f"port {port} on 127.0.0.1 is in use" in err and "--port" in err
    suggested = int(err.rsplit("--port ", 1)[1].split()[0])  # the port it suggests is another one, and free
    assert suggested != port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", suggested))


@pytest.mark.parametrize("args", [["search", "x.jpg", "-k", "0"], ["search", "x.jpg", "-k", "-5"],
                                  ["faces", "x.jpg", "-k", "0"], ["search", "x.jpg", "-k", "ten"]])
def test_a_count_below_one_is_a_usage_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument -k:" in err and err.strip().splitlines()[-1].startswith("imagesim ")


def test_search_with_an_unreadable_photo_is_one_line(tmp_path: Path, tiny_spec: ModelSpec,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    write_gallery(tmp_path / "pics", 2)
    db = str(tmp_path / "db")
    main(["index", str(tmp_path / "pics"), "--db", db, *_model_args(tiny_spec), "--json"])
    capsys.readouterr()
    bad = tmp_path / "query.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert main(["search", str(bad), "--db", db]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "query.jpg" in err


def test_a_busy_port_is_refused_before_gradio_loads(tmp_path: Path) -> None:
    """The port check runs first, so a busy port answers at once instead of after Gradio's import (seconds)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = ("import sys; from imagesim.cli import main; code = main(['serve', '--db', sys.argv[1], '--port', "
                "sys.argv[2]]); print(code, 'gradio' in sys.modules)")
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "db"), str(port)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert done.stdout.split() == ["1", "False"] and f"port {port} on 127.0.0.1 is in use" in done.stderr


def test_help_is_fast_and_never_imports_torch() -> None:
    code = "import sys; from imagesim.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert _run("--help").returncode == 0


def test_precision_flag_reaches_the_encoder(tmp_path: Path, tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from imagesim import encoders

    seen: list[str | None] = []
    real = encoders.create_encoder

    def spy(kind: str, **kwargs: object):
        if kind == "clip":  # the weight-free style and duplicate encoders have no precision
            seen.append(kwargs.get("precision"))  # type: ignore[arg-type]
        return real(kind, **kwargs)

    monkeypatch.setattr(encoders, "create_encoder", spy)
    write_gallery(tmp_path / "pics", 2)
    outside = write_photo(tmp_path / "query.jpg", 99)  # not in the gallery: the search must encode it
    db = str(tmp_path / "db")
    assert main(["index", str(tmp_path / "pics"), "--db", db, *_model_args(tiny_spec), "--precision", "fp32",
                 "--json"]) == 0
    assert main(["search", str(outside), "--db", db, "--precision", "bf16", "--json"]) == 0
    assert seen == ["fp32", "bf16"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["index", str(tmp_path / "pics"), "--db", db, "--precision", "fp16"])


def odd_names(root: Path) -> list[Path]:
    """Real-world file names: bytes that are not UTF-8 (in a name and in a folder), a newline and a tab, a leading
    dash, a 255-byte name, a deep folder, and the NFC and NFD spellings of one name (two different files)."""
    raw = os.fsencode(root)
    names = [raw + b"/bad\xff\xfename.jpg", raw + b"/dir\xfe/inner.jpg", raw + b"/line\nbreak\tand tab.jpg",
             raw + b"/-leading-dash.jpg", raw + b"/" + b"n" * 251 + b".jpg",
             raw + b"/" + b"/".join([b"deep"] * 40) + b"/photo.jpg",
             raw + "/caf\u00e9.jpg".encode(), raw + "/cafe\u0301.jpg".encode()]
    out = []
    for i, name in enumerate(names):
        path = Path(os.fsdecode(name))
        write_photo(path, 40 + i)
        out.append(path)
    return out


def test_every_file_name_round_trips(tmp_path: Path, tiny_spec: ModelSpec, capsys: pytest.CaptureFixture[str]) -> None:
    photos = odd_names(tmp_path / "pics")
    assert len({p.name for p in photos[-2:]}) == 2  # NFC and NFD really are two names here
    db = str(tmp_path / "db")
    assert main(["index", str(tmp_path / "pics"), "--db", db, *_model_args(tiny_spec), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"added": len(photos), "updated": 0, "removed": 0, "moved": 0,
                                                   "unchanged": 0, "failed": []}
    assert main(["index", str(tmp_path / "pics"), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] == len(photos)
    for photo in photos:
        assert main(["search", str(photo), "--db", db, "-k", "1", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["results"][0]["path"] == str(photo)  # lossless (\udcXX escapes)
    plain = subprocess.run([sys.executable, "-m", "imagesim", "search", str(photos[0]), "--db", db, "-k", "1"],
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=300)
    assert plain.returncode == 0 and os.fsencode(photos[0]) in plain.stdout  # the file's own bytes, as `ls` shows
    for photo in photos[:2]:
        photo.unlink()
    assert main(["index", str(tmp_path / "pics"), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 2


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 KB tmpfs (root only; CI runs as root): a disk that fills up half-way through an index run."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_not_damage(small_disk: Path, tmp_path: Path, tiny_spec: ModelSpec,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_gallery(tmp_path / "pics", 60)
    db = str(small_disk / "db")
    args = ["index", str(tmp_path / "pics"), "--db", db, *_model_args(tiny_spec), "--batch-size", "8", "--json"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the disk holding {db} is full" in err and "nothing is damaged" in err
    kept = int(err.split(" photos are indexed and kept")[0].rsplit(" ", 1)[1])
    assert 0 < kept < 60 and "repair" not in err
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)  # the user frees space
    assert main(["index", str(tmp_path / "pics"), "--db", db, "--batch-size", "8", "--json"]) == 0  # no model flags
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 60 - kept and report["failed"] == []
    assert main(["status", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["photos"] == 60
