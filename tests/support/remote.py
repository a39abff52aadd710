"""Encoder wrappers the `--ray` tests ship to Ray workers (picklable, importable on every worker)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


class Wrapped:
    """An encoder as it is, for subclasses that add one behaviour to `embed_images`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.space, self.dim, self.input_size, self.parts = inner.space, inner.dim, inner.input_size, inner.parts

    def embed_images(self, images: Any) -> Any:
        return self.inner.embed_images(images)

    def describe(self) -> dict:
        return self.inner.describe()

    def fingerprint(self) -> str:
        return self.inner.fingerprint()


class ExitOnce(Wrapped):
    """Kills its worker process (os._exit, like an OOM kill) on the first batch of a run, signalled through a file:
    the file is created just before the exit, so the retried batch (on a restarted actor) goes through."""

    def __init__(self, inner: Any, flag: Path) -> None:
        super().__init__(inner)
        self.flag = str(flag)

    def embed_images(self, images: Any) -> Any:
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return self.inner.embed_images(images)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


class Slow(Wrapped):
    """Each batch takes a little longer, so a test can kill the driver in the middle of a run."""

    def embed_images(self, images: Any) -> Any:
        time.sleep(0.2)
        return self.inner.embed_images(images)
