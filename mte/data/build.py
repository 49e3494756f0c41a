"""The build behind :func:`mte.data.prepare.prepare`: parse, join, split, tokenise, write (manifest last).

Split from the entry function so each file stays readable: this module does the heavy work (polars, numpy and a
process pool for the descriptor files) and is imported only on a cache miss.

A descriptor-parsing worker that dies (the OOM killer, a segfault in a C extension) ends the build with
:class:`WorkerDied` — one line, exit 2 — instead of waiting forever for its results: the pool is a
``concurrent.futures.ProcessPoolExecutor``, which notices a dead worker, where ``multiprocessing.Pool`` replaces
it and loses its task.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mte.cli import UserError, available_cores
from mte.data.cache import MANIFEST, InputScan, json_text, listed_files, write_feature_matrix, write_json
from mte.data.mard import DESCRIPTOR_DIR, Ledger
from mte.data.names import SPLITS, TEXT_FIELDS
from mte.paths import atomic_write

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from mte.data.prepare import PrepareConfig, Reference

LOWLEVEL_ALL_MIN_SHARE = (99, 100)  # a lowlevel_all feature must be present in ≥ 99% of parsed documents
STD_FLOOR = 1e-6
POOL_MIN_FILES = 256  # below this a process pool costs more than it saves


class WorkerDied(RuntimeError, UserError):
    """A descriptor-parsing worker process died (killed, e.g. out of memory); the build was abandoned."""


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


def build(
    scan: InputScan, config: PrepareConfig, out: Path, key: str, t0: float, ref: Reference | None = None
) -> dict[str, Any]:
    """Parse, join, split, tokenise and write everything into ``out`` (manifest last); return the manifest.

    With ``ref``: the reference's feature names, vocabulary and statistics, and every paired album in ``test``.
    """
    from mte.data.manifest import LineCounts, counts_of, make_manifest, mention_counts
    from mte.data.mard import read_metadata, read_reviews

    stages = _Stages()
    ledger = Ledger()
    tasks = _descriptor_tasks(scan, config.features, ledger)
    workers = config.workers if config.workers > 0 else available_cores()
    with _parallel_parse(tasks, workers) as results:
        # The pool parses descriptors while this process reads the two JSON-lines files and splits the reviews
        # into words (neither needs the descriptors; the vocabulary does, through the splits, so it waits).
        meta_cols = read_metadata(scan.layout.metadata, ledger)
        review_cols = read_reviews(scan.layout.reviews, ledger, config.text_fields)
        lines = LineCounts(meta_cols.lines, review_cols.lines, meta_cols.amazon_id)
        meta, reviews = _metadata_frame(meta_cols), _reviews_frame(review_cols)
        del meta_cols, review_cols
        stages.done("read_json_lines")
        reviews = reviews.sort(["amazon_id", "reviewer_id", "unix_time", "line"], nulls_last=True)
        words = _review_words(reviews, config)
        stages.done("split_words")
        tracks, matrix, names, schema = _collect_tracks(results, config.features, ledger,
                                                        ref.names if ref else None)
        stages.done("descriptors")
    albums, reviews, tracks, matrix, splits = _join_and_split(meta, reviews, tracks, matrix, config,
                                                              all_test=ref is not None)
    stages.done("join_split")
    vocab_minimums: dict[str, int] = {}
    if ref is None:
        reviews, vocab, vocab_minimums = _tokenise(reviews, words, config, albums)
    else:
        from mte.data.text import Vocabulary

        vocab = Vocabulary.load(ref.root / "vocab")
        reviews = reviews.with_columns(vocab.encode_words(words).alias("tokens"))
    del words
    stages.done("vocab_encode")
    reviews, tracks = _final_columns(reviews, tracks)
    _write_tables(out, {"albums": albums, "reviews": reviews, "tracks": tracks})
    write_feature_matrix(out, matrix)
    if ref is None:
        mean, std, n_train_tracks = _feature_stats(matrix, tracks["split"].to_numpy() == "train")
        write_json(out / "features.json", {
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
    write_json(out / "splits.json", {name: splits[name] for name in SPLITS})
    stages.done("write")

    counts = counts_of(lines, scan, albums, reviews, tracks, ledger, splits)
    counts["vocab_size"] = vocab.size
    counts.update({f"vocab_min_{what}": n for what, n in vocab_minimums.items()})  # the resolved counts
    counts["feature_dim"] = len(names)
    manifest = make_manifest(scan, config, key, counts, ledger, t0, workers)
    manifest["split_mentions"] = mention_counts(albums, reviews, splits, config)
    if schema is not None:
        manifest["feature_schema"] = schema
    manifest["files"] = [*listed_files(out), MANIFEST]
    stages.done("account")
    manifest["stage_s"] = stages.seconds
    if ref is not None:
        manifest["reference"] = ref.record()
    if config.split == "published" and ref is None:  # reviews straddle splits on purpose: say so, and how much
        from mte.data.published_split import leak_record

        manifest["leaky"] = True
        manifest["leak"] = leak_record(tracks, splits)
    atomic_write(out / MANIFEST, lambda f: f.write(json_text(manifest).encode()))  # last: it marks the dir complete
    return manifest


def _join_and_split(
    meta: pl.DataFrame, reviews: pl.DataFrame, tracks: pl.DataFrame, matrix: np.ndarray, config: PrepareConfig,
    all_test: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, np.ndarray, dict[str, list[str]]]:
    """Album table, album- or artist-grouped splits, and reviews/tracks with their album's split, in their final order.

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
        artists = None
        if config.split == "artist":
            rows = albums.select("amazon_id", "artist_mbid", "artist").iter_rows()  # every album links keys
            artists = {aid: (mbid, name) for aid, mbid, name in rows}
        splits = make_splits(paired_ids, config.split, config.split_fractions, config.split_seed, artists)
    split_map = published_map if published else split_of_album(splits)
    split_df = pl.DataFrame(
        {"amazon_id": list(split_map), "split": list(split_map.values())},
        schema={"amazon_id": pl.String, "split": pl.String},
    )
    albums = (
        albums.join(split_df, on="amazon_id", how="left")
        .sort("amazon_id")
        .select("amazon_id", "artist", "artist_mbid", "title", "genre", "year", "n_reviews", "n_tracks", "split")
    )
    paired_df = pl.DataFrame({"amazon_id": paired_ids, "paired": [True] * len(paired_ids)},
                             schema={"amazon_id": pl.String, "paired": pl.Boolean})
    reviews = (  # already in final order (their words were split in it): keep it
        reviews.join(split_df, on="amazon_id", how="left", maintain_order="left")
        .join(paired_df, on="amazon_id", how="left", maintain_order="left")
        .with_columns(pl.col("paired").fill_null(False))
    )
    if published:
        tracks = published_tracks
    else:
        tracks = tracks.join(split_df, on="amazon_id", how="left").sort(["amazon_id", "mbid"])
    matrix = matrix[tracks["row"].to_numpy()]
    return albums, reviews, tracks, matrix, splits


