"""The LightningDataModule: streams (review, track) true pairs for training and both modalities for evaluation.

Everything is held as flat numpy arrays (token ids in CSR form, standardised features as one matrix) and batches
are assembled whole in ``__getitems__``, so a batch costs a few vectorised copies instead of B Python calls —
this is what keeps a bag-of-words epoch over MARD-scale data within seconds.

The module knows nothing of networks: the text input is one of ``tokens`` (vocabulary ids, for bow/lstm),
``hf`` (raw strings handed to a tokenizer callable the caller provides) or ``features`` (precomputed
frozen-encoder features, one row per review); what turns reviews and descriptors into that input is the model's
input contract (:mod:`mte.models.contract`), the same one evaluation and search read through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from mte.data.processed import ProcessedData
from mte.models.contract import InputContract, TokenMatrix
from mte.train.samplers import PairIndex, build_sampler, dist_rank_world, shard_batches, sharded_len

TEXT_INPUTS = ("tokens", "hf", "features")
Batch = dict[str, Any]


@dataclass
class TextStore:
    """All review texts in the form the text branch consumes, indexed by ``review_idx``."""

    kind: str
    tokens: TokenMatrix | None = None
    strings: list[str] | None = None
    tokenize: Callable[[list[str]], dict[str, torch.Tensor]] | None = None
    features: np.ndarray | None = None  # [n_feature_rows, H]
    feature_row: np.ndarray | None = None  # review_idx -> row in ``features`` (-1: none)

    def batch(self, review_idx: np.ndarray) -> dict[str, torch.Tensor]:
        if self.kind == "tokens":
            assert self.tokens is not None
            return self.tokens.batch(review_idx)
        if self.kind == "hf":
            assert self.strings is not None and self.tokenize is not None
            return self.tokenize([self.strings[i] for i in review_idx.tolist()])
        assert self.features is not None and self.feature_row is not None
        rows = self.feature_row[review_idx]
        if (rows < 0).any():
            raise IndexError("text features were not computed for some requested reviews")
        return {"text_features": torch.from_numpy(np.ascontiguousarray(self.features[rows], dtype=np.float32))}


class PairDataset(torch.utils.data.Dataset):
    """Training pairs; indexed by whole batches (an int array ``[B, 2]`` of review and track indices)."""

    def __init__(self, text: TextStore, audio: np.ndarray, track_album: np.ndarray) -> None:
        self.text = text
        self.audio = audio
        self.track_album = track_album

    def __len__(self) -> int:  # pragma: no cover - batches come from the batch sampler
        return len(self.track_album)

    def __getitems__(self, rows: np.ndarray) -> Batch:
        rows = np.asarray(rows, dtype=np.int64)
        reviews, tracks = rows[:, 0], rows[:, 1]
        batch: Batch = self.text.batch(reviews)
        batch["audio"] = torch.from_numpy(self.audio[tracks])
        batch["album"] = torch.from_numpy(self.track_album[tracks])
        batch["review_idx"] = torch.from_numpy(reviews)
        batch["track_idx"] = torch.from_numpy(tracks)
        return batch


class ReviewDataset(torch.utils.data.Dataset):
    """Evaluation queries/gallery of one modality: reviews (text side)."""

    def __init__(self, text: TextStore, review_ids: np.ndarray, review_album: np.ndarray) -> None:
        self.text, self.ids, self.album = text, review_ids, review_album

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        idx = self.ids[np.asarray(positions, dtype=np.int64)]
        batch: Batch = self.text.batch(idx)
        batch["review_idx"] = torch.from_numpy(idx)
        batch["album"] = torch.from_numpy(self.album[idx])
        return batch


class TrackDataset(torch.utils.data.Dataset):
    """Evaluation queries/gallery of one modality: tracks (audio side)."""

    def __init__(self, audio: np.ndarray, track_ids: np.ndarray, track_album: np.ndarray) -> None:
        self.audio, self.ids, self.album = audio, track_ids, track_album

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        idx = self.ids[np.asarray(positions, dtype=np.int64)]
        return {
            "audio": torch.from_numpy(self.audio[idx]),
            "track_idx": torch.from_numpy(idx),
            "album": torch.from_numpy(self.album[idx]),
        }


def _identity(batch: Batch) -> Batch:
    return batch


class _ShardedSequentialBatches:
    """Evaluation batches in order, strided across DDP ranks (every rank gets the same count)."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = n, batch_size

    def __iter__(self):
        starts = range(0, self.n, self.batch_size)
        yield from shard_batches([np.arange(i, min(i + self.batch_size, self.n)) for i in starts])

    def __len__(self) -> int:
        return sharded_len(self.n, self.batch_size)


