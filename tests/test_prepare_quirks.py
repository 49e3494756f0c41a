"""Every real-data quirk is counted with its reason — never fatal, never silent.

Two test beds: a hand-written MARD dir holding one instance of each quirk (built from the real AcousticBrainz
documents in tests/data/acousticbrainz/), and synthetic dirs whose injected quirks are listed in ``.synth.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from mte.data.prepare import PrepareConfig, prepare
from mte.data.processed import ProcessedData
from mte.data.synth import generate

REAL = Path(__file__).resolve().parent / "data" / "acousticbrainz"
BOWIE = "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e.json"
JOURNEY = "B00BNGTBZQ_0dad432b-16cc-4bf0-8961-fd31d124b01b.json"
VIOLIN = "B000VIOLIN_335679c3-0222-c2b4-8233-7ef4570fe758.json"
DESC = "acousticbrainz_descriptors"
META, REVIEWS = "mard_metadata.json", "mard_reviews.json"


def _doc(name: str) -> dict[str, Any]:
    return json.loads((REAL / name).read_bytes())


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _review(aid: str, reviewer: str, text: str, summary: str = "ok", t: int = 1000) -> dict[str, Any]:
    return {"amazon-id": aid, "reviewerID": reviewer, "reviewText": text, "summary": summary, "overall": 4.0,
            "unixReviewTime": t}


def build_quirky_mard(root: Path) -> Path:
    """One of each quirk; the comments say what prepare must report."""
    (root / DESC).mkdir(parents=True)
    d = root / DESC
    for name in (BOWIE, JOURNEY, VIOLIN):  # valid; VIOLIN's album has no reviews and no metadata
        (d / name).write_bytes((REAL / name).read_bytes())
    mbid = "11111111-2222-3333-4444-{:012d}"
    bowie = (REAL / BOWIE).read_bytes()
    (d / f"B00000BRKN_{mbid.format(1)}.json").write_bytes(bowie[: len(bowie) // 2])  # broken_json
    doc = _doc(BOWIE)
    del doc["lowlevel"]["mfcc"]
    (d / f"B00000MFCC_{mbid.format(2)}.json").write_text(json.dumps(doc))  # missing_mfcc
    doc = _doc(BOWIE)
    doc["lowlevel"]["spectral_rolloff"]["mean"] = math.nan
    (d / f"B0000NANXX_{mbid.format(3)}.json").write_text(json.dumps(doc))  # non_finite (NaN token)
    (d / f"B0000NUTF8_{mbid.format(4)}.json").write_bytes(bowie.replace(b'"Soul Love"', b'"Soul \xff Love"'))
    doc = _doc(BOWIE)
    del doc["lowlevel"]["zerocrossingrate"]["mean"]
    (d / f"B0000STATX_{mbid.format(5)}.json").write_text(json.dumps(doc))  # missing_stat
    doc = _doc(BOWIE)
    doc["lowlevel"]["mfcc"]["cov"] = "oops"
    (d / f"B0000WRONG_{mbid.format(6)}.json").write_text(json.dumps(doc))  # wrong_type
    (d / "B0007MUR2W-e8afe383-1478-497e-90b1-7885c7f37f6e.json").write_bytes(bowie)  # bad_filename
    (d / "README.txt").write_text("not a descriptor")  # bad_filename
    (d / "subdir").mkdir()  # not_a_file

    meta = [
        _line({"amazon-id": "B0007MUR2W", "artist": "David Bowie", "title": "Ziggy &amp; the Spiders",
               "first-release-year": "1972-06-06"}),  # repaired html_entities; no root-genre → tag genre
        _line({"amazon-id": "B00BNGTBZQ", "artist": "Austin Wintory@", "title": "Journey", "root-genre": "Soundtracks",
               "first-release-year": 2012}).replace(b"@", b"\xe9"),  # repaired not_utf8
        _line({"amazon-id": "B00000BRKN", "artist": "Broken Descriptor", "title": "X"}),
        _line({"amazon-id": "B00REVONLY", "artist": "Review Only", "title": "First"}),
        _line({"amazon-id": "B00REVONLY", "artist": "Review Only", "title": "Second"}),  # duplicate_album (line 5)
        b'{"amazon-id": "B00TRUNCAT", "artist": "Tru\n',  # broken_json (line 6)
        b'"just a string"\n',  # not_an_object (line 7)
        _line({"title": "no id"}),  # missing_amazon_id (line 8)
        b"{'amazon-id': 'B00PYTHON1', 'title': 'Py', 'related': {'also_bought': ['X']}}\n",  # python_literal
        _line({"amazon-id": "B00NULLED1", "artist": ["A", "B"], "title": "Nulls", "first-release-year": "unknown",
               "artist-mbid": "not-a-uuid"}),  # nulled: artist, first-release-year, artist-mbid (line 10)
    ]
    (root / META).write_bytes(b"".join(meta))

    reviews = [
        _line(_review("B0007MUR2W", "R1", "Great &amp; glam.<br />Love it", t=2)),  # html_entities + html_tags
        _line(_review("B0007MUR2W", "R2", "Classic rock record")),
        _line(_review("B00BNGTBZQ", "R1", "Beautiful score")),
        _line(_review("B00BNGTBZQ", "R1", "Beautiful score")),  # duplicate_review (line 4)
        _line(_review("B00BNGTBZQ", "R3", "   ", summary="only a summary")),  # kept: summary is a text field
        _line(_review("B00BNGTBZQ", "R4", "Caf@ music")).replace(b"@", b"\xe9"),  # repaired not_utf8
        _line(_review("B00REVONLY", "R1", "No audio for this one")),  # unpaired
        _line(_review("B00REVONLY", "R2", "Still no audio")),  # unpaired
        _line(_review("B00000BRKN", "R1", "Its descriptor is broken")),  # unpaired
        _line(_review("B0000GHOST", "R1", "Album in no other file")),  # unpaired, no metadata
        b'{"amazon-id": "B0007MUR2W", "reviewText": "trunc\n',  # broken_json (line 11)
        b"\n",  # blank_line (line 12)
        b"[1, 2]\n",  # not_an_object (line 13)
        _line({"reviewText": "who am I"}),  # missing_amazon_id (line 14)
        _line(_review("short", "R1", "bad id")),  # bad_amazon_id (line 15)
        _line(_review("B0007MUR2W", "R6", "   ", summary="")),  # empty_review (line 16)
        _line({**_review("B0007MUR2W", "R5", "Odd rating"), "overall": 7, "unixReviewTime": "yesterday"}),  # nulled
    ]
    (root / REVIEWS).write_bytes(b"".join(reviews))
    return root


@pytest.fixture(scope="module")
def quirky(tmp_path_factory: pytest.TempPathFactory) -> ProcessedData:
    root = build_quirky_mard(tmp_path_factory.mktemp("quirky") / "raw")
    out = prepare(root, PrepareConfig(workers=1), processed_dir=root.parent / "p", verbose=False)
    return ProcessedData.load(out)


def _items(m: dict[str, Any]) -> set[tuple[str, int | None, str]]:
    return {(i["source"], i["line"], i["reason"]) for i in m["skipped_items"]}


def test_descriptor_quirks_counted_with_reason(quirky: ProcessedData) -> None:
    m = quirky.manifest
    assert m["skipped_by_source"][DESC] == {
        "bad_filename": 2, "broken_json": 1, "missing_mfcc": 1, "missing_stat": 1, "non_finite": 1,
        "not_a_file": 1, "not_utf8": 1, "wrong_type": 1,
    }
    items = _items(m)
    mbid = "11111111-2222-3333-4444-{:012d}.json"
    for expected in (
        (f"B00000BRKN_{mbid.format(1)}", None, "broken_json"),
        (f"B00000MFCC_{mbid.format(2)}", None, "missing_mfcc"),
        (f"B0000NANXX_{mbid.format(3)}", None, "non_finite"),
        (f"B0000NUTF8_{mbid.format(4)}", None, "not_utf8"),
        (f"B0000STATX_{mbid.format(5)}", None, "missing_stat"),
        (f"B0000WRONG_{mbid.format(6)}", None, "wrong_type"),
        ("README.txt", None, "bad_filename"),
        ("B0007MUR2W-e8afe383-1478-497e-90b1-7885c7f37f6e.json", None, "bad_filename"),
        ("subdir", None, "not_a_file"),
    ):
        assert expected in items
    c = m["counts"]
    assert c["descriptor_files"] == 12 and c["tracks"] == 3 and c["skipped_descriptors"] == 9
    assert sorted(quirky.tracks["file"]) == sorted([BOWIE, JOURNEY, VIOLIN])


def test_metadata_quirks(quirky: ProcessedData) -> None:
    m = quirky.manifest
    assert m["skipped_by_source"][META] == {
        "broken_json": 1, "duplicate_album": 1, "missing_amazon_id": 1, "not_an_object": 1,
    }
    assert m["repaired_by_source"][META] == {"html_entities": 1, "not_utf8": 1, "python_literal": 1}
    items = _items(m)
    for line, reason in ((5, "duplicate_album"), (6, "broken_json"), (7, "not_an_object"), (8, "missing_amazon_id")):
        assert (META, line, reason) in items
    albums = {r["amazon_id"]: r for r in quirky.albums.iter_rows(named=True)}
    assert albums["B0007MUR2W"]["title"] == "Ziggy & the Spiders" and albums["B0007MUR2W"]["year"] == 1972
    assert albums["B0007MUR2W"]["genre"] == "Rock"  # no root-genre: the descriptor's genre tag
    assert albums["B00BNGTBZQ"]["artist"] == "Austin Wintory\ufffd" and albums["B00BNGTBZQ"]["genre"] == "Soundtracks"
    assert albums["B00REVONLY"]["title"] == "First"  # first line wins
    assert albums["B00PYTHON1"]["title"] == "Py"
    assert albums["B00NULLED1"]["artist"] is None and albums["B00NULLED1"]["year"] is None
    assert albums["B00NULLED1"]["artist_mbid"] is None and albums["B00NULLED1"]["title"] == "Nulls"
    assert m["counts"]["metadata_lines"] == 10 and m["counts"]["metadata_albums"] == 6


def test_review_quirks(quirky: ProcessedData) -> None:
    m = quirky.manifest
    assert m["skipped_by_source"][REVIEWS] == {
        "bad_amazon_id": 1, "blank_line": 1, "broken_json": 1, "duplicate_review": 1, "empty_review": 1,
        "missing_amazon_id": 1, "not_an_object": 1,
    }
    assert m["repaired_by_source"][REVIEWS] == {"html_entities": 1, "html_tags": 1, "not_utf8": 1}
    items = _items(m)
    for line, reason in ((4, "duplicate_review"), (16, "empty_review"), (11, "broken_json"), (12, "blank_line"),
                         (13, "not_an_object"), (14, "missing_amazon_id"), (15, "bad_amazon_id")):
        assert (REVIEWS, line, reason) in items
    texts = set(quirky.reviews["text"])
    assert "Great & glam. Love it" in texts and "Caf\ufffd music" in texts
    c = m["counts"]
    assert c["review_lines"] == 17 and c["reviews"] == 10
    assert c["reviews"] + sum(m["skipped_by_source"][REVIEWS].values()) == c["review_lines"]
    assert c["reviews_paired"] == 6 and c["reviews_unpaired"] == 4 and c["reviews_without_metadata"] == 1


def test_summary_only_review_is_kept_when_summary_is_read(quirky: ProcessedData, tmp_path: Path) -> None:
    """Line 5 has no text but a summary: kept (and tokenised) with the default text fields, skipped as
    empty_review when the model reads reviewText only."""
    row = quirky.reviews.filter(pl.col("summary") == "only a summary").row(0, named=True)
    assert row["text"] == "" and row["paired"] and len(row["tokens"]) == 1  # "only", "a" are stop words
    assert quirky.manifest["counts"]["reviews_summary_only"] == 1
    out = prepare(build_quirky_mard(tmp_path / "raw"), PrepareConfig(text_fields=("reviewText",), workers=1),
                  processed_dir=tmp_path / "p", verbose=False)
    m = ProcessedData.load(out).manifest
    assert m["skipped_by_source"][REVIEWS]["empty_review"] == 2
    assert (REVIEWS, 5, "empty_review") in _items(m) and m["counts"]["reviews"] == 9


def test_unparseable_fields_are_nulled_with_a_record(quirky: ProcessedData) -> None:
    """Nothing dropped without a record: a present value that cannot be parsed becomes null and is counted."""
    m = quirky.manifest
    assert m["nulled_by_source"] == {
        META: {"artist": 1, "artist-mbid": 1, "first-release-year": 1},
        REVIEWS: {"overall": 1, "unixReviewTime": 1},
    }
    examples = {(i["source"], i["line"], i["field"]): i["value"] for i in m["nulled_items"]}
    assert examples[(META, 10, "first-release-year")] == "'unknown'"
    assert examples[(META, 10, "artist")] == "['A', 'B']"
    assert examples[(REVIEWS, 17, "overall")] == "7"
    row = quirky.reviews.filter(pl.col("reviewer_id") == "R5").row(0, named=True)
    assert row["rating"] is None and row["unix_time"] is None and row["text"] == "Odd rating"


def test_unpaired_albums_kept_without_split(quirky: ProcessedData) -> None:
    albums = {r["amazon_id"]: r for r in quirky.albums.iter_rows(named=True)}
    # every id from metadata, reviews or valid descriptors; nulls where the metadata is missing
    assert set(albums) == {"B0007MUR2W", "B00BNGTBZQ", "B00000BRKN", "B00REVONLY", "B000VIOLIN", "B0000GHOST",
                           "B00PYTHON1", "B00NULLED1"}
    violin, ghost = albums["B000VIOLIN"], albums["B0000GHOST"]
    assert violin["artist"] is None and violin["n_tracks"] == 1 and violin["n_reviews"] == 0
    assert ghost["title"] is None and ghost["n_reviews"] == 1 and ghost["n_tracks"] == 0
    paired = {a for a, r in albums.items() if r["split"] is not None}
    assert paired == {"B0007MUR2W", "B00BNGTBZQ"}
    unpaired_reviews = quirky.reviews.filter(~pl.col("paired"))
    assert set(unpaired_reviews["amazon_id"]) == {"B00REVONLY", "B00000BRKN", "B0000GHOST"}
    assert unpaired_reviews["split"].is_null().all()
    assert quirky.tracks.filter(pl.col("amazon_id") == "B000VIOLIN")["split"].to_list() == [None]
    c = quirky.manifest["counts"]
    assert c["tracks_unpaired"] == 1 and c["tracks_without_metadata"] == 1 and c["albums_without_metadata"] == 2
    assert c["albums_paired"] == 2 and c["albums_reviews_only"] == 3 and c["albums_tracks_only"] == 1
    assert albums["B00PYTHON1"]["n_reviews"] == albums["B00PYTHON1"]["n_tracks"] == 0


def test_summary_line_names_every_reason(quirky: ProcessedData, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    prepare(build_quirky_mard(tmp_path / "raw"), PrepareConfig(workers=1), processed_dir=tmp_path / "p")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("prepare: 8 albums · 10 reviews (6 paired) · 3 tracks")
    assert "skipped 9 descriptors (bad_filename: 2, broken_json: 1," in line
    assert "skipped 7 review lines (" in line
    assert "repaired review lines (html_entities: 1, html_tags: 1, not_utf8: 1)" in line
    assert "skipped 4 metadata lines (" in line and "repaired metadata lines (" in line and "\n" not in line
    assert "nulled 5 unparseable field values" in line


# ----------------------------------------------------------------------------------- synthetic ground truth
@pytest.fixture(scope="module", params=[(120, 5, 1), (60, 11, 3)], ids=["mard-layout", "augmented"])
def synthetic(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    albums, seed, tracks = request.param
    root = tmp_path_factory.mktemp("synth") / "raw"
    generate(root, albums=albums, seed=seed, tracks_per_album=tracks, quirks=True, workers=1)
    truth = orjson.loads((root / ".synth.json").read_bytes())
    out = prepare(root, PrepareConfig(workers=1), processed_dir=root.parent / "p", verbose=False)
    return truth, ProcessedData.load(out).manifest


def _truth_items(truth: dict, quirk: str) -> set[tuple[str, int | None]]:
    return {(i["source"], i.get("line")) for i in truth["quirk_items"].get(quirk, [])}


def _manifest_items(m: dict, reason: str, sources: set[str] | None = None) -> set[tuple[str, int | None]]:
    return {(i["source"], i["line"]) for i in m["skipped_items"]
            if i["reason"] == reason and (sources is None or i["source"] in sources)}


def test_synthetic_descriptor_quirks_match_ground_truth(synthetic: tuple[dict, dict]) -> None:
    truth, m = synthetic
    q = truth["quirks"]
    expected = {"broken_json": q["broken_descriptor"], "missing_mfcc": q["missing_mfcc"],
                "non_finite": q["nan_value"], "bad_filename": q["bad_filename"]}
    assert m["skipped_by_source"][DESC] == {k: v for k, v in expected.items() if v}
    for quirk, reason in (("broken_descriptor", "broken_json"), ("missing_mfcc", "missing_mfcc"),
                          ("nan_value", "non_finite"), ("bad_filename", "bad_filename")):
        names = {s for s, _ in _truth_items(truth, quirk)}
        assert {s for s, _ in _manifest_items(m, reason)} >= names and len(names) == q[quirk]
    c = m["counts"]
    assert c["descriptor_files"] == truth["counts"]["descriptor_files"]
    assert c["tracks"] + c["skipped_descriptors"] == c["descriptor_files"]
    assert c["tracks_without_genre_tag"] <= q["descriptor_without_genre"]


def test_synthetic_text_quirks_match_ground_truth(synthetic: tuple[dict, dict]) -> None:
    truth, m = synthetic
    q = truth["quirks"]
    assert m["skipped_by_source"][META] == {"broken_json": q["broken_metadata"]}
    assert _manifest_items(m, "broken_json", {META}) == _truth_items(truth, "broken_metadata")
    # The generator's empty reviews have a summary, which the default text fields read: they are kept. A copy of
    # one is both a duplicate and empty in the ground truth; prepare skips it as a duplicate.
    empty = _truth_items(truth, "empty_review")
    duplicates = _truth_items(truth, "duplicate_review")
    assert m["skipped_by_source"][REVIEWS] == {"duplicate_review": len(duplicates)}
    assert _manifest_items(m, "duplicate_review") == duplicates
    assert m["counts"]["reviews_summary_only"] == len(empty - duplicates) > 0
    assert m["nulled_by_source"] == {}  # the generator writes no unparseable field: nothing may be nulled
    assert m["repaired_by_source"][REVIEWS] == {"html_entities": q["html_entities"], "not_utf8": q["non_utf8_review"]}
    c = m["counts"]
    assert c["review_lines"] == truth["counts"]["reviews"]
    assert c["reviews"] == c["review_lines"] - len(duplicates)
    assert c["albums"] == truth["counts"]["albums"]
    assert c["albums_reviews_only"] >= q["album_without_descriptor"]
    assert c["albums_tracks_only"] >= 1


def test_long_reviews_are_truncated(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    truth = generate(root, albums=40, seed=4, quirks=["long_review"], workers=1)
    assert truth["quirks"]["long_review"] >= 1
    d = ProcessedData.load(prepare(root, PrepareConfig(workers=1), processed_dir=tmp_path / "p", verbose=False))
    long = d.reviews.filter(pl.col("text").str.len_chars() > 5000)
    assert len(long) == truth["quirks"]["long_review"]
    assert (long["tokens"].list.len() == 400).all()


# ------------------------------------------------------------------------------------------- lowlevel_all
@pytest.mark.parametrize("n_lacking", [1, 2])
def test_lowlevel_all_fixes_the_schema_at_99_percent(tmp_path: Path, n_lacking: int) -> None:
    """101 documents; the ones lacking `lowlevel.dissonance` are 1/101 (name kept → those skipped as missing_stat)
    or 2/101 (below 99% → name dropped, every document kept)."""
    root = tmp_path / "raw"
    (root / DESC).mkdir(parents=True)
    full = (REAL / BOWIE).read_bytes()
    lacking_doc = _doc(BOWIE)
    del lacking_doc["lowlevel"]["dissonance"]
    lacking = json.dumps(lacking_doc).encode()
    for i in range(101):
        name = f"B{i:09d}_11111111-2222-3333-4444-{i:012d}.json"
        (root / DESC / name).write_bytes(lacking if i < n_lacking else full)
    (root / META).write_bytes(b"")
    (root / REVIEWS).write_bytes(b"".join(_line(_review(f"B{i:09d}", "R", "fine album")) for i in range(101)))
    out = prepare(root, PrepareConfig(features="lowlevel_all", workers=1), processed_dir=tmp_path / "p",
                  verbose=False)
    d = ProcessedData.load(out)
    has_dissonance = any(n.startswith("lowlevel.dissonance.") for n in d.feature_names)
    if n_lacking == 1:
        assert has_dissonance and len(d.tracks) == 100
        assert d.manifest["skipped"] == {"missing_stat": 1}
        assert d.manifest["skipped_items"][0]["detail"].startswith("lowlevel.dissonance.")
    else:
        assert not has_dissonance and len(d.tracks) == 101 and d.manifest["skipped"] == {}
    assert d.feature_names == sorted(d.feature_names)
    # what the presence rule left out is named in the manifest, with its coverage
    schema = d.manifest["feature_schema"]
    assert schema["documents"] == 101 and schema["names"] == len(d.feature_names)
    left_out = schema["left_out"]
    dissonance = {n for n in left_out if n.startswith("lowlevel.dissonance.")}
    if n_lacking == 1:
        assert not dissonance
    else:
        assert dissonance and all(left_out[n] == {"documents": 99, "coverage": 0.9802} for n in dissonance)
    assert not set(left_out) & set(d.feature_names)
