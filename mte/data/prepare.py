"""Raw MARD dir → processed dir (Parquet tables, splits, vocabulary, feature statistics, manifest).

Everything downstream (training, evaluation, search) reads the processed dir, never the raw files, so this step
owns four promises:

* **Accounted for.** Every input line, file and field ends up either in a table or in ``manifest.json`` with a
  reason (see :mod:`mte.data.mard` and :mod:`mte.data.manifest`); a one-line summary is printed.
* **Cached and reproducible.** The output dir is keyed by a fingerprint of the inputs, the prepare config and
  the format version (:mod:`mte.data.cache`). A second run with the same inputs and config finds the dir and
  returns in well under a second — that path imports neither polars nor numpy. The same inputs and config give
  byte-identical Parquet files (stable sort orders, no timestamps inside).
* **Atomic.** The dir is built as ``<target>.tmp-<pid>-<random>`` (:mod:`mte.data.build`) and renamed into place
  after ``manifest.json`` (written last) is complete; a dir without a valid manifest is never trusted.
* **Never loses a user's files.** An existing dir is replaced only when it provably is prepare's own output, and
  an explicit ``processed_dir`` prepared from other inputs or another config only with ``overwrite=True``
  (``data.overwrite=true``); a raw dir that does not exist is an error, never a place to invent data in, unless it
  is the synthetic data's default place under the cache or ``data.synthetic.generate=true`` asks for it.

``prepare(raw_dir, reference=<processed dir>)`` prepares *another* raw dir for a model trained on the reference:
it reuses the reference's vocabulary, feature names and train-split statistics (copied verbatim) and its feature
set and text settings, and puts every paired album in ``test`` — so a trained model can be evaluated on data it
never saw, with its inputs encoded exactly as in training (see :class:`Reference`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mte.cli import UserError
from mte.data.cache import (
    ACTIVE_TMP,
    FORMAT_VERSION,
    ReplaceRefused,
    cache_key,
    check_replaceable,
    publish,
    read_manifest,
    remove_stale_tmp,
    scan_inputs,
    tmp_dir,
)
from mte.data.mard import MardLayout, MardLayoutError, layout_message
from mte.data.names import FEATURE_SETS, SPLIT_METHODS, TEXT_FIELDS
from mte.data.text import VocabConfig
from mte.paths import cache_root, processed_root

__all__ = [
    "FORMAT_VERSION",
    "MardLayoutError",
    "PrepareConfig",
    "PrepareConfigError",
    "Reference",
    "ReplaceRefused",
    "VocabConfig",
    "cache_key",
    "load_reference",
    "prepare",
    "prepare_from_config",
]


class PrepareConfigError(ValueError, UserError):
    """A prepare setting (data.features, data.split, …) that cannot work; the message is one line."""


# ------------------------------------------------------------------------------------------------------ config
@dataclass
class PrepareConfig:
    """Everything that changes the processed dir (except ``workers``, which only changes how fast it is built)."""

    features: str = "seed369"
    split: str = "artist"  # as conf/data/mard.yaml: figures on artists the model never saw
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    text_fields: tuple[str, ...] = ("summary", "reviewText")
    vocab: VocabConfig = field(default_factory=VocabConfig)
    workers: int = 0  # descriptor-parsing processes; 0 = one per available CPU

    def __post_init__(self) -> None:
        if isinstance(self.vocab, Mapping):
            self.vocab = VocabConfig(**dict(self.vocab))
        self.split_fractions = tuple(float(f) for f in self.split_fractions)  # type: ignore[assignment]
        self.text_fields = tuple(str(f) for f in self.text_fields)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PrepareConfig:
        """The prepare-relevant keys of a ``data`` config group (other keys, e.g. batch_size, are ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        kwargs = {k: data[k] for k in names if k in data and data[k] is not None}
        if "vocab" in kwargs:
            vocab_names = set(VocabConfig.__dataclass_fields__)
            kwargs["vocab"] = VocabConfig(**{k: v for k, v in dict(kwargs["vocab"]).items() if k in vocab_names})
        return cls(**kwargs)

    def validate(self) -> None:
        """Fail early with a one-line :class:`PrepareConfigError` (a typo should not cost a 40 s build)."""
        from mte.data.splits import normalise_fractions

        try:
            normalise_fractions(self.split_fractions)
        except ValueError as e:
            raise PrepareConfigError(f"data.{e}") from None
        if self.features not in FEATURE_SETS:
            raise PrepareConfigError(f"unknown data.features {self.features!r}; choose one of "
                                     f"{', '.join(FEATURE_SETS)}")
        if self.split not in SPLIT_METHODS:
            raise PrepareConfigError(f"unknown data.split {self.split!r}; choose one of {', '.join(SPLIT_METHODS)}")
        unknown = [f for f in self.text_fields if f not in TEXT_FIELDS]
        if unknown or not self.text_fields:
            raise PrepareConfigError(f"data.text_fields must be a non-empty subset of {list(TEXT_FIELDS)}, "
                                     f"got {list(self.text_fields)}")
        vocab = self.vocab
        minimums_ok = all(m > 0 and (m < 1 or float(m).is_integer()) for m in (vocab.min_albums, vocab.min_artists))
        if vocab.size < 3 or vocab.max_length < 1 or vocab.min_freq < 0 or not minimums_ok \
                or not 0 < vocab.spread_cap <= 1:
            raise PrepareConfigError(f"bad data.vocab {asdict(vocab)}: size >= 3 ([PAD], [UNK] and a word), "
                                     "max_length >= 1, min_freq >= 0, "
                                     "min_albums and min_artists a whole count >= 1 or a share in (0, 1), "
                                     "0 < spread_cap <= 1")

    def key_dict(self) -> dict[str, Any]:
        """The config as it enters the cache key: JSON-able, ``workers`` left out."""
        d = asdict(self)
        d.pop("workers")
        d["split_fractions"] = list(self.split_fractions)
        d["text_fields"] = list(self.text_fields)
        return d


# --------------------------------------------------------------------------------------------------- reference
@dataclass
class Reference:
    """A processed dir whose vocabulary and feature statistics another raw dir is prepared with.

    Why: a model's inputs are defined by its processed dir — word ids by ``vocab/``, audio scaling by the
    train-split mean/std in ``features.json``, and (for ``lowlevel_all``) the feature names and their order.
    Building these afresh from another raw dir would feed the model ids and scales it never saw. ``digest`` hashes
    the reused files' bytes, so it enters the cache key: a rebuilt reference with another vocabulary gets a new dir,
    a moved one does not.
    """

    root: Path
    manifest: dict[str, Any]
    feature_set: str
    names: list[str]
    digest: str

    def config(self, workers: int = 0) -> PrepareConfig:
        """The reference's prepare config (features, text fields, vocabulary settings); ``workers`` is ours."""
        return PrepareConfig.from_mapping({**self.manifest.get("config", {}), "workers": workers})

    def record(self) -> dict[str, Any]:
        """What the manifest says about the reference."""
        return {"processed_dir": str(self.root), "cache_key": self.manifest.get("cache_key"),
                "digest": self.digest}


def load_reference(reference: Path | str) -> Reference:
    """Read a complete processed dir as a :class:`Reference`; :class:`ProcessedDirError` (one line) otherwise."""
    root = Path(reference).expanduser().absolute()
    manifest = read_manifest(root, any_version=True)
    if manifest is None:
        from mte.data.processed import ProcessedDirError

        raise ProcessedDirError(f"reference {root} is not a complete processed dir (no valid manifest.json); "
                                f"pass the processed dir a model was trained on")
    features = json.loads((root / "features.json").read_text(encoding="utf-8"))
    feature_set, names = str(features.get("feature_set", "")), [str(n) for n in features.get("names", [])]
    from mte.data.descriptors import feature_names

    fixed = feature_names(feature_set) if feature_set in FEATURE_SETS else None
    if feature_set not in FEATURE_SETS or (fixed is not None and list(fixed) != names) or not names:
        from mte.data.processed import ProcessedDirError

        raise ProcessedDirError(f"reference {root}/features.json names {len(names)} features of set "
                                f"{feature_set!r}, which does not match that feature set")
    digest = hashlib.sha256()
    for path in [root / "features.json", *sorted((root / "vocab").rglob("*"))]:
        if path.is_file():
            digest.update(f"{path.relative_to(root)}\0".encode())
            digest.update(path.read_bytes())
    return Reference(root, manifest, feature_set, names, digest.hexdigest()[:16])


# ----------------------------------------------------------------------------------------------------- prepare
def prepare(
    raw_dir: Path | str,
    config: PrepareConfig | None = None,
    processed_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    force: bool = False,
    *,
    verbose: bool = True,
    reference: Path | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Build (or reuse) the processed dir for ``raw_dir`` and return its path.

    ``processed_dir`` places the output explicitly; otherwise it goes to ``<cache_dir>/processed/<key>``
    (``cache_dir`` defaults to :func:`mte.paths.cache_root`). ``force`` rebuilds even when a matching dir exists.
    An existing ``processed_dir`` is replaced only when it is prepare's own output (else :class:`ReplaceRefused`,
    nothing touched) and, when it was prepared from other inputs or another config, only with ``overwrite``.
    Raises :class:`MardLayoutError` (one-line message) when the raw dir is missing or incomplete.

    ``reference`` (a processed dir) switches to evaluation data: the reference's feature set, text fields and
    vocabulary settings replace those of ``config`` (only ``config.workers`` is used), its ``vocab/`` and
    ``features.json`` are copied instead of built (``lowlevel_all``: a document lacking one of the reference's
    features is skipped as ``missing_stat``), every paired album goes to the ``test`` split, and the manifest
    records ``reference``.
    """
    t0 = time.perf_counter()
    ref = load_reference(reference) if reference is not None else None
    config = config if config is not None else PrepareConfig()
    if ref is not None:
        config = ref.config(workers=config.workers)
    config.validate()
    layout = MardLayout.of(raw_dir)
    scan = scan_inputs(layout)
    key = cache_key(scan.fingerprint, config, ref.digest if ref is not None else None)
    if processed_dir is not None:
        target = Path(processed_dir).expanduser().absolute()
    else:
        target = processed_root(Path(cache_dir).expanduser() if cache_dir else cache_root()).absolute() / key
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(target, whole_parent=processed_dir is None)
    if not force:
        manifest = read_manifest(target, key)
        if manifest is not None:
            if verbose:
                from mte.data.manifest import summary_line

                print(summary_line(manifest, cached=True), flush=True)
            return target
    # before the build (a refusal costs nothing) and again inside publish (the dir may change meanwhile)
    check_replaceable(target, key, overwrite=overwrite or processed_dir is None, config=config)
    from mte.data.build import build
    from mte.data.manifest import summary_line

    tmp = tmp_dir(target)
    ACTIVE_TMP.add(tmp)
    try:
        tmp.mkdir()
        manifest = build(scan, config, tmp, key, t0, ref)
        publish(tmp, target, key, force)
    finally:
        ACTIVE_TMP.discard(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(summary_line(manifest), flush=True)
    return target


def prepare_from_config(data_cfg: Mapping[str, Any], force: bool = False) -> Path:
    """Entry points' way in: a ``data`` config group (Hydra DictConfig or dict) → processed dir.

    Synthetic MARD (``data.synthetic`` set) is generated only when the raw dir does not exist and either is the
    synthetic data's default place (``data.synthetic.dir``, under the cache) or ``data.synthetic.generate`` is
    true; one printed line says so, so ``python -m mte.train`` works out of the box. Any other raw dir that does
    not exist — a typo — is a one-line :class:`MardLayoutError`, whatever the data group.
    ``data.overwrite`` lets an explicit ``data.processed_dir`` prepared with another config be replaced.
    """
    data = _plain(data_cfg)
    raw = data.get("raw_dir")
    if raw in (None, "", "???"):
        raise MardLayoutError(layout_message("(not set)", "data.raw_dir is not set"))
    raw_dir = Path(str(raw)).expanduser()
    config = PrepareConfig.from_mapping(data)
    config.validate()  # before generating anything
    synthetic = data.get("synthetic")
    if synthetic and not raw_dir.exists() and _may_generate(raw_dir, synthetic):
        from mte.data.synth import generate

        albums, seed = int(synthetic.get("albums", 1000)), int(synthetic.get("seed", 0))
        tracks, world = int(synthetic.get("tracks", 1)), int(synthetic.get("world", 0))
        print(f"prepare: generating synthetic MARD ({albums:,} albums, seed {seed}, world {world}, {tracks} track(s) "
              f"per album) in {raw_dir}", flush=True)
        generate(raw_dir, albums=albums, seed=seed, world=world, tracks_per_album=tracks,
                 quirks=synthetic.get("quirks", True))
    return prepare(
        raw_dir,
        config,
        processed_dir=data.get("processed_dir") or None,
        cache_dir=data.get("cache_dir") or None,
        force=force,
        overwrite=bool(data.get("overwrite", False)),
    )


def _may_generate(raw_dir: Path, synthetic: Mapping[str, Any]) -> bool:
    """Synthetic data goes only where it was asked for: its default place, or anywhere with ``generate: true``."""
    if synthetic.get("generate"):
        return True
    default = synthetic.get("dir")
    return bool(default) and Path(str(default)).expanduser().absolute() == raw_dir.absolute()


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A DictConfig → dict, treating a missing mandatory value (``???``) as unset instead of raising."""
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return dict(cfg)
    if isinstance(cfg, DictConfig):
        if OmegaConf.is_missing(cfg, "raw_dir"):
            return {"raw_dir": None}
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)
