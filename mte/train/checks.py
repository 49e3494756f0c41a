"""Checks of a composed training config, run before anything slow: a bad value is one line, not a traceback.

Why here and not where each value is used: by the time a sampler sees ``batch_size=0`` or Lightning sees
``max_epochs=0``, the run has prepared the data, built the model and possibly written a run dir — and some
mistakes never fail at all (``max_epochs=0`` used to exit 0 with an untrained model's test metrics as the run's
result; ``sampler=neighborhood`` without the intra-modal loss terms trains a different model than the user asked
for). :func:`check_train_config` runs at the top of :func:`mte.train.run.run`; :func:`check_splits` right
after prepare, when the split sizes are known and before the model is built.

Nothing here imports pytorch_lightning or builds a model; a Hugging Face text encoder is loaded as far as its
config and tokenizer (seconds), through the same loader that builds the model later, so a machine without the
weights hears so before prepare runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from mte.cli import UserError, plain_dict
from mte.train.threads import AUTO, parse_threads

# The opt-out for a deliberately mismatched sampler/loss pair (see check_neighborhood_consistency).
MISMATCH_KEY = "allow_neighborhood_mismatch"


class ConfigError(UserError):
    """A composed config that cannot run as asked: a value out of range or settings that contradict each other."""


def check_train_config(cfg: Mapping[str, Any]) -> None:
    """Everything that can be judged before prepare; raises :class:`ConfigError` on the first problem."""
    check_settings(cfg)
    if not _is_baseline(cfg):
        check_text_encoder(cfg.get("text") or {})


def check_settings(cfg: Mapping[str, Any]) -> None:
    """The values and their combinations, from the composed config alone (no file but ``ckpt_path`` is read)."""
    model = cfg.get("model") or {}
    baseline = _is_baseline(cfg)
    _int(model, "model.embed_dim")
    if not baseline:
        _int(model, "model.hidden_dim")
        _share(cfg.get("text") or {}, "text.word_dropout")
        _share(model, "model.text_dropout")
        _share(cfg.get("audio") or {}, "audio.dropout")
        _share(cfg.get("audio") or {}, "audio.input_dropout")
    data = cfg.get("data") or {}
    check_features(data.get("features"))
    if not baseline:
        batch_size = _int(data, "data.batch_size", minimum=2, why="in-batch negatives need other albums")
        sampler = (cfg.get("sampler") or {}).get("name")
        if sampler == "neighborhood" and batch_size is not None and batch_size % 2:
            raise ConfigError(f"data.batch_size={batch_size}: sampler=neighborhood puts reviews in pairs of the "
                              "same album, so the batch size must be even")
        if sampler == "neighborhood" and batch_size is not None and batch_size < 4:
            raise ConfigError(f"data.batch_size={batch_size}: sampler=neighborhood needs at least 4 (two albums' "
                              "pairs): one album's pair has no other album to rank against, and every loss is 0")
        if cfg.get("train", True):
            check_max_epochs(cfg.get("trainer") or {})
        check_loss(cfg.get("loss") or {})
        check_neighborhood_consistency(cfg)
        check_optimizer(model)
        _int(data, "data.num_workers", minimum=0)
    _int(cfg, "seed", minimum=None)
    parse_threads((cfg.get("runtime") or {}).get("threads", AUTO))
    check_ckpt_path(cfg.get("ckpt_path"))
    if not baseline and cfg.get("train", True) and cfg.get("ckpt_path"):
        check_resume(str(cfg.get("ckpt_path")), cfg)


def _is_baseline(cfg: Mapping[str, Any]) -> bool:
    """model=cca|random: closed-form baselines, with no network, loss, sampler or trainer to check."""
    from mte.train import BASELINES

    return (cfg.get("model") or {}).get("name") in BASELINES


def _int(group: Mapping[str, Any], dotted: str, minimum: int | None = 1, why: str = "") -> int | None:
    """``group[key]`` as an int ≥ ``minimum`` (any int with None; absent → None), else a ConfigError naming it."""
    key = dotted.rsplit(".", 1)[-1]
    if key not in group or group.get(key) is None:
        return None
    value = group.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        need = ("an integer" if minimum is None else "a positive integer" if minimum == 1
                else f"an integer ≥ {minimum}")
        raise ConfigError(f"{dotted}={value!r}: must be {need}" + (f" ({why})" if why else ""))
    return value


def _number(group: Mapping[str, Any], dotted: str, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = True) -> float | None:
    """``group[key]``, when set, as a finite number within the bounds (open or closed), else a ConfigError."""
    value = group.get(dotted.rsplit(".", 1)[-1])
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if high is not None:
            span = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        else:
            span = "" if low is None else f" {'>' if low_open else '≥'} {low:g}"
        raise ConfigError(f"{dotted}={value!r}: must be a number{span}")
    return float(value)


def _choice(group: Mapping[str, Any], dotted: str, choices: tuple[str, ...]) -> None:
    value = group.get(dotted.rsplit(".", 1)[-1])
    if value is not None and value not in choices:
        raise ConfigError(f"{dotted}={value!r}: choose one of {', '.join(choices)}")


def check_loss(loss: Mapping[str, Any]) -> None:
    """The loss's values, which its module would otherwise reject in a traceback while the model is built."""
    name = loss.get("name")
    if name == "margin":
        _int(loss, "loss.negatives")
        _number(loss, "loss.margin")
        _choice(loss, "loss.distance", ("euclidean", "cosine"))
        _choice(loss, "loss.mining", ("random", "hardest"))
        _choice(loss, "loss.reduction", ("mean", "sum_of_block_means"))
        weights = loss.get("weights")
        if weights is not None and (len(list(weights)) != 4 or not all(
                not isinstance(w, bool) and isinstance(w, int | float) and w >= 0 for w in weights)):
            raise ConfigError(f"loss.weights={list(weights)!r}: must be four non-negative numbers (λ1–λ4)")
    if name == "infonce":
        _number(loss, "loss.margin", 0.0, 2.0)  # an additive margin on a cosine similarity
    if name in ("infonce", "sigmoid"):
        _number(loss, "loss.temperature", 0.0, None, low_open=True)
    if name == "sigmoid":
        _number(loss, "loss.bias")
        if loss.get("margin") is not None:
            raise ConfigError(f"loss.margin={loss.get('margin')}: loss=sigmoid has no margin (hparams_search=optuna "
                              f"searches one): use loss=margin or loss=infonce, or search other keys through "
                              f"hydra.sweeper.params")


