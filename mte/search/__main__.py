"""``python -m mte.search ckpt_path=PATH (query="…" | descriptor=DOC.json | audio=SONG.mp3) [k=10] [data.raw_dir=DIR]``.

A thin Hydra entry point over :class:`mte.search.engine.SearchEngine`:

* ``query=`` — albums whose audio is closest to the text (rank, artist, title, genre, score, a review snippet);
* ``descriptor=`` — an AcousticBrainz low-level document → the nearest reviews and the closest-sounding albums;
* ``audio=`` — an mp3/wav/flac, described with Essentia's MusicExtractor (the ``audio`` extra), then as above.

The gallery is the model's training data, or with ``data.raw_dir=DIR`` every album of another MARD-format dir (a
user's own collection, prepared with the checkpoint's input contract: the checkpoint file alone is enough). It uses
the export beside the checkpoint (``python -m mte.export``) for that gallery when there is one, else embeds it
first. Bad input (no or unknown checkpoint, broken descriptor, unreadable audio, empty query …) prints one line on
stderr and exits with status 2 — no traceback, since these are the user's mistakes, not bugs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from mte.cli import UserError, quote_free_values, user_errors
from mte.paths import config_dir

USAGE = "usage: python -m mte.search ckpt_path=PATH (query=\"words\" | descriptor=DOC.json | audio=SONG.mp3) [k=10]"


def _register_config() -> str:
    """Serve conf/search.yaml through Hydra's ConfigStore instead of the conf/ search path.

    Why: conf/ has a config *group* named ``audio`` (the training audio branch), so with conf/ as ``config_path``
    (:func:`mte.paths.config_dir`, as the other entry points use it) Hydra would read ``audio=song.mp3`` as "pick
    audio/song.mp3.yaml" and fail. From the ConfigStore the same YAML (still the single source of truth, found by
    the same helper) has no sibling groups, and ``audio=`` is a plain value.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="mte_search", node=OmegaConf.load(config_dir() / "search.yaml"))
    return "mte_search"


