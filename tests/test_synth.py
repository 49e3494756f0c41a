"""Synthetic MARD generator: layout, descriptor shape, determinism, quirk ground truth, learnability, CLI.

Every quirk count in `.synth.json` is re-derived here from the files themselves, the way a reader (prepare)
would see them, so the ground truth the lead cross-checks the manifest against is itself checked.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mte.data import synth
from mte.data.synth import (
    FULL_SCALE,
    GENRE_WORDS,
    GENRES,
    QUIRKS,
    SYNTH_INFO_FILE,
    generate,
    lexicon,
    templates,
    vocabulary,
    world,
)
from mte.data.synth.plan import _make_plan

ASIN_RE = re.compile(r"[A-Z0-9]{10}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FILE_RE = re.compile(rf"({ASIN_RE.pattern})_({UUID_RE.pattern})\.json")
REVIEW_TIME_RE = re.compile(r"(0[1-9]|1[0-2]) ([1-9]|[12][0-9]|3[01]), (199[89]|20[01][0-9])")
METADATA_KEYS = {
    "amazon-id", "artist", "title", "related", "price", "label", "categories", "salesRank", "imUrl", "artist_url",
    "root-genre", "artist-mbid", "first-release-year", "release-group-mbid", "release-mbid", "songs",
}  # fmt: skip
REVIEW_KEYS = {
    "reviewerID", "amazon-id", "reviewerName", "helpful", "reviewText", "overall", "summary", "unixReviewTime",
    "reviewTime",
}  # fmt: skip
STATS = {"dmean", "dmean2", "dvar", "dvar2", "max", "mean", "median", "min", "var"}
TEMPLATE = json.loads(
    Path(synth.__file__).resolve().parents[2].joinpath("resources/descriptor_template.json").read_text()
)


# ----------------------------------------------------------------------------------------------------------------
# helpers and fixtures (module-local: conftest belongs to the lead)
# ----------------------------------------------------------------------------------------------------------------


def _tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root (hidden ones included)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _info(raw: Path) -> dict[str, Any]:
    return json.loads((raw / SYNTH_INFO_FILE).read_text())


def _reviews(raw: Path) -> list[bytes]:
    return (raw / "mard_reviews.json").read_bytes().splitlines()


def _parsed_reviews(raw: Path) -> list[dict[str, Any]]:
    out = []
    for line in _reviews(raw):
        try:
            out.append(json.loads(line.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return out


def _descriptors(raw: Path) -> dict[str, dict[str, Any] | None]:
    """file name → parsed document (None when the JSON is broken). json, not orjson: it must accept NaN."""
    docs: dict[str, dict[str, Any] | None] = {}
    for path in sorted((raw / "acousticbrainz_descriptors").iterdir()):
        try:
            docs[path.name] = json.loads(path.read_bytes())
        except json.JSONDecodeError:
            docs[path.name] = None
    return docs


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 albums, all quirks on, generated in-process."""
    out = tmp_path_factory.mktemp("synth") / "raw60"
    generate(out, albums=60, seed=0, workers=1)
    return out


@pytest.fixture(scope="module")
def mid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 albums for the statistical checks (reviews per album, genre vocabulary); world 0, seed 3."""
    out = tmp_path_factory.mktemp("synth") / "raw400"
    generate(out, albums=400, seed=3, workers=2)
    return out


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another seed in the same world as `mid`: new albums by new artists, the same rules."""
    out = tmp_path_factory.mktemp("synth") / "raw250-s4"
    generate(out, albums=250, seed=4, workers=2, quirks=False)
    return out


@pytest.fixture(scope="module")
def other_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`other_seed`'s albums in world 1: the same albums and artists under other rules."""
    out = tmp_path_factory.mktemp("synth") / "raw250-s4-w1"
    generate(out, albums=250, seed=4, workers=2, quirks=False, world=1)
    return out


# ----------------------------------------------------------------------------------------------------------------
# layout and keys
# ----------------------------------------------------------------------------------------------------------------


