"""An export: a gallery embedded once, on disk (Parquet + manifest, optional FAISS), and how search finds it.

Embedding the gallery is cheap for word models (seconds) but takes hours for a transformer over MARD's 263k
reviews on a CPU, so ``python -m mte.export`` writes the embeddings once (:func:`write_export`) and search and the
web page read them back (:func:`load_export`) after checking they were made from the same checkpoint (path, size
and mtime, else its SHA-256) and the same gallery data (its processed dir's input fingerprint). The default dir
sits beside the checkpoint: ``<stem>-export`` for the training data, ``<stem>-export-<tag>`` for another MARD dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mte.models.inference import LoadedModel
from mte.paths import output_dir_entries
from mte.search.errors import Progress, SearchError, quiet
from mte.search.faiss_index import SEARCHED, load_faiss, write_faiss_indexes
from mte.search.gallery import TABLES, Gallery, GallerySource

if TYPE_CHECKING:
    from mte.search.engine import SearchEngine

EXPORT_FORMAT = "mte-export/1"


# ------------------------------------------------------------------------------------------ checkpoint identity
def checkpoint_identity(path: str | Path, with_hash: bool = True) -> dict[str, Any]:
    """What an export records about its checkpoint: resolved path, size, mtime and (by default) SHA-256."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    ident: dict[str, Any] = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if with_hash:
        ident["sha256"] = _sha256(path)
    return ident


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_checkpoint(recorded: dict[str, Any], path: Path) -> bool:
    """Cheap test first (same file, size and mtime); the hash only when the file was copied or touched."""
    try:
        now = checkpoint_identity(path, with_hash=False)
    except OSError:
        return False
    if now["size"] != recorded.get("size"):
        return False
    if now["path"] == recorded.get("path") and now["mtime_ns"] == recorded.get("mtime_ns"):
        return True
    return _sha256(path) == recorded.get("sha256")


# ------------------------------------------------------------------------------------------------ where
def default_index_dir(ckpt_path: str | Path, raw_dir: str | Path | None = None) -> Path:
    """Where ``mte.export`` writes by default: beside the checkpoint, ``<dir>/<stem>-export`` (best-export/…), or
    ``<stem>-export-<tag>`` for the gallery of another MARD dir (its name + a hash of its path)."""
    path = Path(ckpt_path).expanduser()
    if raw_dir is None:
        return path.parent / f"{path.stem}-export"
    from mte.eval.evaluation import data_tag

    return path.parent / f"{path.stem}-export-{data_tag(raw_dir)}"


def find_index_dir(ckpt_path: str | Path, raw_dir: str | Path | None = None) -> Path | None:
    """The default export dir of this checkpoint (and gallery) when it exists and was made from this checkpoint."""
    candidate = default_index_dir(ckpt_path, raw_dir)
    manifest = read_manifest(candidate) if (candidate / "manifest.json").is_file() else None
    if manifest is None or not _same_checkpoint(manifest.get("checkpoint", {}), Path(ckpt_path).expanduser()):
        return None
    return candidate


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    """An export's manifest, or None when there is none of this format."""
    try:
        manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == EXPORT_FORMAT else None


# ------------------------------------------------------------------------------------------------ write
def write_export(
    engine: SearchEngine,
    out_dir: str | Path | None = None,
    *,
    faiss: bool = False,
    ivf_min_size: int,
    nlist: int | None,
    nprobe: int,
    progress: Progress | None = None,
) -> Path:
    """Write the engine's gallery (Parquet + manifest, optional FAISS indexes) atomically; returns the dir.

    Default ``out_dir``: :func:`default_index_dir` (beside the checkpoint), which search picks up by itself. The dir
    is built under a temp name next to it and renamed into place, so readers never see a half-written export and a
    failed export leaves the previous one intact.
    """
    say = progress or quiet
    start = time.perf_counter()
    source = engine.source
    out = Path(out_dir).expanduser() if out_dir else default_index_dir(engine.model.checkpoint, source.raw_dir)
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        say(f"writing Parquet to {out}")
        engine.gallery.save(tmp)
        specs: dict[str, Any] = {}
        if faiss:
            tables = {name: engine.gallery.table(name)[1].numpy() for name in SEARCHED}
            specs = write_faiss_indexes(tables, tmp, ivf_min_size, nlist, nprobe, say)
        manifest = _manifest(engine, specs, ivf_min_size, time.perf_counter() - start)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _manifest(engine: SearchEngine, faiss_specs: dict[str, Any], ivf_min_size: int, elapsed: float) -> dict[str, Any]:
    import mte

    source = engine.source
    return {
        "format": EXPORT_FORMAT,
        "mte_version": getattr(mte, "__version__", "unknown"),
        "checkpoint": checkpoint_identity(engine.model.checkpoint),
        "processed_dir": source.processed_dir,
        "processed_fingerprint": source.fingerprint,
        "raw_dir": source.raw_dir,
        "feature_set": engine.feature_set,
        "embed_dim": engine.gallery.embed_dim,
        "text_backbone": engine.info["text_backbone"],
        "counts": engine.gallery.counts(),
        "faiss": faiss_specs,
        "ivf_min_size": ivf_min_size,
        "score": "cosine similarity (inner product of unit vectors)",
        "embed_s": round(engine.embed_seconds, 3) if engine.embed_seconds is not None else None,
        "write_s": round(elapsed, 3),
    }