def check_optimizer(model: Mapping[str, Any]) -> None:
    """``model.optimizer`` and ``model.scheduler``: Lightning asks for them only once fit has started."""
    optimizer = model.get("optimizer") or {}
    _choice(optimizer, "model.optimizer.name", ("adam", "adamw", "sgd"))
    _number(optimizer, "model.optimizer.lr", 0.0, None, low_open=True)
    _number(optimizer, "model.optimizer.weight_decay", 0.0)
    scheduler = model.get("scheduler") or {}
    _choice(scheduler, "model.scheduler.name", ("none", "constant", "cosine"))
    _number(scheduler, "model.scheduler.warmup_fraction", 0.0, 1.0)
    _number(scheduler, "model.scheduler.min_lr_ratio", 0.0, 1.0, high_open=False)


def _share(group: Mapping[str, Any], dotted: str) -> None:
    """``group[key]``, when set, is a probability in [0, 1) (a dropout rate: 1 would drop everything)."""
    value = group.get(dotted.rsplit(".", 1)[-1])
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{dotted}={value!r}: must be a share in [0, 1)")


def check_accelerator(trainer: Mapping[str, Any]) -> None:
    """``trainer.accelerator=gpu|cuda`` (``trainer=gpu``, ``trainer=ddp``) needs a GPU torch can use: Lightning
    said so in a multi-line instantiate error after prepare. Called once torch is imported (run() imports it right
    after :func:`check_train_config`; importing it here would undo the W&B-first start-up)."""
    import torch

    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator}: torch finds no GPU here (torch {torch.__version__}, "
                          f"{'a CUDA build' if torch.version.cuda else 'a CPU build'}); use trainer=cpu or "
                          f"trainer.accelerator=auto")


def check_features(features: Any) -> None:
    """``data.features`` names a feature set prepare knows."""
    from mte.data.descriptors import FEATURE_SETS

    if features is not None and features not in FEATURE_SETS:
        raise ConfigError(f"data.features={features!r} is not a feature set; choose one of {', '.join(FEATURE_SETS)}")


def check_max_epochs(trainer: Mapping[str, Any]) -> None:
    """A training run trains: ``trainer.max_epochs`` ≥ 1 (or -1 with a positive ``trainer.max_steps``).

    ``max_epochs=0`` made Lightning skip fit and the run then tested (and reported) the untrained model.
    ``fast_dev_run`` replaces the epoch budget, so it is not judged then.
    """
    if trainer.get("fast_dev_run"):
        return
    epochs = trainer.get("max_epochs")
    if epochs is None:
        return  # Lightning's own default (1000 epochs)
    steps = trainer.get("max_steps")
    if epochs == -1 and isinstance(steps, int) and steps > 0:
        return  # step-limited training, Lightning's way of saying "no epoch limit"
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"trainer.max_epochs={epochs!r}: a training run needs at least 1 epoch (it would report "
                          "an untrained model's metrics); to score a checkpoint use python -m mte.evaluate ckpt_path=…")


