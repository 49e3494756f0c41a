"""The data module on a real prepared MARD dir: batches carry what the processed Parquet says, splits stay apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mte.data.processed import ProcessedData
from mte.train.datamodule import MardDataModule


@pytest.fixture(scope="module")
def dm(processed_dir):
    return MardDataModule(processed_dir, batch_size=32, sampler="random", seed=0)


def test_train_batches_are_true_pairs_with_the_right_tokens_and_features(dm):
    data = ProcessedData.load(dm.data.root)
    tokens_col = data.reviews.get_column("tokens").to_list()
    review_album = data.reviews.get_column("amazon_id").to_list()
    track_album = data.tracks.get_column("amazon_id").to_list()
    standardized = data.standardized_features()
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) >= {"tokens", "lengths", "audio", "album", "review_idx", "track_idx"}
    for row in range(len(batch["album"])):
        r, t = int(batch["review_idx"][row]), int(batch["track_idx"][row])
        assert review_album[r] == track_album[t], "a training row pairs a review with another album's track"
        n = int(batch["lengths"][row])
        assert batch["tokens"][row, :n].tolist() == list(tokens_col[r])
        assert (batch["tokens"][row, n:] == 0).all()
        np.testing.assert_allclose(batch["audio"][row].numpy(), standardized[t], rtol=1e-6)
    assert batch["tokens"].dtype == torch.int64 and batch["audio"].dtype == torch.float32


def test_training_uses_only_train_split_and_eval_only_its_split(dm):
    splits = dm.data.reviews.get_column("split").to_list()
    seen = set()
    for batch in dm.train_dataloader():
        seen.update(batch["review_idx"].tolist())
    assert {splits[i] for i in seen} == {"train"}
    assert seen == set(dm.split_reviews("train").tolist())
    reviews_loader, tracks_loader = dm.val_dataloader()
    track_splits = dm.data.tracks.get_column("split").to_list()
    val_reviews = torch.cat([b["review_idx"] for b in reviews_loader]).tolist()
    val_tracks = torch.cat([b["track_idx"] for b in tracks_loader]).tolist()
    assert {splits[i] for i in val_reviews} == {"val"} and {track_splits[i] for i in val_tracks} == {"val"}
    assert sorted(val_reviews) == val_reviews  # in index order, every item once


def test_neighborhood_sampler_through_the_datamodule(processed_dir):
    dm = MardDataModule(processed_dir, batch_size=32, sampler="neighborhood", seed=0)
    batch = next(iter(dm.train_dataloader()))
    albums = batch["album"].tolist()
    assert any(albums.count(a) >= 2 for a in albums)


def test_cached_feature_input(processed_dir):
    data = ProcessedData.load(processed_dir)
    paired = np.flatnonzero(data.reviews.get_column("paired").to_numpy())
    features = np.random.default_rng(0).normal(size=(len(paired), 8)).astype(np.float32)
    dm = MardDataModule(data, batch_size=16, text_input="features", text_features=features, feature_reviews=paired)
    batch = next(iter(dm.train_dataloader()))
    rows = np.searchsorted(paired, batch["review_idx"].numpy())
    np.testing.assert_array_equal(batch["text_features"].numpy(), features[rows])