def check_replaceable(out: Path) -> None:
    """Raise :class:`SearchError` (one line) unless writing the export to ``out`` can lose nothing but an earlier
    export's own files: ``out`` must be missing, an empty dir, or an export dir (an ``mte-export`` manifest) holding
    only the files an export writes. A user's dir given as ``out_dir`` by mistake is never replaced."""
    present = output_dir_entries(out, "out_dir", SearchError)
    if not present:
        return
    manifest = read_manifest(out)
    if manifest is None:
        raise SearchError(f"refusing to replace {out}: it is not empty and not an export written by mte (no "
                          f"{EXPORT_FORMAT} manifest.json); choose another out_dir")
    own = {"manifest.json", *(f"{name}.parquet" for name in TABLES),
           *(str(spec.get("file")) for spec in (manifest.get("faiss") or {}).values() if isinstance(spec, dict))}
    foreign = [name for name in present if name not in own]
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise SearchError(f"refusing to replace {out}: it holds files mte.export did not write "
                          f"({', '.join(foreign[:3])}{more}); move them or choose another out_dir")


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished dir into place; an existing export there (checked again: it may have changed while this one
    was built) is renamed away first and deleted after."""
    old = None
    if out.exists() or out.is_symlink():
        check_replaceable(out)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- read
def load_export(
    index_dir: Path, loaded: LoadedModel, source: GallerySource, progress: Progress | None = None
) -> tuple[Gallery, dict[str, Any], GallerySource]:
    """The gallery and FAISS indexes of an export of this checkpoint and gallery data, and its source;
    :class:`SearchError` (one line) when it belongs to something else or is damaged."""
    manifest = check_export(index_dir, loaded, source)
    (progress or quiet)(f"reading embeddings from {index_dir}")
    gallery = Gallery.load(index_dir, int(manifest["embed_dim"]))
    if gallery.counts() != manifest.get("counts"):
        raise SearchError(f"index dir {index_dir}: row counts {gallery.counts()} differ from its manifest "
                          f"{manifest.get('counts')}; re-run python -m mte.export")
    indexes = {}
    for name, spec in (manifest.get("faiss") or {}).items():
        index = load_faiss(index_dir, spec)
        if index is not None:
            indexes[name] = index
    exported = GallerySource(manifest.get("processed_dir"), manifest.get("processed_fingerprint"),
                             manifest.get("raw_dir"), str(index_dir))
    return gallery, indexes, exported


def check_export(index_dir: Path, loaded: LoadedModel, source: GallerySource) -> dict[str, Any]:
    """The manifest of an export dir made from this checkpoint and gallery data, else :class:`SearchError`."""
    if not (index_dir / "manifest.json").is_file():
        raise SearchError(f"not an export dir: {index_dir} has no manifest.json; make one with "
                          f"python -m mte.export ckpt_path={loaded.checkpoint}")
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise SearchError(f"{index_dir}/manifest.json is not an {EXPORT_FORMAT} manifest; re-run python -m mte.export")
    if not _same_checkpoint(manifest.get("checkpoint", {}), Path(loaded.checkpoint)):
        raise SearchError(f"index dir {index_dir} was exported from another checkpoint "
                          f"({manifest.get('checkpoint', {}).get('path')}); re-run python -m mte.export "
                          f"ckpt_path={loaded.checkpoint}")
    if manifest.get("processed_fingerprint") != source.fingerprint:
        raise SearchError(f"index dir {index_dir} was exported from other data than {source.description}; re-run "
                          f"python -m mte.export")
    if int(manifest.get("embed_dim", -1)) != loaded.embed_dim:
        raise SearchError(f"index dir {index_dir} holds {manifest.get('embed_dim')}-d embeddings; the model makes "
                          f"{loaded.embed_dim}-d ones")
    return manifest
