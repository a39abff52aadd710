"""People that keep up with the gallery: new faces join people through the faces graph; a full re-cluster on a k-NN
graph only when asked or when the incremental state says so.

Why: re-clustering every face after each index run makes ten new photos cost the whole library. After a run, only
the faces written since the last clustering (ids above a high-water mark kept in the catalog's metadata) are looked
at: each asks the faces graph for its nearest faces, and
- a face the user's marks pin to a person joins that person;
- else it joins the person its close neighbours (exact euclidean distance < LINK) vote for, when that person holds at
  least AGREE of their vote and may take it (not a person it was marked as not being, not one already in its photo);
- the rest, with the unassigned old faces close to them, are clustered among themselves (constrained Chinese
  whispers): a group with MIN_FACES faces sure enough to seed people (`seeds_people`) becomes a new person.
Old faces never move in an update, so every correction (names, moves, merges, splits, "not this person") holds; the
full re-cluster keeps them as marks, as always. The full re-cluster links each face to its K_FULL graph neighbours,
never to all pairs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..encoders import normalize
from ..store import Store
from .catalog import FaceCatalog, FaceRow
from .cluster import LINK, assign_persons, constraints, knn_links, seeds_people, whispers
from .schema import FACES, PEOPLE_STATE_KEY, face_settings

STATE_KEY = PEOPLE_STATE_KEY  # JSON {"max_id": highest face id clustered, "faces": faces then}; absent: never clustered
K_UPDATE = 20  # graph neighbours each new face asks for
K_FULL = 30  # graph neighbours per face in a full re-cluster (the k-NN graph's k)
AGREE = 0.5  # share of the close neighbours' vote (weights LINK - distance) a person needs to take a new face
QUERY_BATCH = 4096


@dataclass(frozen=True)
class PeopleUpdate:
    """What one clustering did: `mode` "full" or "incremental", faces looked at, graph queries asked, people made."""

    mode: str
    faces: int
    graph_queries: int
    joined: int
    new_people: int
    people: int


def people_state(tables: FaceCatalog) -> dict | None:
    """The incremental state: {"max_id", "faces"} at the last clustering, or None before the first."""
    raw = tables.catalog.meta(STATE_KEY)
    return json.loads(raw) if raw else None


def _save_state(tables: FaceCatalog, max_id: int, faces: int) -> None:
    tables.catalog.set_meta(STATE_KEY, json.dumps({"max_id": int(max_id), "faces": int(faces)}))


def _strong(rows: Sequence[FaceRow], tables: FaceCatalog) -> list[bool]:
    detector = (face_settings(tables.catalog) or {}).get("detector", "hog")
    return [seeds_people(r.score, detector) for r in rows]


def _knn_rows(store: Store, matrix: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Graph neighbours (face ids, -1 padded) of each row's descriptor, asked in batches; and the query count."""
    out = np.full((len(matrix), k), -1, dtype=np.int64)
    for start in range(0, len(matrix), QUERY_BATCH):
        labels, _ = store.search(FACES, normalize(matrix[start:start + QUERY_BATCH]), k, threads=store.threads)
        out[start:start + len(labels), :labels.shape[1]] = labels
    return out, np.asarray(ids)


def recluster(store: Store, tables: FaceCatalog) -> PeopleUpdate:
    """Group every face into people on the k-NN graph under the user's corrections; keep person numbers stable.

    Caller holds the store's lock."""
    rows = tables.all_faces()
    if not rows:
        with tables.catalog.transaction():
            tables.drop_empty_people()
            _save_state(tables, 0, 0)
        return PeopleUpdate("full", 0, 0, 0, 0, 0)
    ids = np.asarray([r.id for r in rows], dtype=np.int64)  # sorted: face_rows orders by id
    descs = tables.descriptors(ids.tolist())
    matrix = np.stack([descs[int(i)] for i in ids]).astype(np.float32)
    knn_ids, _ = _knn_rows(store, matrix, ids, min(K_FULL + 1, len(rows)))
    pos = np.searchsorted(ids, knn_ids)
    pos = np.clip(pos, 0, len(ids) - 1)
    knn = np.where((knn_ids >= 0) & (ids[pos] == knn_ids), pos, -1)
    contents = [r.content_id for r in rows]
    links = knn_links(matrix, contents, knn)
    sha = tables.content_sha256()
    pinned, forbidden = constraints([r.box for r in rows], [sha.get(c, "") for c in contents], tables.marks())
    labels = whispers(links, contents, pinned, forbidden)
    before_people = tables.person_ids()
    with tables.catalog.transaction():
        assignment = assign_persons(labels, [r.person_id for r in rows], pinned, forbidden, before_people,
                                    tables.new_person, _strong(rows, tables))
        tables.set_persons([(r.id, assignment[i]) for i, r in enumerate(rows)])
        tables.drop_empty_people()
        _save_state(tables, int(ids[-1]), len(rows))
    found = {a for a in assignment if a is not None}
    return PeopleUpdate("full", len(rows), len(rows), 0, len(found - before_people), len(found))


