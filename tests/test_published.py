"""The published code as it ran: its training step, its text pooling, its file-level split, its Table-1 rows.

The oracle for the step is a line-by-line transcription of the published training loop (``Training.py`` of
noah-rush/Joint-Music-Text-Embeddings), kept here in the test and nowhere else, run on a toy two-branch model with
every ``randperm`` drawn from one seeded generator.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mte.models.losses import MarginRankingLoss, sample_positives
from mte.models.published_step import published_step
from mte.models.text import BagOfWords

VOCAB, LENGTH, AUDIO, WORD = 20, 12, 5, 6
ALBUM = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 6])  # rows of one album share negatives by chance only


class ToyTwoBranch(nn.Module):
    """The published TwoBranch, small: word embeddings (pad row = vocab) averaged over every position."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embeddings = nn.Embedding(VOCAB + 1, WORD, padding_idx=VOCAB)
        self.text_branch = nn.Sequential(nn.Linear(WORD, 16), nn.ReLU(), nn.Linear(16, 8))
        self.audio_branch = nn.Sequential(nn.Linear(AUDIO, 16), nn.ReLU(), nn.Linear(16, 8))
        self.double()

    def forward(self, text: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.mean(self.embeddings(text.long()), dim=1)
        return F.normalize(self.text_branch(pooled)), F.normalize(self.audio_branch(audio))


def toy_rows(seed: int, rows: int = len(ALBUM)) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded token rows (pad id = VOCAB, as published) and audio vectors."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (rows, LENGTH), generator=g)
    lengths = torch.randint(1, LENGTH + 1, (rows,), generator=g)
    pad = torch.arange(LENGTH)[None, :] < (LENGTH - lengths)[:, None]
    return tokens.masked_fill(pad, VOCAB), torch.randn(rows, AUDIO, generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------------------------
# the oracle: the published loop, transcribed (names and control flow as published, in this project's style)
# ----------------------------------------------------------------------------------------------------------------


def transcribed_step(
    model: nn.Module,
    batch_text: torch.Tensor,
    batch_audio: torch.Tensor,
    idxs: list[int],
    data_text: torch.Tensor,
    data_audio: torch.Tensor,
    lookup_reviews: dict[int, list[int]],
    lookup_albums: dict[int, list[int]],
    *,
    margin: float,
    ksamples: int,
    neighbor: bool,
    bidir: bool,
    generator: torch.Generator,
    choice: random.Random,
) -> torch.Tensor:
    criterion = nn.MarginRankingLoss(margin)
    items = batch_text.shape[0]
    text, audio = batch_text.long(), batch_audio
    orig_text, orig_audio = torch.clone(text), torch.clone(audio)
    loss = None
    if neighbor:
        home_text = torch.zeros((1, LENGTH), dtype=torch.long)
        neighbor_texts = torch.zeros((1, LENGTH), dtype=torch.long)
        home_audio = torch.zeros((1, AUDIO), dtype=torch.float64)
        neighbor_audio = torch.zeros((1, AUDIO), dtype=torch.float64)
        for idx, id_num in enumerate(idxs):
            if lookup_reviews[id_num] != []:
                home_text = torch.cat((home_text, orig_text[idx].unsqueeze(0)))
                neighbor_texts = torch.cat((neighbor_texts, data_text[choice.choice(lookup_reviews[id_num])][None]))
            if lookup_albums[id_num] != []:
                home_audio = torch.cat((home_audio, orig_audio[idx].unsqueeze(0)))
                neighbor_audio = torch.cat((neighbor_audio, data_audio[choice.choice(lookup_albums[id_num])][None]))
        neighbor_text_items = home_text.size()[0] - 1
        neighbor_audio_items = home_audio.size()[0] - 1
        home_text, neighbor_texts = home_text[1:], neighbor_texts[1:]
        home_audio, neighbor_audio = home_audio[1:], neighbor_audio[1:]
        home_text_embed, home_aud_embed = model(home_text, home_audio)
        neighbor_texts_embed, neighbor_audio_embed = model(neighbor_texts, neighbor_audio)
        true_dists_text = torch.sqrt(torch.sum(torch.square(home_text_embed - neighbor_texts_embed), dim=1))
        true_dists_audio = torch.sqrt(torch.sum(torch.square(home_aud_embed - neighbor_audio_embed), dim=1))
        for k in range(5):
            rand_sample = torch.randperm(items, generator=generator)[:neighbor_text_items]
            fake_text = orig_text[rand_sample]
            rand_sample = torch.randperm(items, generator=generator)[:neighbor_audio_items]
            fake_audio = orig_audio[rand_sample]
            fake_text, fake_audio = model(fake_text, fake_audio)
            fake_dists_text = torch.sqrt(torch.sum(torch.square(home_text_embed - fake_text), dim=1))
            fake_dists_audio = torch.sqrt(torch.sum(torch.square(home_aud_embed - fake_audio), dim=1))
            minus_text = torch.ones(neighbor_text_items, dtype=torch.float64) * -1
            minus_audio = torch.ones(neighbor_audio_items, dtype=torch.float64) * -1
            if k == 0:
                loss = criterion(true_dists_text, fake_dists_text, minus_text)
                loss += criterion(true_dists_audio, fake_dists_audio, minus_audio)
            else:
                loss += criterion(true_dists_text, fake_dists_text, minus_text)
                loss += criterion(true_dists_audio, fake_dists_audio, minus_audio)
    for _ in range(ksamples):
        rand_sample = torch.randperm(items, generator=generator)
        text = torch.cat((text, orig_text))
        audio = torch.cat((audio, orig_audio[rand_sample]))
        if bidir:
            text = torch.cat((text, orig_text[rand_sample]))
            audio = torch.cat((audio, orig_audio))
    text_embed, aud_embed = model(text, audio)
    true_dists = torch.sqrt(torch.sum(torch.square(text_embed[:items] - aud_embed[:items]), dim=1))
    modder = 2 if bidir else 1
    for i in range(ksamples * modder):
        lo, hi = items * (i + 1), items * (i + 1) + items
        fake_dists = torch.sqrt(torch.sum(torch.square(text_embed[lo:hi] - aud_embed[lo:hi]), dim=1))
        minus = torch.ones(items, dtype=torch.float64) * -1
        if i == 0 or not neighbor:
            loss = criterion(true_dists, fake_dists, minus)
        else:
            loss += criterion(true_dists, fake_dists, minus)
    return loss


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def _neighbour_tables(rows: int) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """One candidate per row (so ``random.choice`` is deterministic); some rows have no other review."""
    data_rows = rows + 4  # neighbours live in the training data, beyond the batch
    reviews = {i: ([] if i % 3 == 2 else [(i * 7 + 3) % data_rows]) for i in range(rows)}
    albums = {i: [i] for i in range(rows)}  # published: rows of the same review, the row itself included
    return reviews, albums


@pytest.mark.parametrize("neighbor", [False, True])
@pytest.mark.parametrize("bidir", [False, True])
def test_published_step_equals_the_transcribed_loop(neighbor, bidir):
    """Value and gradients; fails if a block is added instead of replaced, the block order or the draw order
    differ, or the neighbourhood terms are not discarded."""
    rows = len(ALBUM)
    data_text, data_audio = toy_rows(seed=5, rows=rows + 4)
    text, audio = data_text[:rows], data_audio[:rows]
    lookup_reviews, lookup_albums = _neighbour_tables(rows)
    margin, k = 0.8, 4  # a large margin: most hinges active, gradients not trivially 0

    model = ToyTwoBranch(seed=1)
    expected = transcribed_step(
        model, text, audio, list(range(rows)), data_text, data_audio, lookup_reviews, lookup_albums,
        margin=margin, ksamples=k, neighbor=neighbor, bidir=bidir,
        generator=torch.Generator().manual_seed(3), choice=random.Random(0),
    )
    expected.backward()
    expected_grads = _grads(model)

    model.zero_grad()
    text_home = torch.tensor([i for i in range(rows) if lookup_reviews[i]])
    audio_home = torch.arange(rows)
    got = published_step(
        model, text, audio, margin=margin, negatives=k, bidirectional=bidir, neighborhood=neighbor,
        text_home=text_home, text_neighbors=data_text[[lookup_reviews[int(i)][0] for i in text_home]],
        audio_home=audio_home, audio_neighbors=data_audio[[lookup_albums[int(i)][0] for i in audio_home]],
        generator=torch.Generator().manual_seed(3),
    )
    got.backward()
    torch.testing.assert_close(got, expected)
    for g, e in zip(_grads(model), expected_grads, strict=True):
        torch.testing.assert_close(g, e)
    assert expected.item() > 0


def published_loss(bidirectional: bool, neighborhood: bool, overwrite: bool, k: int, margin: float):
    return MarginRankingLoss(
        margin=margin, negatives=k, bidirectional=bidirectional, neighborhood=neighborhood,
        weights=(1.0, 1.0, 1.0, 1.0), negative_sampling="permutation", intra_negatives=5,
        reduction="sum_of_block_means", published_overwrite=overwrite,
    )


@pytest.mark.parametrize("neighbor", [False, True])
@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("overwrite", [True, False])
def test_embed_once_published_loss_equals_the_published_step(neighbor, bidir, overwrite):
    """The training loss (each item embedded once, false pairs gathered by index) against the literal step, with
    in-batch neighbours: fails if a block, its weight or its negatives differ, or if overwrite=false does not add
    the intra-modal terms back."""
    text, audio = toy_rows(seed=7)
    margin, k, seed = 0.8, 4, 11
    model = ToyTwoBranch(seed=2)

    loss_fn = published_loss(bidir, neighbor, overwrite, k, margin)
    text_emb, audio_emb = model(text, audio)
    got = loss_fn(text_emb, audio_emb, ALBUM, generator=torch.Generator().manual_seed(seed))
    got["loss"].backward()
    got_grads = _grads(model)

    model.zero_grad()
    generator = torch.Generator().manual_seed(seed)
    kwargs = {}
    if neighbor:  # the loss draws in-batch positives first; the literal step gets them as its neighbours
        positives = sample_positives(ALBUM, generator)
        home = torch.nonzero(positives >= 0).squeeze(1)
        kwargs = dict(text_home=home, text_neighbors=text[positives[home]],
                      audio_home=home, audio_neighbors=audio[positives[home]])
    expected = published_step(
        model, text, audio, margin=margin, negatives=k, bidirectional=bidir, neighborhood=neighbor,
        overwrite=overwrite, generator=generator, **kwargs,
    )
    expected.backward()
    torch.testing.assert_close(got["loss"], expected)
    for g, e in zip(got_grads, _grads(model), strict=True):
        torch.testing.assert_close(g, e)


def test_overwrite_keeps_only_the_last_block_without_neighbourhood():
    """Hand check of the quirk itself: the loss is the hinge mean of the last permutation's audio→text block."""
    text, audio = toy_rows(seed=3)
    model = ToyTwoBranch(seed=4)
    t, a = model(text, audio)
    margin, k = 0.8, 3
    out = published_loss(True, False, True, k, margin)(t, a, ALBUM, generator=torch.Generator().manual_seed(9))
    perms = [torch.randperm(len(ALBUM), generator=g) for g in [torch.Generator().manual_seed(9)] for _ in range(k)]
    true = (t - a).norm(dim=1)
    last = torch.clamp(true - (t[perms[-1]] - a).norm(dim=1) + margin, min=0).mean()
    torch.testing.assert_close(out["loss"], last)
    assert out["loss"] < out["t2a"] * k  # not the sum of blocks


def test_default_margin_loss_takes_the_described_path():
    """No published option → the described loss (same value as before these options existed)."""
    text, audio = toy_rows(seed=2)
    t, a = ToyTwoBranch(seed=3)(text, audio)
    plain = MarginRankingLoss(margin=0.5, negatives=4)
    assert not plain.published_blocks
    assert published_loss(True, False, False, 4, 0.5).published_blocks
    out = plain(t, a, ALBUM, generator=torch.Generator().manual_seed(0))
    again = MarginRankingLoss(margin=0.5, negatives=4, intra_negatives=None)(
        t, a, ALBUM, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["loss"], again["loss"])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_sum_of_block_means_is_k_times_the_described_mean(bidirectional):
    """Only the reduction switched (album-aware negatives, no overwrite): the same draws give K × the described
    loss. Fails if a block is dropped, double-counted, or the blocks use other negatives than the described loss."""
    text, audio = toy_rows(seed=6)
    t, a = ToyTwoBranch(seed=5)(text, audio)
    k = 4
    described = MarginRankingLoss(margin=0.8, negatives=k, bidirectional=bidirectional)
    summed = MarginRankingLoss(margin=0.8, negatives=k, bidirectional=bidirectional, reduction="sum_of_block_means")
    expected = described(t, a, ALBUM, generator=torch.Generator().manual_seed(1))
    got = summed(t, a, ALBUM, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got["loss"], k * expected["loss"])
    torch.testing.assert_close(got["t2a"], expected["t2a"])


def test_published_options_are_validated():
    with pytest.raises(ValueError, match="negative_sampling"):
        MarginRankingLoss(negative_sampling="random")
    with pytest.raises(ValueError, match="mining='random'"):
        MarginRankingLoss(negative_sampling="permutation", mining="hardest")
    with pytest.raises(ValueError, match="reduction"):
        MarginRankingLoss(reduction="sum")
    with pytest.raises(ValueError, match="intra_negatives"):
        MarginRankingLoss(intra_negatives=0)


# ----------------------------------------------------------------------------------------------------------------
# text pooling: the published mean over all 400 left-padded positions
# ----------------------------------------------------------------------------------------------------------------


def test_padded_mean_equals_the_published_mean_over_padded_positions():
    """Fails if padding is left out of the divisor (the plain mean) or the divisor is the batch's width."""
    width = 9
    bow = BagOfWords(VOCAB + 2, word_dim=WORD, pooling="padded_mean", padded_length=width)
    # our ids: 0 = [PAD] (right padding, batch padded only to its longest row); theirs: pad = last row, left padding
    ours = torch.tensor([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [2, 2, 6, 8, 9]])
    published = nn.Embedding(VOCAB + 2, WORD, padding_idx=VOCAB + 1)
    with torch.no_grad():
        published.weight.copy_(bow.embedding.weight)
        published.weight[VOCAB + 1] = 0
    lengths = (ours != 0).sum(1)
    left = torch.full((3, width), VOCAB + 1)
    for i, n in enumerate(lengths.tolist()):
        left[i, width - n:] = ours[i, :n]
    torch.testing.assert_close(bow({"tokens": ours}), torch.mean(published(left), dim=1))
    plain = BagOfWords(VOCAB + 2, word_dim=WORD)
    plain.load_state_dict(bow.state_dict())
    assert not torch.allclose(plain({"tokens": ours}), bow({"tokens": ours}))
    with pytest.raises(ValueError, match="padded_mean"):
        BagOfWords(VOCAB, pooling="padded_mean", weighting="idf")


# ----------------------------------------------------------------------------------------------------------------
# data.split=published: descriptor files are split, so an album (and its review texts) can straddle splits
# ----------------------------------------------------------------------------------------------------------------


def test_published_split_sizes_follow_the_documented_rule():
    from mte.data.published_split import published_split_sizes

    assert published_split_sizes(28403) == (2600, 2660)
    assert published_split_sizes(344_000) == (2600, 2660)  # the augmented layout: the published counts as they are
    assert published_split_sizes(2840) == (260, 266)  # a tenth of MARD: a tenth of each
    assert published_split_sizes(3) == (1, 1)  # never an empty dev/test while there are files for them
    assert published_split_sizes(0) == (0, 0)


def test_published_file_split_is_a_seeded_partition_of_the_files():
    from mte.data.published_split import published_file_split

    files = [f"A{i:09d}_{j}.json" for i in range(300) for j in range(3)]
    split = published_file_split(files, seed=0)
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(files)
    assert (len(split["test"]), len(split["val"])) == (82, 84)  # 900/28403 of 2600 and 2660
    assert published_file_split(list(reversed(files)), seed=0) == split  # file order does not matter
    assert published_file_split(files, seed=1) != split


@pytest.fixture(scope="module")
def published_processed(tmp_path_factory):
    """A synthetic MARD with three descriptor files per album, prepared with data.split=published."""
    from mte.data.prepare import PrepareConfig, prepare
    from mte.data.synth import generate

    root = tmp_path_factory.mktemp("published")
    generate(root / "raw", albums=120, seed=3, tracks_per_album=3, quirks=False)
    return prepare(root / "raw", PrepareConfig(split="published", features="seed169"),
                   processed_dir=root / "processed")


def test_published_split_is_file_level_and_its_leak_is_recorded(published_processed):
    """Fails if whole albums are split (no album in two splits), if a track sits in two splits or none, if the
    sizes ignore the rule, or if the manifest does not flag the leak with the right counts."""
    import json

    import polars as pl

    from mte.data.processed import ProcessedData
    from mte.data.published_split import published_split_sizes

    data = ProcessedData.load(published_processed)
    manifest = json.loads((published_processed / "manifest.json").read_text())
    assert manifest["leaky"] is True
    leak = manifest["leak"]
    tracks = data.tracks
    n_test, n_dev = published_split_sizes(len(tracks))
    paired = tracks.filter(pl.col("split").is_not_null())
    per_split = {name: set(paired.filter(pl.col("split") == name)["track_idx"].to_list()) for name in ("train", "val",
                                                                                                      "test")}
    assert leak["paired_files_val"] == len(per_split["val"]) <= n_dev
    assert leak["paired_files_test"] == len(per_split["test"]) <= n_test
    assert sum(len(s) for s in per_split.values()) == len(paired)  # each paired file in exactly one split
    for name, ids in per_split.items():
        assert set(data.split_track_indices(name).tolist()) == ids
    albums = {name: set(data.split_albums(name)) for name in ("train", "val", "test")}
    assert leak["albums_train_val"] == len(albums["train"] & albums["val"]) > 0  # the leak exists here …
    assert leak["albums_train_test"] == len(albums["train"] & albums["test"])
    # … and is what it says: the same review is a training row and a dev row
    shared = set(data.split_review_indices("train").tolist()) & set(data.split_review_indices("val").tolist())
    assert shared and leak["albums_val_also_in_train_share_pct"] > 0


def test_published_training_pairs_use_train_files_only(published_processed):
    """Fails if a training review is paired with a dev/test file of its album (the pair index must be per split)."""
    import polars as pl

    from mte.train.datamodule import MardDataModule

    dm = MardDataModule(published_processed, batch_size=16, sampler="random", seed=0, standardize=False)
    split = dm.data.tracks["split"]
    batches = list(dm.train_dataloader().batch_sampler)
    tracks = torch.as_tensor([int(row[1]) for batch in batches for row in batch])
    assert len(tracks) == len(dm.split_reviews("train"))
    assert set(split.gather(pl.Series(tracks.numpy())).to_list()) == {"train"}
    assert (dm.track_album[tracks.numpy()] == dm.review_album[[int(r[0]) for b in batches for r in b]]).all()


# ----------------------------------------------------------------------------------------------------------------
# experiment=paper_code/<row>: each Table-1 row as the published code ran it
# ----------------------------------------------------------------------------------------------------------------

PAPER_CODE_ROWS = ["nonlinear", "linear_bidirectional", "distilbert", "nonlinear_bidirectional", "lstm", "neighborhood"]


def _compose(*overrides: str):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("row", PAPER_CODE_ROWS)
def test_paper_code_rows_compose_to_the_code_as_it_ran(row):
    """Fails if a row loses one of the as-run settings (each checked by its own key)."""
    cfg = _compose(f"experiment=paper_code/{row}")
    data, loss = cfg.data, cfg.loss
    assert (data.split, data.features, data.standardize, data.batch_size) == ("published", "seed169", False, 256)
    assert list(data.text_fields) == ["reviewText"]
    assert (data.vocab.size, data.vocab.min_freq, data.vocab.lowercase, data.vocab.max_length) == (30001, 0, False, 400)
    assert (loss.name, loss.margin, loss.negatives, loss.negative_sampling, loss.intra_negatives) == (
        "margin", 0.05, 10, "permutation", 5)
    assert (loss.reduction, loss.published_overwrite) == ("sum_of_block_means", True)
    assert (cfg.model.embed_dim, cfg.model.hidden_dim, cfg.model.optimizer.lr, cfg.trainer.max_epochs) == (
        128, 256, 1e-3, 200)
    assert loss.bidirectional is (row != "nonlinear")
    assert loss.neighborhood is (row == "neighborhood") and cfg.sampler.name == "random"
    assert list(cfg.tags) == [f"paper_code/{row}"]
    if row in ("nonlinear", "nonlinear_bidirectional", "linear_bidirectional", "neighborhood"):
        assert (cfg.text.name, cfg.text.word_dim, cfg.text.pooling, cfg.text.padded_length) == (
            "bow", 128, "padded_mean", 400)
        assert not cfg.text.sparse  # dense Adam, as published
    if row == "lstm":
        assert (cfg.text.name, cfg.text.word_dim, cfg.text.hidden) == ("lstm", 128, 64)
    if row == "distilbert":
        assert cfg.text.name == "hf" and cfg.text.pooling == "mean"
    if row == "linear_bidirectional":
        assert cfg.audio.name == "linear" and cfg.model.text_head == "linear"


def test_paper_code_quirks_switch_one_at_a_time():
    cfg = _compose("experiment=paper_code/neighborhood", "loss.published_overwrite=false", "data.split=artist")
    assert not cfg.loss.published_overwrite and cfg.data.split == "artist"
    assert cfg.loss.negative_sampling == "permutation" and cfg.text.pooling == "padded_mean"
    assert _compose("experiment=best_margin").loss.published_overwrite is False  # the margin recipe: as described
    assert "published_overwrite" not in _compose().loss  # the default recipe's InfoNCE has no published quirks


@pytest.mark.slow
def test_every_paper_code_row_trains_one_epoch(tmp_path):
    """One Hydra multirun over the six rows on a small synthetic MARD (prepared once): each composes, prepares the
    published split and trains an epoch end to end, with a finite loss."""
    import json
    import math

    from helpers import run_module, save_tiny_distilbert

    tiny = save_tiny_distilbert(tmp_path / "distilbert", seed=0)
    sweep = tmp_path / "sweep"
    rows = ",".join(f"paper_code/{row}" for row in PAPER_CODE_ROWS)
    run_module(
        "mte.train", "-m", f"experiment={rows}", "trainer.max_epochs=1", "data.synthetic.albums=120",
        "logger=csv", "trainer.log_every_n_steps=1", f"++text.pretrained={tiny}", f"hydra.sweep.dir={sweep}",
        timeout=900,
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == len(PAPER_CODE_ROWS)
    for job in jobs:
        result = json.loads((job / "metrics.json").read_text())
        assert "val/t2a/R@10" in result["metrics"]
        (csv_file,) = job.rglob("metrics.csv")
        header, *lines = csv_file.read_text().splitlines()
        column = header.split(",").index("train/loss")
        losses = [float(line.split(",")[column]) for line in lines if line.split(",")[column]]
        assert losses and all(math.isfinite(v) for v in losses)