def test_layout_has_exactly_the_mard_files(small: Path) -> None:
    assert sorted(p.name for p in small.iterdir()) == sorted(
        [".synth.json", "acousticbrainz_descriptors", "mard_metadata.json", "mard_reviews.json"]
    )
    assert not list(small.parent.glob("*.tmp-*")), "the temporary build dir must be gone"


def test_metadata_lines_have_mard_keys(small: Path) -> None:
    info = _info(small)
    broken = {item["line"] for item in info["quirk_items"]["broken_metadata"]}
    lines = (small / "mard_metadata.json").read_bytes().splitlines()
    assert len(lines) == info["counts"]["albums"] == 60
    ids = []
    for no, line in enumerate(lines, start=1):
        if no in broken:
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
            continue
        rec = json.loads(line)
        assert set(rec) <= METADATA_KEYS and {"amazon-id", "artist", "title"} <= set(rec)
        assert ASIN_RE.fullmatch(rec["amazon-id"])
        ids.append(rec["amazon-id"])
        for song in rec.get("songs", []):
            assert set(song) == {"title", "mbid"} and UUID_RE.fullmatch(song["mbid"])
        if "root-genre" in rec:
            assert rec["root-genre"] in GENRES
    assert len(set(ids)) == len(ids), "amazon-ids are unique"


def test_review_lines_have_mard_keys(small: Path) -> None:
    reviews = _parsed_reviews(small)
    assert reviews
    for rec in reviews:
        assert REVIEW_KEYS - {"reviewerName"} <= set(rec) <= REVIEW_KEYS
        assert ASIN_RE.fullmatch(rec["amazon-id"]) and re.fullmatch(r"A[A-Z0-9]{13}", rec["reviewerID"])
        assert rec["overall"] in (1.0, 2.0, 3.0, 4.0, 5.0) and isinstance(rec["overall"], float)
        helpful = rec["helpful"]
        assert len(helpful) == 2 and 0 <= helpful[0] <= helpful[1]
        assert REVIEW_TIME_RE.fullmatch(rec["reviewTime"]), rec["reviewTime"]
        assert isinstance(rec["unixReviewTime"], int)


def test_descriptor_files_look_like_acousticbrainz(small: Path) -> None:
    info = _info(small)
    special = {i["source"] for q in ("broken_descriptor", "missing_mfcc", "nan_value") for i in info["quirk_items"][q]}
    docs = _descriptors(small)
    assert len(docs) == info["counts"]["descriptor_files"]
    checked = 0
    for name, doc in docs.items():
        if name in special or doc is None:
            continue
        size = (small / "acousticbrainz_descriptors" / name).stat().st_size
        assert 50_000 < size < 130_000, "tens of KB, like the real ~85 KB documents"
        assert list(doc) == list(TEMPLATE)
        for section in ("lowlevel", "rhythm", "tonal"):
            assert set(doc[section]) == set(TEMPLATE[section])
            for key, value in TEMPLATE[section].items():
                if isinstance(value, dict) and set(value) == STATS:
                    assert set(doc[section][key]) == STATS, f"{section}.{key} lacks stats"
                    assert doc[section][key]["min"] <= doc[section][key]["max"] or isinstance(value["min"], list)
        for name_ in ("mfcc", "gfcc"):
            block = doc["lowlevel"][name_]
            cov, icov = np.array(block["cov"]), np.array(block["icov"])
            assert cov.shape == icov.shape == (13, 13) and len(block["mean"]) == 13
            assert np.array_equal(cov, cov.T) and np.array_equal(icov, icov.T)
            assert np.linalg.eigvalsh(cov).min() > 0, "cov must be SPD"
            assert np.abs(cov @ icov - np.eye(13)).max() < 1e-3, "icov must invert cov"
        assert doc["rhythm"]["beats_count"] == len(doc["rhythm"]["beats_position"])
        assert 0.0 < doc["lowlevel"]["dissonance"]["mean"] <= 0.5
        meta = doc["metadata"]
        assert {"audio_properties", "tags", "version"} <= set(meta)
        tags = meta["tags"]
        for key in ("album", "artist", "title", "musicbrainz_recordingid"):
            assert isinstance(tags[key], list) and len(tags[key]) == 1
        match = FILE_RE.fullmatch(name)
        if match:
            assert tags["musicbrainz_recordingid"] == [match.group(2)]
            assert tags.get("asin", [match.group(1)]) == [match.group(1)]
        checked += 1
    assert checked >= 40


