"""Errors a user can cause. Each carries one line the CLI and UI show as is."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message (its type when it has none), cut to `limit`: what a one-line
    error quotes of a library's exception."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


class ImagesimError(Exception):
    """Base class: the message is one line that says what went wrong and what to do."""


class ImageError(ImagesimError):
    """A file could not be decoded as a photo (corrupt, truncated, not an image, too large...)."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class ModelError(ImagesimError):
    """A model could not be built or its weights could not be loaded."""


# What to do when the content model's weights cannot be had here: one clause, used by every line that says so.
WEIGHTS_REMEDY = ("run `imagesim index` once with a network connection (one download into the hub cache), or run it "
                  "with --weights FILE (a file `imagesim model save --out FILE` wrote on a machine that is online)")


class WeightsUnavailable(ModelError):
    """Pretrained weights are neither cached nor downloadable (e.g. offline).

    `model` names them ("ViT-B-32 (pretrained 'tag')"); `detail` is the hub client's reason, if any. The message is
    the error line; `waiting` is the line `imagesim index` prints when it indexes the weight-free spaces anyway."""

    def __init__(self, model: str, detail: str = "") -> None:
        self.model = model
        self.detail = f" ({detail})" if detail else ""
        super().__init__(f"cannot load weights for model {model}: they are not cached and cannot be downloaded "
                         f"here{self.detail}: {WEIGHTS_REMEDY}")

    @property
    def waiting(self) -> str:
        return (f"content and text search wait for the model: weights for {self.model} are not cached and cannot "
                f"be downloaded here{self.detail}; style search, duplicates and faces (when on) work now. To add "
                f"content: {WEIGHTS_REMEDY}")


class ModelMissing(ImagesimError):
    """A query needs the content model, and the database was indexed without it (offline, no weights)."""


class ModelMismatch(ImagesimError):
    """The database was built with another model or preprocessing than the one asked for."""


class StoreError(ImagesimError):
    """The database folder is missing, damaged, or disagrees with itself."""


class NoIndex(StoreError):
    """There is no database at the given folder yet."""


class NoFaceFound(ImagesimError):
    """The query photo shows no face the detector can find."""
