"""Raw MARD dir → processed dir (Parquet tables, splits, vocabulary, feature statistics, manifest).

Everything downstream (training, evaluation, search) reads the processed dir, never the raw files, so this step
owns three promises:

* **Accounted for.** Every input line and file ends up either in a table or in ``manifest.json`` with a reason
  (see :mod:`mte.data.mard`); a one-line summary is printed.
* **Cached and reproducible.** The output dir is keyed by a fingerprint of the inputs (relative path, size and
  mtime of every input file), the prepare config and :data:`FORMAT_VERSION`. A second run with the same inputs and
  config finds the dir and returns in well under a second — that path imports neither polars nor numpy. The same
  inputs and config give byte-identical Parquet files (stable sort orders, no timestamps inside).
* **Atomic.** The dir is built as ``<target>.tmp-<pid>-<random>`` and renamed into place after ``manifest.json``
  (written last) is complete; a dir without a valid manifest is never trusted and stale tmp dirs are removed.

``prepare(raw_dir, reference=<processed dir>)`` prepares *another* raw dir for a model trained on the reference:
it reuses the reference's vocabulary, feature names and train-split statistics (copied verbatim) and its feature
set and text settings, and puts every paired album in ``test`` — so a trained model can be evaluated on data it
never saw, with its inputs encoded exactly as in training (see :class:`Reference`).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mte import __version__
from mte.data.mard import (
    DESCRIPTOR_DIR,
    METADATA_FILE,
    REVIEWS_FILE,
    DirEntry,
    Ledger,
    MardLayout,
    MardLayoutError,
    layout_message,
    list_descriptor_dir,
)
from mte.data.text import VocabConfig
from mte.paths import cache_root, processed_root

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

__all__ = [
    "FORMAT_VERSION",
    "MardLayoutError",
    "PrepareConfig",
    "Reference",
    "VocabConfig",
    "cache_key",
    "load_reference",
    "prepare",
    "prepare_from_config",
]

# Bump when the processed format or the way it is computed changes: old cache dirs then stop matching.
FORMAT_VERSION = 1
FEATURE_SETS = ("seed169", "seed369", "lowlevel_all")  # == mte.data.descriptors.FEATURE_SETS (a test checks)
SPLIT_METHODS = ("album", "paper", "published")  # published: mte/data/published_split.py
TEXT_FIELDS = {"summary": "summary", "reviewText": "text"}  # raw MARD key → reviews.parquet column
MANIFEST = "manifest.json"
OUTPUT_NAMES = (
    "albums.parquet",
    "reviews.parquet",
    "tracks.parquet",
    "features.json",
    "splits.json",
    "vocab",
    MANIFEST,
)
LOWLEVEL_ALL_MIN_SHARE = (99, 100)  # a lowlevel_all feature must be present in ≥ 99% of parsed documents
STD_FLOOR = 1e-6
_POOL_MIN_FILES = 256  # below this a process pool costs more than it saves
_ACTIVE_TMP: set[Path] = set()  # tmp dirs this process is building right now (never cleaned as stale)


# ------------------------------------------------------------------------------------------------------ config
@dataclass
class PrepareConfig:
    """Everything that changes the processed dir (except ``workers``, which only changes how fast it is built)."""

    features: str = "seed369"
    split: str = "album"
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
        """Fail early with a clear message (a typo in a config key should not cost a 40 s build)."""
        from mte.data.splits import normalise_fractions

        if self.features not in FEATURE_SETS:
            raise ValueError(f"unknown data.features {self.features!r}; choose one of {', '.join(FEATURE_SETS)}")
        if self.split not in SPLIT_METHODS:
            raise ValueError(f"unknown data.split {self.split!r}; choose one of {', '.join(SPLIT_METHODS)}")
        normalise_fractions(self.split_fractions)
        unknown = [f for f in self.text_fields if f not in TEXT_FIELDS]
        if unknown or not self.text_fields:
            raise ValueError(f"data.text_fields must be a non-empty subset of {list(TEXT_FIELDS)}, got "
                             f"{list(self.text_fields)}")
        if self.vocab.size < 2 or self.vocab.max_length < 0 or self.vocab.min_freq < 0:
            raise ValueError(f"bad data.vocab {asdict(self.vocab)}: size >= 2, max_length >= 0, min_freq >= 0")

    def key_dict(self) -> dict[str, Any]:
        """The config as it enters the cache key: JSON-able, ``workers`` left out."""
        d = asdict(self)
        d.pop("workers")
        d["split_fractions"] = list(self.split_fractions)
        d["text_fields"] = list(self.text_fields)
        return d


# ------------------------------------------------------------------------------------------- fingerprint / key
@dataclass
class InputScan:
    """The raw dir listed once: used for the fingerprint and, on a cache miss, as the list of files to parse."""

    layout: MardLayout
    entries: list[DirEntry]
    fingerprint: str
    inputs: dict[str, Any]


def scan_inputs(layout: MardLayout) -> InputScan:
    """Fingerprint = sha256 over sorted (relative path, size, mtime_ns) of both JSON files and every descriptor."""
    rows = []
    inputs: dict[str, Any] = {}
    for name, path in ((METADATA_FILE, layout.metadata), (REVIEWS_FILE, layout.reviews)):
        st = path.stat()
        rows.append(f"{name}\0{st.st_size}\0{st.st_mtime_ns}")
        inputs[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    entries = list_descriptor_dir(layout.descriptors)
    rows.extend(f"{DESCRIPTOR_DIR}/{e.name}\0{e.size}\0{e.mtime_ns}" for e in entries)
    digest = hashlib.sha256("\n".join(rows).encode("utf-8", "surrogateescape")).hexdigest()
    inputs[DESCRIPTOR_DIR] = {"entries": len(entries), "size": sum(max(e.size, 0) for e in entries)}
    return InputScan(layout, entries, digest, inputs)


def cache_key(fingerprint: str, config: PrepareConfig, reference: str | None = None) -> str:
    """Short hash of (input fingerprint, prepare config, FORMAT_VERSION[, reference digest]): the processed dir's
    name in the cache. The reference enters only when given, so keys of ordinary prepares never change."""
    payload: dict[str, Any] = {"format_version": FORMAT_VERSION, "fingerprint": fingerprint,
                               "config": config.key_dict()}
    if reference is not None:
        payload["reference"] = reference
    blob = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
    manifest = read_manifest(root)
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
) -> Path:
    """Build (or reuse) the processed dir for ``raw_dir`` and return its path.

    ``processed_dir`` places the output explicitly; otherwise it goes to ``<cache_dir>/processed/<key>``
    (``cache_dir`` defaults to :func:`mte.paths.cache_root`). ``force`` rebuilds even when a matching dir exists.
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
    _remove_stale_tmp(target, whole_parent=processed_dir is None)
    if not force:
        manifest = read_manifest(target, key)
        if manifest is not None:
            if verbose:
                print(summary_line(manifest, cached=True), flush=True)
            return target
    _check_replaceable(target)
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    _ACTIVE_TMP.add(tmp)
    try:
        tmp.mkdir()
        manifest = _build(scan, config, tmp, key, t0, ref)
        _publish(tmp, target, key, force)
    finally:
        _ACTIVE_TMP.discard(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(summary_line(manifest), flush=True)
    return target


def prepare_from_config(data_cfg: Mapping[str, Any], force: bool = False) -> Path:
    """Entry points' way in: a ``data`` config group (Hydra DictConfig or dict) → processed dir.

    When ``data.synthetic`` is set and ``data.raw_dir`` does not exist yet, the synthetic MARD is generated
    there first (one printed line says so), so ``python -m mte.train`` works out of the box.
    """
    data = _plain(data_cfg)
    raw = data.get("raw_dir")
    if raw in (None, "", "???"):
        raise MardLayoutError(layout_message("(not set)", "data.raw_dir is not set"))
    raw_dir = Path(str(raw)).expanduser()
    synthetic = data.get("synthetic")
    if synthetic and not raw_dir.exists():
        from mte.data.synth import generate

        albums, seed = int(synthetic.get("albums", 1000)), int(synthetic.get("seed", 0))
        tracks = int(synthetic.get("tracks", 1))
        print(f"prepare: generating synthetic MARD ({albums:,} albums, seed {seed}, {tracks} track(s) per album) "
              f"in {raw_dir}", flush=True)
        generate(raw_dir, albums=albums, seed=seed, tracks_per_album=tracks, quirks=synthetic.get("quirks", True))
    return prepare(
        raw_dir,
        PrepareConfig.from_mapping(data),
        processed_dir=data.get("processed_dir") or None,
        cache_dir=data.get("cache_dir") or None,
        force=force,
    )


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


# ------------------------------------------------------------------------------------------ cache / atomicity
def read_manifest(target: Path, key: str | None = None) -> dict[str, Any] | None:
    """The manifest of a *complete* processed dir (matching ``key`` when given), else None."""
    try:
        manifest = json.loads((target / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        return None
    if key is not None and manifest.get("cache_key") != key:
        return None
    if not all((target / name).exists() for name in OUTPUT_NAMES):
        return None
    return manifest


def _check_replaceable(target: Path) -> None:
    """Refuse to replace something that is not (a remnant of) a processed dir: it may be the user's data."""
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir() or target.is_symlink():
        raise FileExistsError(f"refusing to replace {target}: it is not a directory (choose another processed_dir)")
    names = {p.name for p in target.iterdir()}
    if names and MANIFEST not in names and not names <= set(OUTPUT_NAMES):
        raise FileExistsError(f"refusing to replace {target}: it is not empty and not a processed dir "
                              f"(no {MANIFEST}); choose another data.processed_dir")


def _publish(tmp: Path, target: Path, key: str, force: bool) -> None:
    """Rename the finished tmp dir into place; an older dir there is swapped out and deleted afterwards."""
    try:
        os.replace(tmp, target)  # works when target is absent or an empty dir
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if not force and read_manifest(target, key) is not None:
        return  # a concurrent prepare published the same result first; keep it (readers may be using it)
    old = target.parent / f"{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale_tmp(target: Path, whole_parent: bool) -> None:
    """Delete ``*.tmp-<pid>-*`` / ``*.old-<pid>-*`` leftovers of dead (or this process's finished) builds."""
    pattern = "*" if whole_parent else glob.escape(target.name)
    for kind in ("tmp", "old"):
        for path in target.parent.glob(f"{pattern}.{kind}-*"):
            pid_text = path.name.rsplit(f".{kind}-", 1)[-1].split("-", 1)[0]
            if not pid_text.isdigit() or path in _ACTIVE_TMP:
                continue
            pid = int(pid_text)
            if pid != os.getpid() and _pid_alive(pid):
                continue  # another live prepare is building it
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# ----------------------------------------------------------------------------------------------------- build
class _Stages:
    """Wall time per build stage, for the manifest (``stage_s``) and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 3)
        self._t = now


def _build(
    scan: InputScan, config: PrepareConfig, out: Path, key: str, t0: float, ref: Reference | None = None
) -> dict[str, Any]:
    """Parse, join, split, tokenise and write everything into ``out`` (manifest last); return the manifest.

    With ``ref``: the reference's feature names, vocabulary and statistics, and every paired album in ``test``.
    """
    from mte.data.mard import read_metadata, read_reviews

    stages = _Stages()
    ledger = Ledger()
    tasks = _descriptor_tasks(scan, config.features, ledger)
    workers = config.workers if config.workers > 0 else _available_cpus()
    with _parallel_parse(tasks, workers) as results:
        # The pool parses descriptors while this process reads the two JSON-lines files and splits the reviews
        # into words (neither needs the descriptors; the vocabulary does, through the splits, so it waits).
        meta_cols = read_metadata(scan.layout.metadata, ledger)
        review_cols = read_reviews(scan.layout.reviews, ledger)
        lines = _LineCounts(meta_cols.lines, review_cols.lines, meta_cols.amazon_id)
        meta, reviews = _metadata_frame(meta_cols), _reviews_frame(review_cols)
        del meta_cols, review_cols
        stages.done("read_json_lines")
        reviews = reviews.sort(["amazon_id", "reviewer_id", "unix_time", "line"], nulls_last=True)
        words = _review_words(reviews, config)
        stages.done("split_words")
        tracks, matrix, names = _collect_tracks(results, config.features, ledger, ref.names if ref else None)
        stages.done("descriptors")
    albums, reviews, tracks, matrix, splits = _join_and_split(meta, reviews, tracks, matrix, config,
                                                              all_test=ref is not None)
    stages.done("join_split")
    if ref is None:
        reviews, vocab = _tokenise(reviews, words, config)
    else:
        from mte.data.text import Vocabulary

        vocab = Vocabulary.load(ref.root / "vocab")
        reviews = reviews.with_columns(vocab.encode_words(words).alias("tokens"))
    del words
    stages.done("vocab_encode")
    reviews, tracks = _final_columns(reviews, tracks, matrix)
    _write_tables(out, {"albums": albums, "reviews": reviews, "tracks": tracks})
    if ref is None:
        mean, std, n_train_tracks = _feature_stats(matrix, tracks["split"].to_numpy() == "train")
        _write_json(out / "features.json", {
            "feature_set": config.features,
            "names": names,
            "mean": [float(x) for x in mean],
            "std": [float(x) for x in std],
            "n_train_tracks": n_train_tracks,
        })
        vocab.save(out / "vocab")
    else:  # verbatim copies: the model must see exactly the ids and scaling it was trained with
        shutil.copyfile(ref.root / "features.json", out / "features.json")
        shutil.copytree(ref.root / "vocab", out / "vocab")
    _write_json(out / "splits.json", {name: splits[name] for name in ("train", "val", "test")})
    stages.done("write")

    counts = _counts(lines, scan, albums, reviews, tracks, ledger, splits)
    counts["vocab_size"] = vocab.size
    counts["feature_dim"] = len(names)
    manifest = _manifest(scan, config, key, counts, ledger, t0, workers)
    manifest["stage_s"] = stages.seconds
    if ref is not None:
        manifest["reference"] = ref.record()
    if config.split == "published" and ref is None:  # reviews straddle splits on purpose: say so, and how much
        from mte.data.published_split import leak_record

        manifest["leaky"] = True
        manifest["leak"] = leak_record(tracks, splits)
    part = out / (MANIFEST + ".part")
    _write_json(part, manifest)
    os.replace(part, out / MANIFEST)  # last: its presence marks the dir complete
    return manifest


def _join_and_split(
    meta: pl.DataFrame, reviews: pl.DataFrame, tracks: pl.DataFrame, matrix: np.ndarray, config: PrepareConfig,
    all_test: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, np.ndarray, dict[str, list[str]]]:
    """Album table, album-grouped splits, and reviews/tracks with their album's split, in their final order.

    ``all_test``: every paired album in ``test`` (evaluation data prepared against a reference)."""
    import polars as pl

    from mte.data.splits import make_splits, split_of_album

    albums = _albums_frame(meta, reviews, tracks)
    paired_ids = albums.filter(pl.col("paired"))["amazon_id"].to_list()
    published = config.split == "published" and not all_test  # file-level, leaky: mte/data/published_split.py
    if all_test:
        splits = {"train": [], "val": [], "test": sorted(paired_ids)}
    elif published:
        from mte.data.published_split import apply_published_split

        splits, published_map, published_tracks = apply_published_split(tracks, paired_ids, config.split_seed)
    else:
        splits = make_splits(paired_ids, config.split, config.split_fractions, config.split_seed)
    split_map = published_map if published else split_of_album(splits)
    split_df = pl.DataFrame(
        {"amazon_id": list(split_map), "split": list(split_map.values())},
        schema={"amazon_id": pl.String, "split": pl.String},
    )
    albums = (
        albums.join(split_df, on="amazon_id", how="left")
        .sort("amazon_id")
        .select("amazon_id", "artist", "title", "genre", "year", "n_reviews", "n_tracks", "split")
    )
    paired_df = pl.DataFrame({"amazon_id": paired_ids, "paired": [True] * len(paired_ids)},
                             schema={"amazon_id": pl.String, "paired": pl.Boolean})
    reviews = (  # already in final order (their words were split in it): keep it
        reviews.join(split_df, on="amazon_id", how="left", maintain_order="left")
        .join(paired_df, on="amazon_id", how="left", maintain_order="left")
        .with_columns(pl.col("paired").fill_null(False))
    )
    tracks = published_tracks if published else tracks.join(split_df, on="amazon_id", how="left").sort(
        ["amazon_id", "mbid"])
    matrix = matrix[tracks["row"].to_numpy()]
    return albums, reviews, tracks, matrix, splits


def _final_columns(
    reviews: pl.DataFrame, tracks: pl.DataFrame, matrix: np.ndarray
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The contract's column order, row-number ids, and the features as a fixed-size Array column."""
    import polars as pl

    reviews = reviews.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("review_idx"),
        "amazon_id", "reviewer_id", "rating", "unix_time", "summary", "text", "tokens", "split", "paired",
    )
    tracks = tracks.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("track_idx"),
        "amazon_id", "mbid", "file", "tag_artist", "tag_album", "tag_title", "tag_genre", "split",
    ).with_columns(pl.Series("features", matrix, dtype=pl.Array(pl.Float32, matrix.shape[1])))
    return reviews, tracks


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _write_tables(out: Path, tables: Mapping[str, pl.DataFrame]) -> None:
    """Parquet with zstd; no timestamps are written, so equal frames give byte-identical files."""
    for name, df in tables.items():
        df.write_parquet(out / f"{name}.parquet", compression="zstd", statistics=True)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- descriptors
def _descriptor_tasks(scan: InputScan, feature_set: str, ledger: Ledger) -> list[tuple]:
    """Work list for the parser pool; bad names, non-files and repeated (album, recording) keys are skipped here."""
    from mte.data.descriptors import DescriptorError, parse_track_filename

    run_id = secrets.randbits(48)
    base = str(scan.layout.descriptors)
    tasks = []
    seen: set[tuple[str, str]] = set()
    for e in scan.entries:
        if not e.is_file:
            ledger.skip(e.name, None, "not_a_file", "a directory, link or unreadable entry", group=DESCRIPTOR_DIR)
            continue
        try:
            aid, mbid = parse_track_filename(e.name)
        except DescriptorError as err:
            ledger.skip(e.name, None, err.reason, err.detail, group=DESCRIPTOR_DIR)
            continue
        if (aid, mbid) in seen:
            ledger.skip(e.name, None, "duplicate_track", f"{aid}_{mbid} seen in another file name",
                        group=DESCRIPTOR_DIR)
            continue
        seen.add((aid, mbid))
        tasks.append((os.path.join(base, e.name), e.name, aid, mbid, feature_set, run_id))
    return tasks


@contextmanager
def _parallel_parse(tasks: Sequence[tuple], workers: int) -> Iterator[Iterator[tuple]]:
    """Results of :func:`mte.data.mard.parse_descriptor_task` in task order, from a process pool when worth it.

    forkserver, not fork: the parent may already run polars/tokenizers threads, and forking a threaded process
    can deadlock the child. Workers are forked from a server that pre-imported numpy and the parser.
    """
    from mte.data.mard import parse_descriptor_task

    if workers <= 1 or len(tasks) < _POOL_MIN_FILES:
        yield map(parse_descriptor_task, tasks)
        return
    import multiprocessing as mp

    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["numpy", "orjson", "mte.data.descriptors", "mte.data.mard"])
    chunksize = max(1, min(256, len(tasks) // (workers * 16)))
    with ctx.Pool(workers) as pool:
        yield pool.imap(parse_descriptor_task, tasks, chunksize=chunksize)


def _collect_tracks(
    results: Iterator[tuple], feature_set: str, ledger: Ledger, fixed_names: Sequence[str] | None = None
) -> tuple[pl.DataFrame, np.ndarray, list[str]]:
    """Worker results → (tracks frame with a ``row`` index into the matrix, float32 matrix, feature names).

    ``fixed_names`` (a reference's): the lowlevel_all schema is taken from it instead of from these documents."""
    import numpy as np
    import polars as pl

    from mte.data.descriptors import feature_names

    cols: dict[str, list] = {k: [] for k in ("amazon_id", "mbid", "file", "tag_artist", "tag_album", "tag_title",
                                               "tag_genre")}
    vectors: list[Any] = []
    schemas: dict[str, tuple[str, ...]] = {}
    for res in results:
        if res[0] == "err":
            _, name, reason, detail = res
            ledger.skip(name, None, reason, detail, group=DESCRIPTOR_DIR)
            continue
        _, name, aid, mbid, tags, payload = res
        if feature_set == "lowlevel_all":
            schema_id, schema_names, _vec = payload
            if schema_names is not None:
                schemas[schema_id] = schema_names
        cols["amazon_id"].append(aid)
        cols["mbid"].append(mbid)
        cols["file"].append(name)
        for k, v in zip(("tag_artist", "tag_album", "tag_title", "tag_genre"), tags, strict=True):
            cols[k].append(v)
        vectors.append(payload)
    if feature_set == "lowlevel_all":
        names, keep, matrix = _fix_lowlevel_schema(vectors, schemas, cols["file"], ledger, fixed_names)
    else:
        names = feature_names(feature_set) or []
        keep = [i for i, v in enumerate(vectors) if _right_length(v, len(names), cols["file"][i], ledger)]
        matrix = np.stack([vectors[i] for i in keep]).astype(np.float32, copy=False) if keep else np.zeros(
            (0, len(names)), np.float32)
    schema = {k: pl.String for k in cols}
    frame = pl.DataFrame({k: [v[i] for i in keep] for k, v in cols.items()}, schema=schema)
    frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"))
    return frame, matrix, list(names)


def _right_length(vec: Any, n: int, name: str, ledger: Ledger) -> bool:
    if vec.shape == (n,):
        return True
    ledger.skip(name, None, "bad_shape", f"feature vector has {vec.size} values, expected {n}", group=DESCRIPTOR_DIR)
    return False


def _fix_lowlevel_schema(
    payloads: list[Any], schemas: dict[str, tuple[str, ...]], files: list[str], ledger: Ledger,
    fixed_names: Sequence[str] | None = None,
) -> tuple[list[str], list[int], np.ndarray]:
    """lowlevel_all: keep the names present in ≥ 99% of parsed documents (sorted), or ``fixed_names`` (a
    reference's, in its order) when given; a document lacking one of them is skipped as ``missing_stat``.
    Returns (names, indices of kept payloads, matrix)."""
    from collections import Counter

    import numpy as np

    per_schema = Counter(p[0] for p in payloads)
    presence: Counter[str] = Counter()
    for schema_id, n in per_schema.items():
        for name in schemas.get(schema_id, ()):
            presence[name] += n
    total = len(payloads)
    num, den = LOWLEVEL_ALL_MIN_SHARE
    names = (list(fixed_names) if fixed_names is not None
             else sorted(name for name, c in presence.items() if c * den >= num * total))
    why = "required by the reference processed dir" if fixed_names is not None else "present in >= 99% of documents"
    index: dict[str, np.ndarray | tuple[str, str]] = {}
    for schema_id in per_schema:
        doc_names = schemas.get(schema_id)
        if doc_names is None:  # cannot happen with ordered results; guarded so it could never crash a run
            index[schema_id] = ("unexpected_error", "feature names never received from the parser")
            continue
        pos = {n: i for i, n in enumerate(doc_names)}
        missing = next((n for n in names if n not in pos), None)
        index[schema_id] = (
            ("missing_stat", f"{missing} absent ({why})") if missing
            else np.array([pos[n] for n in names], dtype=np.int64)
        )
    keep: list[int] = []
    rows = []
    for i, (schema_id, _names, vec) in enumerate(payloads):
        idx = index[schema_id]
        if isinstance(idx, tuple):
            ledger.skip(files[i], None, idx[0], idx[1], group=DESCRIPTOR_DIR)
            continue
        keep.append(i)
        rows.append(vec[idx])
    matrix = np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, len(names)), np.float32)
    return names, keep, matrix