def check_ckpt_path(ckpt_path: Any) -> None:
    """A checkpoint to resume from (or to test) must exist before data are prepared and a run dir is filled."""
    if ckpt_path in (None, ""):
        return
    path = os.path.expanduser(str(ckpt_path))
    if not os.path.isfile(path):
        what = "is a directory, not a checkpoint file" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"ckpt_path={ckpt_path} {what} (resume from <run dir>/checkpoints/last.ckpt)")


def check_resume(ckpt_path: str, cfg: Mapping[str, Any]) -> None:
    """A resume continues the checkpoint's run: the same model (:func:`check_same_model`), epochs left to train
    (:func:`check_resume_budget`), and the run's best checkpoint still there for the test after training (a deleted
    ``best.ckpt`` failed in a traceback once the epochs had run). The file is read once, memory-mapped."""
    ckpt = _load_checkpoint(ckpt_path)
    check_same_model(ckpt_path, ckpt, cfg)
    check_resume_budget(ckpt_path, ckpt, cfg.get("trainer") or {})
    if cfg.get("test", True):
        for name, state in (ckpt.get("callbacks") or {}).items():
            best = state.get("best_model_path") if isinstance(state, Mapping) else None
            if str(name).startswith("ModelCheckpoint") and best and not os.path.isfile(best):
                raise ConfigError(f"ckpt_path={ckpt_path}: its run's best checkpoint {best} no longer exists, and the "
                                  f"test after training reads it; put it back, or pass test=false")


# what a resume may change without training another model: nothing in these groups (a config value "auto" matches
# the value it was resolved to, e.g. text.max_length)
MODEL_GROUPS = ("text", "audio", "model", "loss")


def check_same_model(ckpt_path: str, ckpt: Mapping[str, Any], cfg: Mapping[str, Any]) -> None:
    """The config's model, loss and optimiser settings are the checkpoint's: a resume with another ``embed_dim`` or
    text backbone failed in a state-dict traceback, and other changes (a learning rate, a dropout) would be
    silently overridden by the restored state or mix two setups in one run. A changed setup is a new run."""
    stored = ckpt.get("hyper_parameters")
    if not isinstance(stored, Mapping):
        return
    changed: list[str] = []
    for group in MODEL_GROUPS:
        mine = _flat(plain_dict(cfg.get(group)), group)
        theirs = _flat(plain_dict(stored.get(group)), group)
        changed += [f"{key}: {theirs.get(key)!r} → {value!r}" for key, value in sorted(mine.items())
                    if key in theirs and value != theirs[key] and value != "auto"]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"ckpt_path={ckpt_path} was trained with other settings ({'; '.join(changed[:3])}{more}); "
                          f"a resume continues the same run: drop those overrides, or start a new run without "
                          f"ckpt_path")


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}"))
    return out


