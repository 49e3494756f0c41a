"""Reading a raw MARD directory: its layout, the two JSON-lines files, and the descriptor files' listing/parsing.

Real MARD has broken lines, a broken descriptor file, HTML entities and the odd non-UTF-8 byte, so every reader
here is built around one rule: bad input never stops a run and is never dropped silently. Each skipped line or file
goes into a :class:`Ledger` with a short snake_case reason (it ends up in the processed dir's ``manifest.json``);
repairs (HTML entities, invalid UTF-8) are counted there too.

Speed matters (263k review lines, 28k–344k descriptor files of ~85 KB): lines are parsed with orjson in a tight
loop and the slower, more forgiving stdlib parser only runs on lines orjson refuses; descriptor files are parsed in
worker processes that send back only the feature vector and four tags, never the document.
"""

from __future__ import annotations

import ast
import html
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from mte.cli import UserError

MARD_URL = "https://www.upf.edu/web/mtg/mard"
METADATA_FILE = "mard_metadata.json"
REVIEWS_FILE = "mard_reviews.json"
DESCRIPTOR_DIR = "acousticbrainz_descriptors"
DESCRIPTORS_SOURCE = DESCRIPTOR_DIR  # the manifest's "source" for descriptor files (their own name is the item)

AMAZON_ID_RE = re.compile(r"[A-Z0-9]{10}")
# Simple markup seen in Amazon reviews (<br />, <p>, <i>…</i>, <a href=…>): a tag name right after '<' or '</'.
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_SPACES_RE = re.compile(r"[ \t]{2,}")
_YEAR_RE = re.compile(r"\s*(\d{4})")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DETAIL_MAX = 200
NULLED_EXAMPLES = 10  # listed examples per (source, field) of values that became null
RATING_RANGE = (1.0, 5.0)  # Amazon's star ratings


class MardLayoutError(FileNotFoundError, UserError):
    """The raw dir is missing or incomplete. The message is one line: what is missing, the layout, where to get it."""


def layout_message(raw_dir: Path | str, problem: str) -> str:
    return (
        f"MARD raw dir {raw_dir}: {problem}. Expected RAW/{METADATA_FILE}, RAW/{REVIEWS_FILE} and "
        f"RAW/{DESCRIPTOR_DIR}/<amazon-id>_<recording-mbid>.json; download MARD from {MARD_URL} "
        f"and pass data.raw_dir=PATH"
    )


@dataclass(frozen=True)
class MardLayout:
    """The three inputs of a raw MARD dir (paths checked to exist)."""

    root: Path
    metadata: Path
    reviews: Path
    descriptors: Path

    @classmethod
    def of(cls, raw_dir: Path | str) -> MardLayout:
        """Check the layout; raise :class:`MardLayoutError` naming the first thing that is missing."""
        root = Path(raw_dir).expanduser()
        if not root.is_dir():
            what = "is not a directory" if root.exists() else "does not exist"
            raise MardLayoutError(layout_message(root, what))
        layout = cls(root.resolve(), root / METADATA_FILE, root / REVIEWS_FILE, root / DESCRIPTOR_DIR)
        for path, is_dir in ((layout.metadata, False), (layout.reviews, False), (layout.descriptors, True)):
            if not (path.is_dir() if is_dir else path.is_file()):
                raise MardLayoutError(layout_message(root, f"missing {path.name}{'/' if is_dir else ''}"))
        return cls(root.resolve(), *(p.resolve() for p in (layout.metadata, layout.reviews, layout.descriptors)))


