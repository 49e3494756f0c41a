"""Splits: sizes, determinism, and the artist split (an artist's albums never straddle train/val/test).

The artist split is checked twice: on hand-made (album → MBID, name) tables that spell out each grouping rule, and
through prepare on a synthetic MARD dir whose metadata is rewritten so that one artist appears with an MBID on one
album and with only a (differently spelt) name on another, or under one MBID with two names.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import polars as pl
import pytest

from mte.data.manifest import mention_counts
from mte.data.names import SPLIT_METHODS, SPLITS
from mte.data.prepare import PrepareConfig, prepare
from mte.data.processed import ProcessedData
from mte.data.splits import (
    album_split,
    artist_groups,
    artist_split,
    make_splits,
    normalise_artist,
    paper_split,
    split_sizes,
)
from mte.data.synth import generate

FRACTIONS = (0.8, 0.1, 0.1)


def test_split_sizes_and_determinism() -> None:
    assert split_sizes(10, FRACTIONS) == [8, 1, 1]
    assert split_sizes(2, FRACTIONS) == [1, 1, 0]
    assert split_sizes(3, FRACTIONS) == [1, 1, 1]
    assert split_sizes(0, FRACTIONS) == [0, 0, 0]
    assert split_sizes(7, (1.0, 0.0, 0.0)) == [7, 0, 0]
    assert sum(split_sizes(8683, FRACTIONS)) == 8683
    ids = [f"B{i:09d}" for i in range(100)]
    a = album_split(ids, FRACTIONS, seed=3)
    assert a == album_split(list(reversed(ids)), FRACTIONS, seed=3)  # input order does not matter
    assert [len(a[k]) for k in SPLITS] == [80, 10, 10]
    assert a != album_split(ids, FRACTIONS, seed=4)
    p = paper_split(ids, seed=0)
    assert len(p["train"]) == 90 and p["val"] == p["test"] and len(p["val"]) == 10
    assert SPLIT_METHODS == ("album", "artist", "paper", "published")


# ------------------------------------------------------------------------------------------- grouping rules
def test_normalised_artist_names() -> None:
    same = ["The Beatles", "beatles", "  THE   BEATLES ", "Beatles."]
    assert {normalise_artist(n) for n in same} == {"beatles"}
    assert normalise_artist("Beyoncé") == normalise_artist("BEYONCE") == "beyonce"
    assert normalise_artist("Simon & Garfunkel") == normalise_artist("Simon and Garfunkel")
    assert normalise_artist("AC/DC") == normalise_artist("AC-DC") != normalise_artist("ACDC")
    assert normalise_artist("Theatre of Tragedy") == "theatre of tragedy"  # 'the' only as a whole word
    for empty in (None, "", "  ", "!!!"):
        assert normalise_artist(empty) is None


MBID_X = "11111111-1111-1111-1111-111111111111"
MBID_Y = "22222222-2222-2222-2222-222222222222"
MBID_Z = "33333333-3333-3333-3333-333333333333"


def test_artist_groups_link_mbids_and_names() -> None:
    artists = {
        "A01": (MBID_X, "Foo"), "A02": (MBID_X.upper(), "Foo (the band)"),  # one MBID, two names
        "A03": (None, "The Beatles"), "A04": (None, "beatles"),  # names only
        "A05": (MBID_Y, "Bar"), "A06": (None, "BAR"),  # an MBID on one album, only the name on another
        "A07": (MBID_Z, "Baz"), "A08": (MBID_Z, "Qux"), "A09": (None, "qux"),  # a chain: Baz ~ Qux via Z
        "A10": (None, None), "A11": (None, ""), "A12": (None, "?"),  # no artist: each its own group
        "A13": (MBID_Y.replace("2", "4"), "Bar"),  # another MBID, same name: one artist as far as we can tell
    }
    groups = artist_groups(artists)
    assert groups == [["A01", "A02"], ["A03", "A04"], ["A05", "A06", "A13"], ["A07", "A08", "A09"], ["A10"],
                      ["A11"], ["A12"]]
    assert sorted(a for g in groups for a in g) == sorted(artists)


def _world(n_artists: int, seed: int) -> dict[str, tuple[str | None, str | None]]:
    """Albums of artists with 1–8 albums each; some albums lack the MBID, some spell the name differently."""
    rnd = random.Random(seed)
    out: dict[str, tuple[str | None, str | None]] = {}
    i = 0
    for a in range(n_artists):
        mbid = f"{a:08d}-0000-0000-0000-000000000000"
        name = f"Artist {a}"
        for _ in range(rnd.choice([1, 1, 1, 2, 2, 3, 4, 8])):
            r = rnd.random()
            out[f"B{i:09d}"] = (None, name.upper()) if r < 0.3 else (mbid, f"The {name}") if r < 0.5 else (mbid, name)
            i += 1
    for _ in range(20):  # albums without any artist
        out[f"B{i:09d}"] = (None, None)
        i += 1
    return out


def _artist_of(album: tuple[str | None, str | None]) -> str | None:
    """The true artist of a _world album (its number), whichever way the album names it."""
    mbid, name = album
    if mbid:
        return str(int(mbid[:8]))
    return normalise_artist(name).split()[-1] if name else None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_artist_split_never_shares_an_artist_and_honours_fractions(seed: int) -> None:
    world = _world(400, seed)
    splits = artist_split(world, FRACTIONS, seed)
    assert sorted(a for s in SPLITS for a in splits[s]) == sorted(world)  # a partition
    owners: dict[str, set[str]] = {}
    for name in SPLITS:
        for aid in splits[name]:
            if (artist := _artist_of(world[aid])) is not None:
                owners.setdefault(artist, set()).add(name)
    assert owners and all(len(s) == 1 for s in owners.values()), "an artist straddles splits"
    n = len(world)
    for name, fraction in zip(SPLITS, FRACTIONS, strict=True):
        assert abs(len(splits[name]) - fraction * n) <= 8, (name, len(splits[name]), n)  # ≤ one artist's albums
    # the album split on the same albums does let artists straddle: the check above can fail
    albums = album_split(world, FRACTIONS, seed)
    straddling = {_artist_of(world[a]) for s in SPLITS for a in albums[s]}
    assert any(len({s for s in SPLITS for a in albums[s] if _artist_of(world[a]) == art}) > 1
               for art in straddling if art is not None)


def test_artist_split_is_deterministic_for_a_seed() -> None:
    world = _world(300, 5)
    first = artist_split(world, FRACTIONS, 11)
    shuffled = dict(sorted(world.items(), reverse=True))  # input order does not matter
    assert artist_split(shuffled, FRACTIONS, 11) == first
    assert make_splits(list(world), "artist", FRACTIONS, 11, world) == first
    assert artist_split(world, FRACTIONS, 12) != first
    small = {"B000000001": (None, "Solo")}
    assert artist_split(small, FRACTIONS, 0) == {"train": ["B000000001"], "val": [], "test": []}


# ---------------------------------------------------------------------------------------- through prepare
@pytest.fixture(scope="module")
def mixed_raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A synthetic MARD dir (200 albums) whose metadata drops the artist MBID on every other album of an artist
    and upper-cases its name there, and renames the artist (same MBID) on every third; returns the dir and the
    true artist (generator MBID) of each album."""
    root = tmp_path_factory.mktemp("split") / "raw"
    generate(root, albums=200, seed=4, workers=1)
    lines = (root / "mard_metadata.json").read_bytes().splitlines()
    truth: dict[str, str] = {}
    seen: dict[str, int] = {}
    out = []
    for line in lines:
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)
            continue
        mbid = rec.get("artist-mbid")
        if mbid:
            truth[rec["amazon-id"]] = mbid
            k = seen[mbid] = seen.get(mbid, 0) + 1
            if k % 2 == 0:
                del rec["artist-mbid"]
                rec["artist"] = rec["artist"].upper()
            elif k % 3 == 0:
                rec["artist"] = f"{rec['artist']} feat. Someone"
        out.append(orjson.dumps(rec))
    (root / "mard_metadata.json").write_bytes(b"\n".join(out) + b"\n")
    assert sum(1 for k in seen.values() if k >= 3) >= 5  # the rewrite made mixed artists
    return root, truth