# ---------------------------------------------------------------------------------------------------- frames
def _metadata_frame(cols: Any) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(
        {"amazon_id": cols.amazon_id, "artist": cols.artist, "title": cols.title, "genre": cols.genre,
         "year": cols.year},
        schema={"amazon_id": pl.String, "artist": pl.String, "title": pl.String, "genre": pl.String,
                "year": pl.Int32},
    )


def _reviews_frame(cols: Any) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(
        {"line": cols.line, "amazon_id": cols.amazon_id, "reviewer_id": cols.reviewer_id, "rating": cols.rating,
         "unix_time": cols.unix_time, "summary": cols.summary, "text": cols.text},
        schema={"line": pl.Int64, "amazon_id": pl.String, "reviewer_id": pl.String, "rating": pl.Float32,
                "unix_time": pl.Int64, "summary": pl.String, "text": pl.String},
    )


def _albums_frame(meta: pl.DataFrame, reviews: pl.DataFrame, tracks: pl.DataFrame) -> pl.DataFrame:
    """Every album id seen anywhere (metadata, reviews, descriptors), with counts and the genre fallback."""
    import polars as pl

    ids = pl.concat([meta["amazon_id"], reviews["amazon_id"], tracks["amazon_id"]]).unique().sort()
    n_reviews = reviews.group_by("amazon_id").agg(pl.len().cast(pl.UInt32).alias("n_reviews"))
    n_tracks = tracks.group_by("amazon_id").agg(pl.len().cast(pl.UInt32).alias("n_tracks"))
    # Descriptor genre tag of the album's first track (by mbid) that has one: the fallback for 'root-genre'.
    tag_genre = (
        tracks.filter(pl.col("tag_genre").is_not_null())
        .sort(["amazon_id", "mbid"])
        .group_by("amazon_id")
        .agg(pl.col("tag_genre").first())
    )
    return (
        ids.to_frame("amazon_id")
        .join(meta.with_columns(pl.lit(True).alias("has_metadata")), on="amazon_id", how="left")
        .join(n_reviews, on="amazon_id", how="left")
        .join(n_tracks, on="amazon_id", how="left")
        .join(tag_genre, on="amazon_id", how="left")
        .with_columns(
            pl.col("n_reviews").fill_null(0),
            pl.col("n_tracks").fill_null(0),
            pl.coalesce("genre", "tag_genre").alias("genre"),
            pl.col("has_metadata").fill_null(False),
        )
        .with_columns(((pl.col("n_reviews") > 0) & (pl.col("n_tracks") > 0)).alias("paired"))
        .sort("amazon_id")
    )


