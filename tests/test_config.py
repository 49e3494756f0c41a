"""Hydra composition: every option of every group composes, and the settings the README promises are there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["data", "text", "audio", "model", "loss", "sampler", "trainer", "logger", "callbacks", "debug", "experiment"]


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def _options(group: str) -> list[str]:
    return sorted(str(p.relative_to(CONF / group).with_suffix("")) for p in (CONF / group).rglob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes(group, option):
    cfg = _compose(f"{group}={option}")
    assert cfg.seed == 0 and "trainer" in cfg


def test_defaults_are_the_best_recipe():
    """Plain `python -m mte.train` runs experiment=best (tests/test_experiments.py checks its settings), on the
    artist-disjoint split that recipes are chosen on."""
    cfg = _compose()
    assert list(cfg.tags) == ["best"] and cfg.optimized_metric == "val_best/t2a/R@10"
    assert cfg.text.name == "bow" and cfg.audio.name == "mlp" and cfg.loss.name == "infonce"
    assert (cfg.data.features, cfg.data.standardize, cfg.data.split) == ("lowlevel_all", True, "artist")
    assert cfg.data.vocab.min_albums == 0.009
    assert cfg.model.scheduler.name == "cosine" and cfg.audio.dropout > 0 and cfg.model.text_dropout > 0


def test_paper_config_is_the_published_model():
    """The published model's settings now live in experiment=paper/<row> (all rows share these)."""
    cfg = _compose("experiment=paper/nonlinear_bidirectional")
    assert cfg.text.name == "bow" and cfg.audio.name == "mlp" and cfg.sampler.name == "random"
    assert (cfg.model.embed_dim, cfg.model.hidden_dim) == (128, 256)
    loss = cfg.loss
    assert (loss.name, loss.margin, loss.negatives, loss.bidirectional, loss.distance) == (
        "margin",
        0.05,
        10,
        True,
        "euclidean",
    )
    assert cfg.model.optimizer.lr == pytest.approx(1e-3) and cfg.data.batch_size == 128
    assert (cfg.data.features, cfg.data.standardize) == ("seed169", False)


def test_readme_command_overrides():
    cfg = _compose("text=distilbert", "loss.bidirectional=false")
    assert cfg.text.name == "hf" and cfg.text.pretrained == "distilbert-base-uncased" and cfg.text.freeze
    assert cfg.loss.bidirectional is False
    assert _compose("text=minilm").text.pretrained == "minilm"


def test_experiment_neighborhood_switches_sampler_and_loss_terms():
    cfg = _compose("experiment=neighborhood")
    assert cfg.sampler.name == "neighborhood" and cfg.loss.neighborhood and list(cfg.loss.weights) == [1, 1, 1, 1]


def test_logger_many_and_lists():
    assert set(_compose("logger=many").logger) == {"wandb", "tensorboard", "csv"}
    assert set(_compose("logger=[tensorboard,csv]").logger) == {"tensorboard", "csv"}
    assert not _compose("logger=none").get("logger")


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_launcher_plugins_compose(launcher):
    cfg = _compose(f"hydra/launcher={launcher}", hydra=True)
    assert "launcher" in cfg.hydra.launcher._target_.lower()


