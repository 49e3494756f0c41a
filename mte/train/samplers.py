"""Batch samplers that decide which (review, track) true pairs form each training batch.

A sampler yields, per batch, an int64 array of shape ``[B, 2]``: column 0 is a review index, column 1 the index of
a track of the same album. Picking the track here (rather than in the dataset) keeps all randomness in one seeded
place per epoch, so runs are reproducible with any number of loader workers and resume at the right epoch.

Both samplers are DDP-aware: with ``torch.distributed`` initialised, rank ``r`` of ``w`` takes batches
``r, r + w, …`` of the epoch's global order, and every rank gets the same number of batches (Lightning's own
distributed-sampler injection is switched off for these, see ``conf/trainer``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairIndex:
    """Which reviews may be sampled and where each album's tracks lie.

    Tracks are stored sorted by album, so an album's tracks are the contiguous rows
    ``track_start[a] : track_start[a] + track_count[a]``.
    """

    review_ids: np.ndarray  # [N] review indices of the split's paired reviews
    review_album: np.ndarray  # [N] album index of each of those reviews
    track_start: np.ndarray  # [n_albums] first track row of each album
    track_count: np.ndarray  # [n_albums] number of tracks of each album (≥1 for sampled albums)

    def random_tracks(self, albums: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniformly random track of each given album."""
        return self.track_start[albums] + rng.integers(0, self.track_count[albums])

    def distinct_track_pair(self, albums: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two tracks per album, distinct wherever the album has more than one."""
        count = self.track_count[albums]
        first = rng.integers(0, count)
        # Shift by 1..count-1 (mod count) so the second differs from the first when count > 1.
        shift = 1 + rng.integers(0, np.maximum(count - 1, 1))
        second = np.where(count > 1, (first + shift) % count, first)
        start = self.track_start[albums]
        return start + first, start + second


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) when torch.distributed is initialised, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_batches(batches: list[np.ndarray]) -> list[np.ndarray]:
    """This rank's share of ``batches``: every ``world``-th one, wrapped around so all ranks get as many."""
    rank, world = dist_rank_world()
    if world == 1:
        return batches
    per_rank = -(-len(batches) // world)
    return (batches + batches[: per_rank * world - len(batches)])[rank::world]


def sharded_len(n_rows: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches of ``n_rows`` rows one rank runs (the length of ``shard_batches``)."""
    full, rest = divmod(n_rows, batch_size)
    n_batches = full + (0 if drop_last or rest == 0 else 1)
    return -(-n_batches // dist_rank_world()[1])


class _EpochBatchSampler:
    """Shared machinery: per-epoch seeding, rank sharding, ``set_epoch`` hook for Lightning."""

    def __init__(self, index: PairIndex, batch_size: int, seed: int, drop_last: bool = False) -> None:
        if batch_size < 2:
            raise ValueError(f"batch_size must be ≥ 2 (in-batch negatives need other albums), got {batch_size}")
        self.index = index
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    # Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``; pointing it at ourselves keeps the
    # epoch (and thus the shuffle) right after a resume.
    @property
    def sampler(self) -> _EpochBatchSampler:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        raise NotImplementedError

    def _split_rows(self, rows: np.ndarray) -> list[np.ndarray]:
        batches = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        # DDP needs every rank to run the same number of steps: shard_batches pads by wrapping around.
        yield from shard_batches(self._epoch_batches(np.random.default_rng([self.seed, self.epoch])))

    def __len__(self) -> int:
        return sharded_len(len(self.index.review_ids), self.batch_size, self.drop_last)


class RandomPairSampler(_EpochBatchSampler):
    """Every training review once per epoch, in random order, each with a random track of its album."""

    def _epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        order = rng.permutation(len(self.index.review_ids))
        reviews = self.index.review_ids[order]
        tracks = self.index.random_tracks(self.index.review_album[order], rng)
        return self._split_rows(np.stack([reviews, tracks], axis=1))


class NeighborhoodPairSampler(_EpochBatchSampler):
    """Batches in which every review has another review of its album, and every track another track.

    The published neighbourhood sampling: rows come in same-album couples, so the intra-modal loss terms (λ3, λ4)
    always find a positive in the batch. Each album's reviews are shuffled and paired up (an odd one out is paired
    with another review of the same album); each couple gets two distinct tracks where the album has several.
    Albums with a single review cannot form a couple and are still sampled, as singles, at the end of the epoch's
    couples — so every review is seen each epoch.
    """

    def __init__(self, index: PairIndex, batch_size: int, seed: int, drop_last: bool = False) -> None:
        if batch_size % 2:
            raise ValueError(f"neighborhood sampling needs an even batch_size, got {batch_size}")
        super().__init__(index, batch_size, seed, drop_last)
        order = np.argsort(index.review_album, kind="stable")
        self._by_album = order
        albums, starts, counts = np.unique(index.review_album[order], return_index=True, return_counts=True)
        self._album_starts = starts
        self._album_counts = counts
        del albums

    def _couples(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(first, second) positions into ``review_ids`` of same-album couples, and leftover singles.

        Vectorised over albums (an epoch of full MARD has ~7,000 training albums); the random draws are the ones
        a loop over albums would make, in the same order (one shuffle key per review, then one odd-one-out pick
        per album with an odd number of reviews ≥ 3), so a seed gives the same batches as it always did.
        """
        # Shuffle within each album by sorting on (album, random key): one vectorised argsort.
        keys = rng.random(len(self._by_album))
        shuffled = self._by_album[np.lexsort((keys, self.index.review_album[self._by_album]))]
        starts, counts = self._album_starts, self._album_counts
        single = counts == 1
        singles = shuffled[starts[single]].astype(np.int64)
        starts, counts = starts[~single], counts[~single]
        odd = counts % 2 == 1
        extra = np.zeros(len(counts), dtype=np.int64)
        extra[odd] = rng.integers(0, counts[odd] - 1)  # the odd one out pairs with another review of its album
        size = counts + odd  # members per album, the odd one out repeated: always even
        album = np.repeat(np.arange(len(counts)), size)
        local = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
        local = np.where(local < counts[album], local, extra[album])
        members = shuffled[starts[album] + local]
        couples = np.stack([members[0::2], members[1::2]], axis=1).astype(np.int64)
        return couples, singles

    def _epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        couples, singles = self._couples(rng)
        couples = couples[rng.permutation(len(couples))]
        albums = self.index.review_album[couples[:, 0]]
        track_a, track_b = self.index.distinct_track_pair(albums, rng)
        # Interleave so each couple stays together inside a batch: rows 2i and 2i+1.
        positions = couples.reshape(-1)
        tracks = np.stack([track_a, track_b], axis=1).reshape(-1)
        singles = singles[rng.permutation(len(singles))]
        positions = np.concatenate([positions, singles])
        tracks = np.concatenate([tracks, self.index.random_tracks(self.index.review_album[singles], rng)])
        rows = np.stack([self.index.review_ids[positions], tracks], axis=1)
        return self._split_rows(rows)

    def __len__(self) -> int:
        n_couples = int(np.sum((self._album_counts + 1) // 2 * (self._album_counts > 1)))
        n_rows = 2 * n_couples + int(np.sum(self._album_counts == 1))
        return sharded_len(n_rows, self.batch_size, self.drop_last)


SAMPLERS: dict[str, type[_EpochBatchSampler]] = {
    "random": RandomPairSampler,
    "neighborhood": NeighborhoodPairSampler,
}


def build_sampler(name: str, index: PairIndex, batch_size: int, seed: int, drop_last: bool = False):
    """The batch sampler called ``name`` (``random`` | ``neighborhood``)."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None
    return cls(index, batch_size, seed, drop_last)
