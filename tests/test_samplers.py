"""Batch samplers: every review once per epoch, tracks of the right album, neighbourhood couples, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from mte.train.samplers import NeighborhoodPairSampler, PairIndex, RandomPairSampler, build_sampler


def make_index(seed: int = 0, n_albums: int = 40) -> PairIndex:
    rng = np.random.default_rng(seed)
    reviews_per_album = rng.geometric(0.15, size=n_albums)  # heavy-ish tail, some albums with 1 review
    tracks_per_album = rng.integers(1, 4, size=n_albums)
    review_album = np.repeat(np.arange(n_albums), reviews_per_album)
    review_ids = np.arange(len(review_album)) * 3 + 7  # ids need not be positions
    starts = np.concatenate([[0], np.cumsum(tracks_per_album)[:-1]])
    return PairIndex(review_ids, review_album, starts, tracks_per_album)


def track_album(index: PairIndex) -> np.ndarray:
    return np.repeat(np.arange(len(index.track_count)), index.track_count)


@pytest.mark.parametrize("cls", [RandomPairSampler, NeighborhoodPairSampler])
def test_every_review_once_and_tracks_of_its_album(cls):
    index = make_index()
    sampler = cls(index, batch_size=16, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    rows = np.concatenate(batches)
    album_of_review = dict(zip(index.review_ids.tolist(), index.review_album.tolist(), strict=True))
    assert set(rows[:, 0].tolist()) == set(index.review_ids.tolist())
    assert all(track_album(index)[t] == album_of_review[r] for r, t in rows.tolist())
    if cls is RandomPairSampler:
        assert len(rows) == len(index.review_ids)


def test_neighborhood_batches_hold_same_album_couples_with_distinct_tracks():
    index = make_index(1)
    sampler = NeighborhoodPairSampler(index, batch_size=16, seed=0)
    album_of_review = dict(zip(index.review_ids.tolist(), index.review_album.tolist(), strict=True))
    multi_review_albums = {a for a, n in zip(*np.unique(index.review_album, return_counts=True), strict=True) if n > 1}
    for batch in sampler:
        albums = np.array([album_of_review[r] for r in batch[:, 0].tolist()])
        for album in albums.tolist():
            if album in multi_review_albums:
                others = np.flatnonzero(albums == album)
                assert len(others) >= 2, "a review of a multi-review album lacks a neighbour in its batch"
                if index.track_count[album] > 1:
                    assert len(set(batch[others, 1].tolist())) >= 2, "album with several tracks got one track"


@pytest.mark.parametrize("name", ["random", "neighborhood"])
def test_same_seed_same_epoch_same_batches_and_epochs_differ(name):
    index = make_index()
    a, b = build_sampler(name, index, 8, seed=5), build_sampler(name, index, 8, seed=5)
    first = [x.copy() for x in a]
    assert all(np.array_equal(x, y) for x, y in zip(first, b, strict=True))
    a.sampler.set_epoch(1)  # Lightning calls set_epoch on batch_sampler.sampler
    second = list(a)
    assert not all(np.array_equal(x, y) for x, y in zip(first, second, strict=False))


def test_bad_arguments_are_clear():
    index = make_index()
    with pytest.raises(ValueError, match="even batch_size"):
        NeighborhoodPairSampler(index, batch_size=15, seed=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("hard", index, 8, 0)


def _couples_by_album_loop(sampler: NeighborhoodPairSampler, rng: np.random.Generator):
    """The neighbourhood sampler's couples as first written: a loop over albums (the reference for its draws)."""
    firsts, seconds, singles = [], [], []
    keys = rng.random(len(sampler._by_album))
    shuffled = sampler._by_album[np.lexsort((keys, sampler.index.review_album[sampler._by_album]))]
    for start, count in zip(sampler._album_starts.tolist(), sampler._album_counts.tolist(), strict=True):
        if count == 1:
            singles.append(shuffled[start])
            continue
        members = shuffled[start : start + count]
        if count % 2:
            members = np.append(members, members[rng.integers(0, count - 1)])
        firsts.append(members[0::2])
        seconds.append(members[1::2])
    couples = (np.stack([np.concatenate(firsts), np.concatenate(seconds)], axis=1) if firsts
               else np.empty((0, 2), dtype=np.int64))
    return couples, np.asarray(singles, dtype=np.int64)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reviews_per_album", [None, [1, 1, 1], [2, 4], [3, 1, 5, 2]])
def test_neighborhood_couples_are_the_album_loops_draw_for_draw(seed, reviews_per_album):
    """Vectorised over albums, the sampler still makes the loop's draws in the loop's order: same seed, same
    batches as before (a run's numbers do not move)."""
    if reviews_per_album is None:
        index = make_index(seed)
    else:
        album = np.repeat(np.arange(len(reviews_per_album)), reviews_per_album)
        index = PairIndex(np.arange(len(album)), album, np.arange(len(album)), np.ones(len(album), dtype=np.int64))
    sampler = NeighborhoodPairSampler(index, batch_size=8, seed=seed)
    ours, reference = sampler._couples(np.random.default_rng(seed)), _couples_by_album_loop(
        sampler, np.random.default_rng(seed))
    for a, b in zip(ours, reference, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