def _final_columns(
    reviews: pl.DataFrame, tracks: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The contract's column order and row-number ids (a track's descriptor values are row ``track_idx`` of
    features.npy)."""
    import polars as pl

    reviews = reviews.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("review_idx"),
        "amazon_id", "reviewer_id", "rating", "unix_time", "summary", "text", "tokens", "split", "paired",
    )
    tracks = tracks.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("track_idx"),
        "amazon_id", "mbid", "file", "tag_artist", "tag_album", "tag_title", "tag_genre", "split",
    )
    return reviews, tracks


def _write_tables(out: Path, tables: Mapping[str, pl.DataFrame]) -> None:
    """Parquet with zstd; no timestamps are written, so equal frames give byte-identical files."""
    for name, df in tables.items():
        df.write_parquet(out / f"{name}.parquet", compression="zstd", statistics=True)


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
    can deadlock the child. Workers are forked from a server that pre-imported numpy and the parser. A worker
    that dies raises :class:`WorkerDied` from the iterator (see the module docstring).
    """
    from mte.data.mard import parse_descriptor_task

    if workers <= 1 or len(tasks) < POOL_MIN_FILES:
        yield map(parse_descriptor_task, tasks)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["numpy", "orjson", "mte.data.descriptors", "mte.data.mard"])
    chunksize = max(1, min(256, len(tasks) // (workers * 16)))
    # A child restores its parent's *default* start method; inside a joblib (loky) worker — hydra's joblib
    # launcher — that is "loky", which a fresh child cannot set, so every worker would die at birth. The pool
    # is ours: give it a default a child understands for as long as the pool lives.
    default = mp.get_start_method(allow_none=True)
    foreign = default is not None and default not in mp.get_all_start_methods()
    if foreign:
        mp.set_start_method(method, force=True)
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    try:
        yield _until_broken(pool.map(parse_descriptor_task, tasks, chunksize=chunksize), workers, len(tasks))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if foreign:
            mp.set_start_method(default, force=True)


def _until_broken(results: Iterator[tuple], workers: int, n_tasks: int) -> Iterator[tuple]:
    """``results``, with a dead worker turned into :class:`WorkerDied` (one line for the user)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        yield from results
    except BrokenProcessPool:
        raise WorkerDied(
            f"prepare: a descriptor-parsing worker process died ({workers} workers, {n_tasks:,} files), most "
            f"likely killed for lack of memory; nothing was written. Retry with fewer workers (data.workers=N) "
            f"or more memory"
        ) from None


def _collect_tracks(
    results: Iterator[tuple], feature_set: str, ledger: Ledger, fixed_names: Sequence[str] | None = None
) -> tuple[pl.DataFrame, np.ndarray, list[str], dict[str, Any] | None]:
    """Worker results → (tracks frame with a ``row`` index into the matrix, float32 matrix, feature names,
    lowlevel_all schema record for the manifest or None).

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
    record = None
    if feature_set == "lowlevel_all":
        names, keep, matrix, record = _fix_lowlevel_schema(vectors, schemas, cols["file"], ledger, fixed_names)
    else:
        names = feature_names(feature_set) or []
        keep = [i for i, v in enumerate(vectors) if _right_length(v, len(names), cols["file"][i], ledger)]
        matrix = np.stack([vectors[i] for i in keep]).astype(np.float32, copy=False) if keep else np.zeros(
            (0, len(names)), np.float32)
    schema = {k: pl.String for k in cols}
    frame = pl.DataFrame({k: [v[i] for i in keep] for k, v in cols.items()}, schema=schema)
    frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"))
    return frame, matrix, list(names), record


def _right_length(vec: Any, n: int, name: str, ledger: Ledger) -> bool:
    if vec.shape == (n,):
        return True
    ledger.skip(name, None, "bad_shape", f"feature vector has {vec.size} values, expected {n}", group=DESCRIPTOR_DIR)
    return False


def _fix_lowlevel_schema(
    payloads: list[Any], schemas: dict[str, tuple[str, ...]], files: list[str], ledger: Ledger,
    fixed_names: Sequence[str] | None = None,
) -> tuple[list[str], list[int], np.ndarray, dict[str, Any]]:
    """lowlevel_all: keep the names present in ≥ 99% of parsed documents (sorted), or ``fixed_names`` (a
    reference's, in its order) when given; a document lacking one of them is skipped as ``missing_stat``.
    Returns (names, indices of kept payloads, matrix, the manifest's ``feature_schema`` record: every name seen
    but left out of the schema, with how many documents had it — nothing is dropped without a record)."""
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
    chosen = set(names)
    record = {
        "rule": why,
        "documents": total,
        "names": len(names),
        "left_out": {name: {"documents": c, "coverage": round(c / total, 4)}
                     for name, c in sorted(presence.items()) if name not in chosen},
    }
    return names, keep, matrix, record


# ---------------------------------------------------------------------------------------------------- frames
def _metadata_frame(cols: Any) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(
        {"amazon_id": cols.amazon_id, "artist": cols.artist, "artist_mbid": cols.artist_mbid, "title": cols.title,
         "genre": cols.genre, "year": cols.year},
        schema={"amazon_id": pl.String, "artist": pl.String, "artist_mbid": pl.String, "title": pl.String,
                "genre": pl.String, "year": pl.Int32},
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


def _tokenise(
    reviews: pl.DataFrame, words: pl.Series, config: PrepareConfig, albums: pl.DataFrame
) -> tuple[pl.DataFrame, Any, dict[str, int]]:
    """Build the vocabulary on every review outside val/test and encode all reviews (``words`` row-aligned).

    Why not train-only: unpaired reviews (most of MARD) are never evaluated, and their words make the vocabulary
    richer; val/test reviews are left out so no held-out text shapes the vocabulary. ``albums`` (every album's
    artist MBID and name) gives each review its artist for ``vocab.min_artists``; the dir's album and artist counts
    cap ``min_albums`` / ``min_artists`` (``vocab.spread_cap``) and resolve them when given as shares; the
    resolved counts (``{"albums": n, "artists": n}``) are returned for the manifest.
    """
    from mte.data.text import Vocabulary, effective_minimum

    held_out = reviews["split"].is_in(["val", "test"]).fill_null(False)
    # the artist grouping only when the vocabulary asks for it (a union-find over every album of the dir)
    artists = _artist_keys(reviews["amazon_id"], albums) if config.vocab.min_artists != 1 else None
    totals = (reviews["amazon_id"].n_unique(), artists.n_unique() if artists is not None else 0)  # counts only
    vocab = Vocabulary.build_from_words(words.filter(~held_out), config.vocab,
                                        albums=reviews["amazon_id"].filter(~held_out),
                                        artists=artists.filter(~held_out) if artists is not None else None,
                                        totals=totals)
    tokens = vocab.encode_words(words)
    minimums = {"albums": effective_minimum(config.vocab.min_albums, totals[0], config.vocab.spread_cap),
                "artists": effective_minimum(config.vocab.min_artists, totals[1], config.vocab.spread_cap)}
    return reviews.with_columns(tokens.alias("tokens")), vocab, minimums


def _artist_keys(album_ids: pl.Series, albums: pl.DataFrame) -> pl.Series:
    """Each row's artist: the index of its album's group under :func:`mte.data.splits.artist_groups` (the grouping
    the artist split uses: a shared MBID or normalised name links albums); an album not in ``albums`` is its own."""
    import polars as pl

    from mte.data.splits import artist_groups

    rows = albums.select("amazon_id", "artist_mbid", "artist").iter_rows()
    groups = artist_groups({aid: (mbid, name) for aid, mbid, name in rows})
    group_of = pl.DataFrame(
        {"amazon_id": [aid for group in groups for aid in group],
         "artist": [i for i, group in enumerate(groups) for _ in group]},
        schema={"amazon_id": pl.String, "artist": pl.Int64},
    )
    rows = album_ids.to_frame("amazon_id").join(group_of, on="amazon_id", how="left", maintain_order="left")
    return rows.select(pl.coalesce(pl.col("artist").cast(pl.String), "album:" + pl.col("amazon_id")))["artist"]


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


