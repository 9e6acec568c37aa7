"""Contract tests every retrieval index passes (exact and FAISS alike)."""

from __future__ import annotations

import numpy as np
import pytest

from booktower.config.serving import IndexConfig
from booktower.serving.index import ExactIndex, build_index, compare_with_exact
from booktower.serving.retrieve import allowed_mask, search_filtered

from .conftest import planted_clusters

KINDS = ["exact", "hnsw", "ivf"]


def _index(kind: str, vectors: np.ndarray):
    return build_index(vectors, IndexConfig(kind=kind, ivf_nlist=4, ivf_nprobe=4, hnsw_m=8))


@pytest.mark.parametrize("kind", KINDS)
def test_top1_is_the_planted_neighbour(kind: str) -> None:
    centres, vectors, labels = planted_clusters()
    index = _index(kind, vectors)
    for c, centre in enumerate(centres):
        _, ids = index.search(centre, 5)
        assert np.all(labels[ids[0]] == c)
    # each item's nearest neighbour is itself
    _, ids = index.search(vectors[:20], 1)
    assert np.array_equal(ids[:, 0], np.arange(20))


@pytest.mark.parametrize("kind", KINDS)
def test_k_bounds(kind: str) -> None:
    _, vectors, _ = planted_clusters(n_clusters=2, per_cluster=40)
    index = _index(kind, vectors)
    scores, ids = index.search(vectors[0], 7)
    assert ids.shape == (1, 7) and scores.shape == (1, 7)
    assert np.all(np.diff(scores[0]) <= 1e-6), "scores are sorted best first"
    _, ids = index.search(vectors[0], 10_000)
    assert ids.shape[1] == len(vectors)  # k is capped at the catalogue size


@pytest.mark.parametrize("kind", KINDS)
def test_filters_remove_items_before_the_cut(kind: str) -> None:
    centres, vectors, labels = planted_clusters(n_clusters=4, per_cluster=50)
    index = _index(kind, vectors)
    same = np.flatnonzero(labels == 0)
    exclude = same[:45]  # most of the query's own cluster is "seen"
    hits = search_filtered(index, vectors, centres[0], 10, allowed_mask(len(vectors), exclude), overfetch=2)
    assert len(hits.ids) == 10, "never fewer than k while enough items remain"
    assert not set(hits.ids) & set(exclude)
    assert set(same[45:]) <= set(hits.ids), "the 5 unseen books of the cluster come first"
    only = np.flatnonzero(labels == 3)
    hits = search_filtered(index, vectors, centres[0], 10, allowed_mask(len(vectors), None, only))
    assert len(hits.ids) == 10 and np.all(labels[hits.ids] == 3)


@pytest.mark.parametrize("kind", KINDS)
def test_filter_leaving_fewer_than_k_returns_all_allowed(kind: str) -> None:
    _, vectors, _ = planted_clusters(n_clusters=2, per_cluster=40)
    index = _index(kind, vectors)
    allowed = allowed_mask(len(vectors), np.arange(3, len(vectors)))  # only 3 items remain
    hits = search_filtered(index, vectors, vectors[0], 10, allowed)
    assert sorted(hits.ids.tolist()) == [0, 1, 2]
    nothing = allowed_mask(len(vectors), np.arange(len(vectors)))
    assert len(search_filtered(index, vectors, vectors[0], 10, nothing).ids) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_add_appends_rows(kind: str) -> None:
    centres, vectors, _ = planted_clusters(n_clusters=2, per_cluster=40)
    index = _index(kind, vectors)
    index.add(-centres[:1])  # the opposite of cluster 0
    assert len(index) == len(vectors) + 1
    _, ids = index.search(-centres[0], 1)
    assert ids[0, 0] == len(vectors)


def test_filtered_search_matches_exact_reference() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    index = ExactIndex(vectors)
    for trial in range(20):
        query = rng.normal(size=8).astype(np.float32)
        allowed = rng.random(300) < rng.uniform(0.02, 0.95)
        k = int(rng.integers(1, 30))
        hits = search_filtered(index, vectors, query, k, allowed, overfetch=1)
        scores = np.where(allowed, vectors @ query, -np.inf)
        expected = np.argsort(-scores, kind="stable")[: min(k, int(allowed.sum()))]
        np.testing.assert_allclose(np.sort(hits.scores), np.sort(scores[expected]), rtol=1e-5)