def needs_full(state: dict | None, new_faces: int) -> bool:
    """Whether the incremental state asks for a full re-cluster: never clustered, or more new faces than old ones
    (a first big import: the graph among the new faces is then most of the gallery's)."""
    return state is None or new_faces > int(state.get("faces", 0))


def update(store: Store, tables: FaceCatalog) -> PeopleUpdate:
    """Put the faces written since the last clustering into people (see the module's docstring).

    Caller holds the store's lock. Reads the new faces, their graph neighbours and the marks of their photos only."""
    state = people_state(tables)
    new = tables.faces_after(int(state["max_id"])) if state is not None else []
    if needs_full(state, len(new)):
        return recluster(store, tables)
    assert state is not None
    if not new:
        return PeopleUpdate("incremental", 0, 0, 0, 0, 0)
    new_ids = [r.id for r in new]
    descs = tables.descriptors(new_ids)
    matrix = np.stack([descs[i] for i in new_ids]).astype(np.float32)
    knn_ids, _ = _knn_rows(store, matrix, np.asarray(new_ids), K_UPDATE)
    new_set = set(new_ids)
    old = {r.id: r for r in tables.faces_in(int(i) for i in np.unique(knn_ids) if i >= 0 and int(i) not in new_set)}
    descs.update(tables.descriptors(old))
    rows = new + list(old.values())  # new faces first, then their old neighbours
    index = {r.id: n for n, r in enumerate(rows)}
    sha = tables.content_sha256({r.content_id for r in rows})
    shas = [sha.get(r.content_id, "") for r in rows]
    pinned, forbidden = constraints([r.box for r in rows], shas, tables.marks_for(set(shas)))
    taken = tables.persons_in_contents({r.content_id for r in new})
    existing = tables.person_ids()
    person: dict[int, int | None] = {n: r.person_id for n, r in enumerate(rows)}

    close: dict[int, list[tuple[int, float]]] = {}  # new row -> (row, LINK - distance) of close other-photo faces
    for n, r in enumerate(new):
        near = []
        for fid in knn_ids[n].tolist():
            m = index.get(int(fid))
            if m is None or m == n or rows[m].content_id == r.content_id:
                continue
            d = float(np.linalg.norm(descs[rows[m].id] - descs[r.id]))
            if d < LINK:
                near.append((m, LINK - d))
        close[n] = near

    def take(n: int, p: int) -> None:
        person[n] = p
        taken.setdefault(rows[n].content_id, set()).add(p)

    joined = 0
    for n in range(len(new)):  # the user's marks first
        p = pinned.get(n)
        if p is not None and p in existing and p not in taken.get(new[n].content_id, set()):
            take(n, p)
            joined += 1
    strong = _strong(new, tables)
    order = sorted(range(len(new)), key=lambda n: (not strong[n], new[n].id))
    for _ in range(2):  # a second pass lets faces hear neighbours that joined after them
        for n in order:
            if person[n] is not None:
                continue
            votes: dict[int, float] = defaultdict(float)
            for m, w in close[n]:
                if (q := person[m]) is not None:
                    votes[q] += w
            mine = taken.get(new[n].content_id, set())
            allowed = {q: w for q, w in votes.items() if q not in forbidden.get(n, ()) and q not in mine}
            if not allowed:
                continue
            best = min(allowed, key=lambda q: (-allowed[q], q))
            if allowed[best] >= AGREE * sum(votes.values()):
                take(n, best)
                joined += 1
    # Faces no person took: cluster them with the unassigned old faces close to them; groups may found people.
    loose = [n for n in range(len(new)) if person[n] is None]
    loose += sorted({m for n in loose for m, _ in close[n] if m >= len(new) and person[m] is None})
    local = {n: i for i, n in enumerate(loose)}
    links: list[list[tuple[int, float]]] = [[] for _ in loose]
    for n in loose:
        for m, w in close.get(n, []):
            if m in local and (local[n], w) not in links[local[m]]:
                links[local[n]].append((local[m], w))
                links[local[m]].append((local[n], w))
    contents = [rows[n].content_id for n in loose]
    labels = whispers(links, contents, {}, {local[n]: forbidden[n] for n in loose if n in forbidden})
    before = len(existing)
    with tables.catalog.transaction():
        made = assign_persons(labels, [None] * len(loose), {}, {local[n]: forbidden[n] for n in loose
                                                                if n in forbidden},
                              set(), tables.new_person, _strong([rows[n] for n in loose], tables))
        for i, n in enumerate(loose):
            person[n] = made[i]
        tables.set_persons([(rows[n].id, person[n]) for n in range(len(rows))
                            if person[n] is not None and person[n] != rows[n].person_id])
        _save_state(tables, max(new_ids), int(state.get("faces", 0)) + len(new))
    created = {p for p in made if p is not None}
    return PeopleUpdate("incremental", len(new), len(new), joined, len(created),
                        before + len(created))