def test_prepared_artist_split_keeps_each_artist_in_one_split(
    mixed_raw: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    raw, truth = mixed_raw
    config = PrepareConfig(split="artist", split_seed=3, workers=1)
    d = ProcessedData.load(prepare(raw, config, processed_dir=tmp_path / "a", verbose=False))
    paired = d.albums.filter(pl.col("split").is_not_null())
    splits_of: dict[str, set[str]] = {}
    for row in paired.iter_rows(named=True):
        if row["amazon_id"] in truth:
            splits_of.setdefault(truth[row["amazon_id"]], set()).add(row["split"])
    assert sum(len(s) > 1 for s in splits_of.values()) == 0, "an artist straddles splits"
    assert len(splits_of) > 20 and paired["artist_mbid"].null_count() > 20  # both kinds of key were used
    sizes = [len(d.split_albums(s)) for s in SPLITS]
    assert abs(sizes[0] / sum(sizes) - 0.8) < 0.1 and min(sizes) > 0
    # the same album split, by contrast, lets artists straddle (what the artist split exists to prevent)
    album_config = PrepareConfig(split="album", workers=1)
    album = ProcessedData.load(prepare(raw, album_config, processed_dir=tmp_path / "b", verbose=False))
    straddle: dict[str, set[str]] = {}
    for row in album.albums.filter(pl.col("split").is_not_null()).iter_rows(named=True):
        if row["amazon_id"] in truth:
            straddle.setdefault(truth[row["amazon_id"]], set()).add(row["split"])
    assert sum(len(s) > 1 for s in straddle.values()) > 0
    # deterministic for a split_seed: a rebuild elsewhere gives the same splits.json
    again = prepare(raw, config, processed_dir=tmp_path / "c", verbose=False)
    assert (again / "splits.json").read_bytes() == (d.root / "splits.json").read_bytes()
    mentions = d.manifest["split_mentions"]
    assert [mentions[s]["reviews"] for s in SPLITS] == [len(d.split_review_indices(s)) for s in SPLITS]
    assert json.loads((d.root / "manifest.json").read_text())["config"]["split"] == "artist"


# ----------------------------------------------------------------------------------------------- mentions
def test_mention_counts_are_whole_word_and_case_insensitive() -> None:
    albums = pl.DataFrame({
        "amazon_id": ["A1", "A2", "A3"],
        "artist": ["AC/DC", "Cat", None],
        "title": ["Back in Black", "Felines", "Nameless"],
    })
    reviews = pl.DataFrame({
        "amazon_id": ["A1", "A1", "A1", "A2", "A2", "A3"],
        "summary": ["", "ac/dc rules", "", "Catchy", "", "nameless wonder"],
        "text": ["Back In Black is loud", "great", "acdc?", "catalogue", "the cat. sings", "fine"],
    })
    splits = {"train": ["A1"], "val": ["A2"], "test": ["A3"]}
    m = mention_counts(albums, reviews, splits, PrepareConfig())
    assert m["train"] == {"reviews": 3, "naming_artist": 1, "naming_title": 1, "naming_either": 2}
    assert m["val"] == {"reviews": 2, "naming_artist": 1, "naming_title": 0, "naming_either": 1}
    assert m["test"] == {"reviews": 1, "naming_artist": 0, "naming_title": 1, "naming_either": 1}
    only_text = mention_counts(albums, reviews, splits, PrepareConfig(text_fields=("reviewText",)))
    assert only_text["train"]["naming_artist"] == 0 and only_text["test"]["naming_title"] == 0


def test_an_unsplit_album_still_links_an_artists_keys() -> None:
    # A (split) has the MBID and a renamed credit; B (split) has only the plain name; C (no audio, not split) is
    # the one album with both the MBID and the plain name. Without C's keys, A and B would be two "artists".
    artists = {
        "A": ("mbid-1", "Plain Name feat. Someone"),
        "B": (None, "PLAIN NAME"),
        "C": ("mbid-1", "Plain Name"),
        **{f"X{i:02d}": (f"other-{i}", f"Other {i}") for i in range(30)},
    }
    split_ids = ["A", "B", *[f"X{i:02d}" for i in range(30)]]
    for seed in range(20):
        splits = make_splits(split_ids, "artist", FRACTIONS, seed, artists)
        where = {aid: name for name, ids in splits.items() for aid in ids}
        assert where["A"] == where["B"] and "C" not in where
        assert sorted(where) == sorted(split_ids)
