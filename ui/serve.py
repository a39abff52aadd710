"""Running the page: `imagesim serve` (a private temp folder, the port checked first, the model warmed up) and the
options every launch of the page gets, so no gallery or database path is ever readable through Gradio's file route.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from imagesim.errors import ImagesimError
from imagesim.search import Gallery

from .thumbs import Thumbnails

MAX_UPLOAD = "25mb"
# Gradio (through `.app`) is imported inside the functions: `imagesim serve` on a busy port answers before it loads.


def launch_options(gallery: Gallery, *, host: str = "127.0.0.1", port: int | None = 7860,
                   auth: tuple[str, str] | None = None, max_file_size: str | int = MAX_UPLOAD) -> dict[str, Any]:
    """What `Blocks.launch` gets: no gallery or database path is readable through Gradio's file route.

    The page shows only thumbnails made into Gradio's private temp folder, so `allowed_paths` stays empty (Gradio
    then serves its own upload/cache folder and nothing else) and the database folder is blocked outright.
    """
    from .app import CSS, KEYS_JS, theme

    return {"server_name": host, "server_port": port, "auth": auth, "max_file_size": max_file_size,
            "allowed_paths": [], "blocked_paths": [str(gallery.store.folder)], "theme": theme(), "css": CSS,
            "js": KEYS_JS,
            "footer_links": ["api"], "run_history": False, "show_error": False, "ssr_mode": False,
            "quiet": True}


def private_temp_dir() -> str:
    """A fresh folder for Gradio's uploads and the thumbnails, readable by this user only.

    Gradio serves its temp folder; a private one per server means no other app's files are ever served from here.
    Must be set before Gradio creates any component, so `serve` calls it first.
    """
    folder = tempfile.mkdtemp(prefix="imagesim-ui-")
    os.environ["GRADIO_TEMP_DIR"] = folder
    return folder


def _warm_up(gallery: Gallery) -> None:
    """Load the model now, so the first upload answers as fast as the next ones (a missing model says so here)."""
    if gallery.status().get("photos"):
        gallery.encoder.embed_images([Image.new("RGB", (64, 64))])


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program holds, in one line with the remedy."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ImagesimError(f"cannot serve on {host}: {exc.strerror or exc}; pass --host 127.0.0.1 or an address "
                            "of this machine") from None
    family, _, _, _, address = infos[0]
    error = _bind_error(family, address)
    if error is None:
        return
    free = next((p for p in range(port + 1, min(port + 50, 65536)) if _bind_error(family, (address[0], p)) is None),
                None)
    hint = f", e.g. --port {free} (free now)" if free else ""
    raise ImagesimError(f"port {port} on {host} is in use ({error}): pass --port with another number{hint}")


def _bind_error(family: int, address: tuple[Any, ...]) -> str | None:
    """Why binding `address` fails now (None: it is free)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def serve(db: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 7860, auth: tuple[str, str] | None = None,
          max_file_size: str | int = MAX_UPLOAD, threads: int | None = None) -> None:
    """`imagesim serve`: open the database, build the page, serve it until Ctrl+C.

    `threads` also sizes torch's process-wide pool, when the model loads: the server is the application, so it asks
    for that through `torch_threads`, as the `imagesim` command does (the library never changes it on its own).
    """
    _check_port(host, port)  # before loading anything: a busy port is one line, not Gradio's traceback after 7 s
    from .app import build_demo
    temp = private_temp_dir()
    # `kill` (SIGTERM) ends the server like Ctrl+C does, so the temp folder of thumbnails and uploads is removed.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        gallery = Gallery.open(db, threads=threads, torch_threads=threads)
        thumbs = Thumbnails(Path(temp) / "thumbs", gallery.status()["roots"], [str(gallery.store.folder)])
        demo = build_demo(gallery, thumbs=thumbs)
        _warm_up(gallery)
        if host not in ("127.0.0.1", "localhost", "::1") and auth is None:
            print(f"imagesim: warning: serving on {host} without --auth: anyone who can reach it can search and "
                  "re-index this gallery")
        print(f"imagesim: serving {gallery.store.folder} on http://{host}:{port} (Ctrl+C to stop)")
        # Opening checked only what changed since the last verification: the rest now, while the page serves
        gallery.store.verify_in_background(lambda line: print(f"imagesim: warning: {line}", flush=True))
        demo.launch(**launch_options(gallery, host=host, port=port, auth=auth, max_file_size=max_file_size))
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(temp, ignore_errors=True)
