"""The HNSW graph: recall against brute force, deletes, growth, and refusing damaged files before hnswlib reads them."""

from __future__ import annotations

from pathlib import Path

import hnswlib
import numpy as np
import pytest

from imagesim.errors import StoreError
from imagesim.store.vectors import VectorIndex


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_hnsw_recall_at_10_against_brute_force() -> None:
    dim, n = 64, 3000
    data, queries = _unit(n, dim), _unit(200, dim, seed=1)
    vi = VectorIndex(dim, threads=2, exact_max=0)  # force the graph
    vi.add(np.arange(n), data)
    bf = hnswlib.BFIndex(space="cosine", dim=dim)
    bf.init_index(max_elements=n)
    bf.add_items(data, np.arange(n))
    truth, _ = bf.knn_query(queries, k=10)
    got, scores = vi.search(queries, 10)
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.95, recall
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_hnsw_recall_on_clustered_512d_vectors() -> None:
    """Photo embeddings are clustered; the graph must find their neighbours at the store's own dimension."""
    rng = np.random.default_rng(3)
    centres = _unit(60, 512, seed=4)
    data = centres[rng.integers(0, 60, 4000)] + 0.6 * _unit(4000, 512, seed=5) / np.sqrt(1)
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    queries = data[rng.choice(4000, 200, replace=False)] + 0.05 * _unit(200, 512, seed=6)
    vi = VectorIndex(512, threads=2, exact_max=0)
    vi.add(np.arange(4000), data)
    exact = VectorIndex(512, exact_max=10**9)
    exact.add(np.arange(4000), data)
    got, truth = vi.search(queries, 10)[0], exact.search(queries, 10)[0]
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.95, recall


def test_exact_and_graph_agree_on_scores() -> None:
    data = _unit(500, 32)
    exact, graph = VectorIndex(32, exact_max=10_000), VectorIndex(32, exact_max=0)
    for vi in (exact, graph):
        vi.add(np.arange(500) + 1, data)
    (le, se), (lg, sg) = exact.search(data[:5], 3), graph.search(data[:5], 3)
    assert np.array_equal(le[:, 0], np.arange(5) + 1) and np.allclose(se[:, 0], 1.0, atol=1e-5)
    assert np.array_equal(le, lg) and np.allclose(se, sg, atol=1e-5)


@pytest.mark.parametrize("exact_max", [0, 10_000])
def test_k_is_clamped_and_empty_is_empty(exact_max: int) -> None:
    vi = VectorIndex(8, exact_max=exact_max)
    labels, scores = vi.search(_unit(2, 8), 10)
    assert labels.shape == (2, 0) and scores.shape == (2, 0)
    vi.add(np.array([5, 6, 7]), _unit(3, 8))
    labels, _ = vi.search(_unit(1, 8), 10)
    assert sorted(labels[0].tolist()) == [5, 6, 7]


@pytest.mark.parametrize("exact_max", [0, 10_000])
def test_deleted_items_never_come_back_and_can_be_re_added(exact_max: int) -> None:
    data = _unit(300, 16)
    vi = VectorIndex(16, exact_max=exact_max)
    vi.add(np.arange(300), data)
    vi.remove(list(range(0, 300, 2)))
    labels, _ = vi.search(data, 150)
    assert not (set(labels.ravel().tolist()) & set(range(0, 300, 2)))
    vi.add(np.array([0]), data[:1])  # a deleted label comes back with a vector: it is live again
    assert vi.search(data[:1], 1)[0][0, 0] == 0
    assert len(vi) == 151 and vi.deleted == 149


def test_grows_past_its_initial_capacity() -> None:
    vi = VectorIndex(8, capacity=16)
    for start in range(0, 1000, 100):
        vi.add(np.arange(start, start + 100), _unit(100, 8, seed=start))
    assert len(vi) == 1000 and vi.index.get_max_elements() >= 1000