# ------------------------------------------------------------------------------------------------ text/stats
def _review_words(reviews: pl.DataFrame, config: PrepareConfig) -> pl.Series:
    """Each review's words (configured text fields joined by a newline), as the vocabulary's tokenizer splits them."""
    import polars as pl

    from mte.data.text import split_words, word_splitter

    columns = [TEXT_FIELDS[f] for f in config.text_fields]
    texts = reviews.select(pl.concat_str([pl.col(c) for c in columns], separator="\n").alias("t"))["t"]
    return split_words(texts, word_splitter(config.vocab.lowercase))


def _tokenise(reviews: pl.DataFrame, words: pl.Series, config: PrepareConfig) -> tuple[pl.DataFrame, Any]:
    """Build the vocabulary on every review outside val/test and encode all reviews (``words`` row-aligned).

    Why not train-only: unpaired reviews (most of MARD) are never evaluated, and their words make the vocabulary
    richer; val/test reviews are left out so no held-out text shapes the vocabulary.
    """
    from mte.data.text import Vocabulary

    held_out = reviews["split"].is_in(["val", "test"]).fill_null(False)
    vocab = Vocabulary.build_from_words(words.filter(~held_out), config.vocab)
    tokens = vocab.encode_words(words)
    return reviews.with_columns(tokens.alias("tokens")), vocab