def test_descriptor_files_name_songs_of_their_album(small: Path) -> None:
    songs = {}
    for line in (small / "mard_metadata.json").read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        songs[rec["amazon-id"]] = {s["mbid"] for s in rec.get("songs", [])}
    for name in os.listdir(small / "acousticbrainz_descriptors"):
        match = FILE_RE.fullmatch(name)
        if match and songs.get(match.group(1)):
            assert match.group(2) in songs[match.group(1)]


# ----------------------------------------------------------------------------------------------------------------
# determinism and atomic writes
# ----------------------------------------------------------------------------------------------------------------


def test_deterministic_across_runs_and_workers(small: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, albums=60, seed=0, workers=2)
    assert _tree_digest(again) == _tree_digest(small)
    other = tmp_path / "other-seed"
    generate(other, albums=60, seed=1, workers=1)
    assert _tree_digest(other)["mard_reviews.json"] != _tree_digest(small)["mard_reviews.json"]


def test_same_seed_and_world_give_the_same_bytes(small: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    generate(one, albums=60, seed=0, workers=1, world=1)
    generate(two, albums=60, seed=0, workers=2, world=1)
    assert _tree_digest(one) == _tree_digest(two)
    assert _info(one)["params"]["world"] == 1 and _info(one)["params"]["lexicon"].startswith("wordfreq ")
    digest, base = _tree_digest(one), _tree_digest(small)
    assert digest["mard_metadata.json"] == base["mard_metadata.json"], "the world never changes the albums"
    assert digest["mard_reviews.json"] != base["mard_reviews.json"]
    assert any(digest[k] != base[k] for k in digest if k.startswith("acousticbrainz_descriptors/"))


def test_refuses_non_empty_target_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(out, albums=5, seed=0)
    assert (out / "keep.txt").exists()
    generate(out, albums=5, seed=0, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "mard_reviews.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"], "no tmp/old dirs left behind"


def test_empty_existing_dir_is_fine(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    generate(out, albums=5, seed=0)
    assert (out / "mard_metadata.json").exists()


# ----------------------------------------------------------------------------------------------------------------
# quirks: every one present, and .synth.json agrees with what the files show
# ----------------------------------------------------------------------------------------------------------------


def _observed_quirks(raw: Path) -> dict[str, int]:
    """Re-derive every quirk count from the files, independently of the generator's bookkeeping."""
    info = _info(raw)
    docs = _descriptors(raw)
    counts = dict.fromkeys(QUIRKS, 0)
    desc_albums: set[str] = set()
    bad_names = {i["source"]: i["amazon_id"] for i in info["quirk_items"]["bad_filename"]}
    for name, doc in docs.items():
        match = FILE_RE.fullmatch(name)
        counts["bad_filename"] += match is None
        desc_albums.add(match.group(1) if match else bad_names[name])
        if doc is None:
            counts["broken_descriptor"] += 1
            continue
        counts["missing_mfcc"] += "mfcc" not in doc["lowlevel"]
        counts["nan_value"] += b"NaN" in (raw / "acousticbrainz_descriptors" / name).read_bytes()
        counts["descriptor_without_genre"] += "genre" not in doc["metadata"]["tags"]
    album_ids = [i["amazon_id"] for i in info["quirk_items"]["broken_metadata"]]
    for line in (raw / "mard_metadata.json").read_bytes().splitlines():
        try:
            album_ids.append(json.loads(line)["amazon-id"])
        except json.JSONDecodeError:
            counts["broken_metadata"] += 1
    review_albums: set[str] = set()
    previous = None
    for line in _reviews(raw):
        counts["duplicate_review"] += line == previous
        previous = line
        try:
            rec = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            counts["non_utf8_review"] += 1
            review_albums.add(re.search(rb'"amazon-id":"([A-Z0-9]{10})"', line).group(1).decode())  # type: ignore[union-attr]
            continue
        review_albums.add(rec["amazon-id"])
        text, summary = rec["reviewText"], rec["summary"]
        counts["empty_review"] += text == ""
        counts["long_review"] += len(text) > 5000
        counts["html_entities"] += any(e in text + summary for e in ("&amp;", "&quot;", "&#39;"))
        counts["non_ascii"] += not (text + summary).isascii()
    counts["album_without_descriptor"] = len(set(album_ids) - desc_albums)
    counts["descriptor_without_reviews"] = len(desc_albums - review_albums)
    return counts


def test_every_quirk_is_present_and_recorded_exactly(small: Path) -> None:
    info = _info(small)
    assert set(info["quirks"]) == set(QUIRKS)
    assert all(n >= 1 for n in info["quirks"].values()), info["quirks"]
    assert _observed_quirks(small) == info["quirks"]
    for quirk, items in info["quirk_items"].items():
        assert len(items) == info["quirks"][quirk], quirk


def test_quirk_items_point_at_the_right_lines(small: Path) -> None:
    info = _info(small)
    lines = _reviews(small)
    for item in info["quirk_items"]["empty_review"]:
        assert json.loads(lines[item["line"] - 1])["reviewText"] == ""
    for item in info["quirk_items"]["non_utf8_review"]:
        with pytest.raises(UnicodeDecodeError):
            lines[item["line"] - 1].decode("utf-8")
    for item in info["quirk_items"]["duplicate_review"]:
        assert lines[item["line"] - 1] == lines[item["line"] - 2]
    for item in info["quirk_items"]["nan_value"]:
        doc = json.loads((small / "acousticbrainz_descriptors" / item["source"]).read_bytes())
        section, name, stat = item["detail"].split(".")
        assert np.isnan(doc[section][name][stat])


def test_quirks_off_gives_a_clean_fully_paired_dataset(tmp_path: Path) -> None:
    out = tmp_path / "clean"
    summary = generate(out, albums=40, seed=2, quirks=False)
    assert not any(summary["quirks"].values())
    assert summary["counts"]["paired_albums"] == 40
    assert not any(_observed_quirks(out).values())


def test_quirks_can_be_chosen_one_by_one(tmp_path: Path) -> None:
    summary = generate(tmp_path / "some", albums=30, seed=0, quirks=["nan_value", "empty_review"])
    assert {q for q, n in summary["quirks"].items() if n} == {"nan_value", "empty_review"}
    assert synth.normalize_quirks({"nan_value": True, "long_review": False}) == {"nan_value"}
    with pytest.raises(ValueError, match="unknown quirk"):
        synth.normalize_quirks(["no_such_quirk"])


# ----------------------------------------------------------------------------------------------------------------
# proportions and scale
# ----------------------------------------------------------------------------------------------------------------


def test_reviews_per_album_are_heavy_tailed_with_the_real_mean(mid: Path) -> None:
    info = _info(mid)
    c = info["counts"]
    assert c["paired_albums"] >= 0.7 * c["albums"], "demo runs must be mostly usable"
    per_album = collections.Counter(r["amazon-id"] for r in _parsed_reviews(mid))
    paired_mean = c["reviews_of_paired_albums"] / c["paired_albums"]
    assert 9.0 < paired_mean < 10.5
    counts = np.array(sorted(per_album.values()))
    assert counts.max() >= 4 * np.median(counts), "heavy tail: a few albums with many reviews"
    assert (counts == 1).sum() > 0


def test_full_scale_plan_matches_mard_counts() -> None:
    """Only the plan (no files): exact real totals, so the benchmark run has MARD's shape."""
    plan = _make_plan(FULL_SCALE["albums"], 0, 1, synth.normalize_quirks(True), "real")
    paired = plan.kind == 0
    assert plan.kind.size == FULL_SCALE["albums"]
    assert int(plan.n_tracks.sum()) == FULL_SCALE["descriptor_files"]
    assert int(paired.sum()) == 8683
    assert int(plan.n_reviews.sum()) == FULL_SCALE["reviews"]
    assert int(plan.n_reviews[paired].sum()) == 84747
    assert (plan.n_reviews[plan.kind == 1] == 0).all() and (plan.n_reviews[plan.kind != 1] >= 1).all()


def test_augmented_layout_has_several_tracks_per_album(tmp_path: Path) -> None:
    out = tmp_path / "aug"
    summary = generate(out, albums=30, seed=0, tracks_per_album=8, quirks=False)
    per_album = collections.Counter(name[:10] for name in os.listdir(out / "acousticbrainz_descriptors"))
    assert summary["counts"]["descriptor_files"] == sum(per_album.values()) > 30
    assert max(per_album.values()) > 1 and min(per_album.values()) >= 1 and max(per_album.values()) <= 8


# ----------------------------------------------------------------------------------------------------------------
# the text↔audio link: present, through the factors only
# ----------------------------------------------------------------------------------------------------------------


def _album_genres(raw: Path) -> dict[str, str]:
    genres = {}
    for line in (raw / "mard_metadata.json").read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "root-genre" in rec:
            genres[rec["amazon-id"]] = rec["root-genre"]
    return genres


def test_genre_vocabulary_is_learnable_from_reviews(mid: Path) -> None:
    genres = _album_genres(mid)
    owner = {w: g for g, words in GENRE_WORDS.items() for w in words}
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    n_reviews: collections.Counter[str] = collections.Counter()
    for rec in _parsed_reviews(mid):
        genre = genres.get(rec["amazon-id"])
        if genre is None:
            continue
        n_reviews[genre] += 1
        for token in re.findall(r"[a-z]+", rec["reviewText"].lower()):
            if token in owner:
                counts[genre][token] += 1
    top = {g: counts[g].most_common(1)[0][0] for g in counts if n_reviews[g] >= 100}
    assert len(top) >= 5
    assert all(owner[word] == genre for genre, word in top.items()), top
    assert len(set(top.values())) == len(top), "the most frequent factor word differs per genre"
    # …but only weakly: most reviews never name a genre word at all
    with_word = sum(sum(c.values()) for c in counts.values()) / sum(n_reviews.values())
    assert with_word < 0.8


def test_tempo_words_follow_descriptor_bpm(mid: Path) -> None:
    """Reviews of albums whose audio is fast say 'fast'-pole words more often than those of slow albums."""
    bpm = {}
    for name, doc in _descriptors(mid).items():
        if doc is not None and FILE_RE.fullmatch(name):
            bpm[name[:10]] = doc["rhythm"]["bpm"]
    fast_words, slow_words = (set(pole) for pole in vocabulary._POLE_WORDS["bpm"])
    score: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for rec in _parsed_reviews(mid):
        for token in re.findall(r"[a-z]+", rec["reviewText"].lower()):
            if rec["amazon-id"] in bpm and (token in fast_words or token in slow_words):
                score[rec["amazon-id"]][token in fast_words] += 1
    median = np.median(list(bpm.values()))
    fast_share = [s[1] / sum(s) for a, s in score.items() if bpm[a] > median * 1.15]
    slow_share = [s[1] / sum(s) for a, s in score.items() if bpm[a] < median / 1.15]
    assert np.mean(fast_share) > np.mean(slow_share) + 0.2


def test_no_album_identifier_leaks_into_review_text(small: Path) -> None:
    ids = set(_album_genres(small)) | {
        i["amazon_id"] for q in ("broken_metadata",) for i in _info(small)["quirk_items"][q]
    }
    for rec in _parsed_reviews(small):
        text = rec["reviewText"] + " " + rec["summary"]
        assert not UUID_RE.search(text)
        assert not any(asin in text for asin in ids)


def test_vocabularies_are_disjoint_and_absent_from_chatter_and_names() -> None:
    factor_words = {w for ws in GENRE_WORDS.values() for w in ws}
    pole_words = {w for poles in vocabulary._POLE_WORDS.values() for pole in poles for w in pole}
    assert sum(len(ws) for ws in GENRE_WORDS.values()) == len(factor_words), "genre words are disjoint"
    assert not factor_words & pole_words
    assert world.all_factor_words() == factor_words | pole_words
    chatter = [t for pos, neg, _ in templates._CHATTER for t in (*pos, *neg)]
    chatter += [*templates._OPEN_POS, *templates._OPEN_NEG, *templates._OPEN_MID]
    chatter += [*templates._SUMMARY_POS, *templates._SUMMARY_NEG]
    for text in chatter:
        tokens = set(re.findall(r"[a-z]+", text.lower()))
        assert not tokens & factor_words, text
        assert not (tokens & pole_words) - {"fast"}, text  # 'fast shipping' is the one deliberate confounder
    assert all(text.isascii() for text in chatter)
    lex = lexicon.lexicon()
    names = {w.lower() for w in (*lex.pool_a, *lex.pool_b)}
    assert not set(lex.pool_a) & set(lex.pool_b), "the two name pools are disjoint (so name cores are unique)"
    assert not (names | set(lex.words)) & world.all_factor_words(), "filler and names never carry a factor"
    assert all(w.isascii() and w.isalpha() for w in names)


def test_filler_follows_real_word_frequencies(mid: Path) -> None:
    """Reviews have a real-sized, Zipf-shaped vocabulary (the templates alone gave ~850 words): a long tail."""
    counts = collections.Counter(
        t for rec in _parsed_reviews(mid) for t in re.findall(r"\w+(?:'\w+)*", rec["reviewText"].lower())
    )
    tokens = sum(counts.values())
    assert len(counts) > 5_000 and 0.015 < len(counts) / tokens < 0.2, (len(counts), tokens)
    assert sum(n == 1 for n in counts.values()) > 0.3 * len(counts), "a long tail of words seen once"
    assert counts.most_common(1)[0][0] == "the", "English: the most frequent word is 'the'"


# ----------------------------------------------------------------------------------------------------------------
# worlds: another seed gives new artists under the same rules; another world, other rules
# ----------------------------------------------------------------------------------------------------------------


def _artists(raw: Path) -> tuple[set[str], set[str]]:
    """(normalised artist names, artist mbids) of a dir's readable metadata lines."""
    names, mbids = set(), set()
    for line in (raw / "mard_metadata.json").read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        names.add(" ".join(re.findall(r"[a-z0-9]+", rec["artist"].lower())))
        mbids.update([rec["artist-mbid"]] if "artist-mbid" in rec else [])
    return names, mbids


def test_another_seed_has_only_new_artists(mid: Path, other_seed: Path) -> None:
    names, mbids = _artists(mid)
    new_names, new_mbids = _artists(other_seed)
    assert len(new_names) > 50 and len(new_mbids) > 50
    assert not names & new_names, "an artist of seed 3 reappears in seed 4"
    assert not mbids & new_mbids
    assert not set(_album_genres(mid)) & set(_album_genres(other_seed)), "amazon-ids differ too"


def test_artist_name_cores_are_injective_across_seeds() -> None:
    """The (seed, artist) → name map never repeats: 3 seeds × MARD's ~30k artists give 90k distinct cores."""
    lex = lexicon.lexicon()
    cores = {lex.artist_core(seed, i) for seed in range(3) for i in range(30_000)}
    assert len(cores) == 90_000
    assert lex.max_unique_seed >= 1000


def _top_genre_words(raw: Path) -> dict[str, str]:
    """Per root genre (with enough reviews), the genre word (of any world) its reviews use most."""
    genres = _album_genres(raw)
    pooled = {w for ws in GENRE_WORDS.values() for w in ws}
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    n_reviews: collections.Counter[str] = collections.Counter()
    for rec in _parsed_reviews(raw):
        if (genre := genres.get(rec["amazon-id"])) is not None:
            n_reviews[genre] += 1
            counts[genre].update(t for t in re.findall(r"[a-z]+", rec["reviewText"].lower()) if t in pooled)
    return {g: counts[g].most_common(1)[0][0] for g in counts if n_reviews[g] >= 100}


def _genre_descriptor_means(raw: Path) -> dict[str, np.ndarray]:
    """Per root genre (≥ 20 files), the mean log magnitude of every scalar lowlevel descriptor's mean."""
    genres = _album_genres(raw)
    rows: dict[str, list[list[float]]] = collections.defaultdict(list)
    for name, doc in _descriptors(raw).items():
        if doc is None or name[:10] not in genres:
            continue
        low = doc["lowlevel"]
        keys = [k for k in sorted(low) if isinstance(low[k], dict) and isinstance(low[k].get("mean"), float)]
        rows[genres[name[:10]]].append([math.log(abs(low[k]["mean"]) + 1e-9) for k in keys])
    return {g: np.mean(r, axis=0) for g, r in rows.items() if len(r) >= 20}


def _descriptor_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    shared = sorted(set(a) & set(b))
    assert len(shared) >= 2
    return float(np.mean([np.sqrt(np.mean((a[g] - b[g]) ** 2)) for g in shared]))


def test_seeds_of_a_world_share_its_rules_and_worlds_differ(mid: Path, other_seed: Path, other_world: Path) -> None:
    """Words: every genre's top word is its own genre's word *in the dir's world*, and world 1's words are not
    world 0's. Sounds: per-genre descriptor means agree across seeds of one world, not across worlds (even for the
    very same albums: the world changes the rules, never the albums)."""
    for raw, w in ((mid, 0), (other_seed, 0), (other_world, 1)):
        owner = {word: g for g, ws in world.world_words(w).genre_words.items() for word in ws}
        top = _top_genre_words(raw)
        assert len(top) >= 2 and all(owner[word] == g for g, word in top.items()), (w, top)
    assert world.world_words(0).genre_words == GENRE_WORDS
    canon = {word: g for g, ws in GENRE_WORDS.items() for word in ws}
    assert all(canon[word] != g for g, word in _top_genre_words(other_world).items())
    assert (other_seed / "mard_metadata.json").read_bytes() == (other_world / "mard_metadata.json").read_bytes()
    same_world = _descriptor_distance(_genre_descriptor_means(mid), _genre_descriptor_means(other_seed))
    cross_world = _descriptor_distance(_genre_descriptor_means(other_seed), _genre_descriptor_means(other_world))
    assert same_world < 0.3 * cross_world, (same_world, cross_world)


def test_bad_seed_or_world_is_refused(tmp_path: Path) -> None:
    for kwargs in ({"seed": -1}, {"world": -2}, {"world": 1.5}):
        with pytest.raises(ValueError, match=r"seed|world"):
            generate(tmp_path / "bad", albums=5, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists()


def test_amazon_ids_are_unique_and_well_formed() -> None:
    ids = [synth.amazon_id(7, i) for i in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(ASIN_RE.fullmatch(i) for i in ids)
    assert 0.01 < sum(i.isdigit() for i in ids) / len(ids) < 0.06, "a few ISBN-like ids"


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_writes_only_the_output_dir(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "mte.synth", "out=raw", "albums=30", "seed=1", "world=2"]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == str(cwd / "raw")
    assert lines[-2].startswith("synthetic MARD: 30 albums")
    assert sorted(os.listdir(cwd)) == ["raw"], "Hydra must leave no outputs/, .hydra/ or logs"
    assert _info(cwd / "raw")["params"]["seed"] == 1 and _info(cwd / "raw")["params"]["world"] == 2
    again = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0
    assert again.stderr.strip().splitlines()[-1].startswith("error: ") and "overwrite" in again.stderr
    assert again.returncode == 2
    bad = subprocess.run([*cmd[:3], "out=bad", "world=abc"], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: world must be an integer, got 'abc'"]
    assert sorted(os.listdir(cwd)) == ["raw"]