def _saved(tmp_path: Path) -> tuple[VectorIndex, object]:
    vi = VectorIndex(16)
    vi.add(np.arange(100) + 1, _unit(100, 16))
    return vi, vi.save(tmp_path, "content", 1, "fp")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    vi, state = _saved(tmp_path)
    loaded = VectorIndex.load(tmp_path, state, 16)
    q = _unit(3, 16, seed=9)
    assert np.array_equal(vi.search(q, 5)[0], loaded.search(q, 5)[0])
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "header", "missing", "append"])
def test_damaged_files_are_refused_before_hnswlib_sees_them(tmp_path: Path, damage: str) -> None:
    _, state = _saved(tmp_path)
    path = tmp_path / state.filename
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "bitflip":
        raw[len(raw) // 2] ^= 0x10
        path.write_bytes(raw)
    elif damage == "header":
        raw[16:24] = (2**40).to_bytes(8, "little")  # cur_element_count: would make hnswlib read far past the end
        path.write_bytes(raw)
    elif damage == "append":
        path.write_bytes(raw + b"\0" * 64)
    else:
        path.unlink()
    with pytest.raises(StoreError):
        VectorIndex.load(tmp_path, state, 16)


def test_crafted_header_with_matching_checksum_is_refused(tmp_path: Path) -> None:
    """Even if someone rewrote the catalog's checksum too, an impossible header never reaches hnswlib."""
    from dataclasses import replace

    from imagesim.store.graphfile import file_crc32

    _, state = _saved(tmp_path)
    path = tmp_path / state.filename
    raw = bytearray(path.read_bytes())
    raw[24:32] = (10**9).to_bytes(8, "little")  # size_data_per_element
    path.write_bytes(raw)
    size, crc = file_crc32(path)
    with pytest.raises(StoreError, match="impossible header"):
        VectorIndex.load(tmp_path, replace(state, size=size, crc32=crc), 16)


def test_label_set_behaves_like_a_set() -> None:
    from imagesim.store.labels import LabelSet

    s = LabelSet([5, 3, 3, 9])
    assert len(s) == 3 and list(s) == [3, 5, 9] and 5 in s and 4 not in s and -1 not in s and 10**9 not in s
    s.discard(5)
    s.discard(5)
    s.update(np.array([1, 2]))
    s.add(200_000)  # far above the count: still exact (falls back to a plain set)
    assert list(s) == [1, 2, 3, 9, 200_000] and len(s) == 5 and 200_000 in s
    s.discard(200_000)
    assert s.to_array().tolist() == [1, 2, 3, 9]
    assert s == {1, 2, 3, 9} and {1, 2, 3, 9} == s and s != {1, 2, 3} and set(s) - {9} == {1, 2, 3}


def test_bitmap_label_sets_track_deletes_and_re_adds(tmp_path: Path) -> None:
    vecs = _unit(300, 16, seed=7)
    vi = VectorIndex(16, exact_max=0)
    vi.add(np.arange(1, 301), vecs)
    vi.remove([10, 20])
    assert len(vi) == 298 and vi.deleted == 2 and 10 not in vi.live and 10 in vi.present
    found, _ = vi.search(vecs[9], 5)
    assert 10 not in found[0].tolist()
    vi.add(np.array([10]), vecs[9:10])
    assert vi.search(vecs[9], 1)[0][0, 0] == 10 and len(vi) == 299


def test_sorted_unique_and_contains_sorted_agree_with_numpy() -> None:
    from imagesim.store.labels import contains_sorted, sorted_unique

    rng = np.random.default_rng(1)
    for n in (0, 1, 2, 5, 1000):
        values = rng.integers(0, 50, n)
        assert sorted_unique(values).tolist() == np.unique(values).tolist()
        table = sorted_unique(rng.integers(0, 50, 7))
        assert contains_sorted(table, values).tolist() == np.isin(values, table).tolist()
    assert contains_sorted(np.zeros(0, np.int64), np.arange(3)).tolist() == [False] * 3
