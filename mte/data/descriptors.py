"""AcousticBrainz low-level documents → feature vectors (and their standardisation), MARD file-name parsing and tags.

Every function here is called once per descriptor file by `mte.data.prepare` (28k files for MARD, ~344k for the
augmented download), so the seed sets are extracted with a handful of numpy calls instead of per-element Python
loops, and the slow, precise diagnosis of *what* is wrong with a document only runs once something is wrong.

Any problem with a document surfaces as a `DescriptorError` whose `.reason` is a short snake_case code: prepare
writes it into the manifest, so a dropped file always says why. No KeyError/TypeError/IndexError escapes.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache, lru_cache

import numpy as np
import orjson

from mte.data.names import FEATURE_SETS

__all__ = [
    "FEATURE_SETS",
    "SEED369_STAT_ORDER",
    "DescriptorError",
    "descriptor_tags",
    "extract_features",
    "feature_names",
    "load_descriptor",
    "parse_track_filename",
]


# The order the published model used for the 9 statistics of spectral_rolloff and zerocrossingrate. It is
# neither alphabetical nor the document's order, so it is spelled out once here and tested.
SEED369_STAT_ORDER = ("min", "max", "dvar2", "median", "dmean2", "dmean", "var", "dvar", "mean")

# Sections that hold audio descriptors; `metadata` (tags, audio properties, versions) is not audio content.
LOWLEVEL_ALL_SECTIONS = ("lowlevel", "rhythm", "tonal")

# Arrays whose length depends on the track (one entry per beat/onset): expanding them would give every file
# its own schema, so lowlevel_all skips them.
VARIABLE_LENGTH_ARRAYS = frozenset({"rhythm.beats_position", "rhythm.onset_times", "rhythm.bpm_intervals"})

# String values under keys ending in "scale" ('key_scale', 'chords_scale', newer 'key_edma.scale', …) are
# encoded as `<name>_major` = 1.0 (major) / 0.0 (minor); all other strings (key names, …) are skipped.
_SCALE_VALUES = {"major": 1.0, "minor": 0.0}

_FLOAT = frozenset({float})
_NUMBER = frozenset({float, int, bool})
_LIST = frozenset({list})
_STR = frozenset({str})

_N_MFCC = 13
_SEED_STAT_DESCRIPTORS = ("spectral_rolloff", "zerocrossingrate")

_FILENAME_RE = re.compile(
    r"([A-Z0-9]{10})_([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.json"
)
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# metadata.tags key → descriptor_tags() key
_TAG_KEYS = {
    "artist": "artist",
    "album": "album",
    "title": "title",
    "genre": "genre",
    "mbid": "musicbrainz_recordingid",
    "asin": "asin",
}


class DescriptorError(ValueError):
    """A descriptor file that cannot be used; `reason` is the manifest's snake_case code, `detail` the where."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def __reduce__(self):
        # prepare's worker processes send these back pickled; the default reduce would rebuild from the
        # formatted message and lose the reason/detail split.
        return (type(self), (self.reason, self.detail))


# ----------------------------------------------------------------------------------------------- file names
def parse_track_filename(name: str) -> tuple[str, str]:
    """Split `<amazon-id>_<recording-mbid>.json` into (amazon_id, lower-case mbid).

    Only the last path component is looked at, so a full path works too. The amazon-id must be exactly 10
    characters [A-Z0-9]; the mbid a canonical 8-4-4-4-12 UUID (upper-case hex is accepted and lower-cased so
    the same recording always gets the same key).
    """
    if not isinstance(name, str):
        raise DescriptorError("bad_filename", f"not a string: {type(name).__name__}")
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    m = _FILENAME_RE.fullmatch(base)
    if m is None:
        raise DescriptorError("bad_filename", f"{base!r} is not <amazon-id>_<recording-mbid>.json")
    return m.group(1), m.group(2).lower()


# ---------------------------------------------------------------------------------------------------- loading
def load_descriptor(data: bytes) -> dict:
    """Parse one descriptor file's bytes into a dict.

    orjson first (fast). Essentia can write the bare tokens NaN/Infinity/-Infinity, which orjson rejects; only
    then the stdlib parser (which accepts them) is tried, so such documents load and are later rejected with
    the precise reason 'non_finite' instead of a vague 'broken_json'.
    """
    try:
        doc = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        doc = _load_fallback(data)
    if not isinstance(doc, dict):
        raise DescriptorError("not_an_object", f"top level is {_type_name(doc)}")
    return doc