def _load_checkpoint(ckpt_path: str) -> Mapping[str, Any]:
    """The checkpoint's dict, memory-mapped (a large checkpoint is not read into memory); one line if unreadable."""
    import torch


    path = os.path.expanduser(ckpt_path)
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError:  # a file in torch's legacy (non-zip) format cannot be memory-mapped
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # any unreadable file: pickle, zip and torch errors differ by version
        raise ConfigError(f"ckpt_path={ckpt_path} is not a readable checkpoint ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    if not isinstance(ckpt, Mapping):
        raise ConfigError(f"ckpt_path={ckpt_path} is not a training checkpoint (no Lightning state in it)")
    return ckpt


def check_resume_budget(ckpt_path: str, ckpt: Mapping[str, Any], trainer: Mapping[str, Any]) -> None:
    """Resuming must leave epochs to train: ``trainer.max_epochs`` above the epochs the checkpoint already ran.

    Otherwise Lightning skips fit without a word and the run reports the checkpoint's test metrics as if it had
    trained (the same silent no-op as ``max_epochs=0``). The epochs done are Lightning's own count in the checkpoint
    (``loops.fit_loop.epoch_progress``).
    """
    epochs = trainer.get("max_epochs")
    if trainer.get("fast_dev_run") or not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        return
    progress = ((ckpt.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress", {}).get("current", {})
    done = progress.get("processed")
    if isinstance(done, int) and epochs <= done:
        raise ConfigError(f"trainer.max_epochs={epochs}: ckpt_path={ckpt_path} has already trained {done} epoch(s), "
                          f"so resuming would train nothing; pass trainer.max_epochs={done + 1} or more")


def neighborhood_terms(loss: Mapping[str, Any]) -> bool:
    """Does the loss use the same-album pairs a neighbourhood batch holds (margin loss with λ3 or λ4 on)?"""
    if loss.get("name") != "margin" or not loss.get("neighborhood", False):
        return False
    weights = list(loss.get("weights") or [])
    return len(weights) == 4 and (float(weights[2]) != 0 or float(weights[3]) != 0)


def check_neighborhood_consistency(cfg: Mapping[str, Any]) -> None:
    """Neighbourhood sampling and the neighbourhood loss terms (λ3 text↔text, λ4 audio↔audio) come together.

    Either without the other trains something the user did not ask for: the sampler alone only fills batches with
    same-album pairs that no loss term reads (and that a margin or InfoNCE loss must then skip as negatives); the
    terms alone see almost no same-album pair under random batches. A deliberate mismatch (e.g. reproducing a
    variant of the published code) says so by name: ``allow_neighborhood_mismatch=true``.
    """
    if cfg.get(MISMATCH_KEY, False):
        return
    loss = cfg.get("loss") or {}
    sampler = (cfg.get("sampler") or {}).get("name")
    terms = neighborhood_terms(loss)
    hint = f"(or {MISMATCH_KEY}=true to run it anyway)"
    if loss.get("name") == "margin" and loss.get("neighborhood", False) and not terms:
        raise ConfigError(f"loss.neighborhood=true with loss.weights={list(loss.get('weights') or [])}: λ3 and λ4 "
                          "(the 3rd and 4th weights) are both 0, so there is no neighbourhood term; set one > 0")
    if sampler == "neighborhood" and not terms:
        why = ("loss=infonce has no neighbourhood terms" if loss.get("name") == "infonce"
               else "loss.neighborhood=false leaves out the λ3/λ4 terms that use them")
        fix = "sampler=random" if loss.get("name") == "infonce" else "loss.neighborhood=true or sampler=random"
        raise ConfigError(f"sampler=neighborhood pairs every review with another of its album, but {why}: "
                          f"pass {fix} {hint}")
    if terms and sampler != "neighborhood":
        raise ConfigError(f"loss.neighborhood=true needs same-album pairs in each batch, which sampler={sampler} does "
                          f"not provide: pass sampler=neighborhood or loss.neighborhood=false {hint}")


def check_text_encoder(text: Mapping[str, Any]) -> None:
    """A Hugging Face text encoder must be loadable here: its config and tokenizer, via the model's own loader.

    Without this, ``text=distilbert`` on a machine without the weights prepared the data and then died in a
    traceback; the loader's one-line reason ("not in the local HF cache and no network — pass
    text.pretrained=<local dir>") is now the whole message, exit 2.
    """
    name = text.get("name")
    if name not in ("hf", "distilbert", "minilm"):
        return
    from mte.models.text import DEFAULT_HF_MODEL, _load_pretrained, resolve_pretrained

    try:
        path = resolve_pretrained(str(text.get("pretrained") or ("minilm" if name == "minilm" else DEFAULT_HF_MODEL)))
        from transformers import AutoConfig, AutoTokenizer

        _load_pretrained(AutoConfig, path)
        _load_pretrained(AutoTokenizer, path)
    except (ImportError, ValueError) as e:  # the loader's one-line reasons; ImportError: a missing extra
        raise ConfigError(str(e).splitlines()[0]) from None


def check_splits(data: Any, splits: tuple[str, ...] = ("train",)) -> None:
    """After prepare: each split a run uses must hold paired reviews and tracks — train to fit, val to select the
    checkpoint, test to report it — checked before the model is built, so no run trains for hours and then fails
    in a traceback at its test (a dir of one artist's albums under ``data.split=artist`` has no test albums)."""
    paired = (getattr(data, "manifest", None) or {}).get("counts", {}).get("albums_paired", "?")
    for split in splits:
        n_reviews = len(data.split_review_indices(split))
        n_tracks = len(data.split_track_indices(split))
        if n_reviews and n_tracks:
            continue
        if split == "train":
            raise ConfigError(f"the train split of {data.root} is empty ({n_reviews} reviews, {n_tracks} tracks; "
                              f"{paired} paired albums): the raw dir needs albums with both reviews and descriptors")
        config = (getattr(data, "manifest", None) or {}).get("config") or {}
        kind, fractions = config.get("split", "?"), config.get("split_fractions", "?")
        also = "; data.split=album splits the albums rather than their artists" if kind == "artist" else ""
        raise ConfigError(f"the {split} split of {data.root} is empty ({n_reviews} paired reviews, {n_tracks} tracks "
                          f"of {paired} paired albums; data.split={kind}, data.split_fractions={fractions}), and the "
                          f"run needs it: give it a share of data.split_fractions, or more albums{also}")


def splits_used(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The splits a run reads: train (fit; its statistics scale the inputs), val (each epoch's checkpoint selection;
    a baseline reports it) and test, unless ``test=false`` or a fast dev run skips the test."""
    trainer = cfg.get("trainer") or {}
    tests = cfg.get("test", True) and (_is_baseline(cfg) or not trainer.get("fast_dev_run"))
    validates = _is_baseline(cfg) or cfg.get("train", True)
    return ("train", *(("val",) if validates else ()), *(("test",) if tests else ()))