def test_optuna_search_space():
    cfg = _compose("hparams_search=optuna", hydra=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert set(params) == {"++loss.margin", "model.embed_dim", "model.optimizer.lr"}
    assert cfg.hydra.sweeper.direction == "maximize"


# ------------------------------------------------------------------------------ checks before anything slow
# (override, words the one-line error must hold); each would run (or crash late, or train the wrong model) without
# mte/train/checks.py
BAD_SETTINGS = [
    ("model.embed_dim=0", "model.embed_dim=0"),
    ("model.embed_dim=-8", "model.embed_dim=-8"),
    ("model.hidden_dim=0", "model.hidden_dim=0"),
    ("data.batch_size=0", "data.batch_size=0"),
    ("data.batch_size=1", "in-batch negatives"),
    ("trainer.max_epochs=0", "at least 1 epoch"),
    ("trainer.max_epochs=-1", "at least 1 epoch"),  # -1 = endless unless max_steps bounds it
    ("data.features=mfcc", "seed169, seed369, lowlevel_all"),
    ("text.word_dropout=1.0", "text.word_dropout=1.0: must be a share in [0, 1)"),
    ("audio.dropout=-0.1", "audio.dropout=-0.1"),
    ("audio.input_dropout=1", "audio.input_dropout=1: must be a share in [0, 1)"),
    ("model.text_dropout=yes", "model.text_dropout='yes'"),
    ("ckpt_path=/no/such/run/last.ckpt", "does not exist"),
    ("sampler=neighborhood", "loss=infonce has no neighbourhood terms"),  # the default loss is InfoNCE
    # values the loss, the optimiser or the loader rejected in a traceback (some only after the first epoch)
    ("loss.temperature=0", "loss.temperature=0: must be a number > 0"),
    ("loss.margin=2.5", "loss.margin=2.5: must be a number in [0.0, 2.0)"),
    ("loss=sigmoid loss.bias=abc", "loss.bias='abc': must be a number"),
    ("model.optimizer.lr=-1", "model.optimizer.lr=-1: must be a number > 0"),
    ("model.optimizer.lr=0", "model.optimizer.lr=0"),
    ("model.optimizer.name=foo", "model.optimizer.name='foo': choose one of adam, adamw, sgd"),
    ("model.optimizer.weight_decay=-0.1", "model.optimizer.weight_decay=-0.1: must be a number ≥ 0"),
    ("model.scheduler.name=step", "model.scheduler.name='step': choose one of none, constant, cosine"),
    ("model.scheduler.warmup_fraction=1.5", "model.scheduler.warmup_fraction=1.5"),
    ("seed=abc", "seed='abc': must be an integer"),
    ("data.num_workers=-1", "data.num_workers=-1: must be an integer ≥ 0"),
    ("loss=sigmoid ++loss.margin=0.2", "loss.margin=0.2: loss=sigmoid has no margin"),  # hparams_search=optuna sets it
]
# the same checks on the margin recipe, whose sampler and loss terms come together (experiment=best_margin)
BAD_MARGIN_SETTINGS = [
    ("data.batch_size=33", "must be even"),  # sampler=neighborhood puts reviews in pairs
    ("data.batch_size=2", "data.batch_size=2: sampler=neighborhood needs at least 4"),  # one album: no negatives
    ("sampler=random", "sampler=neighborhood or loss.neighborhood=false"),  # terms without the sampler
    ("loss.neighborhood=false", "loss.neighborhood=true or sampler=random"),  # sampler without the terms
    ("loss=infonce", "loss=infonce has no neighbourhood terms"),
    ("loss.negatives=0", "loss.negatives=0: must be a positive integer"),
    ("loss.margin=abc", "loss.margin='abc': must be a number"),
    ("loss.distance=manhattan", "loss.distance='manhattan': choose one of euclidean, cosine"),
    ("loss.mining=semi", "loss.mining='semi'"),
    ("loss.weights=[1,1,1]", "loss.weights=[1, 1, 1]: must be four non-negative numbers"),
    ("loss.weights=[1,1,0,0]", "λ3 and λ4"),
    ("runtime.threads=0", "runtime.threads=0: must be 'auto' or a positive integer"),
    ("runtime.threads=many", "runtime.threads='many'"),
]


def test_the_default_run_passes_the_checks():
    from mte.train.checks import check_settings

    check_settings(_compose())  # so in the cases below the override alone is what fails
    check_settings(_compose("experiment=best_margin"))


@pytest.mark.parametrize(
    ("base", "override", "words"),
    [(None, *case) for case in BAD_SETTINGS] + [("experiment=best_margin", *case) for case in BAD_MARGIN_SETTINGS],
)
def test_bad_settings_are_one_line_errors(base, override, words):
    from mte.cli import UserError
    from mte.train.checks import check_settings

    with pytest.raises(UserError, match=re.escape(words)) as info:
        check_settings(_compose(*[o for o in (base, *override.split(" ")) if o]))
    assert "\n" not in str(info.value)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_trainer_without_a_gpu_is_one_line():
    """trainer=gpu on a CPU machine was Lightning's multi-line instantiate error, after prepare."""
    from mte.train.checks import ConfigError, check_accelerator

    for trainer in ("gpu", "ddp"):
        with pytest.raises(ConfigError, match=r"^trainer.accelerator=gpu: torch finds no GPU here .*trainer=cpu"):
            check_accelerator(_compose(f"trainer={trainer}").trainer)
    check_accelerator(_compose("trainer=cpu").trainer)
    check_accelerator(_compose().trainer)  # auto


def test_paper_rows_reject_the_sampler_without_the_terms_unless_asked_by_name():
    from mte.train.checks import ConfigError, check_settings

    with pytest.raises(ConfigError, match="allow_neighborhood_mismatch=true"):
        check_settings(_compose("experiment=paper/nonlinear_bidirectional", "sampler=neighborhood"))
    check_settings(_compose("experiment=paper/nonlinear_bidirectional", "sampler=neighborhood",
                            "allow_neighborhood_mismatch=true"))
    check_settings(_compose("experiment=best_margin", "sampler=random", "allow_neighborhood_mismatch=true"))


def test_valid_edges_pass(tmp_path):
    """What the checks must not refuse: step-limited training, fast dev runs, test-only runs, an existing ckpt."""
    from mte.train.checks import check_settings

    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"")
    check_settings(_compose("trainer.max_epochs=-1", "trainer.max_steps=5"))
    check_settings(_compose("debug=fdr", "trainer.max_epochs=0"))
    check_settings(_compose("train=false", "trainer.max_epochs=0", f"ckpt_path={ckpt}"))
    check_settings(_compose("model=cca", "data.batch_size=1"))  # closed form: no batches
    check_settings(_compose("experiment=best_infonce", "data.batch_size=2"))