def _load_fallback(data: bytes) -> object:
    """The slow path of load_descriptor: tell not_utf8 from broken_json, accept NaN/Infinity tokens."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DescriptorError("not_utf8", f"invalid UTF-8 at byte {e.start}") from None
        except TypeError:
            raise DescriptorError("broken_json", f"not bytes: {type(data).__name__}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DescriptorError("broken_json", f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except (RecursionError, ValueError) as e:
        raise DescriptorError("broken_json", str(e)[:200]) from None


# ------------------------------------------------------------------------------------------------ feature names
@cache
def _seed_names(feature_set: str) -> tuple[str, ...]:
    cov = [f"lowlevel.mfcc.cov[{i}][{j}]" for i in range(_N_MFCC) for j in range(_N_MFCC)]
    if feature_set == "seed169":
        return tuple(cov)
    icov = [f"lowlevel.mfcc.icov[{i}][{j}]" for i in range(_N_MFCC) for j in range(_N_MFCC)]
    mean = [f"lowlevel.mfcc.mean[{i}]" for i in range(_N_MFCC)]
    stats = [f"lowlevel.{d}.{s}" for d in _SEED_STAT_DESCRIPTORS for s in SEED369_STAT_ORDER]
    return tuple(cov + icov + mean + stats)


def feature_names(feature_set: str) -> list[str] | None:
    """Names of the vector positions for seed169/seed369; None for lowlevel_all (schema is data-dependent)."""
    _check_feature_set(feature_set)
    if feature_set == "lowlevel_all":
        return None
    return list(_seed_names(feature_set))


def _check_feature_set(feature_set: str) -> None:
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}")


# --------------------------------------------------------------------------------------------------- extraction
def extract_features(doc: dict, feature_set: str) -> np.ndarray | dict[str, float]:
    """seed169/seed369 → float32 vector in the published order; lowlevel_all → {dotted name: float}.

    Raises DescriptorError with reason missing_mfcc, missing_stat, wrong_type, bad_shape or non_finite.
    """
    _check_feature_set(feature_set)
    if not isinstance(doc, dict):
        raise DescriptorError("wrong_type", f"document is {_type_name(doc)}, expected an object")
    if feature_set == "lowlevel_all":
        return _extract_lowlevel_all(doc)
    return _extract_seed(doc, feature_set)


def _extract_seed(doc: dict, feature_set: str) -> np.ndarray:
    lowlevel = doc.get("lowlevel")
    if lowlevel is None:
        raise DescriptorError("missing_mfcc", "no 'lowlevel' section")
    if not isinstance(lowlevel, dict):
        raise DescriptorError("wrong_type", f"lowlevel is {_type_name(lowlevel)}, expected an object")
    mfcc = lowlevel.get("mfcc")
    if mfcc is None:
        raise DescriptorError("missing_mfcc", "no lowlevel.mfcc")
    if not isinstance(mfcc, dict):
        raise DescriptorError("wrong_type", f"lowlevel.mfcc is {_type_name(mfcc)}, expected an object")
    wanted = ("cov",) if feature_set == "seed169" else ("cov", "icov", "mean")
    parts = []
    for key in wanted:
        if key not in mfcc:
            raise DescriptorError("missing_mfcc", f"no lowlevel.mfcc.{key}")
        shape = (_N_MFCC,) if key == "mean" else (_N_MFCC, _N_MFCC)
        parts.append(_numeric_array(mfcc[key], f"lowlevel.mfcc.{key}", shape).ravel())
    if feature_set == "seed369":
        parts.append(_seed_stats(lowlevel))
    with np.errstate(over="ignore"):  # float64 values beyond float32 range become inf: caught just below
        vec = np.concatenate(parts).astype(np.float32)
    finite = np.isfinite(vec)
    if not finite.all():
        first = int(np.argmin(finite))
        raise DescriptorError("non_finite", f"{_seed_names(feature_set)[first]} = {vec[first]}")
    return vec


def _numeric_array(value: object, path: str, shape: tuple[int, ...]) -> np.ndarray:
    """Nested lists → float64 array of exactly `shape`, telling wrong types from wrong shapes."""
    if not isinstance(value, list):
        raise DescriptorError("wrong_type", f"{path} is {_type_name(value)}, expected a list")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged nesting (numpy ≥1.24 refuses it)
        _raise_bad_element(value, path)
        raise DescriptorError("bad_shape", f"{path} is ragged, expected {_shape_str(shape)}") from None
    if arr.dtype.kind not in "fiu":  # strings, None, dicts (object), booleans
        _raise_bad_element(value, path)
        raise DescriptorError("wrong_type", f"{path} holds {arr.dtype}, expected numbers")
    if arr.shape != shape:
        raise DescriptorError("bad_shape", f"{path} has shape {_shape_str(arr.shape)}, expected {_shape_str(shape)}")
    return arr.astype(np.float64, copy=False)


def _raise_bad_element(value: object, path: str) -> None:
    """Slow path: find the first leaf that is not a number and raise wrong_type naming it (else return)."""
    stack = [(path, value)]
    while stack:
        p, v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed([(f"{p}[{i}]", x) for i, x in enumerate(v)]))
        elif not _is_number(v):
            raise DescriptorError("wrong_type", f"{p} is {_type_name(v)}, expected a number")


def _seed_stats(lowlevel: dict) -> np.ndarray:
    """The 2×9 scalar statistics of spectral_rolloff and zerocrossingrate in SEED369_STAT_ORDER."""
    values = []
    for name in _SEED_STAT_DESCRIPTORS:
        stats = lowlevel.get(name)
        if stats is None:
            raise DescriptorError("missing_stat", f"no lowlevel.{name}")
        if not isinstance(stats, dict):
            raise DescriptorError("wrong_type", f"lowlevel.{name} is {_type_name(stats)}, expected an object")
        for stat in SEED369_STAT_ORDER:
            if stat not in stats:
                raise DescriptorError("missing_stat", f"lowlevel.{name}.{stat}")
            v = stats[stat]
            if not _is_number(v):
                raise DescriptorError("wrong_type", f"lowlevel.{name}.{stat} is {_type_name(v)}, expected a number")
            values.append(v)
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range (only the stdlib fallback parser yields those)
        raise DescriptorError("non_finite", "integer beyond float range in lowlevel statistics") from None


def _extract_lowlevel_all(doc: dict) -> dict[str, float]:
    """Every numeric statistic of lowlevel/rhythm/tonal, flattened under stable dotted names.

    Arrays expand as `name[i]` (`name[i][j]` for matrices); booleans become 0.0/1.0; major/minor scale strings
    become `<name>_major`; other strings and VARIABLE_LENGTH_ARRAYS are skipped. Keys follow the document's
    order, which differs between extractor versions: callers fixing a schema should sort or use their own.

    The seed369 descriptors are validated first (same reasons, same details), so a document accepted here is
    accepted by every feature set and its names always include feature_names("seed369").
    """
    _extract_seed(doc, "seed369")
    out: dict[str, float] = {}
    for section in LOWLEVEL_ALL_SECTIONS:
        value = doc.get(section)
        if value is None:
            raise DescriptorError("missing_stat", f"no '{section}' section")
        if not isinstance(value, dict):
            raise DescriptorError("wrong_type", f"{section} is {_type_name(value)}, expected an object")
        _flatten_dict(value, section, out)
    # A finite sum proves every term finite (any inf/nan term makes the sum inf or nan): one C-level pass.
    # Finite values whose sum overflows only cost the exact scan below.
    if not math.isfinite(sum(out.values())):
        for name, v in out.items():
            if not math.isfinite(v):
                raise DescriptorError("non_finite", f"{name} = {v}")
    return out


def _flatten_dict(obj: dict, prefix: str, out: dict[str, float]) -> None:
    for key, v in obj.items():
        name = f"{prefix}.{key}"
        t = type(v)
        if t is float:
            out[name] = v
        elif t is dict:
            _flatten_dict(v, name, out)
        elif t is list:
            if name not in VARIABLE_LENGTH_ARRAYS:
                _flatten_list(v, name, out)
        elif t is int or t is bool:
            out[name] = _int_to_float(v, name)
        elif t is str:
            if type(key) is str and key.endswith("scale") and v.lower() in _SCALE_VALUES:
                out[f"{name}_major"] = _SCALE_VALUES[v.lower()]
        else:  # None, or a subclass the parsers never produce
            raise DescriptorError("wrong_type", f"{name} is {_type_name(v)}, expected a number, list or object")


def _flatten_list(lst: list, name: str, out: dict[str, float]) -> None:
    if not lst:
        return
    types = set(map(type, lst))  # one C-level pass decides the common all-float case
    if types <= _FLOAT:
        out.update(zip(_index_names(name, len(lst)), lst, strict=True))
    elif types <= _NUMBER:
        try:
            out.update(zip(_index_names(name, len(lst)), map(float, lst), strict=True))
        except OverflowError:
            raise DescriptorError("non_finite", f"integer beyond float range in {name}") from None
    elif types == _LIST:
        for item_name, v in zip(_index_names(name, len(lst)), lst, strict=True):
            _flatten_list(v, item_name, out)
    elif types == _STR:  # a list of labels (e.g. chord progressions): not a numeric descriptor
        return
    else:
        for item_name, v in zip(_index_names(name, len(lst)), lst, strict=True):
            if type(v) not in _NUMBER:
                what = "in a list of strings" if str in types else "expected a number"
                raise DescriptorError("wrong_type", f"{item_name} is {_type_name(v)}, {what}")
        raise DescriptorError("wrong_type", f"{name} mixes numbers and lists")


@lru_cache(maxsize=4096)
def _index_names(name: str, n: int) -> tuple[str, ...]:
    """`name[0]` … `name[n-1]`, cached: the same arrays recur in every document of a run."""
    return tuple(f"{name}[{i}]" for i in range(n))


def _int_to_float(v: int, name: str) -> float:
    try:
        return float(v)
    except OverflowError:
        raise DescriptorError("non_finite", f"{name} is an integer beyond float range") from None


def _is_number(v: object) -> bool:
    t = type(v)
    return t is float or t is int


def _type_name(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _shape_str(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


# ---------------------------------------------------------------------------------------------------------- tags
def descriptor_tags(doc: dict) -> dict[str, str | None]:
    """artist, album, title, genre, mbid (musicbrainz_recordingid), asin from metadata.tags.

    Real tags are lists of strings (a file can carry several values); the first non-empty one is used. Plain
    strings are accepted too; anything else (missing tags, numbers, dicts) gives None rather than an error,
    because tags only label tracks and must never drop a file. Tag keys are matched case-insensitively.
    """
    tags = doc.get("metadata") if isinstance(doc, dict) else None
    tags = tags.get("tags") if isinstance(tags, dict) else None
    if not isinstance(tags, dict):
        return dict.fromkeys(_TAG_KEYS)
    if not all(type(k) is str and k.islower() for k in tags):
        tags = {str(k).lower(): v for k, v in tags.items()}
    result: dict[str, str | None] = {}
    for out_key, tag_key in _TAG_KEYS.items():
        result[out_key] = _first_tag(tags.get(tag_key))
    mbid = result["mbid"]
    if mbid is not None and _UUID_RE.fullmatch(mbid):
        result["mbid"] = mbid.lower()
    return result


def _first_tag(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str) and item.strip():
                return item.strip()
    return None


def standardize(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, threads: int = 1) -> np.ndarray:
    """``(raw − mean) / std`` computed in float64 and rounded once to float32 (the one definition of the model's
    audio input), in blocks of rows that stay in cache — no full-size float64 temporaries (full MARD: 28k × 2,649
    values, 600 MB each) — spread over ``threads`` threads (numpy lets go of the GIL: blocks run in parallel)."""
    out = np.empty(raw.shape, dtype=np.float32)

    def block(lo: int) -> None:
        rows = np.subtract(raw[lo : lo + 256], mean)  # float64, as the mean is
        np.divide(rows, std, out=rows)
        out[lo : lo + 256] = rows

    starts = range(0, len(raw), 256)
    if threads < 2 or len(starts) < 8:
        for lo in starts:
            block(lo)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(block, starts))
    return out