def _feature_stats(matrix: np.ndarray, train_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and (population) std over TRAIN tracks only, in float64; std < 1e-6 (constant feature) → 1.0.

    Train only, because statistics taken over val/test would leak held-out audio into the model's input scaling.
    """
    import numpy as np

    d = matrix.shape[1]
    if not train_mask.any():
        return np.zeros(d), np.ones(d), 0
    x = matrix[train_mask].astype(np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[~(std >= STD_FLOOR)] = 1.0
    return mean, std, int(train_mask.sum())


# -------------------------------------------------------------------------------------------------- manifest
@dataclass
class _LineCounts:
    metadata_lines: int
    review_lines: int
    metadata_ids: list[str]


def _counts(
    lines: _LineCounts,
    scan: InputScan,
    albums: pl.DataFrame,
    reviews: pl.DataFrame,
    tracks: pl.DataFrame,
    ledger: Ledger,
    splits: dict[str, list[str]],
) -> dict[str, int]:
    """Counts at each stage; the identities tests rely on: tracks + skipped_descriptors == descriptor_files,
    reviews + skipped review lines == review_lines, reviews_paired + reviews_unpaired == reviews."""
    import polars as pl

    meta_ids = pl.Series(lines.metadata_ids, dtype=pl.String)
    counts = {
        "metadata_lines": lines.metadata_lines,
        "metadata_albums": len(meta_ids),
        "review_lines": lines.review_lines,
        "reviews": len(reviews),
        "reviews_paired": int(reviews["paired"].sum()),
        "reviews_unpaired": int((~reviews["paired"]).sum()),
        "reviews_without_metadata": int((~reviews["amazon_id"].is_in(meta_ids.implode())).sum()),
        "descriptor_files": len(scan.entries),
        "tracks": len(tracks),
        "skipped_descriptors": ledger.n_skipped(DESCRIPTOR_DIR),
        "tracks_paired": int(tracks["split"].is_not_null().sum()),
        "tracks_unpaired": int(tracks["split"].is_null().sum()),
        "tracks_without_metadata": int((~tracks["amazon_id"].is_in(meta_ids.implode())).sum()),
        "tracks_without_genre_tag": int(tracks["tag_genre"].is_null().sum()),
        "albums": len(albums),
        "albums_with_metadata": len(meta_ids),
        "albums_without_metadata": len(albums) - len(meta_ids),
        "albums_with_reviews": int((albums["n_reviews"] > 0).sum()),
        "albums_with_tracks": int((albums["n_tracks"] > 0).sum()),
        "albums_paired": int(albums["split"].is_not_null().sum()),
        "albums_reviews_only": int(((albums["n_reviews"] > 0) & (albums["n_tracks"] == 0)).sum()),
        "albums_tracks_only": int(((albums["n_tracks"] > 0) & (albums["n_reviews"] == 0)).sum()),
        "reviews_empty_tokens": int((reviews["tokens"].list.len() == 0).sum()),
    }
    for name in ("train", "val", "test"):
        ids = pl.Series(splits[name], dtype=pl.String)
        counts[f"{name}_albums"] = len(ids)
        counts[f"{name}_reviews"] = int(reviews["amazon_id"].is_in(ids.implode()).sum())
        counts[f"{name}_tracks"] = int(tracks["amazon_id"].is_in(ids.implode()).sum())
    return counts


def _manifest(
    scan: InputScan, config: PrepareConfig, key: str, counts: dict[str, int], ledger: Ledger, t0: float,
    workers: int,
) -> dict[str, Any]:
    def flat(counter: Mapping[tuple[str, str], int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, reason), n in sorted(counter.items()):
            out[reason] = out.get(reason, 0) + n
        return dict(sorted(out.items()))

    def by_group(counter: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (group, reason), n in sorted(counter.items()):
            out.setdefault(group, {})[reason] = n
        return out

    return {
        "format_version": FORMAT_VERSION,
        "mte_version": __version__,
        "raw_dir": str(scan.layout.root),
        "config": {**config.key_dict(), "workers": workers},
        "cache_key": key,
        "fingerprint": scan.fingerprint,
        "inputs": scan.inputs,
        "counts": counts,
        "skipped": flat(ledger.skipped),
        "repaired": flat(ledger.repaired),
        "skipped_by_source": by_group(ledger.skipped),
        "repaired_by_source": by_group(ledger.repaired),
        "skipped_items": ledger.items,
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }


def _reasons(reasons: Mapping[str, int]) -> str:
    return ", ".join(f"{r}: {k:,}" for r, k in reasons.items())


def summary_line(manifest: Mapping[str, Any], cached: bool = False) -> str:
    """The one printed line: sizes, then what was skipped/repaired per input, then time (or 'cached')."""
    c = manifest.get("counts", {})
    parts = [
        f"prepare: {c.get('albums', 0):,} albums",
        f"{c.get('reviews', 0):,} reviews ({c.get('reviews_paired', 0):,} paired)",
        f"{c.get('tracks', 0):,} tracks",
        f"{c.get('albums_paired', 0):,} paired albums ({c.get('train_albums', 0):,}/{c.get('val_albums', 0):,}/"
        f"{c.get('test_albums', 0):,} train/val/test)",
    ]
    labels = {DESCRIPTOR_DIR: ("descriptor", "descriptors"), REVIEWS_FILE: ("review line", "review lines"),
              METADATA_FILE: ("metadata line", "metadata lines")}
    for group, reasons in manifest.get("skipped_by_source", {}).items():
        n = sum(reasons.values())
        one, many = labels.get(group, (group, group))
        parts.append(f"skipped {n:,} {one if n == 1 else many} ({_reasons(reasons)})")
    for group, reasons in manifest.get("repaired_by_source", {}).items():
        # no total: one line can need several repairs
        parts.append(f"repaired {labels.get(group, (group, group))[1]} ({_reasons(reasons)})")
    parts.append("cached" if cached else f"{manifest.get('elapsed_s', 0):.1f} s")
    return " · ".join(parts)