class MardDataModule(pl.LightningDataModule):
    """Streams MARD pairs from a processed dir.

    ``text_input`` chooses what the text branch receives (see module docstring). ``sampler`` is ``random`` or
    ``neighborhood``. Validation metrics use the ``val`` split; ``test`` is used by ``trainer.test``.

    ``contract`` (the model's :class:`~mte.models.contract.InputContract`) decides the review strings of
    transformer text and the descriptor scaling; without one, the processed dir's own contract is used with
    ``standardize``: train-split-standardised descriptors (the default), or with ``False`` the raw values, as the
    published model did (kept so its setup can be reproduced: its feature parts differ in scale by orders of
    magnitude, which is why standardising is the default).
    """

    def __init__(
        self,
        processed: ProcessedData | str | Path,
        batch_size: int = 128,
        sampler: str = "random",
        num_workers: int = 0,
        text_input: str = "tokens",
        tokenize: Callable[[list[str]], dict[str, torch.Tensor]] | None = None,
        text_features: np.ndarray | None = None,
        feature_reviews: np.ndarray | None = None,
        seed: int = 0,
        eval_batch_size: int = 1024,
        standardize: bool = True,
        contract: InputContract | None = None,
    ) -> None:
        super().__init__()
        if text_input not in TEXT_INPUTS:
            raise ValueError(f"text_input must be one of {TEXT_INPUTS}, got {text_input!r}")
        self.data = processed if isinstance(processed, ProcessedData) else ProcessedData.load(Path(processed))
        self.batch_size = batch_size
        self.sampler_name = sampler
        self.num_workers = num_workers
        self.seed = seed
        self.eval_batch_size = eval_batch_size
        self.contract = contract or InputContract.from_processed(self.data, standardize=standardize)
        self.contract.check(self.data)  # a model's contract from other data would feed it wrong ids and scales
        self.text = self._text_store(text_input, tokenize, text_features, feature_reviews)
        self.standardize = self.contract.standardize
        self.audio = self.contract.model_features(self.data.raw_features())
        album_row = {a: i for i, a in enumerate(self.data.albums.get_column("amazon_id").to_list())}
        self.review_album = np.asarray(
            [album_row[a] for a in self.data.reviews.get_column("amazon_id").to_list()], dtype=np.int64
        )
        self.track_album = np.asarray(
            [album_row[a] for a in self.data.tracks.get_column("amazon_id").to_list()], dtype=np.int64
        )

    # -- text --------------------------------------------------------------------------------------------------
    def _text_store(self, kind, tokenize, features, feature_reviews) -> TextStore:
        if kind == "tokens":
            return TextStore(kind, tokens=self.contract.review_tokens(self.data.reviews))
        if kind == "hf":
            if tokenize is None:
                raise ValueError("text_input='hf' needs a tokenize callable")
            return TextStore(kind, strings=self.contract.review_texts(self.data.reviews), tokenize=tokenize)
        if features is None or feature_reviews is None:
            raise ValueError("text_input='features' needs text_features and feature_reviews")
        row = np.full(len(self.data.reviews), -1, dtype=np.int64)
        row[np.asarray(feature_reviews, dtype=np.int64)] = np.arange(len(feature_reviews))
        return TextStore(kind, features=features, feature_row=row)

    # -- splits ------------------------------------------------------------------------------------------------
    def split_reviews(self, split: str) -> np.ndarray:
        """Indices of the paired reviews of ``split`` (the only ones used for pairs and metrics)."""
        return self.data.split_review_indices(split)

    def split_tracks(self, split: str) -> np.ndarray:
        """Indices of the tracks of ``split``'s albums."""
        return self.data.split_track_indices(split)

    def pair_index(self, split: str = "train") -> PairIndex:
        """Reviews of ``split`` and, per album, its tracks *of that split* (all of the album's for album-level
        splits; the split's own files with data.split=published, stored contiguously per album and split)."""
        reviews = self.split_reviews(split)
        n_albums = len(self.data.albums)
        tracks = self.split_tracks(split)
        counts = np.bincount(self.track_album[tracks], minlength=n_albums)
        starts = np.zeros(n_albums, dtype=np.int64)
        starts[self.track_album[tracks][::-1]] = tracks[::-1]  # the first track of each album (reversed: first wins)
        return PairIndex(reviews, self.review_album[reviews], starts, counts)

    # -- loaders -----------------------------------------------------------------------------------------------
    def _loader(self, dataset, batch_sampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=_identity,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        index = self.pair_index("train")
        if len(index.review_ids) == 0:
            raise ValueError(f"{self.data.root}: the train split has no paired reviews")
        # Under DDP every rank's batch must have the same size: embeddings are all-gathered for in-batch negatives.
        drop_last = dist_rank_world()[1] > 1
        sampler = build_sampler(self.sampler_name, index, self.batch_size, self.seed, drop_last=drop_last)
        return self._loader(PairDataset(self.text, self.audio, self.track_album), sampler)

    def eval_dataloaders(self, split: str) -> list[DataLoader]:
        """[reviews, tracks] of ``split``, in index order (dataloader_idx 0 and 1).

        Review queries follow the evaluation core's one rule (:func:`mte.eval.protocols.query_mask`: at least one
        vocabulary id left after stop-word removal, or non-blank text for transformers), so these are exactly the
        queries ``mte.evaluate`` scores, in the same order and batches.
        """
        from mte.eval.protocols import query_mask

        reviews, tracks = self.split_reviews(split), self.split_tracks(split)
        if self.text.kind == "tokens":
            assert self.text.tokens is not None
            reviews = reviews[query_mask(token_lengths=self.text.tokens.lengths[reviews])]
        else:
            reviews = reviews[query_mask(texts=self.contract.review_texts(self.data.reviews[reviews]))]
        if len(reviews) == 0 or len(tracks) == 0:
            raise ValueError(f"{self.data.root}: the {split!r} split has no paired reviews/tracks")
        return [
            self._loader(
                ReviewDataset(self.text, reviews, self.review_album),
                _ShardedSequentialBatches(len(reviews), self.eval_batch_size),
            ),
            self._loader(
                TrackDataset(self.audio, tracks, self.track_album),
                _ShardedSequentialBatches(len(tracks), self.eval_batch_size),
            ),
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self.eval_dataloaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self.eval_dataloaders("test")
