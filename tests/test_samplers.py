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
