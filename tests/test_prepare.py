"""prepare: the processed dir's format, splits, determinism, train-only statistics, caching, atomicity, CLI.

Raw dirs are real MARD-format dirs written by the synthetic generator (small, quirks on)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest

import mte.data.build as build
import mte.data.cache as cache
from mte.data.cache import ReplaceRefused
from mte.data.descriptors import feature_names
from mte.data.mard import MardLayoutError
from mte.data.names import SPLITS
from mte.data.prepare import (
    PrepareConfig,
    PrepareConfigError,
    VocabConfig,
    cache_key,
    prepare,
    prepare_from_config,
)
from mte.data.processed import ProcessedData, ProcessedDirError
from mte.data.synth import generate

REPO = Path(__file__).resolve().parents[1]
PARQUETS = ("albums.parquet", "reviews.parquet", "tracks.parquet")
OUTPUT_FILES = (*PARQUETS, "features.json", "splits.json", "vocab/tokenizer.json", "vocab/vocab_config.json")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 synthetic albums, quirks on (treat as read-only)."""
    out = tmp_path_factory.mktemp("prep") / "raw"
    generate(out, albums=60, seed=1, quirks=True, workers=1)
    return out


@pytest.fixture(scope="module")
def processed(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(raw, PrepareConfig(workers=1), processed_dir=tmp_path_factory.mktemp("out") / "p", verbose=False)


@pytest.fixture(scope="module")
def data(processed: Path) -> ProcessedData:
    return ProcessedData.load(processed)


def _copy_raw(raw: Path, dest: Path) -> Path:
    shutil.copytree(raw, dest)
    return dest


# ------------------------------------------------------------------------------------------------- format
def test_output_files_and_manifest(processed: Path) -> None:
    for name in (*OUTPUT_FILES, "manifest.json"):
        assert (processed / name).is_file(), name
    m = json.loads((processed / "manifest.json").read_text())
    for key in ("mte_version", "raw_dir", "config", "fingerprint", "counts", "skipped", "repaired", "skipped_items",
                "elapsed_s", "cache_key", "format_version"):
        assert key in m
    assert m["config"]["features"] == "seed369" and m["config"]["vocab"]["size"] == 30000
    for item in m["skipped_items"]:
        assert set(item) == {"source", "line", "reason", "detail"}


def test_table_schemas(data: ProcessedData) -> None:
    assert data.albums.schema == pl.Schema({
        "amazon_id": pl.String, "artist": pl.String, "artist_mbid": pl.String, "title": pl.String,
        "genre": pl.String, "year": pl.Int32, "n_reviews": pl.UInt32, "n_tracks": pl.UInt32, "split": pl.String,
    })
    assert data.reviews.schema == pl.Schema({
        "review_idx": pl.UInt32, "amazon_id": pl.String, "reviewer_id": pl.String, "rating": pl.Float32,
        "unix_time": pl.Int64, "summary": pl.String, "text": pl.String, "tokens": pl.List(pl.UInt32),
        "split": pl.String, "paired": pl.Boolean,
    })
    assert data.tracks.schema == pl.Schema({
        "track_idx": pl.UInt32, "amazon_id": pl.String, "mbid": pl.String, "file": pl.String,
        "tag_artist": pl.String, "tag_album": pl.String, "tag_title": pl.String, "tag_genre": pl.String,
        "split": pl.String,
    })
    assert data.feature_names == feature_names("seed369")
    # the descriptor values: features.npy, one float32 row per track in track_idx order
    matrix = np.load(data.root / "features.npy")
    assert matrix.dtype == np.float32 and matrix.shape == (len(data.tracks), 369)
    assert data.raw_features() is data.features and np.array_equal(data.raw_features(), matrix)


def test_row_orders_and_ids(data: ProcessedData) -> None:
    a, r, t = data.albums, data.reviews, data.tracks
    assert a["amazon_id"].is_unique().all() and a["amazon_id"].is_sorted()
    assert r["review_idx"].to_list() == list(range(len(r)))
    assert t["track_idx"].to_list() == list(range(len(t)))
    assert t.select("amazon_id", "mbid").equals(t.select("amazon_id", "mbid").sort("amazon_id", "mbid"))
    assert r["amazon_id"].is_sorted()
    # counts in albums agree with the tables
    n_rev = r.group_by("amazon_id").len()
    joined = a.join(n_rev, on="amazon_id", how="left").with_columns(pl.col("len").fill_null(0))
    assert (joined["n_reviews"] == joined["len"]).all()
    assert int(a["n_tracks"].sum()) == len(t)


def test_albums_cover_every_source(raw: Path, data: ProcessedData) -> None:
    ids = set()
    for line in (raw / "mard_metadata.json").read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            ids.add(orjson.loads(line)["amazon-id"])
    assert ids <= set(data.albums["amazon_id"])
    assert set(data.reviews["amazon_id"]) <= set(data.albums["amazon_id"])
    assert set(data.tracks["amazon_id"]) <= set(data.albums["amazon_id"])


def test_tokens_respect_vocab(data: ProcessedData) -> None:
    v = data.vocabulary()
    lengths = data.reviews["tokens"].list.len()
    assert int(lengths.max()) <= 400 and int(lengths.min()) >= 0
    assert int(data.reviews["tokens"].explode().drop_nulls().max()) < v.size
    # the stored tokens are what the vocabulary encodes for summary + reviewText
    row = data.reviews.row(3, named=True)
    assert row["tokens"] == v.encode(row["summary"] + "\n" + row["text"])


def test_min_artists_keeps_words_of_enough_artists(raw: Path, tmp_path: Path, data: ProcessedData) -> None:
    """Every word of a min_artists=3 vocabulary is in the training-side reviews of 3 artists (grouped as the
    artist split groups them), and the filter removes words the plain vocabulary keeps."""
    import polars as pl

    from mte.data.splits import artist_groups
    from mte.data.text import split_words, word_splitter

    # a 60-album dir would cap min_artists at 1 (spread_cap): uncapped, so the filter is what is tested
    cfg = PrepareConfig(split="artist", vocab=VocabConfig(min_artists=3, spread_cap=1.0), workers=1)
    filtered = ProcessedData.load(prepare(raw, cfg, processed_dir=tmp_path / "p", verbose=False))
    albums = filtered.albums
    groups = artist_groups({a: (m, n) for a, m, n in albums.select("amazon_id", "artist_mbid", "artist").iter_rows()})
    artist_of = {aid: i for i, group in enumerate(groups) for aid in group}
    reviews = filtered.reviews.filter(~(pl.col("split").is_in(["val", "test"]).fill_null(False)))  # unpaired too
    words = split_words(reviews["summary"] + "\n" + reviews["text"], word_splitter(True))  # untruncated
    spread = (
        pl.DataFrame({"word": words, "artist": reviews["amazon_id"].replace_strict(artist_of, default=None)})
        .explode("word")
        .group_by("word")
        .agg(pl.col("artist").n_unique())
    )
    artists_of_word = dict(spread.iter_rows())
    vocab = filtered.vocabulary()
    kept = [vocab.tokenizer.id_to_token(i) for i in range(2, vocab.size)]  # [PAD], [UNK] first; stop words after
    assert kept and all(artists_of_word[w] >= 3 for w in kept)
    assert vocab.size < data.vocabulary().size


def test_min_albums_as_a_share_resolves_to_the_count_it_names(raw: Path, tmp_path: Path) -> None:
    """min_albums=0.05 in this dir is the count ceil(0.05 × albums with reviews): the same vocabulary as that count,
    and the manifest says which count it was; a count that is not whole, or 0, is a one-line config error."""
    import math

    import polars as pl

    shared = PrepareConfig(split="artist", vocab=VocabConfig(min_albums=0.05, spread_cap=1.0), workers=1)
    by_share = ProcessedData.load(prepare(raw, shared, processed_dir=tmp_path / "share", verbose=False))
    n_albums = pl.read_parquet(by_share.root / "reviews.parquet")["amazon_id"].n_unique()
    count = math.ceil(0.05 * n_albums)
    assert count > 1 and by_share.manifest["counts"]["vocab_min_albums"] == count
    counted = PrepareConfig(split="artist", vocab=VocabConfig(min_albums=count, spread_cap=1.0), workers=1)
    by_count = ProcessedData.load(prepare(raw, counted, processed_dir=tmp_path / "count", verbose=False))
    words = [by_share.vocabulary().tokenizer.id_to_token(i) for i in range(by_share.vocabulary().size)]
    assert words == [by_count.vocabulary().tokenizer.id_to_token(i) for i in range(by_count.vocabulary().size)]
    for bad in (1.5, 0, -2):
        with pytest.raises(PrepareConfigError, match="whole count >= 1 or a share"):
            PrepareConfig(vocab=VocabConfig(min_albums=bad)).validate()
    with pytest.raises(PrepareConfigError, match="max_length >= 1"):  # 0 kept no word of any review
        PrepareConfig(vocab=VocabConfig(max_length=0)).validate()


# ------------------------------------------------------------------------------------------------- splits
def test_splits_never_share_an_album(data: ProcessedData) -> None:
    splits = json.loads((data.root / "splits.json").read_text())
    train, val, test = (set(splits[k]) for k in SPLITS)
    assert not (train & val) and not (train & test) and not (val & test)
    assert all(splits[k] == sorted(splits[k]) for k in splits)
    for table in (data.albums, data.reviews, data.tracks):
        per_album = table.group_by("amazon_id").agg(pl.col("split").n_unique())
        assert (per_album["split"] == 1).all()
        for name, ids in (("train", train), ("val", val), ("test", test)):
            assert set(table.filter(pl.col("split") == name)["amazon_id"]) <= ids
    paired = data.albums.filter((pl.col("n_reviews") > 0) & (pl.col("n_tracks") > 0))
    assert set(paired["amazon_id"]) == train | val | test
    assert data.albums.filter(pl.col("split").is_null())["amazon_id"].is_in(list(train | val | test)).sum() == 0
    assert (data.reviews["paired"] == data.reviews["split"].is_not_null()).all()
    sizes = [len(train), len(val), len(test)]
    assert sizes[0] > sizes[1] > 0 and sizes[2] > 0
    for name in SPLITS:
        rows = data.split_review_indices(name)
        assert rows.tolist() == data.reviews.filter(pl.col("split") == name)["review_idx"].to_list()
        assert data.split_track_indices(name).tolist() == \
            data.tracks.filter(pl.col("split") == name)["track_idx"].to_list()


def test_paper_split_is_90_10_with_test_equal_to_val(raw: Path, tmp_path: Path) -> None:
    out = prepare(raw, PrepareConfig(split="paper", workers=1), processed_dir=tmp_path / "p", verbose=False)
    d = ProcessedData.load(out)
    assert d.split_albums("test") == d.split_albums("val")
    n = len(d.split_albums("train")) + len(d.split_albums("val"))
    assert len(d.split_albums("val")) == round(0.1 * n)
    assert set(d.albums.filter(pl.col("split") == "val")["amazon_id"]) == set(d.split_albums("val"))
    assert not set(d.split_albums("train")) & set(d.split_albums("val"))
    assert len(d.split_review_indices("test")) > 0
    assert d.split_review_indices("test").tolist() == d.split_review_indices("val").tolist()
    assert d.split_track_indices("test").tolist() == d.split_track_indices("val").tolist()


def test_split_seed_changes_the_split(raw: Path, tmp_path: Path, data: ProcessedData) -> None:
    out = prepare(raw, PrepareConfig(split_seed=7, workers=1), processed_dir=tmp_path / "p", verbose=False)
    assert ProcessedData.load(out).split_albums("val") != data.split_albums("val")


# ------------------------------------------------------------------------------------------- determinism
def _bytes(d: Path) -> dict[str, bytes]:
    return {name: (d / name).read_bytes() for name in OUTPUT_FILES}


def test_same_seed_gives_byte_identical_outputs(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = prepare(raw, PrepareConfig(workers=1), processed_dir=tmp_path / "a", verbose=False)
    monkeypatch.setattr(build, "POOL_MIN_FILES", 1)  # the second build parses in a 2-process pool
    b = prepare(raw, PrepareConfig(workers=2), processed_dir=tmp_path / "b", verbose=False)
    assert _bytes(a) == _bytes(b)


# ---------------------------------------------------------------------------------- train-only statistics
def test_standardisation_uses_train_statistics_only(raw: Path, tmp_path: Path) -> None:
    src = _copy_raw(raw, tmp_path / "raw")
    d1 = ProcessedData.load(prepare(src, PrepareConfig(workers=1), processed_dir=tmp_path / "p1", verbose=False))
    feats = d1.raw_features().astype(np.float64)
    train = (d1.tracks["split"] == "train").fill_null(False).to_numpy()
    np.testing.assert_allclose(d1.feature_mean, feats[train].mean(0), rtol=1e-9, atol=1e-9)
    std = feats[train].std(0)
    std[std < 1e-6] = 1.0
    np.testing.assert_allclose(d1.feature_std, std, rtol=1e-9, atol=1e-12)
    z = d1.standardized_features()[train]
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)

    # Change the audio of one val and one test track: the statistics must not move.
    changed = []
    for split in ("val", "test"):
        row = d1.tracks.filter(pl.col("split") == split).row(0, named=True)
        path = src / "acousticbrainz_descriptors" / row["file"]
        doc = orjson.loads(path.read_bytes())
        doc["lowlevel"]["mfcc"]["mean"] = [v * 3 + 100 for v in doc["lowlevel"]["mfcc"]["mean"]]
        doc["lowlevel"]["spectral_rolloff"]["mean"] *= 5
        path.write_bytes(orjson.dumps(doc))
        changed.append(row["track_idx"])
    d2 = ProcessedData.load(prepare(src, PrepareConfig(workers=1), processed_dir=tmp_path / "p2", verbose=False))
    assert d2.tracks["split"].to_list() == d1.tracks["split"].to_list()
    assert not np.allclose(d2.raw_features()[changed], d1.raw_features()[changed])
    np.testing.assert_array_equal(d2.feature_mean, d1.feature_mean)
    np.testing.assert_array_equal(d2.feature_std, d1.feature_std)


def test_constant_feature_gets_std_one() -> None:
    matrix = np.array([[1.0, 5.0], [3.0, 5.0], [100.0, 5.0]], np.float32)
    mean, std, n = build._feature_stats(matrix, np.array([True, True, False]))
    assert n == 2 and mean.tolist() == [2.0, 5.0] and std.tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------- feature sets
@pytest.mark.parametrize("features", ["seed169", "lowlevel_all"])
def test_other_feature_sets(raw: Path, tmp_path: Path, features: str) -> None:
    out = prepare(raw, PrepareConfig(features=features, workers=1), processed_dir=tmp_path / "p", verbose=False)
    d = ProcessedData.load(out)
    meta = json.loads((out / "features.json").read_text())
    assert meta["feature_set"] == features and d.feature_names == meta["names"]
    if features == "seed169":
        assert d.feature_names == feature_names("seed169")
    else:
        assert d.feature_names == sorted(d.feature_names) and len(d.feature_names) > 369
        assert set(feature_names("seed369") or []) <= set(d.feature_names)
    assert d.raw_features().shape == (len(d.tracks), len(d.feature_names)) and d.raw_features().dtype == np.float32
    assert np.isfinite(d.standardized_features()).all()


# --------------------------------------------------------------------------------------------------- caching
def test_cache_hit_same_dir_and_config_changes_key(raw: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = prepare(raw, PrepareConfig(workers=1), cache_dir=cache, verbose=False)
    assert first.parent == cache / "processed"
    stamp = (first / "manifest.json").stat().st_mtime_ns
    second = prepare(raw, PrepareConfig(workers=1), cache_dir=cache, verbose=False)
    assert second == first and (first / "manifest.json").stat().st_mtime_ns == stamp
    # workers do not change the output, so they do not change the key
    assert prepare(raw, PrepareConfig(workers=2), cache_dir=cache, verbose=False) == first
    other = prepare(raw, PrepareConfig(vocab=VocabConfig(size=500), workers=1), cache_dir=cache, verbose=False)
    assert other != first and other.parent == first.parent
    forced = prepare(raw, PrepareConfig(workers=1), cache_dir=cache, force=True, verbose=False)
    assert forced == first and (first / "manifest.json").stat().st_mtime_ns != stamp


def test_cache_key_depends_on_inputs_config_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = PrepareConfig()
    k = cache_key("fp", cfg)
    assert k != cache_key("fp2", cfg)
    assert k != cache_key("fp", PrepareConfig(split="paper"))
    assert k != cache_key("fp", PrepareConfig(text_fields=("reviewText",)))
    assert k == cache_key("fp", PrepareConfig(workers=5))
    monkeypatch.setattr(cache, "FORMAT_VERSION", cache.FORMAT_VERSION + 1)
    assert k != cache_key("fp", cfg)


def test_changed_input_file_gives_a_new_dir(raw: Path, tmp_path: Path) -> None:
    src = _copy_raw(raw, tmp_path / "raw")
    cache = tmp_path / "cache"
    first = prepare(src, PrepareConfig(workers=1), cache_dir=cache, verbose=False)
    with open(src / "mard_reviews.json", "ab") as fh:
        fh.write(b'{"amazon-id": "B000000001", "reviewerID": "X", "reviewText": "new review"}\n')
    second = prepare(src, PrepareConfig(workers=1), cache_dir=cache, verbose=False)
    assert second != first
    assert ProcessedData.load(second).manifest["counts"]["reviews"] == \
        ProcessedData.load(first).manifest["counts"]["reviews"] + 1


@pytest.mark.slow
def test_cache_hit_imports_no_heavy_modules(processed: Path, raw: Path) -> None:
    code = (
        "import sys, time; t = time.perf_counter(); from mte.data.prepare import prepare, PrepareConfig; "
        f"p = prepare({str(raw)!r}, PrepareConfig(workers=1), processed_dir={str(processed)!r}, verbose=False); "
        "dt = time.perf_counter() - t; "
        "print(dt, [m for m in ('polars', 'numpy', 'torch', 'pytorch_lightning') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    _, loaded = out.stdout.split(" ", 1)
    assert loaded.strip() == "[]"  # the speed of a hit (scripts/bench_prepare.py prints it) comes from this


# ---------------------------------------------------------------------------------------------- atomicity
def test_stale_tmp_dirs_are_ignored_and_removed(raw: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    key_dir = prepare(raw, PrepareConfig(workers=1), cache_dir=cache, verbose=False)
    shutil.rmtree(key_dir)
    # a crashed build of the same key (dead pid), complete-looking inside: must not be trusted or renamed
    stale = key_dir.parent / f"{key_dir.name}.tmp-999999999-abcd0123"
    shutil.copytree(REPO / "tests" / "data", stale)
    (stale / "manifest.json").write_text("{}")
    other_stale = key_dir.parent / "0123456789abcdef.old-999999999-ffff0123"
    other_stale.mkdir()
    out = prepare(raw, PrepareConfig(workers=1), cache_dir=cache, verbose=False)
    assert out == key_dir and ProcessedData.load(out).manifest["cache_key"] == key_dir.name
    assert not stale.exists() and not other_stale.exists()


@pytest.mark.parametrize("damage", ["truncated", "other_shape"])
def test_damaged_feature_matrix_is_a_one_line_error(processed: Path, tmp_path: Path, damage: str) -> None:
    """A features.npy that cut off mid-write or that belongs to another dir is refused by name, never read as
    descriptor values for the tracks it happens to line up with."""
    target = tmp_path / "p"
    shutil.copytree(processed, target)
    path = target / "features.npy"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        np.save(path, np.zeros((3, 369), np.float32))
    with pytest.raises(ProcessedDirError, match=r"features\.npy.*prepare it again") as info:
        ProcessedData.load(target)
    assert "\n" not in str(info.value)


def test_dir_without_manifest_is_not_trusted(raw: Path, tmp_path: Path) -> None:
    """Without its manifest a dir is neither loaded nor replaced: nothing proves prepare wrote it any more."""
    target = tmp_path / "p"
    prepare(raw, PrepareConfig(workers=1), processed_dir=target, verbose=False)
    (target / "manifest.json").unlink()
    with pytest.raises(ProcessedDirError, match=r"no manifest\.json") as info:
        ProcessedData.load(target)
    assert "\n" not in str(info.value)
    before = _tree(target)
    with pytest.raises(ReplaceRefused, match="not a processed dir written by mte"):
        prepare(raw, PrepareConfig(workers=1), processed_dir=target, verbose=False)
    assert _tree(target) == before


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: "nothing touched" means this is unchanged."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_another_config_needs_overwrite(raw: Path, tmp_path: Path) -> None:
    """An explicit processed dir a model may have trained on is not silently re-prepared with another config."""
    target = tmp_path / "p"
    prepare(raw, PrepareConfig(workers=1), processed_dir=target, verbose=False)
    before = _tree(target)
    with pytest.raises(ReplaceRefused, match=r"another config \(data\.split_seed: 0 → 5\).*data\.overwrite=true") as e:
        prepare(raw, PrepareConfig(split_seed=5, workers=1), processed_dir=target, verbose=False)
    assert "\n" not in str(e.value) and _tree(target) == before
    # the same config is still a cache hit, and force rebuilds it (same key: no overwrite needed)
    assert prepare(raw, PrepareConfig(workers=1), processed_dir=target, verbose=False) == target
    prepare(raw, PrepareConfig(workers=1), processed_dir=target, force=True, verbose=False)
    prepare(raw, PrepareConfig(features="seed169", workers=1), processed_dir=target, overwrite=True, verbose=False)
    assert ProcessedData.load(target).feature_names == feature_names("seed169")


def test_refuses_to_replace_a_foreign_dir(raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(ReplaceRefused, match="not a processed dir"):
        prepare(raw, PrepareConfig(workers=1), processed_dir=target, verbose=False)
    assert (target / "thesis.tex").read_text() == "precious"
    # a file, not a dir
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ReplaceRefused, match="not a directory"):
        prepare(raw, PrepareConfig(workers=1), processed_dir=tmp_path / "afile", verbose=False)


@pytest.mark.parametrize("manifest", ["foreign", "mte"])
def test_a_manifest_alone_does_not_make_a_dir_replaceable(raw: Path, tmp_path: Path, manifest: str) -> None:
    """Issue 10 item 1: the user's dir holds a manifest.json (their own, or a copied mte one) plus thesis.tex;
    prepare must refuse, even with overwrite, and touch nothing."""
    target = tmp_path / "mine"
    if manifest == "mte":  # a real processed dir the user then put their own file into
        prepare(raw, PrepareConfig(workers=1), processed_dir=target, verbose=False)
    else:
        target.mkdir()
        (target / "manifest.json").write_text('{"format_version": 1, "name": "my experiment log"}')
    (target / "thesis.tex").write_text("precious")
    before = _tree(target)
    with pytest.raises(ReplaceRefused) as info:
        prepare(raw, PrepareConfig(split_seed=3, workers=1), processed_dir=target, overwrite=True, verbose=False)
    assert ("thesis.tex" in str(info.value)) == (manifest == "mte")
    assert _tree(target) == before


@pytest.mark.slow
def test_cli_refuses_a_users_dir_with_a_manifest(raw: Path, tmp_path: Path) -> None:
    target = tmp_path / "D"
    target.mkdir()
    (target / "manifest.json").write_text("{}")
    (target / "thesis.tex").write_text("precious")
    env = {**os.environ, "MTE_CACHE_DIR": str(tmp_path / "cache")}
    proc = _run(["data=mard", f"data.raw_dir={raw}", f"data.processed_dir={target}", "data.workers=1"], tmp_path, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: refusing to replace {target}"), proc.stderr
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "thesis.tex"]
    assert (target / "thesis.tex").read_text() == "precious" and not list(tmp_path.glob("D.*"))


@pytest.mark.slow
def test_killed_prepare_leaves_nothing_trusted(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, albums=400, seed=2, tracks_per_album=2, workers=1)
    target = tmp_path / "p"
    env = {**os.environ, "MTE_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mte.prepare", "data=mard", f"data.raw_dir={raw}", f"data.processed_dir={target}",
         "data.workers=1"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    tmp_dirs: list[Path] = []
    while time.time() < deadline and not tmp_dirs and proc.poll() is None:
        tmp_dirs = list(tmp_path.glob("p.tmp-*"))
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("prepare finished before it could be interrupted")
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if target.exists():
        pytest.skip("prepare finished before it could be interrupted")
    assert tmp_dirs and tmp_dirs[0].exists()
    with pytest.raises(ProcessedDirError):
        ProcessedData.load(tmp_dirs[0])
    out = prepare(raw, PrepareConfig(workers=1), processed_dir=target, verbose=False)
    assert ProcessedData.load(out).manifest["counts"]["tracks"] > 0
    assert not list(tmp_path.glob("p.tmp-*"))


def _descendants(pid: int) -> dict[int, int]:
    """{pid: depth} of every live descendant of ``pid`` (children 1, grandchildren 2, …), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    depth: dict[int, int] = {pid: 0}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in depth and child not in depth:
                depth[child] = depth[parent] + 1
                changed = True
    del depth[pid]
    return depth


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of ``pid`` in clock ticks (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through /proc")
def test_a_killed_parsing_worker_ends_prepare_with_an_error(tmp_path: Path) -> None:
    """Issue 10: a descriptor-parsing worker that dies (as under the OOM killer) must end prepare with a one-line
    error, not a hang. 1,500 links to one real descriptor keep the pool busy for long enough; a worker is a
    grandchild of prepare (prepare → forkserver → worker) and gets SIGKILL once it has parsed for 0.1 s of CPU,
    so it dies holding files (killed while idle, a multiprocessing.Pool would just replace it: no hang to see)."""
    real = tmp_path / "real.json"
    shutil.copyfile(REPO / "tests" / "data" / "acousticbrainz" / "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e.json",
                    real)
    raw = tmp_path / "raw"
    (raw / "acousticbrainz_descriptors").mkdir(parents=True)
    for i in range(1500):
        os.link(real, raw / "acousticbrainz_descriptors" / f"B{i:09d}_11111111-2222-3333-4444-{i:012d}.json")
    (raw / "mard_metadata.json").write_bytes(b"")
    (raw / "mard_reviews.json").write_bytes(b"")
    target = tmp_path / "p"
    env = {**os.environ, "MTE_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mte.prepare", "data=mard", f"data.raw_dir={raw}", f"data.processed_dir={target}",
         "data.workers=2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        victim = None
        deadline = time.time() + 120
        while victim is None and proc.poll() is None and time.time() < deadline:
            workers = [p for p, d in _descendants(proc.pid).items() if d == 2]
            victim = next((p for p in workers if _cpu_ticks(p) >= 10), None)
            time.sleep(0.005)
        assert victim is not None, "no busy worker process appeared"
        os.kill(victim, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("prepare hangs after a parsing worker was killed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, f"killed too late? exit {proc.returncode}: {out}{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: prepare: a descriptor-parsing worker process died"), err
    assert not target.exists() and not list(tmp_path.glob("p.tmp-*"))


# ------------------------------------------------------------------------------------------------ layouts
def test_augmented_layout(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, albums=40, seed=3, tracks_per_album=4, workers=1)
    d = ProcessedData.load(prepare(raw, PrepareConfig(workers=1), processed_dir=tmp_path / "p", verbose=False))
    assert int(d.albums["n_tracks"].max()) > 1
    m = d.manifest["counts"]
    assert m["tracks"] + m["skipped_descriptors"] == m["descriptor_files"] > 40
    per_album = d.tracks.group_by("amazon_id").agg(pl.col("split").n_unique(), pl.len())
    assert (per_album["split"] == 1).all() and int(per_album["len"].max()) > 1


@pytest.mark.parametrize("missing", ["dir", "mard_metadata.json", "mard_reviews.json", "acousticbrainz_descriptors"])
def test_missing_layout_raises_one_line_error(raw: Path, tmp_path: Path, missing: str) -> None:
    if missing == "dir":
        src = tmp_path / "nope"
    else:
        src = _copy_raw(raw, tmp_path / "raw")
        path = src / missing
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(MardLayoutError) as info:
        prepare(src, PrepareConfig(workers=1), processed_dir=tmp_path / "p", verbose=False)
    msg = str(info.value)
    assert "\n" not in msg and "https://www.upf.edu/web/mtg/mard" in msg
    assert "acousticbrainz_descriptors/<amazon-id>_<recording-mbid>.json" in msg
    if missing != "dir":
        assert missing in msg


def test_bad_config_is_rejected_early(raw: Path, tmp_path: Path) -> None:
    for cfg in (PrepareConfig(features="mfcc"), PrepareConfig(split="random"),
                PrepareConfig(split_fractions=(0.0, 0.5, 0.5)), PrepareConfig(text_fields=("title",))):
        with pytest.raises(ValueError):
            prepare(raw, cfg, processed_dir=tmp_path / "p", verbose=False)


# ------------------------------------------------------------------------------------- entry points / config
def _data_cfg(tmp_path: Path, raw_dir: Path, **synthetic: Any) -> dict[str, Any]:
    """A ``data`` group as Hydra composes it from conf/data/synthetic.yaml (40 albums)."""
    default = tmp_path / "cache" / "synthetic" / "mard-40-s0-t1"
    return {
        "raw_dir": str(raw_dir),
        "synthetic": {"dir": str(default), "generate": False, "albums": 40, "seed": 0, "tracks": 1, **synthetic},
        "cache_dir": str(tmp_path / "cache"),
        "processed_dir": None,
        "overwrite": False,
        "features": "seed369",
        "split": "album",
        "split_fractions": [0.8, 0.1, 0.1],
        "split_seed": 0,
        "text_fields": ["summary", "reviewText"],
        "vocab": {"size": 30000, "min_freq": 2, "lowercase": True, "remove_stopwords": True, "max_length": 400},
        "workers": 1,
        "batch_size": 128,
        "num_workers": 0,
    }


def test_prepare_from_config_generates_synthetic_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = _data_cfg(tmp_path, tmp_path / "cache" / "synthetic" / "mard-40-s0-t1")
    out = prepare_from_config(cfg)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("prepare: generating synthetic MARD (40 albums")
    assert lines[-1].startswith("prepare: 40 albums")
    assert out.parent == tmp_path / "cache" / "processed"
    assert prepare_from_config(cfg) == out  # no regeneration, cache hit
    assert "generating" not in capsys.readouterr().out
    with pytest.raises(MardLayoutError, match=r"data\.raw_dir is not set"):
        prepare_from_config({**cfg, "raw_dir": None, "synthetic": None})


def test_a_raw_dir_typo_is_an_error_not_fake_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 10 item 4: a raw dir that does not exist is never filled with synthetic data unless asked."""
    typo = tmp_path / "path" / "that" / "does" / "not" / "exist"
    for cfg in (_data_cfg(tmp_path, typo), {**_data_cfg(tmp_path, typo), "synthetic": None}):
        with pytest.raises(MardLayoutError, match="does not exist") as info:
            prepare_from_config(cfg)
        assert "\n" not in str(info.value) and not (tmp_path / "path").exists()
    assert "generating" not in capsys.readouterr().out
    asked = tmp_path / "mine" / "synthetic"
    out = prepare_from_config(_data_cfg(tmp_path, asked, generate=True))
    assert (asked / "mard_reviews.json").is_file() and ProcessedData.load(out).manifest["counts"]["albums"] == 40


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mte.prepare", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_missing_raw_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "MTE_CACHE_DIR": str(tmp_path / "cache")}
    for args in (["data=mard", "data.raw_dir=/nonexistent"], ["data=mard"], [f"data.raw_dir={tmp_path / 'typo'}"]):
        proc = _run(args, tmp_path, env)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and "https://www.upf.edu/web/mtg/mard" in err[0], proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "typo").exists() and not (tmp_path / "cache" / "synthetic").exists()


@pytest.mark.slow
def test_cli_default_synthetic_run_prints_path_last_and_leaves_no_litter(tmp_path: Path) -> None:
    env = {**os.environ, "MTE_CACHE_DIR": str(tmp_path / "cache")}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = _run(["data.synthetic.albums=40", "data.workers=1"], cwd, env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("prepare: generating synthetic MARD")
    assert lines[-2].startswith("prepare: 40 albums")
    out = Path(lines[-1])
    assert out.parent == tmp_path / "cache" / "processed" and (out / "manifest.json").is_file()
    assert (tmp_path / "cache" / "synthetic" / "mard-v2-40-s0-w0-t1" / "mard_reviews.json").is_file()
    assert list(cwd.iterdir()) == []  # no outputs/, .hydra/ or log files
    again = _run(["data.synthetic.albums=40"], cwd, env)
    assert again.stdout.strip().splitlines()[-1] == str(out) and "cached" in again.stdout


def test_processed_data_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ProcessedDirError, match="does not exist"):
        ProcessedData.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProcessedDirError, match=r"no manifest\.json") as info:
        ProcessedData.load(tmp_path / "empty")
    assert "mte.prepare" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_parallel_prepare_inside_a_joblib_worker(tmp_path: Path) -> None:
    """Hydra's joblib launcher runs each job in a loky worker, whose default start method ("loky") a fresh child
    cannot restore: the parsing pool must still start there (it died at birth before, ending prepare in error)."""
    from joblib import Parallel, delayed

    from mte.data.build import POOL_MIN_FILES
    from mte.data.synth import generate

    raw = tmp_path / "raw"
    generate(raw, albums=POOL_MIN_FILES + 40, seed=5, workers=1)

    def job(out: str) -> str:
        return str(prepare(raw, PrepareConfig(workers=2), processed_dir=out, verbose=False))

    (path,) = Parallel(n_jobs=2, backend="loky")(delayed(job)(str(tmp_path / "p")) for _ in range(1))
    assert ProcessedData.load(path).feature_names