def test_a_resume_from_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    from mte.train.checks import ConfigError, check_settings

    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match="is not a readable checkpoint"):
        check_settings(_compose(f"ckpt_path={notes}"))


def _lightning_checkpoint(path: Path, cfg, epochs_done: int, best: Path) -> Path:
    """A file with the parts of a Lightning checkpoint the resume checks read (tests/test_train_e2e.py resumes real
    ones): the module's hyper-parameters, the fit loop's epoch count and ModelCheckpoint's best path."""
    import torch

    torch.save({
        "hyper_parameters": {g: OmegaConf.to_container(cfg[g], resolve=True) for g in ("text", "audio", "model",
                                                                                      "loss")},
        "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": epochs_done}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val/t2a/R@10'}": {"best_model_path": str(best)}},
    }, path)
    return path


def test_a_resume_continues_the_same_model_and_needs_its_best_checkpoint(tmp_path):
    """Resuming with another model (embed_dim, backbone, loss, learning rate) failed in a state-dict traceback or
    silently mixed two setups; a deleted best.ckpt failed after the epochs had run. Both are one line up front."""
    from mte.train.checks import ConfigError, check_settings

    best = tmp_path / "best.ckpt"
    best.write_bytes(b"")
    last = _lightning_checkpoint(tmp_path / "last.ckpt", _compose("+text.max_length=256"), 2, best)
    check_settings(_compose(f"ckpt_path={last}", "trainer.max_epochs=5"))  # the same run, more epochs
    check_settings(_compose(f"ckpt_path={last}", "trainer.max_epochs=5", "+text.max_length=auto"))  # resolved value
    for override, words in (("model.embed_dim=32", "model.embed_dim: 128 → 32"),
                            ("model.optimizer.lr=0.5", "model.optimizer.lr: 0.01 → 0.5"),
                            ("loss=sigmoid", "loss.temperature: 0.07 → 0.1")):
        with pytest.raises(ConfigError, match=re.escape(words) + ".*start a new run without ckpt_path"):
            check_settings(_compose(f"ckpt_path={last}", "trainer.max_epochs=5", override))
    best.unlink()
    with pytest.raises(ConfigError, match=rf"its run's best checkpoint {re.escape(str(best))} no longer exists"):
        check_settings(_compose(f"ckpt_path={last}", "trainer.max_epochs=5"))
    check_settings(_compose(f"ckpt_path={last}", "trainer.max_epochs=5", "test=false"))


def test_a_missing_text_encoder_is_the_loaders_one_line(tmp_path):
    from mte.train.checks import ConfigError, check_text_encoder

    check_text_encoder({"name": "bow"})  # nothing to load
    with pytest.raises(ConfigError, match="no such directory") as info:
        check_text_encoder({"name": "hf", "pretrained": str(tmp_path / "no-model")})
    assert "\n" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        check_text_encoder({"name": "hf", "pretrained": str(tmp_path / "empty")})


def test_empty_train_split_is_refused_after_prepare(tmp_path):
    """A raw dir whose reviews and descriptors share no album: prepare succeeds, training has nothing to fit."""
    import json

    from mte.data.prepare import PrepareConfig, prepare
    from mte.data.processed import ProcessedData
    from mte.data.synth import generate
    from mte.train.checks import ConfigError, check_splits

    raw = tmp_path / "raw"
    generate(raw, albums=12, seed=0, tracks_per_album=1, quirks=False)
    reviews = (raw / "mard_reviews.json").read_text().splitlines()
    album = json.loads(reviews[0])["amazon-id"]  # keep one album's reviews, and take its descriptors away
    (raw / "mard_reviews.json").write_text("\n".join(r for r in reviews if json.loads(r)["amazon-id"] == album) + "\n")
    for doc in (raw / "acousticbrainz_descriptors").glob(f"{album}_*.json"):
        doc.unlink()
    assert list((raw / "acousticbrainz_descriptors").glob("*.json"))  # other albums keep their audio
    data = ProcessedData.load(prepare(raw, PrepareConfig(workers=1), processed_dir=tmp_path / "p", verbose=False))
    with pytest.raises(ConfigError, match=r"train split .* is empty \(0 reviews"):
        check_splits(data)