@hydra.main(config_path=None, config_name=_register_config(), version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors():  # bad input → "error: …" on stderr, exit status 2
        run(cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Check the arguments, load the engine, search and print; returns what was printed as a dict."""
    mode, value = _mode(cfg)
    k = cfg.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"k must be a positive integer, got {k!r}")
    if cfg.get("format", "table") not in ("table", "json"):
        raise UserError(f"format must be table or json, got {cfg.get('format')!r}")
    try:
        return _search(cfg, mode, value, int(k))
    except ImportError as e:  # only the audio path imports optionally (Essentia): its message says what to install
        if mode != "audio":
            raise
        raise UserError(str(e)) from None


def _mode(cfg: DictConfig) -> tuple[str, Any]:
    """Which search was asked for; the cheap checks happen before the (slow) checkpoint load."""
    if not cfg.get("ckpt_path"):
        raise UserError(f"no checkpoint given (ckpt_path=PATH); {USAGE}")
    given = {m: cfg.get(m) for m in ("query", "descriptor", "audio") if cfg.get(m) is not None}
    if len(given) != 1:
        what = "none" if not given else " and ".join(sorted(given))
        raise UserError(f"give exactly one of query=, descriptor=, audio= (got {what}); {USAGE}")
    ((mode, value),) = given.items()
    if mode == "query":
        value = str(value)
        if not value.strip():
            raise UserError('empty query: describe the music in a few words, e.g. query="dreamy synth pop"')
    elif mode == "descriptor":
        from mte.search.engine import load_document

        value = load_document(str(value))[0]  # a broken file fails now, not after loading the model
    elif not Path(str(value)).expanduser().is_file():
        raise UserError(f"audio file not found: {value}")
    return mode, value


def _search(cfg: DictConfig, mode: str, value: Any, k: int) -> dict[str, Any]:
    from mte.search.engine import SearchEngine
    from mte.search.export import find_index_dir

    progress = None if cfg.get("quiet") else _progress
    ckpt = Path(str(cfg.ckpt_path)).expanduser()
    data = cfg.get("data") or {}
    raw_dir = data.get("raw_dir") or None
    index_dir = cfg.get("index_dir", "auto")
    if index_dir == "auto":
        index_dir = find_index_dir(ckpt, raw_dir) if ckpt.is_file() else None
    engine = SearchEngine.from_checkpoint(
        ckpt, index_dir, processed_dir=cfg.get("processed_dir"), raw_dir=raw_dir,
        cache_dir=data.get("cache_dir") or None, workers=int(data.get("workers") or 0),
        device=str(cfg.get("device", "cpu")), progress=progress,
    )
    if mode == "query":
        result: dict[str, Any] = {"query": value, "albums": engine.by_text(value, k)}
    elif mode == "descriptor":
        reviews, albums = engine.by_descriptor(value, k)
        result = {"descriptor": str(cfg.descriptor), "reviews": reviews, "albums": albums}
    else:
        reviews, albums = engine.by_audio(str(value), k, progress=progress)
        result = {"audio": str(value), "reviews": reviews, "albums": albums}
    if cfg.get("format", "table") == "json":
        print(json.dumps(_jsonable(result), ensure_ascii=False), flush=True)
    else:
        print(format_result(result, int(cfg.get("snippets", 1))), flush=True)
    return result


def _progress(message: str) -> None:
    print(f"[search] {message}", file=sys.stderr, flush=True)


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    return {key: [asdict(h) for h in value] if isinstance(value, list) else value for key, value in result.items()}


# ------------------------------------------------------------------------------------------------- formatting
def format_result(result: dict[str, Any], snippets: int = 1) -> str:
    """The printed answer: a review table (descriptor/audio searches) and an album table."""
    parts = []
    if "query" in result:
        parts.append(f"Albums for {result['query']!r}:")
    if "reviews" in result:
        parts += [f"Reviews nearest to {result.get('descriptor') or result.get('audio')}:",
                  format_reviews(result["reviews"]), "", "Albums that sound closest:"]
    parts.append(format_albums(result["albums"], snippets))
    return "\n".join(parts)


def format_albums(hits: list[Any], snippets: int = 1) -> str:
    """rank, artist, title, genre, score — one album per line, its best review snippets indented below."""
    rows = [(str(i), _cell(h.artist, 28), _cell(h.title, 34), _cell(h.genre, 20), f"{h.score:.3f}")
            for i, h in enumerate(hits, 1)]
    extra = {i: [f"      “{s}”" for s in h.snippets[:snippets]] for i, h in enumerate(hits)} if snippets else {}
    return _table(("rank", "artist", "title", "genre", "score"), rows, extra) if hits else "(no albums)"


def format_reviews(hits: list[Any]) -> str:
    """rank, artist, title, genre, score, review_idx — one review per line, its snippet indented below."""
    rows = [(str(i), _cell(h.artist, 28), _cell(h.title, 34), _cell(h.genre, 20), f"{h.score:.3f}",
             str(h.review_idx)) for i, h in enumerate(hits, 1)]
    extra = {i: [f"      “{h.snippet}”"] for i, h in enumerate(hits)}
    return _table(("rank", "artist", "title", "genre", "score", "review"), rows, extra) if hits else "(no reviews)"


def _cell(value: str | None, width: int) -> str:
    text = " ".join((value or "–").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], extra: dict[int, list[str]]) -> str:
    widths = [max(len(header[c]), *(len(r[c]) for r in rows)) for c in range(len(header))]
    numeric = {0, 4, 5}  # rank, score, review: right-aligned

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(header)]
    for i, row in enumerate(rows):
        out.append(line(row))
        out += extra.get(i, [])
    return "\n".join(out)


if __name__ == "__main__":
    sys.argv[1:] = quote_free_values(sys.argv[1:])
    main()
