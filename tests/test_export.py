"""Export: Parquet + manifest (+ FAISS) that round-trip exactly, load instead of re-embedding, and fail loudly when
they belong to another checkpoint; FAISS answers equal exact search."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers import run_module
from test_search import AB_DOCS, make_untrained_checkpoint, train_small_checkpoint

from mte.search.engine import SearchEngine, SearchError, exact_search
from mte.search.export import EXPORT_FORMAT, default_index_dir, find_index_dir
from mte.search.faiss_index import build_faiss_index
from mte.search.gallery import Gallery


@pytest.fixture(scope="module")
def ckpt(processed_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # a private copy: tests here write export dirs beside it
    src = make_untrained_checkpoint(processed_dir, processed_dir.parent / "search" / "untrained.ckpt")
    dst = tmp_path_factory.mktemp("export-ckpt") / "best.ckpt"
    shutil.copy2(src, dst)
    return dst


@pytest.fixture(scope="module")
def engine(ckpt: Path) -> SearchEngine:
    return SearchEngine.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def exported(engine: SearchEngine) -> Path:
    return engine.export()


def test_export_writes_parquet_with_metadata_and_embeddings(exported: Path, engine: SearchEngine) -> None:
    assert exported == default_index_dir(engine.model.checkpoint) == engine.model.checkpoint.parent / "best-export"
    d = engine.gallery.embed_dim
    albums = pl.read_parquet(exported / "albums.parquet")
    reviews = pl.read_parquet(exported / "reviews.parquet")
    tracks = pl.read_parquet(exported / "tracks.parquet")
    assert albums.columns == ["amazon_id", "artist", "title", "genre", "split", "n_tracks", "n_reviews", "embedding"]
    assert {"review_idx", "amazon_id", "summary", "text", "rating", "split", "embedding"} <= set(reviews.columns)
    assert {"track_idx", "amazon_id", "mbid", "split", "embedding"} <= set(tracks.columns)
    for table in (albums, reviews, tracks):
        assert table.schema["embedding"] == pl.Array(pl.Float32, d)
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["format"] == EXPORT_FORMAT and manifest["embed_dim"] == d
    assert manifest["counts"] == {"albums": len(albums), "reviews": len(reviews), "tracks": len(tracks)}
    assert manifest["checkpoint"]["path"] == str(engine.model.checkpoint.resolve())
    assert len(manifest["checkpoint"]["sha256"]) == 64 and manifest["faiss"] == {}
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_exported_embeddings_equal_freshly_computed_ones(exported: Path, engine: SearchEngine, ckpt: Path) -> None:
    loaded = Gallery.load(exported, engine.gallery.embed_dim)
    fresh = SearchEngine.from_checkpoint(ckpt).gallery  # a new process-state embedding of the same checkpoint
    for name in ("albums", "reviews", "tracks"):
        table, emb = loaded.table(name)
        ref_table, ref_emb = engine.gallery.table(name)
        assert torch.equal(emb, ref_emb)  # bit-exact round trip through Parquet
        torch.testing.assert_close(emb, fresh.table(name)[1], atol=1e-6, rtol=0)
        assert table.equals(ref_table)


def test_search_from_the_export_equals_search_after_embedding(exported: Path, engine: SearchEngine,
                                                              ckpt: Path) -> None:
    from_export = SearchEngine.from_checkpoint(ckpt, index_dir=exported)
    assert from_export.index_dir == exported and from_export.embed_seconds is None
    assert from_export.by_text("loud guitar rock", k=5) == engine.by_text("loud guitar rock", k=5)
    assert from_export.by_descriptor(AB_DOCS[0], k=5) == engine.by_descriptor(AB_DOCS[0], k=5)
    assert from_export.map_2d() == engine.map_2d()
    assert find_index_dir(ckpt) == exported


def test_an_export_of_another_checkpoint_is_refused(exported: Path, processed_dir: Path, tmp_path: Path) -> None:
    other = make_untrained_checkpoint(processed_dir, tmp_path / "other.ckpt", seed=1)
    with pytest.raises(SearchError, match="another checkpoint"):
        SearchEngine.from_checkpoint(other, index_dir=exported)
    assert find_index_dir(other) is None
    with pytest.raises(SearchError, match=r"no manifest\.json"):
        SearchEngine.from_checkpoint(other, index_dir=tmp_path)


def test_a_copied_checkpoint_still_matches_its_export(exported: Path, ckpt: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.ckpt"
    shutil.copyfile(ckpt, copy)  # new path and mtime, same bytes: the SHA-256 decides
    engine = SearchEngine.from_checkpoint(copy, index_dir=exported)
    assert engine.gallery.counts() == json.loads((exported / "manifest.json").read_text())["counts"]


def test_export_replaces_atomically_and_a_failed_one_keeps_the_old(engine: SearchEngine, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "export"
    engine.export(out)
    before = (out / "albums.parquet").read_bytes()
    engine.export(out)  # over an existing export
    assert (out / "albums.parquet").read_bytes() == before  # deterministic bytes

    def boom(self, out_dir):
        (out_dir / "albums.parquet").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Gallery, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        engine.export(out)
    assert (out / "albums.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_export_never_replaces_what_it_did_not_write(engine: SearchEngine, tmp_path: Path) -> None:
    """A user's dir or file given as out_dir, or an earlier export the user added a file to, is refused in one line
    and left as it was; an empty dir and an earlier export alone are written."""
    users_dir = tmp_path / "thesis"
    users_dir.mkdir()
    (users_dir / "draft.txt").write_text("mine")
    users_file = tmp_path / "notes.txt"
    users_file.write_text("mine too")
    export_with_extra = engine.export(tmp_path / "export")
    (export_with_extra / "my-notes.md").write_text("kept")
    for out, reason in ((users_dir, "not an export written by mte"), (users_file, "not a directory"),
                        (export_with_extra, r"files mte.export did not write \(my-notes.md\)")):
        with pytest.raises(SearchError, match=reason) as info:
            engine.export(out)
        assert "\n" not in str(info.value)
    assert (users_dir / "draft.txt").read_text() == "mine" and sorted(p.name for p in users_dir.iterdir()) == [
        "draft.txt"]
    assert users_file.read_text() == "mine too"
    assert (export_with_extra / "my-notes.md").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "notes.txt", "thesis"]  # no temp dirs left

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (engine.export(empty) / "manifest.json").is_file()
    (export_with_extra / "my-notes.md").unlink()
    assert (engine.export(export_with_extra) / "manifest.json").is_file()


def test_damaged_export_is_a_one_line_error(engine: SearchEngine, ckpt: Path, tmp_path: Path) -> None:
    out = engine.export(tmp_path / "damaged")
    (out / "reviews.parquet").write_bytes(b"not parquet")
    with pytest.raises(SearchError, match=r"reviews\.parquet") as info:
        SearchEngine.from_checkpoint(ckpt, index_dir=out)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------------ FAISS
def _unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_faiss_index_equals_exact_search() -> None:
    pytest.importorskip("faiss", reason="FAISS (the `index` extra) is not installed")
    gallery, queries = _unit_rows(3000, 32, 0), _unit_rows(20, 32, 1)
    index, spec = build_faiss_index(gallery)
    assert spec == {"type": "flat", "n": 3000}
    scores, ids = index.search(queries, 10)
    for q in range(len(queries)):
        ref_scores, ref_ids = exact_search(torch.from_numpy(gallery), torch.from_numpy(queries[q]), 10)
        np.testing.assert_array_equal(ids[q], ref_ids)
        np.testing.assert_allclose(scores[q], ref_scores, atol=1e-5)


def test_ivf_index_above_the_threshold_and_exact_when_probing_every_list() -> None:
    pytest.importorskip("faiss", reason="FAISS (the `index` extra) is not installed")
    import faiss

    gallery, queries = _unit_rows(4000, 16, 2), _unit_rows(10, 16, 3)
    index, spec = build_faiss_index(gallery, ivf_min_size=1000, nprobe=4)
    # 4·√n lists, but at most n/39 (FAISS wants ≥ 39 training points per centroid): here the cap decides
    assert spec["type"] == "ivf" and spec["nlist"] == min(round(4 * np.sqrt(4000)), 4000 // 39) == 102
    assert spec["nprobe"] == 4
    faiss.extract_index_ivf(index).nprobe = spec["nlist"]  # every list: IVF-Flat is then exact
    _, ids = index.search(queries, 5)
    for q in range(len(queries)):
        np.testing.assert_array_equal(ids[q], exact_search(torch.from_numpy(gallery), torch.from_numpy(queries[q]),
                                                           5)[1])


def test_engine_with_faiss_indexes_answers_like_exact_search(engine: SearchEngine, ckpt: Path, tmp_path: Path) -> None:
    pytest.importorskip("faiss", reason="FAISS (the `index` extra) is not installed")
    out = engine.export(tmp_path / "with-faiss", faiss=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {v["type"] for v in manifest["faiss"].values()} == {"flat"}
    assert (out / "albums.faiss").is_file() and (out / "reviews.faiss").is_file()
    with_faiss = SearchEngine.from_checkpoint(ckpt, index_dir=out)
    assert sorted(with_faiss.faiss_indexes) == ["albums", "reviews"]
    for query in ("slow sad piano", "fast loud guitars"):
        a, b = with_faiss.by_text(query, k=8), engine.by_text(query, k=8)
        assert [h.amazon_id for h in a] == [h.amazon_id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    rev_a, alb_a = with_faiss.by_descriptor(AB_DOCS[1], k=8)
    rev_b, alb_b = engine.by_descriptor(AB_DOCS[1], k=8)
    assert [r.review_idx for r in rev_a] == [r.review_idx for r in rev_b]
    assert [h.amazon_id for h in alb_a] == [h.amazon_id for h in alb_b]


# ------------------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_export_then_search_uses_the_export(session_tmp: Path, tmp_path: Path) -> None:
    trained = train_small_checkpoint(session_tmp / "search" / "trained-run")
    ckpt = tmp_path / "best.ckpt"
    shutil.copy2(trained, ckpt)
    args = [f"ckpt_path={ckpt}"]
    if _has_faiss():
        args.append("faiss=true")
    proc = run_module("mte.export", *args, cwd=tmp_path)
    out = Path(proc.stdout.strip().splitlines()[-1])
    assert out == default_index_dir(ckpt) and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-export", "best.ckpt"]  # nothing else written

    proc = run_module("mte.search", f"ckpt_path={ckpt}", "query=heavy metal", "k=3", "format=json", cwd=tmp_path)
    assert "reading embeddings from" in proc.stderr and "embedding" not in proc.stderr.replace("embeddings", "")
    assert len(json.loads(proc.stdout)["albums"]) == 3

    bad = run_module("mte.export", f"ckpt_path={tmp_path / 'nope.ckpt'}", "quiet=true", check=False, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: checkpoint not found: {tmp_path / 'nope.ckpt'}"]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "draft.txt").write_text("mine")
    bad = run_module("mte.export", f"ckpt_path={ckpt}", f"out_dir={mine}", "quiet=true", check=False, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: refusing to replace {mine}: it is not empty and not an export written by mte (no "
        f"{EXPORT_FORMAT} manifest.json); choose another out_dir"]
    assert [p.name for p in mine.iterdir()] == ["draft.txt"]


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True
