"""Property: whatever is wrong with the input files, prepare finishes and accounts for every one of them.

The descriptor documents are the real AcousticBrainz ones from tests/data/acousticbrainz/, mutated the ways real
files break: keys dropped, values of the wrong type, NaN/Inf and float32-overflowing numbers, truncation, garbage
bytes, random bytes, bad file names. The JSON-lines files get random byte lines between valid ones.
"""

from __future__ import annotations

import copy
import json
import math
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mte.data.names import FEATURE_SETS
from mte.data.prepare import PrepareConfig, prepare
from mte.data.processed import ProcessedData

REAL = Path(__file__).resolve().parent / "data" / "acousticbrainz"
BASE_BYTES = [p.read_bytes() for p in sorted(REAL.glob("*.json"))]
BASE_DOCS = [json.loads(b) for b in BASE_BYTES]
DESC = "acousticbrainz_descriptors"
REASON_RE = re.compile(r"[a-z][a-z0-9_]*")


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path in a document (dict keys and list positions), depth first."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


# The seed-feature region first, so that mutations hit the values prepare actually reads often enough.
def _weighted_paths(doc: dict) -> list[tuple]:
    hot = [p for p in _paths(doc) if len(p) >= 2 and p[0] == "lowlevel"
           and p[1] in ("mfcc", "spectral_rolloff", "zerocrossingrate")]
    return hot * 3 + _paths(doc)


PATHS = [_weighted_paths(d) for d in BASE_DOCS]
WEIRD = [None, "x", "NaN", [], {}, True, 0, 10**400, math.nan, math.inf, -math.inf, 1e300, -1e39,
         [[1.0, 2.0], [3.0]], [1.0] * 14]


def _mutate(doc: dict, path: tuple, value: Any, drop: bool) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if drop:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@st.composite
def descriptor_file(draw: st.DrawFn) -> tuple[int, bytes, bool]:
    """(base index, file bytes, bad file name?)"""
    base = draw(st.integers(0, len(BASE_DOCS) - 1))
    kind = draw(st.sampled_from(["none", "drop", "set", "set", "truncate", "garbage", "random"]))
    data = BASE_BYTES[base]
    if kind in ("drop", "set"):
        path = PATHS[base][draw(st.integers(0, len(PATHS[base]) - 1))]
        value = draw(st.sampled_from(WEIRD))
        data = json.dumps(_mutate(BASE_DOCS[base], path, value, kind == "drop")).encode()
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "garbage":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=6)) + data[at:]
    elif kind == "random":
        data = draw(st.binary(max_size=64))
    return base, data, draw(st.integers(0, 9)) == 0


def _write_mard(root: Path, files: list[tuple[int, bytes, bool]], review_lines: list[bytes] | None = None,
                metadata_lines: list[bytes] | None = None) -> list[str]:
    (root / DESC).mkdir(parents=True)
    names, meta, reviews = [], [], []
    for i, (_, data, bad_name) in enumerate(files):
        aid = f"B{i:09d}"
        mbid = str(uuid.UUID(int=i + 1))
        name = f"{aid}-{mbid}.json" if bad_name else f"{aid}_{mbid}.json"
        (root / DESC / name).write_bytes(data)
        names.append(name)
        meta.append(json.dumps({"amazon-id": aid, "artist": f"Artist {i}", "title": f"Album {i}"}).encode())
        for j in range(3 if i % 4 else 0):
            reviews.append(json.dumps({"amazon-id": aid, "reviewerID": f"R{j}", "summary": "nice",
                                       "reviewText": f"rock album number {i} with guitars {j}"}).encode())
    (root / "mard_metadata.json").write_bytes(b"\n".join(meta + (metadata_lines or [])) + b"\n")
    (root / "mard_reviews.json").write_bytes(b"\n".join(reviews + (review_lines or [])) + b"\n")
    return names


def _check_accounting(out: Path, names: list[str]) -> ProcessedData:
    d = ProcessedData.load(out)
    m = d.manifest
    c = m["counts"]
    assert c["descriptor_files"] == len(names)
    assert c["tracks"] + c["skipped_descriptors"] == len(names)
    skipped = {i["source"] for i in m["skipped_items"] if i["line"] is None}
    kept = set(d.tracks["file"])
    assert kept | skipped == set(names) and not kept & skipped
    assert c["reviews"] + sum(m["skipped_by_source"].get("mard_reviews.json", {}).values()) == c["review_lines"]
    assert c["metadata_albums"] + sum(m["skipped_by_source"].get("mard_metadata.json", {}).values()) == \
        c["metadata_lines"]
    assert all(REASON_RE.fullmatch(r) for r in (*m["skipped"], *m["repaired"]))
    feats = d.raw_features()
    assert feats.shape == (len(d.tracks), len(d.feature_names)) and np.isfinite(feats).all()
    assert np.isfinite(d.standardized_features()).all()
    return d


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=st.lists(descriptor_file(), min_size=1, max_size=6), features=st.sampled_from(FEATURE_SETS))
def test_mutated_descriptors_never_crash_and_are_all_accounted_for(
    files: list[tuple[int, bytes, bool]], features: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "raw"
        names = _write_mard(root, files)
        out = prepare(root, PrepareConfig(features=features, workers=1), processed_dir=Path(tmp) / "p",
                      verbose=False)
        d = _check_accounting(out, names)
        unchanged = [i for i, (base, data, bad) in enumerate(files) if data == BASE_BYTES[base] and not bad]
        assert len(d.tracks) >= len(unchanged)  # an untouched real document is always usable


_LINE = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" "))
_JSONISH = st.one_of(
    _LINE,
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                 max_leaves=8).map(lambda o: json.dumps(o).encode()),
    st.fixed_dictionaries({
        "amazon-id": st.sampled_from(["B000000001", "B000000002", "bad", "", None]),
        "reviewerID": st.one_of(st.none(), st.text(max_size=5), st.integers()),
        "reviewText": st.one_of(st.none(), st.text(max_size=30), st.integers()),
        "summary": st.one_of(st.none(), st.text(max_size=10)),
        "overall": st.one_of(st.none(), st.floats(), st.booleans(), st.text(max_size=3)),
        "unixReviewTime": st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=12)),
        "first-release-year": st.one_of(st.none(), st.integers(), st.text(max_size=12), st.floats()),
        "artist": st.one_of(st.none(), st.text(max_size=10), st.integers()),
    }).map(lambda o: json.dumps(o).encode()),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(review_lines=st.lists(_JSONISH, max_size=8), metadata_lines=st.lists(_JSONISH, max_size=8))
def test_broken_json_lines_never_crash_and_are_all_accounted_for(
    review_lines: list[bytes], metadata_lines: list[bytes]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "raw"
        files = [(0, BASE_BYTES[0], False), (1, BASE_BYTES[1], False)]
        names = _write_mard(root, files, review_lines, metadata_lines)
        out = prepare(root, PrepareConfig(workers=1), processed_dir=Path(tmp) / "p", verbose=False)
        _check_accounting(out, names)
