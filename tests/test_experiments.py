"""The named experiments: each `experiment=paper/<row>` is the published setup of one Table 1 row, whatever the
defaults are, and `data.standardize=false` (the published raw features) really reaches the model's input."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from mte.data.processed import ProcessedData
from mte.train.datamodule import MardDataModule

CONF = Path(__file__).resolve().parents[1] / "conf"
PAPER_ROWS = ["nonlinear", "linear_bidirectional", "distilbert", "nonlinear_bidirectional", "lstm", "neighborhood"]
# (text backbone, audio head, text head, bidirectional, sampler, neighbourhood terms) per row of Table 1
EXPECTED = {
    "nonlinear": ("bow", "mlp", "mlp", False, "random", False),
    "linear_bidirectional": ("bow", "linear", "linear", True, "random", False),
    "distilbert": ("hf", "mlp", "mlp", True, "random", False),
    "nonlinear_bidirectional": ("bow", "mlp", "mlp", True, "random", False),
    "lstm": ("lstm", "mlp", "mlp", True, "random", False),
    "neighborhood": ("bow", "mlp", "mlp", True, "neighborhood", True),
}


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _assert_published_setup(cfg) -> None:
    """What every trained row shares: the published data, branches, optimiser, loss and budget."""
    assert (cfg.data.features, cfg.data.standardize, cfg.data.split) == ("seed169", False, "paper")
    assert cfg.data.batch_size == 128
    assert (cfg.data.vocab.size, cfg.data.vocab.remove_stopwords, cfg.data.vocab.max_length) == (30000, True, 400)
    assert (cfg.data.vocab.min_freq, cfg.data.vocab.min_albums) == (2, 1)
    assert (cfg.model.embed_dim, cfg.model.hidden_dim) == (128, 256)
    assert not cfg.audio.batch_norm and cfg.audio.dropout == 0
    assert not cfg.model.text_batch_norm and cfg.model.text_dropout == 0
    assert (cfg.model.optimizer.name, cfg.model.optimizer.weight_decay) == ("adam", 0)
    assert cfg.model.optimizer.lr == pytest.approx(1e-3)
    assert cfg.model.scheduler.name == "none"
    loss = cfg.loss
    assert (loss.name, loss.margin, loss.negatives, loss.distance, loss.mining) == (
        "margin",
        0.05,
        10,
        "euclidean",
        "random",
    )
    assert cfg.trainer.max_epochs == 200


@pytest.mark.parametrize("row", PAPER_ROWS)
def test_paper_rows_compose_to_the_published_setup(row):
    cfg = _compose(f"experiment=paper/{row}")
    _assert_published_setup(cfg)
    text, audio, text_head, bidirectional, sampler, neighborhood = EXPECTED[row]
    assert cfg.text.name == text and cfg.audio.name == audio and cfg.model.text_head == text_head
    assert cfg.loss.bidirectional is bidirectional and cfg.sampler.name == sampler
    assert cfg.loss.neighborhood is neighborhood
    assert list(cfg.tags) == [f"paper/{row}"]
    if text in ("bow", "lstm"):
        assert cfg.text.word_dim == 300
    if text == "lstm":
        assert cfg.text.hidden == 256
    if text == "hf":
        assert cfg.text.pretrained == "distilbert-base-uncased" and cfg.text.freeze
    if neighborhood:
        assert list(cfg.loss.weights) == [1, 1, 1, 1]


def test_paper_rows_ignore_the_default_recipe():
    """A row differs from the default run (experiment=best) only where the paper did; overrides still apply."""
    default = _compose()
    paper = _compose("experiment=paper/neighborhood")
    assert paper.tags != default.tags
    cfg = _compose("experiment=paper/neighborhood", "data.split=album", "trainer.max_epochs=20")
    assert cfg.data.split == "album" and cfg.trainer.max_epochs == 20 and cfg.data.features == "seed169"


def test_paper_cca_row_composes():
    if not (CONF / "model" / "cca.yaml").exists():
        pytest.skip("conf/model/cca.yaml (the CCA baseline) is not there yet")
    cfg = _compose("experiment=paper/cca")
    assert list(cfg.tags) == ["paper/cca"]
    assert (cfg.data.features, cfg.data.standardize, cfg.data.split) == ("seed169", False, "paper")
    assert cfg.text.name == "bow"


def test_best_is_the_default_and_standardises():
    default, best = _compose(), _compose("experiment=best")
    assert default == best
    assert list(best.tags) == ["best"] and best.data.standardize and best.data.features == "lowlevel_all"
    assert best.loss.name == "infonce" and best.sampler.name == "random"
    assert best.data.vocab.min_albums == pytest.approx(0.009)  # a share of the dir's albums
    assert best.model.scheduler.name == "cosine" and best.trainer.max_epochs == 30


def test_best_infonce_is_best_without_the_vocabulary_filter():
    best, infonce = _compose("experiment=best"), _compose("experiment=best_infonce")
    assert list(infonce.tags) == ["best_infonce"] and infonce.data.vocab.min_albums == 1
    infonce.data.vocab.min_albums = best.data.vocab.min_albums
    infonce.tags = best.tags
    assert infonce == best  # the filter is the one difference


def test_best_margin_swaps_the_loss_sampler_and_lr():
    best, margin = _compose("experiment=best"), _compose("experiment=best_margin")
    assert margin.loss.name == "margin" and margin.sampler.name == "neighborhood" and margin.loss.neighborhood
    assert margin.model.optimizer.lr == pytest.approx(1e-3) and margin.data.vocab.min_albums == 1
    assert margin.audio == best.audio
    assert {**margin.text, "word_dropout": 0.3} == best.text and margin.text.word_dropout == 0.0  # as it was
    assert (margin.data.features, margin.data.standardize) == (best.data.features, best.data.standardize)
    assert margin.model.scheduler == best.model.scheduler
    assert margin.model.text_dropout == best.model.text_dropout


@pytest.mark.parametrize("experiment", ["best", "best_infonce"])
def test_the_recipes_leave_the_loss_switchable(experiment):
    """best sets no loss keys, so loss=margin or loss=sigmoid on top of it is a valid loss (no foreign keys), and the
    README's `text=distilbert loss.bidirectional=false` and `loss.margin=…` sweeps mean what they say."""
    from mte.models.module import build_loss

    for loss in ("margin", "infonce", "sigmoid"):
        build_loss(dict(_compose(f"experiment={experiment}", f"loss={loss}").loss))
    cfg = _compose(f"experiment={experiment}", "loss.bidirectional=false", "loss.margin=0.2")
    assert (cfg.loss.name, cfg.loss.bidirectional, cfg.loss.margin) == ("infonce", False, 0.2)
    build_loss(dict(cfg.loss))


