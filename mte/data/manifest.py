"""What ``manifest.json`` says about a processed dir, and the one line prepare prints.

The manifest is the processed dir's account of itself: where it came from (raw dir, fingerprint, config), the
counts at each stage with identities the tests rely on, everything skipped, repaired or nulled with its reason,
the lowlevel_all schema's left-out statistics, and per split how many reviews name their album's artist or title
(how much a model could score by recognising names rather than music).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mte import __version__
from mte.data.cache import FORMAT_MARK, FORMAT_VERSION, InputScan
from mte.data.mard import DESCRIPTOR_DIR, METADATA_FILE, REVIEWS_FILE, Ledger
from mte.data.names import SPLITS, TEXT_FIELDS

if TYPE_CHECKING:
    import polars as pl

    from mte.data.prepare import PrepareConfig

@dataclass
class LineCounts:
    metadata_lines: int
    review_lines: int
    metadata_ids: list[str]


def counts_of(
    lines: LineCounts,
    scan: InputScan,
    albums: pl.DataFrame,
    reviews: pl.DataFrame,
    tracks: pl.DataFrame,
    ledger: Ledger,
    splits: dict[str, list[str]],
) -> dict[str, int]:
    """Counts at each stage; the identities tests rely on: tracks + skipped_descriptors == descriptor_files,
    reviews + skipped review lines == review_lines, reviews_paired + reviews_unpaired == reviews.
    ``reviews_summary_only``: kept reviews whose text is empty (their summary is what the model reads)."""
    import polars as pl

    meta_ids = pl.Series(lines.metadata_ids, dtype=pl.String)
    counts = {
        "metadata_lines": lines.metadata_lines,
        "metadata_albums": len(meta_ids),
        "review_lines": lines.review_lines,
        "reviews": len(reviews),
        "reviews_paired": int(reviews["paired"].sum()),
        "reviews_unpaired": int((~reviews["paired"]).sum()),
        "reviews_without_metadata": int((~reviews["amazon_id"].is_in(meta_ids.implode())).sum()),
        "descriptor_files": len(scan.entries),
        "tracks": len(tracks),
        "skipped_descriptors": ledger.n_skipped(DESCRIPTOR_DIR),
        "tracks_paired": int(tracks["split"].is_not_null().sum()),
        "tracks_unpaired": int(tracks["split"].is_null().sum()),
        "tracks_without_metadata": int((~tracks["amazon_id"].is_in(meta_ids.implode())).sum()),
        "tracks_without_genre_tag": int(tracks["tag_genre"].is_null().sum()),
        "albums": len(albums),
        "albums_with_metadata": len(meta_ids),
        "albums_without_metadata": len(albums) - len(meta_ids),
        "albums_with_reviews": int((albums["n_reviews"] > 0).sum()),
        "albums_with_tracks": int((albums["n_tracks"] > 0).sum()),
        "albums_paired": int(albums["split"].is_not_null().sum()),
        "albums_reviews_only": int(((albums["n_reviews"] > 0) & (albums["n_tracks"] == 0)).sum()),
        "albums_tracks_only": int(((albums["n_tracks"] > 0) & (albums["n_reviews"] == 0)).sum()),
        "reviews_empty_tokens": int((reviews["tokens"].list.len() == 0).sum()),
        "reviews_summary_only": int((reviews["text"] == "").sum()),
    }
    for name in SPLITS:
        ids = pl.Series(splits[name], dtype=pl.String)
        counts[f"{name}_albums"] = len(ids)
        counts[f"{name}_reviews"] = int(reviews["amazon_id"].is_in(ids.implode()).sum())
        counts[f"{name}_tracks"] = int(tracks["amazon_id"].is_in(ids.implode()).sum())
    return counts


def make_manifest(
    scan: InputScan, config: PrepareConfig, key: str, counts: dict[str, int], ledger: Ledger, t0: float,
    workers: int,
) -> dict[str, Any]:
    def flat(counter: Mapping[tuple[str, str], int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, reason), n in sorted(counter.items()):
            out[reason] = out.get(reason, 0) + n
        return dict(sorted(out.items()))

    def by_group(counter: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (group, reason), n in sorted(counter.items()):
            out.setdefault(group, {})[reason] = n
        return out

    return {
        "format": FORMAT_MARK,
        "format_version": FORMAT_VERSION,
        "mte_version": __version__,
        "raw_dir": str(scan.layout.root),
        "config": {**config.key_dict(), "workers": workers},
        "cache_key": key,
        "fingerprint": scan.fingerprint,
        "inputs": scan.inputs,
        "counts": counts,
        "skipped": flat(ledger.skipped),
        "repaired": flat(ledger.repaired),
        "skipped_by_source": by_group(ledger.skipped),
        "repaired_by_source": by_group(ledger.repaired),
        "skipped_items": ledger.items,
        "nulled_by_source": by_group(ledger.nulled),
        "nulled_items": ledger.nulled_items,
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }


def mention_counts(
    albums: pl.DataFrame, reviews: pl.DataFrame, splits: Mapping[str, list[str]], config: PrepareConfig
) -> dict[str, dict[str, int]]:
    """Per split: reviews, and how many name their album's artist, its title, either (case-insensitive whole-word
    match in the configured text fields). Why: a review that names its album can be matched by the name alone, so
    these say how much of a split's score could come from names rather than music (compare album vs artist split).

    Whole words without a regex per row: text and names are lower-cased, every run of non-word characters becomes
    one space, and the padded name is looked up as a literal in the padded text (so "AC/DC" also matches "ac-dc").
    """
    import polars as pl

    def words(expr: pl.Expr) -> pl.Expr:
        return pl.concat_str(pl.lit(" "), expr.str.to_lowercase().str.replace_all(r"[\W_]+", " "), pl.lit(" "))

    def padded_name(column: str) -> pl.Expr:
        name = words(pl.col(column)).str.replace_all(r"\s+", " ")
        return pl.when(name.str.strip_chars().str.len_chars() > 0).then(name).otherwise(None).alias(column)

    names = albums.select("amazon_id", padded_name("artist"), padded_name("title"))
    columns = [TEXT_FIELDS[f] for f in config.text_fields]
    out: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        ids = pl.Series(splits.get(split, []), dtype=pl.String)
        rows = (
            reviews.filter(pl.col("amazon_id").is_in(ids.implode()))
            .select("amazon_id", words(pl.concat_str([pl.col(c) for c in columns], separator="\n")).alias("t"))
            .join(names, on="amazon_id", how="left")
            .select(
                pl.col("t").str.contains(pl.col("artist"), literal=True).fill_null(False).alias("artist"),
                pl.col("t").str.contains(pl.col("title"), literal=True).fill_null(False).alias("title"),
            )
        )
        out[split] = {
            "reviews": len(rows),
            "naming_artist": int(rows["artist"].sum()),
            "naming_title": int(rows["title"].sum()),
            "naming_either": int((rows["artist"] | rows["title"]).sum()),
        }
    return out


def _reasons(reasons: Mapping[str, int]) -> str:
    return ", ".join(f"{r}: {k:,}" for r, k in reasons.items())


def summary_line(manifest: Mapping[str, Any], cached: bool = False) -> str:
    """The one printed line: sizes, then what was skipped/repaired per input, then time (or 'cached')."""
    c = manifest.get("counts", {})
    parts = [
        f"prepare: {c.get('albums', 0):,} albums",
        f"{c.get('reviews', 0):,} reviews ({c.get('reviews_paired', 0):,} paired)",
        f"{c.get('tracks', 0):,} tracks",
        f"{c.get('albums_paired', 0):,} paired albums ({c.get('train_albums', 0):,}/{c.get('val_albums', 0):,}/"
        f"{c.get('test_albums', 0):,} train/val/test)",
    ]
    labels = {DESCRIPTOR_DIR: ("descriptor", "descriptors"), REVIEWS_FILE: ("review line", "review lines"),
              METADATA_FILE: ("metadata line", "metadata lines")}
    for group, reasons in manifest.get("skipped_by_source", {}).items():
        n = sum(reasons.values())
        one, many = labels.get(group, (group, group))
        parts.append(f"skipped {n:,} {one if n == 1 else many} ({_reasons(reasons)})")
    for group, reasons in manifest.get("repaired_by_source", {}).items():
        # no total: one line can need several repairs
        parts.append(f"repaired {labels.get(group, (group, group))[1]} ({_reasons(reasons)})")
    nulled = sum(sum(fields.values()) for fields in manifest.get("nulled_by_source", {}).values())
    if nulled:
        parts.append(f"nulled {nulled:,} unparseable field value{'s' if nulled != 1 else ''} (see manifest)")
    parts.append("cached" if cached else f"{manifest.get('elapsed_s', 0):.1f} s")
    return " · ".join(parts)