# ----------------------------------------------------------------------------------------------------- ledger
@dataclass
class Ledger:
    """Everything skipped or repaired, counted by (group, reason); skipped items are also listed one by one.

    ``group`` is the input the item came from (a JSON-lines file name, or ``acousticbrainz_descriptors`` for the
    descriptor files, whose items name the file itself as their ``source``).
    """

    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    repaired: Counter[tuple[str, str]] = field(default_factory=Counter)
    items: list[dict[str, Any]] = field(default_factory=list)
    nulled: Counter[tuple[str, str]] = field(default_factory=Counter)
    nulled_items: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, source: str, line: int | None, reason: str, detail: str = "", group: str | None = None) -> None:
        self.skipped[(group or source, reason)] += 1
        self.items.append({"source": source, "line": line, "reason": reason, "detail": _clip(detail)})

    def repair(self, group: str, reason: str, n: int = 1) -> None:
        if n:
            self.repaired[(group, reason)] += n

    def null(self, source: str, line: int, key: str, value: Any) -> None:
        """A field that was present but could not be parsed, so the row keeps null (or '') in its place.

        Counted per (source, key); the first :data:`NULLED_EXAMPLES` of each are listed with their raw value, so the
        manifest stays small on a dump where one field is broken on every line.
        """
        self.nulled[(source, key)] += 1
        if self.nulled[(source, key)] <= NULLED_EXAMPLES:
            self.nulled_items.append({"source": source, "line": line, "field": key, "value": _clip(repr(value))})

    def n_skipped(self, group: str) -> int:
        return sum(n for (g, _), n in self.skipped.items() if g == group)


def _clip(text: str) -> str:
    text = str(text)
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


# ----------------------------------------------------------------------------------------------- JSON lines
def iter_json_lines(path: Path, source: str, ledger: Ledger) -> Iterator[tuple[int, dict, tuple[str, ...], bool]]:
    """Yield ``(line_no, object, repairs, lenient)`` for each usable line (1-based line numbers).

    orjson parses the common case straight from bytes. A line it refuses goes down a forgiving path: invalid
    UTF-8 is decoded with ``errors='replace'`` (repair ``not_utf8``), then the stdlib parser is tried (it accepts
    NaN/Infinity), then — because Amazon's own metadata dumps were Python dict literals, not JSON —
    ``ast.literal_eval`` (repair ``python_literal``). ``lenient`` says a non-orjson parser produced the object
    (its strings may hold lone surrogates: scrub them). A line nothing can parse is skipped as ``broken_json``;
    blank lines and non-objects are skipped with their own reasons.
    """
    loads = orjson.loads
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            try:
                obj = loads(raw)
                repairs: tuple[str, ...] = ()
                lenient = False
            except orjson.JSONDecodeError:
                if not raw.strip():
                    ledger.skip(source, line_no, "blank_line")
                    continue
                parsed = _parse_slow(raw)
                if isinstance(parsed, str):
                    ledger.skip(source, line_no, "broken_json", parsed)
                    continue
                obj, repairs, lenient = parsed
            if not isinstance(obj, dict):
                ledger.skip(source, line_no, "not_an_object", f"top level is {type(obj).__name__}")
                continue
            yield line_no, obj, repairs, lenient


def _parse_slow(raw: bytes) -> tuple[Any, tuple[str, ...], bool] | str:
    """The forgiving path for a line orjson refused: (object, repairs, lenient) or an error detail."""
    try:
        text = raw.decode("utf-8")
        repairs: tuple[str, ...] = ()
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        repairs = ("not_utf8",)
    text = text.lstrip("\ufeff")
    try:
        return orjson.loads(text), repairs, False
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text), repairs, True
    except (ValueError, RecursionError) as e:
        error = f"{type(e).__name__}: {e}"
    if text.lstrip().startswith("{'"):  # a Python dict literal (single-quoted keys)
        try:
            return ast.literal_eval(text.strip()), (*repairs, "python_literal"), True
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
    return error


def scrub(text: str) -> str:
    """Replace lone surrogates (the stdlib parser lets ``"\\ud800"`` through; Parquet needs valid UTF-8)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


def clean_text(text: str) -> tuple[str, bool, bool]:
    """Unescape HTML entities and drop simple tags; returns (text, had_entities, had_tags).

    Amazon review dumps keep ``&amp;``/``&quot;``/``&#39;`` and ``<br />``; left alone they become vocabulary
    entries ("quot", "br") and hide the words around them. The checks for '&' and '<' keep the common case cheap.
    """
    entities = tags = False
    if "&" in text:
        unescaped = html.unescape(text)
        if unescaped != text:
            text, entities = unescaped, True
    if "<" in text:
        stripped = _TAG_RE.sub(" ", text)
        if stripped != text:
            text, tags = _SPACES_RE.sub(" ", stripped), True
    return text.strip(), entities, tags


def _amazon_id(obj: dict) -> tuple[str | None, str | None]:
    """(amazon_id, None) or (None, reason) for a record's 'amazon-id'."""
    value = obj.get("amazon-id")
    if type(value) is str and len(value) == 10 and AMAZON_ID_RE.fullmatch(value):  # the common case, fast
        return value, None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "missing_amazon_id"
    if not isinstance(value, str) or not AMAZON_ID_RE.fullmatch(value.strip()):
        return None, "bad_amazon_id"
    return value.strip(), None