def test_standardize_false_feeds_raw_features(processed_dir):
    data = ProcessedData.load(processed_dir)
    raw, standardized = data.raw_features(), data.standardized_features()
    assert not np.allclose(raw, standardized)  # else the test could not tell them apart
    for standardize, expected in ((False, raw), (True, standardized)):
        dm = MardDataModule(data, batch_size=32, sampler="random", seed=0, standardize=standardize)
        batch = next(iter(dm.train_dataloader()))
        np.testing.assert_allclose(batch["audio"].numpy(), expected[batch["track_idx"].numpy()], rtol=1e-6)
        tracks = next(iter(dm.val_dataloader()[1]))
        np.testing.assert_allclose(tracks["audio"].numpy(), expected[tracks["track_idx"].numpy()], rtol=1e-6)


def test_paper_config_reaches_the_datamodule(processed_dir):
    """build_datamodule threads data.standardize from the composed config."""
    from mte.train.run import build_datamodule

    cfg = _compose("experiment=paper/neighborhood", "logger=none")
    model = SimpleNamespace(text_backbone=SimpleNamespace(input_kind="tokens"))
    data = ProcessedData.load(processed_dir)
    dm = build_datamodule(cfg, model, data)
    assert dm.standardize is False
    np.testing.assert_array_equal(dm.audio, data.raw_features())
    assert build_datamodule(_compose("logger=none"), model, data).standardize is True


class _IdentityAudio(torch.nn.Module):
    """Stands in for a trained model: embed_audio returns its input, so the test sees what the model was fed."""

    def __init__(self, standardize: bool | None) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.hparams = {"data": {} if standardize is None else {"standardize": standardize}, "model": {}}

    def embed_audio(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("standardize", [False, True, None])
def test_inference_follows_the_training_scaling(processed_dir, standardize):
    from mte.models.inference import LoadedModel

    data = ProcessedData.load(processed_dir)
    loaded = LoadedModel(model=_IdentityAudio(standardize), data=data, checkpoint=Path("unused.ckpt"))
    raw = data.raw_features()[:5]
    expected = raw if standardize is False else data.standardized_features()[:5]  # None: older checkpoints
    np.testing.assert_allclose(loaded.embed_raw_features(raw).numpy(), expected, rtol=1e-5, atol=1e-5)


SHIPPED = sorted(str(p.relative_to(CONF / "experiment").with_suffix("")) for p in (CONF / "experiment").rglob("*.yaml"))


def test_every_shipped_experiment_passes_the_config_checks():
    """Each named recipe is a valid run as shipped (sizes, budget, features, sampler ↔ loss terms), so a user's
    `experiment=…` never meets the pre-flight errors of mte/train/checks.py. One Hydra context for all: fast."""
    from mte.train.checks import check_settings

    assert len(SHIPPED) >= 10  # best, best_margin, best_infonce, neighborhood and the paper rows: the glob found them
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for experiment in SHIPPED:
            cfg = compose("train", overrides=[f"experiment={experiment}"])
            assert cfg.tags[0].endswith(experiment.split("/")[-1]), experiment  # really that recipe
            check_settings(cfg)
