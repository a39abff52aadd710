"""The duplicate queries against a gallery: every group (`gallery_groups`, `imagesim duplicates`) and the copies
of one photo (`find_in_gallery`, `imagesim duplicates IMAGE`), over the candidate search and the verifier."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import numpy as np
from PIL import Image

from ...encoders.dup import DupEncoder, region_codes
from ...encoders.keypoints import SIDE, SKETCH_SIDE, align
from ...errors import ImagesimError, first_line
from ...images import load_image
from ...store import Store
from ...store.photos import Selection
from .. import explain
from ..results import Match, Query
from .candidates import CANDIDATES, DUP, KNN_EF, PARTS, candidate_pairs, content_pairs, region_labels, region_table
from .groups import DupGroup, describe_group, identical_group, with_identical
from .verify import KINDS, Verifier, verdict, verified_groups


def _require_space(store: Store) -> None:
    info = store.catalog.space(DUP)
    if info is None or info.description.get("regions") != PARTS:
        raise ImagesimError(f"{store.folder} has no near-duplicate region codes yet: run `imagesim index` again "
                            "to add them")


def _loader(paths: dict[int, list[str]], side: int = SIDE) -> Callable[[int], Image.Image | None]:
    """Pixels of a content from its first readable file, JPEGs draft-decoded down to about `side`; a file that
    cannot be read is one line on stderr, and a content without a readable file gives None."""
    def load(cid: int) -> Image.Image | None:
        for path in paths.get(cid, []):
            try:
                return load_image(path, draft_size=side)
            except (ImagesimError, OSError, ValueError) as exc:
                print(f"imagesim: skipped {path}: {first_line(exc)}", file=sys.stderr)
        return None
    return load


def _allowed_paths(paths: dict[int, list[str]], within: Selection | None) -> dict[int, list[str]]:
    if within is None:
        return paths
    return {cid: [p for p in files if within.allows(p)] for cid, files in paths.items() if cid in within}


def gallery_groups(store: Store, kind: str | None = None, within: Selection | None = None) -> list[DupGroup]:
    """Groups of copies and of similar shots (or of one `kind`), byte-identical files included as copies;
    `within`: among these photos only (filters)."""
    _require_space(store)
    store.refresh()
    allowed = region_labels(within)
    with store.lock:
        labels, vectors = store.catalog.vectors(DUP, allowed, dim=DupEncoder.dim // PARTS)
        ids, codes = region_table(labels, vectors)
        index = store.index(DUP)

        def knn(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            return index.search(q, k, ef=KNN_EF, allowed=allowed, threads=store.threads)

        pairs = candidate_pairs(ids, codes, knn) if len(ids) else {}
        for key, seen in content_pairs(store).items():  # what the content model sees as the same picture
            if within is None or (key[0] in within and key[1] in within):
                pairs.setdefault(key, seen)
        shared = [cid for cid in store.catalog.shared_contents() if within is None or cid in within]
        paths = _allowed_paths(store.catalog.paths_for(sorted({x for p in pairs for x in p} | set(shared))), within)
    verifier = Verifier(_loader(paths), _loader(paths, SKETCH_SIDE), threads=store.threads)
    found = verified_groups(pairs, verifier)
    grouped = {x for g in found["copies"] for x in g}
    first = {cid: paths[cid][0] for cid in paths if paths.get(cid)}
    out: list[DupGroup] = []
    for k in KINDS if kind is None else (kind,):
        for g in found[k]:
            group = describe_group(k, [x for x in g if x in first], first, verifier)
            if k == "copies":  # every file of a content is a member: byte-identical copies are copies too
                group = with_identical(group, paths, {x for x in g})
            out.append(group)
        if k == "copies":
            out += [identical_group(paths[cid]) for cid in shared if cid not in grouped and len(paths.get(cid, [])) > 1]
    return sorted(out, key=lambda g: (KINDS.index(g.kind), g.paths[0]))


def find_in_gallery(store: Store, query: Query, limit: int = CANDIDATES,
                    within: Selection | None = None) -> list[Match]:
    """Gallery files that are copies of `query` (or similar shots of it), best first, each with how it differs
    from the query; the query file itself is left out; `within`: among these photos only (filters)."""
    _require_space(store)
    store.refresh()
    own_path = os.path.realpath(query) if isinstance(query, (str, os.PathLike)) else None
    img = query if isinstance(query, Image.Image) else load_image(query, draft_size=SIDE)
    codes = region_codes(img)
    # the query as photo -1: the same candidate search and score as the gallery pass
    allowed = region_labels(within)
    found = candidate_pairs(np.array([-1]), codes[None], lambda q, k: store.search(DUP, q, k, allowed=allowed),
                            limit=limit)
    ranked = sorted(found.items(), key=lambda kv: -kv[1][0])
    chosen = [b for (_, b), _ in ranked]
    mirror_of = {b: seen[1] for (_, b), seen in ranked}
    with store.lock:
        paths = _allowed_paths(store.catalog.paths_for(chosen), within)
    # the query as photo -1 of a verifier: the sketch gate first, the full check only for what passes
    load, load_small = _loader(paths), _loader(paths, SKETCH_SIDE)
    verifier = Verifier(lambda c: img if c == -1 else load(c), lambda c: img if c == -1 else load_small(c),
                        threads=store.threads)
    passed = verifier.gate([(-1, c) for c in chosen if c in paths])
    qf = verifier.features(-1) if passed else None
    qfacts = explain.file_facts(str(query)) if own_path else explain.FileFacts("", *img.size, 100, 0.0)
    out: list[Match] = []
    for _, cid in passed:
        of = verifier.features(cid)
        if of is None or qf is None:
            continue
        al = align(qf, of, mirror_of.get(cid, False))
        kind = verdict(al)
        if kind is None or al is None:
            continue
        for path in paths.get(cid, []):
            if path == own_path:
                continue
            words = explain.describe(al, qf, of, qfacts, explain.file_facts(path))
            why = ("copy: " if kind == "copies" else "similar shot: ") + ", ".join(words)
            out.append(Match(path, round(float(al.agreement), 6), why=why))
    return sorted(out, key=lambda m: -m.score)