def _present(value: Any) -> bool:
    """A value that carried something: not absent/null and not a blank string (those lose nothing as null)."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _opt_str(value: Any, lenient: bool) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return (scrub(value) if lenient else value) or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _year(value: Any) -> int | None:
    """first-release-year as an int (ints, floats and strings like '1998' or '1998-05-01'; else None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value) and float(value).is_integer():
        year = int(value)
    elif isinstance(value, str) and (m := _YEAR_RE.match(value)):
        year = int(m.group(1))
    else:
        return None
    return year if 1000 <= year <= 2999 else None


# ------------------------------------------------------------------------------------------------- metadata
@dataclass
class MetadataColumns:
    amazon_id: list[str] = field(default_factory=list)
    artist: list[str | None] = field(default_factory=list)
    artist_mbid: list[str | None] = field(default_factory=list)
    title: list[str | None] = field(default_factory=list)
    genre: list[str | None] = field(default_factory=list)
    year: list[int | None] = field(default_factory=list)
    lines: int = 0


def read_metadata(path: Path, ledger: Ledger) -> MetadataColumns:
    """mard_metadata.json → one row per album: amazon_id, artist, artist_mbid, title, genre ('root-genre'), year.

    Skipped (with reason): broken lines, non-objects, a missing/malformed amazon-id, and a repeated amazon-id
    (``duplicate_album``: the first line wins). Repaired: ``not_utf8``, ``python_literal`` and ``html_entities``
    (in artist/title/genre). A present value that cannot be parsed (an artist that is a list, a year like
    'unknown' or 0, an artist-mbid that is not a UUID) becomes null and is counted by :meth:`Ledger.null`.
    """
    source = path.name
    cols = MetadataColumns()
    seen: set[str] = set()
    for line_no, obj, repairs, lenient in iter_json_lines(path, source, ledger):
        aid, problem = _amazon_id(obj)
        if aid is None:
            ledger.skip(source, line_no, problem or "bad_amazon_id", repr(obj.get("amazon-id"))[:80])
            continue
        for reason in repairs:  # per line, kept or not (as for reviews)
            ledger.repair(source, reason)
        if aid in seen:
            ledger.skip(source, line_no, "duplicate_album", aid)
            continue
        seen.add(aid)
        fields = []
        had_entities = False
        for key in ("artist", "title", "root-genre"):
            raw = obj.get(key)
            value = _opt_str(raw, lenient)
            if value is None and _present(raw):
                ledger.null(source, line_no, key, raw)
            if value is not None and "&" in value:
                value, ent, _ = clean_text(value)
                had_entities |= ent
                value = value or None
            fields.append(value)
        ledger.repair(source, "html_entities", int(had_entities))
        cols.amazon_id.append(aid)
        cols.artist.append(fields[0])
        cols.title.append(fields[1])
        cols.genre.append(fields[2])
        cols.artist_mbid.append(_parsed(_mbid, obj, "artist-mbid", source, line_no, ledger))
        cols.year.append(_parsed(_year, obj, "first-release-year", source, line_no, ledger))
    cols.lines = _count_lines(ledger, source, len(cols.amazon_id))
    return cols


def _parsed(parse: Any, obj: dict, key: str, source: str, line_no: int, ledger: Ledger) -> Any:
    """``parse(obj[key])``; a present value that parses to None is recorded in the ledger as nulled."""
    raw = obj.get(key)
    value = parse(raw)
    if value is None and _present(raw):
        ledger.null(source, line_no, key, raw)
    return value


def _mbid(value: Any) -> str | None:
    """A MusicBrainz id (UUID), lower-cased; anything else None."""
    if isinstance(value, str) and _UUID_RE.fullmatch(value.strip()):
        return value.strip().lower()
    return None


def _count_lines(ledger: Ledger, source: str, kept: int) -> int:
    return kept + ledger.n_skipped(source)


