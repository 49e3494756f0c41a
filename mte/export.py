"""``python -m mte.export ckpt_path=PATH [data.raw_dir=OTHER] [out_dir=DIR] [faiss=true]`` — embed a gallery once.

Writes ``albums.parquet``, ``reviews.parquet``, ``tracks.parquet`` (metadata plus an ``embedding``
Array(Float32, D) column), ``manifest.json`` (checkpoint identity, processed dir, embed_dim, counts) and, with
``faiss=true``, FAISS inner-product indexes (flat below ``faiss_options.ivf_min_size`` vectors, IVF above). The
default dir sits beside the checkpoint, where ``python -m mte.search`` and the web page find it by themselves
(``<stem>-export``; ``<stem>-export-<tag>`` for the gallery of another MARD dir, ``data.raw_dir=OTHER``, prepared
with the checkpoint's input contract).
Written atomically (temp dir + rename); an existing ``out_dir`` is replaced only when it is an earlier export
(nothing else in it). The last printed line is the export dir. Bad input → one line, exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mte.cli import UserError, user_errors
from mte.paths import config_dir


@hydra.main(config_path=str(config_dir()), config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> str:
    with user_errors():  # bad input → "error: …" on stderr, exit status 2
        return export(cfg)


def export(cfg: DictConfig) -> str:
    """Embed and write; returns the export dir (also printed as the last line)."""
    if not cfg.get("ckpt_path"):
        raise UserError("no checkpoint given; usage: python -m mte.export ckpt_path=PATH [out_dir=DIR] [faiss=true]")
    if cfg.get("faiss"):
        try:
            import faiss  # noqa: F401  (checked before the slow embedding, not after)
        except ImportError:
            raise UserError("faiss=true needs FAISS, which is not installed: pip install 'mte[index]'") from None

    from mte.search.engine import SearchEngine
    from mte.search.export import check_replaceable
    from mte.search.faiss_index import DEFAULT_NPROBE, IVF_MIN_SIZE

    if cfg.get("out_dir"):  # before the slow embedding; the default dir is checked once the gallery is known
        check_replaceable(Path(str(cfg.out_dir)).expanduser())

    progress = None if cfg.get("quiet") else _progress
    options = cfg.get("faiss_options") or {}
    data = cfg.get("data") or {}
    engine = SearchEngine.from_checkpoint(str(cfg.ckpt_path), processed_dir=cfg.get("processed_dir"),
                                          raw_dir=data.get("raw_dir") or None, cache_dir=data.get("cache_dir") or None,
                                          workers=int(data.get("workers") or 0), device=str(cfg.get("device", "cpu")),
                                          progress=progress)
    out = engine.export(
        cfg.get("out_dir"),
        faiss=bool(cfg.get("faiss")),
        ivf_min_size=int(options.get("ivf_min_size", IVF_MIN_SIZE)),
        nlist=options.get("nlist"),
        nprobe=int(options.get("nprobe", DEFAULT_NPROBE)),
        progress=progress,
    )
    counts = engine.gallery.counts()
    print(f"exported {counts['albums']} albums, {counts['reviews']} reviews, {counts['tracks']} tracks "
          f"({engine.gallery.embed_dim}-d{', FAISS' if cfg.get('faiss') else ''}) to", flush=True)
    print(out, flush=True)
    return str(out)


def _progress(message: str) -> None:
    print(f"[export] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    from mte.cli import quote_free_values  # paths with '=', ',' or '(' (epoch=3-step=9.ckpt) work as typed

    sys.argv[1:] = quote_free_values(sys.argv[1:], ("ckpt_path", "out_dir", "processed_dir", "data.raw_dir"))
    main()
