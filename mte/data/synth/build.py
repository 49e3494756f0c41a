"""Worker (one chunk of albums → metadata bytes, review bytes, descriptor files, quirk facts) and orchestration."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mte.data.synth.albums import _Album, _make_album
from mte.data.synth.common import (
    _DESC_DIR,
    _FILE_CATS,
    _FORMAT_VERSION,
    _LISTED_QUIRKS,
    _META_FILE,
    _REVIEWS_FILE,
    FULL_SCALE,
    QUIRKS,
    SYNTH_INFO_FILE,
    normalize_quirks,
)
from mte.data.synth.descriptors import _descriptor_doc, _descriptor_name, _serialize_doc, _TrackInfo
from mte.data.synth.lexicon import lexicon
from mte.data.synth.plan import _Chunk, _chunks, _make_plan, _Plan
from mte.data.synth.text import _metadata_record, _review_lines
from mte.data.synth.world import DEFAULT_WORLD, check_world

# --------------------------------------------------------------------------------------------------------------
# Worker: one chunk of albums → metadata bytes, review bytes, descriptor files, quirk facts
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _ChunkResult:
    metadata: bytes
    reviews: bytes
    counts: dict[str, int]
    items: dict[str, list[dict[str, Any]]]
    descriptor_bytes: int


def _run_chunk(chunk: _Chunk) -> _ChunkResult:
    """Generate every album of the chunk; descriptor files are written directly into the output dir."""
    desc_dir = Path(chunk.out_dir) / _DESC_DIR
    meta_lines: list[bytes] = []
    review_lines: list[bytes] = []
    counts: dict[str, int] = dict.fromkeys(QUIRKS, 0)
    items: dict[str, list[dict[str, Any]]] = {q: [] for q in sorted(_LISTED_QUIRKS)}
    desc_bytes = 0
    r0 = f0 = 0
    for local in range(chunk.stop - chunk.start):
        index = chunk.start + local
        kind, n_tracks = int(chunk.kind[local]), int(chunk.n_tracks[local])
        album = _make_album(chunk.seed, index, int(chunk.artist[local]), n_tracks, kind != 2)
        counts["album_without_descriptor"] += kind == 2
        counts["descriptor_without_reviews"] += kind == 1
        meta_lines.append(_metadata_line(album, chunk, local, counts, items))
        desc_bytes += _write_descriptors(album, chunk, f0, n_tracks, desc_dir, counts, items)
        f0 += n_tracks
        lines, facts = _review_lines(album, chunk, local, r0)
        r0 += len(lines)
        review_lines.extend(lines)
        for quirk, line_nos in facts.items():
            counts[quirk] += len(line_nos)
            if quirk in _LISTED_QUIRKS:
                items[quirk].extend({"source": _REVIEWS_FILE, "line": n, "amazon_id": album.asin} for n in line_nos)
    return _ChunkResult(b"".join(meta_lines), b"".join(review_lines), counts, items, desc_bytes)


def _metadata_line(album: _Album, chunk: _Chunk, local: int, counts: dict, items: dict) -> bytes:
    """Serialise the album's metadata; the broken-metadata quirk truncates the line (keeping its newline)."""
    line = orjson.dumps(_metadata_record(album, chunk.n_albums, chunk.seed))
    if chunk.broken_meta[local]:
        line = line[: max(5, int(len(line) * album.rng.uniform(0.2, 0.8)))]
        counts["broken_metadata"] += 1
        items["broken_metadata"].append({"source": _META_FILE, "line": album.index + 1, "amazon_id": album.asin})
    return line + b"\n"


def _write_descriptors(
    album: _Album, chunk: _Chunk, f0: int, n_tracks: int, desc_dir: Path, counts: dict, items: dict
) -> int:
    """Write the album's descriptor files (first track for MARD, a sorted sample of songs when augmented)."""
    rng = album.rng
    if n_tracks == 0:
        return 0
    song_nos = sorted(rng.choice(len(album.songs), size=n_tracks, replace=False)) if n_tracks > 1 else [0]
    written = 0
    for t, song_no in enumerate(song_nos):
        code = int(chunk.file_cat[f0 + t])
        quirk = _FILE_CATS[code - 1] if code else None
        no_genre = bool(chunk.file_no_genre[f0 + t])
        mbid = album.songs[int(song_no)][1]
        info = _TrackInfo(album, int(song_no), mbid, genre_tag=not no_genre, asin_tag=bool(rng.random() < 0.3))
        doc = _descriptor_doc(info, rng, chunk.world)
        data, detail = _serialize_doc(doc, quirk, rng)
        name = _descriptor_name(album.asin, mbid, quirk == "bad_filename", rng)
        (desc_dir / name).write_bytes(data)
        written += len(data)
        if quirk:
            counts[quirk] += 1
            item = {"source": name, "amazon_id": album.asin}
            if detail:
                item["detail"] = detail
            items[quirk].append(item)
        counts["descriptor_without_genre"] += no_genre and quirk != "broken_descriptor"
    return written


# --------------------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------------------


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """Refuse a non-empty target unless overwriting; return the temporary sibling to generate into."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=true to replace it)")
    tmp = out_dir.parent / f"{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / _DESC_DIR).mkdir(parents=True)
    return tmp


def _commit(tmp: Path, out_dir: Path) -> None:
    """Move the finished tree into place; an existing target is swapped out first and deleted after."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f"{out_dir.name}.old-{os.getpid()}"
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