# -------------------------------------------------------------------------------------------------- reviews
@dataclass
class ReviewColumns:
    line: list[int] = field(default_factory=list)
    amazon_id: list[str] = field(default_factory=list)
    reviewer_id: list[str | None] = field(default_factory=list)
    rating: list[float | None] = field(default_factory=list)
    unix_time: list[int | None] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    lines: int = 0


def _rating(value: Any) -> float | None:
    """'overall' as a float in 1–5 (Amazon's stars); anything else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    lo, hi = RATING_RANGE
    return float(value) if math.isfinite(value) and lo <= value <= hi else None


def _unix_time(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -(2**62) < value < 2**62 else None
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 2**62:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value.strip())
    return None


def read_reviews(
    path: Path, ledger: Ledger, text_fields: Sequence[str] = ("summary", "reviewText")
) -> ReviewColumns:
    """mard_reviews.json → cleaned reviews, in file order.

    Skipped (with reason): broken lines, non-objects, a missing/malformed amazon-id, a review with nothing to read
    in any of ``text_fields`` after cleaning (``empty_review``: a review with only a summary is kept when
    ``summary`` is one of them, since that is text the model reads) and exact repeats of (amazon-id, reviewerID,
    text) — of the summary too when the text is empty — (``duplicate_review``, the first is kept). Repaired
    (counted per line that needed it, kept or not): ``not_utf8`` (decoded with errors='replace'),
    ``python_literal`` (see :func:`iter_json_lines`), ``html_entities`` (html.unescape) and ``html_tags``
    (``<br />`` and friends removed). A present value that cannot be parsed (a rating outside 1–5 or not a number,
    a time that is not one, a text that is not a string) becomes null/'' and is counted by :meth:`Ledger.null`.
    """
    source = path.name
    cols = ReviewColumns()
    seen: set[tuple[str, str | None, str, str]] = set()
    want_text, want_summary = "reviewText" in text_fields, "summary" in text_fields
    for line_no, obj, repairs, lenient in iter_json_lines(path, source, ledger):
        aid, problem = _amazon_id(obj)
        if aid is None:
            ledger.skip(source, line_no, problem or "bad_amazon_id", repr(obj.get("amazon-id"))[:80])
            continue
        text, summary = obj.get("reviewText"), obj.get("summary")
        for key, value in (("reviewText", text), ("summary", summary)):
            if value is not None and not isinstance(value, str):
                ledger.null(source, line_no, key, value)
        text = text if isinstance(text, str) else ""
        summary = summary if isinstance(summary, str) else ""
        if lenient:
            text, summary = scrub(text), scrub(summary)
        text, ent_t, tags_t = clean_text(text)
        summary, ent_s, tags_s = clean_text(summary)
        for reason in repairs:
            ledger.repair(source, reason)
        if ent_t or ent_s or tags_t or tags_s:
            ledger.repair(source, "html_entities", int(ent_t or ent_s))
            ledger.repair(source, "html_tags", int(tags_t or tags_s))
        if not ((want_text and text) or (want_summary and summary)):
            ledger.skip(source, line_no, "empty_review", aid)
            continue
        raw_reviewer = obj.get("reviewerID")
        reviewer = _opt_str(raw_reviewer, lenient)
        if reviewer is None and _present(raw_reviewer):
            ledger.null(source, line_no, "reviewerID", raw_reviewer)
        key = (aid, reviewer, text, "" if text else summary)
        if key in seen:
            ledger.skip(source, line_no, "duplicate_review", f"{aid} {reviewer}")
            continue
        seen.add(key)
        cols.line.append(line_no)
        cols.amazon_id.append(aid)
        cols.reviewer_id.append(reviewer)
        cols.rating.append(_parsed(_rating, obj, "overall", source, line_no, ledger))
        cols.unix_time.append(_parsed(_unix_time, obj, "unixReviewTime", source, line_no, ledger))
        cols.summary.append(summary)
        cols.text.append(text)
    cols.lines = _count_lines(ledger, source, len(cols.line))
    return cols


# ------------------------------------------------------------------------------------------- descriptor files
class DirEntry(NamedTuple):
    """One entry of the descriptors dir, as listed once (the fingerprint and the parse both use this list).

    A NamedTuple rather than a dataclass: the augmented MARD lists 344k of these on every (cache-hit) run.
    """

    name: str
    size: int
    mtime_ns: int
    is_file: bool


def list_descriptor_dir(path: Path) -> list[DirEntry]:
    """Every entry of ``acousticbrainz_descriptors/``, sorted by name (os.scandir: one stat per file)."""
    out = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                st = entry.stat()
                out.append(DirEntry(entry.name, st.st_size, st.st_mtime_ns, entry.is_file()))
            except OSError:  # vanished or a dangling link: still listed, so it is accounted for
                out.append(DirEntry(entry.name, -1, 0, False))
    out.sort(key=lambda e: e.name)
    return out


# What a worker sends back: ("ok", name, amazon_id, mbid, (artist, album, title, genre), payload) or
# ("err", name, reason, detail). payload: a float32 vector (seed sets) or (schema_id, names | None, vector) for
# lowlevel_all, whose names are sent once per schema per worker process.
TrackResult = tuple
TrackTask = tuple[str, str, str, str, str, int]  # (path, name, amazon_id, mbid, feature_set, run_id)

_SCHEMAS_SENT: dict[str, Any] = {"run": None, "ids": set()}


def parse_descriptor_task(task: TrackTask) -> TrackResult:
    """Parse one descriptor file (runs in a worker process). Never raises: errors come back as ('err', …)."""
    path, name, aid, mbid, feature_set, run_id = task
    try:
        from mte.data.descriptors import DescriptorError
    except ImportError as e:  # pragma: no cover - a broken install, not bad input
        return ("err", name, "unexpected_error", repr(e))
    try:
        return _parse_descriptor(path, name, aid, mbid, feature_set, run_id)
    except DescriptorError as e:
        return ("err", name, e.reason, _clip(e.detail))
    except MemoryError:
        return ("err", name, "too_large", "out of memory while parsing")
    except OSError as e:
        return ("err", name, "unreadable", f"{type(e).__name__}: {e}")
    except Exception as e:  # bad input must never stop a run: record anything unforeseen
        return ("err", name, "unexpected_error", f"{type(e).__name__}: {e}")


def _parse_descriptor(path: str, name: str, aid: str, mbid: str, feature_set: str, run_id: int) -> TrackResult:
    import numpy as np

    from mte.data.descriptors import DescriptorError, descriptor_tags, extract_features, load_descriptor

    with open(path, "rb") as fh:
        data = fh.read()
    doc = load_descriptor(data)
    feats = extract_features(doc, feature_set)
    tags = descriptor_tags(doc)
    tag_tuple = tuple(_tag(tags.get(k)) for k in ("artist", "album", "title", "genre"))
    if isinstance(feats, dict):
        names = tuple(feats)
        with np.errstate(over="ignore"):
            vec = np.fromiter(feats.values(), dtype=np.float64, count=len(names)).astype(np.float32)
        _check_finite(vec, names)
        schema_id = _schema_id(names)
        if _SCHEMAS_SENT["run"] != run_id:
            _SCHEMAS_SENT["run"], _SCHEMAS_SENT["ids"] = run_id, set()
        sent: set[str] = _SCHEMAS_SENT["ids"]
        payload: Any = (schema_id, None if schema_id in sent else names, vec)
        sent.add(schema_id)
    else:
        vec = np.asarray(feats, dtype=np.float32)
        if vec.ndim != 1:
            raise DescriptorError("bad_shape", f"feature vector has shape {vec.shape}")
        _check_finite(vec, None)
        payload = vec
    return ("ok", name, aid, mbid, tag_tuple, payload)


def _check_finite(vec: Any, names: Sequence[str] | None) -> None:
    """Values beyond float32's range turn into inf when stored as float32: reject them like NaN/Inf."""
    import numpy as np

    from mte.data.descriptors import DescriptorError

    finite = np.isfinite(vec)
    if not finite.all():
        i = int(np.argmin(finite))
        label = names[i] if names is not None else f"feature {i}"
        raise DescriptorError("non_finite", f"{label} does not fit float32")


def _schema_id(names: tuple[str, ...]) -> str:
    import hashlib

    return hashlib.blake2b("\n".join(names).encode("utf-8", "replace"), digest_size=12).hexdigest()


def _tag(value: Any) -> str | None:
    if isinstance(value, str):
        return scrub(value) or None
    return None
