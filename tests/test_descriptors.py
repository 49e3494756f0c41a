"""Tests for mte.data.descriptors on real AcousticBrainz documents (tests/data/acousticbrainz, CC0).

Expected values are re-derived here from the raw JSON (stdlib json, plain indexing), never through the
module's helpers, so a bug in the module cannot hide in its own test oracle.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mte.data.descriptors import (
    FEATURE_SETS,
    SEED369_STAT_ORDER,
    DescriptorError,
    descriptor_tags,
    extract_features,
    feature_names,
    load_descriptor,
    parse_track_filename,
)

DATA = Path(__file__).parent / "data" / "acousticbrainz"
BOWIE = "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e.json"
JOURNEY = "B00BNGTBZQ_0dad432b-16cc-4bf0-8961-fd31d124b01b.json"
VIOLIN = "B000VIOLIN_335679c3-0222-c2b4-8233-7ef4570fe758.json"
BOWIE_MBID = "e8afe383-1478-497e-90b1-7885c7f37f6e"
ALL_DOCS = (BOWIE, JOURNEY, VIOLIN)
PUBLISHED_STAT_ORDER = ("min", "max", "dvar2", "median", "dmean2", "dmean", "var", "dvar", "mean")


def raw_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


def raw_doc(name: str) -> dict:
    """A fresh stdlib-parsed copy that a test may mutate freely."""
    return json.loads(raw_bytes(name))


def reason_of(fn, *args) -> str:
    with pytest.raises(DescriptorError) as info:
        fn(*args)
    return info.value.reason


def expected_seed369(raw: dict) -> tuple[list[str], list[float]]:
    """The published 369-vector and its names, spelled out by hand from the raw JSON."""
    ll = raw["lowlevel"]
    names: list[str] = []
    values: list[float] = []
    for key in ("cov", "icov"):
        for i in range(13):
            for j in range(13):
                names.append(f"lowlevel.mfcc.{key}[{i}][{j}]")
                values.append(ll["mfcc"][key][i][j])
    for i in range(13):
        names.append(f"lowlevel.mfcc.mean[{i}]")
        values.append(ll["mfcc"]["mean"][i])
    for desc in ("spectral_rolloff", "zerocrossingrate"):
        for stat in ("min", "max", "dvar2", "median", "dmean2", "dmean", "var", "dvar", "mean"):
            names.append(f"lowlevel.{desc}.{stat}")
            values.append(ll[desc][stat])
    return names, values


# ------------------------------------------------------------------------------------------------- file names
def test_data_files_follow_mard_naming():
    assert sorted(p.name for p in DATA.glob("*.json")) == sorted(ALL_DOCS)
    for name in ALL_DOCS:
        amazon_id, mbid = parse_track_filename(name)
        assert name == f"{amazon_id}_{mbid}.json"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (BOWIE, ("B0007MUR2W", BOWIE_MBID)),
        (f"0123456789_{BOWIE_MBID}.json", ("0123456789", BOWIE_MBID)),
        (f"B0007MUR2W_{BOWIE_MBID.upper()}.json", ("B0007MUR2W", BOWIE_MBID)),  # upper-case hex → lower
        (f"/some/raw/acousticbrainz_descriptors/{BOWIE}", ("B0007MUR2W", BOWIE_MBID)),
        (VIOLIN, ("B000VIOLIN", "335679c3-0222-c2b4-8233-7ef4570fe758")),
    ],
)
def test_parse_track_filename_accepts(name, expected):
    assert parse_track_filename(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "",
        "e8afe383-1478-497e-90b1-7885c7f37f6e.json",  # no amazon-id
        "b0007mur2w_e8afe383-1478-497e-90b1-7885c7f37f6e.json",  # lower-case amazon-id
        "B0007MUR2_e8afe383-1478-497e-90b1-7885c7f37f6e.json",  # 9 chars
        "B0007MUR2WX_e8afe383-1478-497e-90b1-7885c7f37f6e.json",  # 11 chars
        "B0007-UR2W_e8afe383-1478-497e-90b1-7885c7f37f6e.json",  # '-' in amazon-id
        "B0007MUR2W-e8afe383-1478-497e-90b1-7885c7f37f6e.json",  # wrong separator
        "B0007MUR2W_335679c30222c2b482337ef4570fe758.json",  # 32 hex, not canonical UUID
        "B0007MUR2W_335679c3-0222-c2b4-82337ef4570fe758.json",  # wrong grouping
        "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6.json",  # short last group
        "B0007MUR2W_g8afe383-1478-497e-90b1-7885c7f37f6e.json",  # non-hex
        "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e.JSON",
        "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e.json.gz",
        "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e.json\n",
        "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e",
        " B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e.json",
        "B0007MUR2W_e8afe383-1478-497e-90b1-7885c7f37f6e_1.json",
        "B0007MUR2W_{e8afe383-1478-497e-90b1-7885c7f37f6e}.json",
        "B0007MUR2\u0662_e8afe383-1478-497e-90b1-7885c7f37f6e.json",  # Arabic-Indic digit
    ],
)
def test_parse_track_filename_rejects(name):
    assert reason_of(parse_track_filename, name) == "bad_filename"


def test_parse_track_filename_rejects_non_strings():
    assert reason_of(parse_track_filename, None) == "bad_filename"
    assert reason_of(parse_track_filename, BOWIE.encode()) == "bad_filename"


# ------------------------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("name", ALL_DOCS)
def test_load_descriptor_equals_stdlib_parse(name):
    assert load_descriptor(raw_bytes(name)) == raw_doc(name)


def test_load_descriptor_accepts_utf8_bom():
    assert load_descriptor(b"\xef\xbb\xbf" + raw_bytes(BOWIE)) == raw_doc(BOWIE)


@pytest.mark.parametrize(
    "data",
    [
        raw_bytes(BOWIE)[: len(raw_bytes(BOWIE)) // 2],  # truncated download
        raw_bytes(BOWIE).rstrip()[:-1],  # missing the final brace
        b"",
        b"   \n",
        b"garbage, definitely not JSON",
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"lowlevel": nan}',  # lower-case nan is not a JSON (or stdlib-accepted) token
        b"[" * 100_000,  # nesting deeper than either parser allows
    ],
)
def test_load_descriptor_broken_json(data):
    assert reason_of(load_descriptor, data) == "broken_json"


@pytest.mark.parametrize(
    "data",
    [
        raw_bytes(BOWIE).replace(b"Soul Love", "Soul Löve".encode("latin-1")),  # latin-1 inside a tag
        b"\xff\xfe\x00\x01garbage\x80\x81",
        "{}".encode("utf-16"),
    ],
)
def test_load_descriptor_not_utf8(data):
    assert reason_of(load_descriptor, data) == "not_utf8"


@pytest.mark.parametrize("data", [b"[1, 2, 3]", b"[" + raw_bytes(BOWIE) + b"]", b"null", b'"text"', b"42", b"true"])
def test_load_descriptor_not_an_object(data):
    assert reason_of(load_descriptor, data) == "not_an_object"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_bare_non_finite_token_loads_then_is_non_finite(token):
    """Essentia can write bare NaN/Infinity: orjson refuses them; the doc must still load and fail precisely."""
    data = raw_bytes(BOWIE).replace(b'"dvar2": 3818311', f'"dvar2": {token}'.encode())
    assert data != raw_bytes(BOWIE)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(data)  # proves the fallback path is what is being tested
    doc = load_descriptor(data)
    value = doc["lowlevel"]["spectral_rolloff"]["dvar2"]
    assert not math.isfinite(value)
    for feature_set in ("seed369", "lowlevel_all"):
        with pytest.raises(DescriptorError) as info:
            extract_features(doc, feature_set)
        assert info.value.reason == "non_finite"
        assert "lowlevel.spectral_rolloff.dvar2" in info.value.detail
    # seed169 does not read spectral_rolloff, so the same document is usable there
    assert extract_features(doc, "seed169").shape == (169,)


# ------------------------------------------------------------------------------------------------ feature names
def test_published_stat_order():
    assert SEED369_STAT_ORDER == PUBLISHED_STAT_ORDER
    assert FEATURE_SETS == ("seed169", "seed369", "lowlevel_all")


def test_feature_names():
    names369, _ = expected_seed369(raw_doc(BOWIE))
    assert feature_names("seed369") == names369
    assert feature_names("seed169") == names369[:169]
    assert len(set(names369)) == 369
    assert feature_names("lowlevel_all") is None
    assert names369[351:360] == [f"lowlevel.spectral_rolloff.{s}" for s in PUBLISHED_STAT_ORDER]
    assert names369[360:] == [f"lowlevel.zerocrossingrate.{s}" for s in PUBLISHED_STAT_ORDER]


def test_feature_names_returns_a_copy():
    names = feature_names("seed369")
    names.clear()
    assert len(feature_names("seed369")) == 369


@pytest.mark.parametrize("feature_set", ["seed999", "", "SEED369"])
def test_unknown_feature_set(feature_set):
    with pytest.raises(ValueError, match="unknown feature set"):
        feature_names(feature_set)
    with pytest.raises(ValueError, match="unknown feature set"):
        extract_features(raw_doc(BOWIE), feature_set)


# ------------------------------------------------------------------------------------------------- seed vectors
@pytest.mark.parametrize("name", ALL_DOCS)
def test_seed369_every_field_matches_json(name):
    raw = raw_doc(name)
    vec = extract_features(load_descriptor(raw_bytes(name)), "seed369")
    assert isinstance(vec, np.ndarray)
    assert vec.dtype == np.float32
    assert vec.shape == (369,)
    exp_names, exp_values = expected_seed369(raw)
    assert feature_names("seed369") == exp_names
    for k, (feature, value) in enumerate(zip(exp_names, exp_values, strict=True)):
        assert vec[k] == np.float32(value), f"{name}: position {k} ({feature})"


@pytest.mark.parametrize("name", ALL_DOCS)
def test_seed169_is_cov_and_first_169_of_seed369(name):
    doc = load_descriptor(raw_bytes(name))
    v169 = extract_features(doc, "seed169")
    v369 = extract_features(doc, "seed369")
    assert v169.dtype == np.float32
    assert v169.shape == (169,)
    np.testing.assert_array_equal(v169, v369[:169])
    cov = raw_doc(name)["lowlevel"]["mfcc"]["cov"]
    assert v169[3 * 13 + 4] == np.float32(cov[3][4])  # row-major
    assert v169[4 * 13 + 3] == np.float32(cov[4][3])


def test_seed_vectors_differ_between_tracks():
    vecs = [extract_features(raw_doc(n), "seed369") for n in ALL_DOCS]
    assert not np.array_equal(vecs[0], vecs[1])
    assert not np.array_equal(vecs[0], vecs[2])


def test_extract_does_not_mutate_doc():
    doc = raw_doc(BOWIE)
    before = copy.deepcopy(doc)
    for feature_set in FEATURE_SETS:
        extract_features(doc, feature_set)
    descriptor_tags(doc)
    assert doc == before


# ------------------------------------------------------------------------------------------------- lowlevel_all
def test_lowlevel_all_bowie():
    raw = raw_doc(BOWIE)
    feats = extract_features(load_descriptor(raw_bytes(BOWIE)), "lowlevel_all")
    assert isinstance(feats, dict)
    assert 2000 <= len(feats) <= 4000
    assert all(type(v) is float for v in feats.values())
    assert all(math.isfinite(v) for v in feats.values())
    ll, rh, to = raw["lowlevel"], raw["rhythm"], raw["tonal"]
    assert feats["lowlevel.spectral_rolloff.dvar2"] == float(ll["spectral_rolloff"]["dvar2"]) == 3818311.0
    assert feats["lowlevel.mfcc.cov[3][4]"] == ll["mfcc"]["cov"][3][4]
    assert feats["lowlevel.mfcc.icov[12][0]"] == ll["mfcc"]["icov"][12][0]
    assert feats["lowlevel.mfcc.mean[12]"] == ll["mfcc"]["mean"][12]
    assert feats["lowlevel.average_loudness"] == ll["average_loudness"]
    assert feats["lowlevel.barkbands.mean[26]"] == ll["barkbands"]["mean"][26]
    assert "lowlevel.barkbands.mean[27]" not in feats
    assert feats["tonal.hpcp.mean[7]"] == to["hpcp"]["mean"][7]
    assert feats["tonal.chords_histogram[5]"] == to["chords_histogram"][5]
    assert feats["tonal.thpcp[35]"] == to["thpcp"][35]
    assert feats["rhythm.bpm"] == rh["bpm"]
    assert feats["rhythm.beats_count"] == 521.0
    assert feats["rhythm.beats_loudness_band_ratio.mean[5]"] == rh["beats_loudness_band_ratio"]["mean"][5]
    # every seed369 value is in lowlevel_all under the same name
    for feature, value in zip(*expected_seed369(raw), strict=True):
        assert feats[feature] == float(value)


def test_lowlevel_all_skips_and_encodings():
    feats = extract_features(raw_doc(BOWIE), "lowlevel_all")
    assert not any(n.startswith("rhythm.beats_position") for n in feats)  # variable length
    assert not any(n.startswith("metadata") for n in feats)
    for skipped in ("tonal.key_key", "tonal.chords_key", "tonal.key_scale", "tonal.chords_scale"):
        assert skipped not in feats
    assert feats["tonal.key_scale_major"] == 1.0  # D major
    assert feats["tonal.chords_scale_major"] == 1.0  # G major
    violin = extract_features(raw_doc(VIOLIN), "lowlevel_all")
    assert violin["tonal.key_scale_major"] == 0.0  # C minor
    assert violin["tonal.chords_scale_major"] == 1.0


def test_lowlevel_all_name_count_matches_hand_count():
    """Count the leaves by hand-walking the raw JSON (no module helpers) and compare."""
    raw = raw_doc(BOWIE)

    def count(v) -> int:
        if isinstance(v, dict):
            return sum(count(x) for x in v.values())
        if isinstance(v, list):
            return sum(count(x) for x in v)
        return 0 if isinstance(v, str) else 1

    expected = sum(count(raw[s]) for s in ("lowlevel", "rhythm", "tonal"))
    expected -= len(raw["rhythm"]["beats_position"])
    expected += 2  # key_scale_major, chords_scale_major
    assert len(extract_features(raw, "lowlevel_all")) == expected


def test_lowlevel_all_violin_doc_other_extractor():
    """The violin doc (essentia 2.1-dev) orders keys differently and writes ints where others write floats."""
    bowie_raw, violin_raw = raw_doc(BOWIE), raw_doc(VIOLIN)
    assert list(violin_raw["lowlevel"]) != list(bowie_raw["lowlevel"])  # different document order
    violin = extract_features(load_descriptor(raw_bytes(VIOLIN)), "lowlevel_all")
    bowie = extract_features(bowie_raw, "lowlevel_all")
    assert all(type(v) is float for v in violin.values())
    assert set(violin) == set(bowie)  # names are stable whatever the document order
    assert list(violin) != list(bowie)  # …but the dict follows the document: callers sort
    assert violin["lowlevel.silence_rate_30dB.mean"] == 1.0  # an int 1 in the JSON
    assert violin["lowlevel.silence_rate_30dB.var"] == 0.0  # an int 0 in the JSON
    assert violin["rhythm.beats_count"] == 7.0


def test_lowlevel_all_older_extractor_without_some_descriptors():
    raw = raw_doc(BOWIE)
    del raw["lowlevel"]["gfcc"]
    del raw["lowlevel"]["silence_rate_60dB"]
    del raw["tonal"]["thpcp"]
    del raw["rhythm"]["beats_loudness_band_ratio"]
    feats = extract_features(raw, "lowlevel_all")
    full = extract_features(raw_doc(BOWIE), "lowlevel_all")
    assert set(feats) < set(full)
    gone = set(full) - set(feats)
    # gfcc: cov 169 + icov 169 + mean 13; silence_rate_60dB: 9 stats; thpcp: 36; band ratio: 9 stats × 6 bands
    assert len(gone) == 351 + 9 + 36 + 54
    assert {n.split(".")[1].split("[")[0] for n in gone} == {
        "gfcc",
        "silence_rate_60dB",
        "thpcp",
        "beats_loudness_band_ratio",
    }
    assert extract_features(raw, "seed369").shape == (369,)


def test_lowlevel_all_booleans_and_label_lists():
    raw = raw_doc(BOWIE)
    raw["tonal"]["is_tonal"] = True
    raw["rhythm"]["flag"] = False
    raw["tonal"]["chords_progression"] = ["G", "D", "Em"]  # newer extractors: list of labels
    feats = extract_features(raw, "lowlevel_all")
    assert feats["tonal.is_tonal"] == 1.0
    assert feats["rhythm.flag"] == 0.0
    assert not any(n.startswith("tonal.chords_progression") for n in feats)


# ------------------------------------------------------------------------------------------------ error reasons
def mutated(mutate) -> dict:
    raw = raw_doc(BOWIE)
    mutate(raw)
    return raw


def _set(path: tuple, value):
    def mutate(raw):
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _del(path: tuple):
    def mutate(raw):
        node = raw
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _cov_ragged(raw):
    raw["lowlevel"]["mfcc"]["cov"][5].pop()


def _cov_drop_row(raw):
    raw["lowlevel"]["mfcc"]["cov"].pop()


def _cov_flat(raw):
    m = raw["lowlevel"]["mfcc"]
    m["cov"] = [x for row in m["cov"] for x in row]


def _cov_3d(raw):
    m = raw["lowlevel"]["mfcc"]
    m["cov"] = [[[x] for x in row] for row in m["cov"]]


ERROR_CASES = [
    # (id, mutation, feature sets that must fail, reason, text the detail must contain)
    ("drop_mfcc", _del(("lowlevel", "mfcc")), FEATURE_SETS, "missing_mfcc", "mfcc"),
    ("drop_lowlevel", _del(("lowlevel",)), FEATURE_SETS, "missing_mfcc", "lowlevel"),
    ("drop_rhythm", _del(("rhythm",)), ("lowlevel_all",), "missing_stat", "rhythm"),
    ("drop_cov", _del(("lowlevel", "mfcc", "cov")), FEATURE_SETS, "missing_mfcc", "lowlevel.mfcc.cov"),
    ("drop_icov", _del(("lowlevel", "mfcc", "icov")), ("seed369",), "missing_mfcc", "lowlevel.mfcc.icov"),
    ("drop_mean", _del(("lowlevel", "mfcc", "mean")), ("seed369",), "missing_mfcc", "lowlevel.mfcc.mean"),
    (
        "drop_stat",
        _del(("lowlevel", "spectral_rolloff", "dvar2")),
        ("seed369",),
        "missing_stat",
        "lowlevel.spectral_rolloff.dvar2",
    ),
    ("drop_zcr", _del(("lowlevel", "zerocrossingrate")), ("seed369",), "missing_stat", "lowlevel.zerocrossingrate"),
    ("drop_tonal", _del(("tonal",)), ("lowlevel_all",), "missing_stat", "tonal"),
    (
        "str_stat",
        _set(("lowlevel", "zerocrossingrate", "mean"), "0.1"),
        ("seed369",),
        "wrong_type",
        "lowlevel.zerocrossingrate.mean",
    ),
    (
        "none_stat",
        _set(("lowlevel", "spectral_rolloff", "min"), None),
        ("seed369", "lowlevel_all"),
        "wrong_type",
        "lowlevel.spectral_rolloff.min",
    ),
    (
        "dict_stat",
        _set(("lowlevel", "spectral_rolloff", "max"), {"v": 1.0}),
        ("seed369",),
        "wrong_type",
        "lowlevel.spectral_rolloff.max",
    ),
    (
        "list_stat",
        _set(("lowlevel", "spectral_rolloff", "max"), [1.0]),
        ("seed369",),
        "wrong_type",
        "lowlevel.spectral_rolloff.max",
    ),
    (
        "bool_stat",
        _set(("lowlevel", "spectral_rolloff", "max"), True),
        ("seed369",),
        "wrong_type",
        "lowlevel.spectral_rolloff.max",
    ),
    (
        "str_in_cov",
        _set(("lowlevel", "mfcc", "cov", 2, 3), "1.0"),
        FEATURE_SETS,
        "wrong_type",
        "lowlevel.mfcc.cov[2][3]",
    ),
    (
        "none_in_mean",
        _set(("lowlevel", "mfcc", "mean", 4), None),
        ("seed369", "lowlevel_all"),
        "wrong_type",
        "lowlevel.mfcc.mean[4]",
    ),
    (
        "dict_in_icov",
        _set(("lowlevel", "mfcc", "icov", 0, 0), {}),
        ("seed369", "lowlevel_all"),
        "wrong_type",
        "lowlevel.mfcc.icov[0][0]",
    ),
    (
        "cov_is_str",
        _set(("lowlevel", "mfcc", "cov"), "oops"),
        ("seed169", "seed369"),
        "wrong_type",
        "lowlevel.mfcc.cov",
    ),
    (
        "cov_is_number",
        _set(("lowlevel", "mfcc", "cov"), 1.5),
        ("seed169", "seed369"),
        "wrong_type",
        "lowlevel.mfcc.cov",
    ),
    ("mfcc_is_list", _set(("lowlevel", "mfcc"), []), ("seed169", "seed369"), "wrong_type", "lowlevel.mfcc"),
    ("lowlevel_is_list", _set(("lowlevel",), [1, 2]), FEATURE_SETS, "wrong_type", "lowlevel"),
    (
        "stats_is_number",
        _set(("lowlevel", "zerocrossingrate"), 0.5),
        ("seed369",),
        "wrong_type",
        "lowlevel.zerocrossingrate",
    ),
    (
        "mixed_list",
        _set(("tonal", "chords_histogram", 3), "x"),
        ("lowlevel_all",),
        "wrong_type",
        "tonal.chords_histogram[3]",
    ),
    (
        "nan_cov",
        _set(("lowlevel", "mfcc", "cov", 0, 1), float("nan")),
        FEATURE_SETS,
        "non_finite",
        "lowlevel.mfcc.cov[0][1]",
    ),
    (
        "inf_stat",
        _set(("lowlevel", "spectral_rolloff", "max"), float("inf")),
        ("seed369", "lowlevel_all"),
        "non_finite",
        "lowlevel.spectral_rolloff.max",
    ),
    (
        "neg_inf_mean",
        _set(("lowlevel", "mfcc", "mean", 12), float("-inf")),
        ("seed369", "lowlevel_all"),
        "non_finite",
        "lowlevel.mfcc.mean[12]",
    ),
    (
        "float32_overflow",
        _set(("lowlevel", "mfcc", "icov", 7, 7), 1e39),
        ("seed369",),
        "non_finite",
        "lowlevel.mfcc.icov[7][7]",
    ),
    (
        "nan_hpcp",
        _set(("tonal", "hpcp", "mean", 7), float("nan")),
        ("lowlevel_all",),
        "non_finite",
        "tonal.hpcp.mean[7]",
    ),
    ("nan_scalar", _set(("rhythm", "bpm"), float("nan")), ("lowlevel_all",), "non_finite", "rhythm.bpm"),
    ("huge_int", _set(("rhythm", "beats_count"), 10**400), ("lowlevel_all",), "non_finite", "rhythm.beats_count"),
    ("cov_ragged", _cov_ragged, FEATURE_SETS[:2], "bad_shape", "lowlevel.mfcc.cov"),
    ("cov_12_rows", _cov_drop_row, FEATURE_SETS[:2], "bad_shape", "lowlevel.mfcc.cov"),
    ("cov_flat", _cov_flat, FEATURE_SETS[:2], "bad_shape", "lowlevel.mfcc.cov"),
    ("cov_3d", _cov_3d, FEATURE_SETS[:2], "bad_shape", "lowlevel.mfcc.cov"),
    ("mean_12", _del(("lowlevel", "mfcc", "mean", 0)), ("seed369",), "bad_shape", "lowlevel.mfcc.mean"),
    (
        "icov_14x14",
        _set(("lowlevel", "mfcc", "icov"), [[0.0] * 14] * 14),
        ("seed369",),
        "bad_shape",
        "lowlevel.mfcc.icov",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "sets", "reason", "detail"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_error_reasons(mutate, sets, reason, detail):
    doc = mutated(mutate)
    for feature_set in sets:
        with pytest.raises(DescriptorError) as info:
            extract_features(doc, feature_set)
        assert info.value.reason == reason, (feature_set, info.value)
        assert detail in info.value.detail, (feature_set, info.value.detail)
        assert isinstance(info.value, ValueError)
    # the sets that do not read the damaged value still extract (lowlevel_all reads everything seed369 reads)
    failing = set(sets) | ({"lowlevel_all"} if "seed369" in sets else set())
    for feature_set in set(FEATURE_SETS) - failing:
        out = extract_features(doc, feature_set)
        names = feature_names(feature_set)
        assert len(out) > 369 if names is None else len(out) == len(names), feature_set


@pytest.mark.parametrize(("mutate", "sets"), [c[1:3] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_lowlevel_all_rejects_whatever_seed369_rejects(mutate, sets):
    """lowlevel_all validates the seed369 core first, so accepted documents are usable by every feature set.

    Every case asserts: a document seed369 rejects is rejected by lowlevel_all for the same reason and detail; a
    document only lowlevel_all rejects (damage outside the seed369 values) still gives a full seed369 vector."""
    doc = mutated(mutate)
    with pytest.raises(DescriptorError) as full:
        extract_features(doc, "lowlevel_all")
    if "seed369" in sets:
        with pytest.raises(DescriptorError) as seed:
            extract_features(doc, "seed369")
        assert (full.value.reason, full.value.detail) == (seed.value.reason, seed.value.detail)
    else:
        assert "lowlevel_all" in sets
        vec = extract_features(doc, "seed369")
        assert vec.shape == (369,) and np.isfinite(vec).all()


def test_errors_only_hit_the_sets_that_read_the_value():
    # seed169 reads only mfcc.cov: a broken statistic elsewhere must not drop the file
    doc = mutated(_set(("lowlevel", "zerocrossingrate", "mean"), "0.1"))
    assert extract_features(doc, "seed169").shape == (169,)
    # a NaN in tonal only matters for lowlevel_all
    doc = mutated(_set(("tonal", "hpcp", "mean", 7), float("nan")))
    assert extract_features(doc, "seed369").shape == (369,)


def test_extract_features_rejects_non_dict_doc():
    for bad in ([], None, "doc", 3):
        for feature_set in FEATURE_SETS:
            assert reason_of(extract_features, bad, feature_set) == "wrong_type"


def test_descriptor_error_fields():
    err = DescriptorError("missing_stat", "lowlevel.x.min")
    assert err.reason == "missing_stat"
    assert err.detail == "lowlevel.x.min"
    assert "missing_stat" in str(err)
    assert DescriptorError("broken_json").detail == ""


def test_descriptor_error_survives_pickling():
    """prepare runs extraction in worker processes, which pickle the exception back to the parent."""
    err = pickle.loads(pickle.dumps(DescriptorError("non_finite", "lowlevel.mfcc.cov[0][1] = nan")))
    assert isinstance(err, DescriptorError)
    assert (err.reason, err.detail) == ("non_finite", "lowlevel.mfcc.cov[0][1] = nan")
    assert str(err) == "non_finite: lowlevel.mfcc.cov[0][1] = nan"


# Random structural damage: only DescriptorError (or success) may come out, never KeyError/TypeError/IndexError.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_BASE = raw_doc(BOWIE)
_TARGETS = [
    ("lowlevel",),
    ("lowlevel", "mfcc"),
    ("lowlevel", "mfcc", "cov"),
    ("lowlevel", "mfcc", "cov", 0),
    ("lowlevel", "mfcc", "icov", 3, 3),
    ("lowlevel", "mfcc", "mean"),
    ("lowlevel", "spectral_rolloff"),
    ("lowlevel", "spectral_rolloff", "var"),
    ("lowlevel", "zerocrossingrate", "min"),
    ("tonal", "hpcp"),
    ("tonal", "key_scale"),
    ("rhythm", "beats_position"),
    ("rhythm",),
    ("metadata",),
    ("metadata", "tags"),
    ("metadata", "tags", "artist"),
    ("tonal", "chords_histogram", 0),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(_TARGETS), value=_json_values)
def test_random_damage_never_escapes_as_other_errors(target, value):
    doc = copy.deepcopy(_BASE)
    _set(target, value)(doc)
    results = {}
    for feature_set in FEATURE_SETS:
        try:
            results[feature_set] = extract_features(doc, feature_set)
        except DescriptorError as e:
            assert e.reason in {"missing_mfcc", "missing_stat", "wrong_type", "bad_shape", "non_finite"}
            continue
    if "lowlevel_all" in results:
        out = results["lowlevel_all"]
        assert all(type(v) is float and math.isfinite(v) for v in out.values())
        assert "seed369" in results  # lowlevel_all accepts nothing that seed369 rejects
    for feature_set in ("seed169", "seed369"):
        if feature_set in results:
            vec = results[feature_set]
            assert vec.dtype == np.float32 and np.isfinite(vec).all()
            if "lowlevel_all" in results:
                expected = [results["lowlevel_all"][n] for n in feature_names(feature_set)]
                np.testing.assert_array_equal(vec, np.array(expected, dtype=np.float32))
    tags = descriptor_tags(doc)
    assert all(v is None or isinstance(v, str) for v in tags.values())


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=64) | st.sampled_from([raw_bytes(VIOLIN)[:n] for n in (1, 10, 1000, 54000)]))
def test_random_bytes_never_escape(data):
    try:
        assert isinstance(load_descriptor(data), dict)
    except DescriptorError as e:
        assert e.reason in {"broken_json", "not_utf8", "not_an_object"}


# ---------------------------------------------------------------------------------------------------------- tags
def test_descriptor_tags_real_docs():
    assert descriptor_tags(raw_doc(BOWIE)) == {
        "artist": "David Bowie",
        "album": "The Rise and Fall of Ziggy Stardust and the Spiders From Mars",
        "title": "Soul Love",
        "genre": "Rock",
        "mbid": "e8afe383-1478-497e-90b1-7885c7f37f6e",
        "asin": "B0007MUR2W",
    }
    journey = descriptor_tags(raw_doc(JOURNEY))
    assert journey == {
        "artist": "Austin Wintory",
        "album": "Journey",
        "title": "Nascence",
        "genre": None,
        "mbid": "0dad432b-16cc-4bf0-8961-fd31d124b01b",
        "asin": None,
    }
    assert descriptor_tags(raw_doc(VIOLIN)) == dict.fromkeys(("artist", "album", "title", "genre", "mbid", "asin"))


def test_descriptor_tags_match_file_names():
    for name in (BOWIE, JOURNEY):
        _, mbid = parse_track_filename(name)
        assert descriptor_tags(raw_doc(name))["mbid"] == mbid
    assert descriptor_tags(raw_doc(BOWIE))["asin"] == parse_track_filename(BOWIE)[0]


@pytest.mark.parametrize(
    ("tags", "expected_artist"),
    [
        ({"artist": "Plain String"}, "Plain String"),
        ({"artist": ["First", "Second"]}, "First"),
        ({"artist": ["", "  ", "Third"]}, "Third"),
        ({"artist": []}, None),
        ({"artist": [1, None]}, None),
        ({"artist": 42}, None),
        ({"artist": {"x": 1}}, None),
        ({"artist": None}, None),
        ({"ARTIST": ["Upper Case Key"]}, "Upper Case Key"),
        ({"artist": ["  Padded  "]}, "Padded"),
        ({}, None),
    ],
)
def test_descriptor_tags_tolerates_junk(tags, expected_artist):
    out = descriptor_tags({"metadata": {"tags": tags}})
    assert out["artist"] == expected_artist
    assert set(out) == {"artist", "album", "title", "genre", "mbid", "asin"}


@pytest.mark.parametrize(
    "doc", [{}, {"metadata": None}, {"metadata": []}, {"metadata": {"tags": "x"}}, {"metadata": {}}, [], None]
)
def test_descriptor_tags_missing_metadata(doc):
    assert descriptor_tags(doc) == dict.fromkeys(("artist", "album", "title", "genre", "mbid", "asin"))


def test_descriptor_tags_lowercases_uuid_mbid_only():
    tags = {"musicbrainz_recordingid": ["E8AFE383-1478-497E-90B1-7885C7F37F6E"]}
    assert descriptor_tags({"metadata": {"tags": tags}})["mbid"] == "e8afe383-1478-497e-90b1-7885c7f37f6e"
    tags = {"musicbrainz_recordingid": ["Not-A-UUID"]}
    assert descriptor_tags({"metadata": {"tags": tags}})["mbid"] == "Not-A-UUID"