def _results(chunks: list[_Chunk], workers: int) -> Iterator[_ChunkResult]:
    """Chunk results in album order, in-process or from a process pool (the output is the same)."""
    if workers <= 1 or len(chunks) <= 1:
        yield from map(_run_chunk, chunks)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_run_chunk, chunks)


def generate(
    out_dir: Path,
    albums: int = 600,
    seed: int = 0,
    tracks_per_album: int = 1,
    quirks: bool | Iterable[str] | Mapping[str, bool] = True,
    workers: int | None = None,
    *,
    proportions: str = "auto",
    overwrite: bool = False,
    world: int = DEFAULT_WORLD,
) -> dict[str, Any]:
    """Write a synthetic MARD raw directory to `out_dir` and return its summary (also in DIR/.synth.json).

    `proportions`: "real" (MARD's: 13% paired, 30% descriptor-only, 57% review-only), "demo" (80/8/12, so a
    small run is mostly usable) or "auto" (real at full size, demo below). The output is generated next to
    `out_dir` and renamed into place at the end, so a crash never leaves a half-written dataset.

    `world` fixes the rules (factor → words, factor → descriptors; see `mte.data.synth.world`), `seed` the albums:
    another seed in the same world gives new albums by new artists that follow the same rules.
    """
    world = check_world(world)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if albums < 1:
        raise ValueError(f"albums must be ≥ 1, got {albums}")
    if tracks_per_album < 1:
        raise ValueError(f"tracks_per_album must be ≥ 1, got {tracks_per_album}")
    if proportions not in ("auto", "real", "demo"):
        raise ValueError(f"proportions must be 'auto', 'real' or 'demo', got {proportions!r}")
    if proportions == "auto":
        proportions = "real" if albums >= FULL_SCALE["albums"] else "demo"
    enabled = normalize_quirks(quirks)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    t0 = time.perf_counter()
    out_dir = Path(out_dir).absolute()
    tmp = _prepare_out_dir(out_dir, overwrite)
    try:
        plan = _make_plan(albums, seed, tracks_per_album, enabled, proportions, world)
        lex = lexicon()  # loaded before the workers fork, so they inherit it
        size = max(4, min(256, math.ceil(albums / (workers * 8))))
        info = _write_all(plan, tmp, list(_chunks(plan, tmp, size)), workers)
        info["params"] = {
            "albums": albums,
            "seed": seed,
            "world": world,
            "lexicon": lex.source,
            "tracks_per_album": tracks_per_album,
            "quirks": sorted(enabled),
            "proportions": proportions,
        }
        (tmp / SYNTH_INFO_FILE).write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        _commit(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = dict(info)
    summary["out_dir"] = str(out_dir)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return summary


def _write_all(plan: _Plan, tmp: Path, chunks: list[_Chunk], workers: int) -> dict[str, Any]:
    """Stream chunk results into the two JSON-lines files and total the counts (deterministic order)."""
    quirk_counts = dict.fromkeys(QUIRKS, 0)
    items: dict[str, list[dict[str, Any]]] = {q: [] for q in sorted(_LISTED_QUIRKS)}
    desc_bytes = 0
    with (tmp / _META_FILE).open("wb") as meta, (tmp / _REVIEWS_FILE).open("wb") as reviews:
        for res in _results(chunks, workers):
            meta.write(res.metadata)
            reviews.write(res.reviews)
            desc_bytes += res.descriptor_bytes
            for q, n in res.counts.items():
                quirk_counts[q] += n
            for q, lst in res.items.items():
                items[q].extend(lst)
    paired = plan.kind == 0
    counts = {
        "albums": int(plan.kind.size),
        "paired_albums": int(paired.sum()),
        "descriptor_only_albums": int((plan.kind == 1).sum()),
        "review_only_albums": int((plan.kind == 2).sum()),
        "reviews": int(plan.n_reviews.sum()),
        "reviews_of_paired_albums": int(plan.n_reviews[paired].sum()),
        "descriptor_files": int(plan.n_tracks.sum()),
        "descriptor_bytes": desc_bytes,
        "metadata_bytes": (tmp / _META_FILE).stat().st_size,
        "reviews_bytes": (tmp / _REVIEWS_FILE).stat().st_size,
    }
    return {
        "generator": "mte.data.synth",
        "format_version": _FORMAT_VERSION,
        "counts": counts,
        "quirks": quirk_counts,
        "quirk_items": items,
        "line_numbers": "1-based",
    }


def summary_line(summary: Mapping[str, Any]) -> str:
    """One human line: sizes, time and the quirk counts (used by the CLI)."""
    c = summary["counts"]
    size_mb = (c["descriptor_bytes"] + c["metadata_bytes"] + c["reviews_bytes"]) / 1e6
    quirks = " ".join(f"{k}={v}" for k, v in summary["quirks"].items() if v)
    return (
        f"synthetic MARD: {c['albums']} albums ({c['paired_albums']} paired, {c['descriptor_only_albums']} "
        f"descriptor-only, {c['review_only_albums']} review-only), {c['reviews']} reviews, "
        f"{c['descriptor_files']} descriptor files, {size_mb:.1f} MB in {summary.get('elapsed_s', 0):.1f} s; "
        f"quirks: {quirks or 'none'}"
    )