def test_compare_with_exact_reports_recall() -> None:
    _, vectors, _ = planted_clusters(n_clusters=8, per_cluster=60, dim=16)
    report = compare_with_exact(vectors, vectors[:50], IndexConfig(kind="hnsw"), k=10)
    assert 0.9 <= report.recall <= 1.0
    assert report.as_dict()["recall@10"] == round(report.recall, 4)



class _MissingRows:
    """An approximate index that never finds some rows (`found` False): its answers are padded with -1, as FAISS
    pads them."""

    def __init__(self, vectors: np.ndarray, found: np.ndarray) -> None:
        self.exact, self.found = ExactIndex(vectors), found

    def __len__(self) -> int:
        return len(self.exact)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.exact.search(query, k)
        missed = ~self.found[ids]
        return np.where(missed, -np.inf, scores), np.where(missed, -1, ids)


@pytest.mark.parametrize("filtered", [False, True])
@pytest.mark.parametrize("finds", ["odd rows", "15 rows"])
def test_an_index_that_misses_rows_still_gives_k_results(filtered: bool, finds: str) -> None:
    """It digs deeper while the index's answers hold fewer than k allowed rows; where the whole index holds fewer,
    the allowed rows are scored exactly. So k results, none padded or excluded, best first."""
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(400, 8)).astype(np.float32)
    query = rng.normal(size=8).astype(np.float32)
    found = np.arange(400) % 2 == 1 if finds == "odd rows" else np.arange(400) < 15
    allowed = allowed_mask(400, np.arange(1, 400, 7)) if filtered else None
    hits = search_filtered(_MissingRows(vectors, found), vectors, query, 20, allowed, overfetch=1)
    scores = np.where(allowed if allowed is not None else True, vectors @ query, -np.inf)
    if finds == "odd rows":  # what the index can find, as an approximate index answers
        scores = np.where(found, scores, -np.inf)
    assert hits.ids.tolist() == np.argsort(-scores)[:20].tolist()
    np.testing.assert_allclose(hits.scores, scores[hits.ids], rtol=1e-5)


class _Recording:
    """An exact index that records the depth of every search."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.exact, self.depths = ExactIndex(vectors), []

    def __len__(self) -> int:
        return len(self.exact)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.depths.append(k)
        return self.exact.search(query, k)


def test_books_excluded_at_random_do_not_deepen_the_first_search_as_a_readers_own_books_do() -> None:
    """A reader's books sit by their vector, so each may take a place at the top; withdrawn books are spread over
    the ranking and only scale the depth by n / n_allowed. Counting them as `near` made a search 25x deeper."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(10_000, 8)).astype(np.float32)
    query = rng.normal(size=8).astype(np.float32)
    seen = np.arange(5)
    withdrawn = rng.choice(np.arange(5, 10_000), 1_000, replace=False)
    allowed = allowed_mask(10_000, np.concatenate([seen, withdrawn]))
    spread = _Recording(vectors)
    hits = search_filtered(spread, vectors, query, 10, allowed, overfetch=4, near_excluded=len(seen))
    assert spread.depths[0] == int(np.ceil(10 * 4 * 10_000 / 8_995)) + 5
    everything_near = _Recording(vectors)
    assert search_filtered(everything_near, vectors, query, 10, allowed, 4).ids.tolist() == hits.ids.tolist()
    assert everything_near.depths[0] == 45 + 1_000, "the old depth: every excluded book given a place at the top"
    truth = np.argsort(-np.where(allowed, vectors @ query, -np.inf))[:10]
    assert hits.ids.tolist() == truth.tolist()


def test_deepen_grows_the_depth_until_there_is_enough_and_stops_at_the_most() -> None:
    from booktower.serving.retrieve import deepen

    asked: list[int] = []

    def attempt(depth: int) -> tuple[int, bool]:
        asked.append(depth)
        return depth, depth >= 30

    assert deepen(2, 1_000, attempt) == 32 and asked == [2, 8, 32]
    asked.clear()
    assert deepen(2, 20, attempt) == 20 and asked == [2, 8, 20], "never enough: the deepest attempt, at the most"
    asked.clear()
    assert deepen(50, 20, attempt) == 20 and asked == [20]
    asked.clear()
    assert deepen(0, 3, attempt) == 3 and asked == [0, 1, 3], "a zero start still grows"