def test_a_split_the_run_needs_is_refused_when_empty(tmp_path):
    """One artist's albums (a discography, or MARD's "Various Artists") under data.split=artist: every album lands
    in one split, so prepare succeeds and a run used to train all its epochs, then die in a traceback at its test.
    Refused after prepare, naming the split; a run that does not read it goes ahead."""
    import json

    from mte.data.prepare import PrepareConfig, prepare
    from mte.data.processed import ProcessedData
    from mte.data.synth import generate
    from mte.train.checks import ConfigError, check_splits, splits_used

    raw = tmp_path / "raw"
    generate(raw, albums=40, seed=0, quirks=False)
    lines = (raw / "mard_metadata.json").read_text().splitlines()
    one_artist = [json.dumps({**json.loads(line), "artist": "Various Artists",
                              "artist-mbid": "89ad4ac3-39f7-470e-963a-56509c546377"}) for line in lines]
    (raw / "mard_metadata.json").write_text("\n".join(one_artist) + "\n")
    data = ProcessedData.load(prepare(raw, PrepareConfig(workers=1), processed_dir=tmp_path / "p", verbose=False))
    empty = [s for s in ("train", "val", "test") if len(data.split_review_indices(s)) == 0]
    assert empty and "train" not in empty
    words = rf"the {empty[0]} split of .* is empty .*data.split=artist.*the run needs it.*data.split=album"
    with pytest.raises(ConfigError, match=words):
        check_splits(data, splits_used(_compose()))
    check_splits(data, ("train",))


def test_the_splits_a_run_reads():
    from mte.train.checks import splits_used

    assert splits_used(_compose()) == ("train", "val", "test")
    assert splits_used(_compose("test=false")) == ("train", "val")
    assert splits_used(_compose("debug=fdr")) == ("train", "val")
    assert splits_used(_compose("train=false")) == ("train", "test")
    assert splits_used(_compose("model=cca", "test=false")) == ("train", "val")


def test_split_check_passes_on_real_data(processed_dir):
    from mte.data.processed import ProcessedData
    from mte.train.checks import check_splits

    check_splits(ProcessedData.load(processed_dir), ("train", "val", "test"))


# ------------------------------------------------------------------- test set-up: CI must not turn into skips
@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_outside_resource_fails_in_ci_and_skips_locally(monkeypatch, require_resource, ci, outcome):
    monkeypatch.setenv("CI", ci)
    require_resource(True, "present")  # nothing happens
    with pytest.raises(outcome, match="chromium missing"):
        require_resource(False, "chromium missing")


# ------------------------------------------------------------------------------------ serve: port and host
@pytest.mark.parametrize(
    ("host", "port", "words"),
    [
        ("127.0.0.1", 0, "port=0 is out of range"),
        ("127.0.0.1", 65536, "port=65536 is out of range"),
        ("192.0.2.1", 8765, "not an address of this machine; pass host=127.0.0.1"),  # TEST-NET-1: never local
        ("no-such-host.invalid", 8765, "cannot listen on host=no-such-host.invalid"),
    ],
)
def test_serve_refuses_a_port_or_host_it_cannot_use(host, port, words):
    from mte.serve import ServeError, _check_port

    with pytest.raises(ServeError, match=re.escape(words)) as info:
        _check_port(host, port)
    assert "pass port=" not in str(info.value) and "\n" not in str(info.value)  # another port would not help


def test_serve_busy_port_hints_another_port():
    import socket

    from mte.serve import ServeError, _check_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=r"in use.*pass port=OTHER"):
            _check_port("127.0.0.1", port)
    _check_port("127.0.0.1", port)  # free again: no error


@pytest.mark.slow
@pytest.mark.parametrize(("override", "words"), [("host=192.0.2.1", "not an address of this machine"),
                                                 ("port=70000", "port=70000 is out of range")])
def test_serve_cli_bad_address_is_one_line_exit_2(tmp_path, override, words):
    from helpers import run_module

    proc = run_module("mte.serve", f"ckpt_path={tmp_path / 'never-read.ckpt'}", override, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and words in proc.stderr and "pass port=" not in proc.stderr
