"""Search: text → albums, descriptor → reviews/albums, the 2-D map, and ``python -m mte.search`` as a user runs it.

Fast tests use an *untrained* checkpoint written in-process on the session's small synthetic MARD (correctness of
the plumbing does not need a good model). The slow ones train a small model once (a subprocess, ~30 s) to check
that genre words find albums of that genre, and run the CLI with good and bad input.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers import REPO, run_module

from mte.search.engine import AlbumHit, ReviewHit, SearchEngine, SearchError, fit_pca_2d, snippet

AB_DOCS = sorted((Path(__file__).resolve().parent / "data" / "acousticbrainz").glob("*.json"))


# ------------------------------------------------------------------------------------- shared with test_export
def make_untrained_checkpoint(processed: Path, out: Path, seed: int = 0, overrides: tuple[str, ...] = ()) -> Path:
    """A Lightning-format checkpoint of a freshly initialised model on ``processed`` (cached by path)."""
    if out.is_file():
        return out
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from mte.data.processed import ProcessedData
    from mte.train.run import build_model

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", *overrides])
    torch.manual_seed(seed)
    model = build_model(cfg, ProcessedData.load(processed))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": pl.__version__}
    model.on_save_checkpoint(checkpoint)  # the input contract, as Lightning's checkpointing stores it
    torch.save(checkpoint, tmp)
    os.replace(tmp, out)
    return out


def train_small_checkpoint(root: Path) -> Path:
    """``python -m mte.train`` on 300 synthetic albums for 6 epochs (once per session); returns best.ckpt.

    Album split: the search tests search a gallery of every paired album, most of them training albums, and ask
    whether words find what the model learned; how well a recipe carries to unseen artists is measured elsewhere
    (README, "Recipes that transfer"). Measured for the genre test below on this toy: 45 hits (album split), 17
    (artist split: a model of ~240 albums after 6 epochs has seen few artists), chance 9.4."""
    ckpt = root / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        run_module("mte.train", "data.synthetic.albums=300", "trainer.max_epochs=6", "logger=none",
                   "data.features=seed369", "data.split=album", f"hydra.run.dir={root}")
    return ckpt


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def untrained_ckpt(processed_dir: Path, session_tmp: Path) -> Path:
    return make_untrained_checkpoint(processed_dir, session_tmp / "search" / "untrained.ckpt")


@pytest.fixture(scope="module")
def engine(untrained_ckpt: Path) -> SearchEngine:
    return SearchEngine.from_checkpoint(untrained_ckpt)


@pytest.fixture(scope="session")
def trained_ckpt(session_tmp: Path) -> Path:
    return train_small_checkpoint(session_tmp / "search" / "trained-run")


def _unit(x: torch.Tensor) -> bool:
    return bool(torch.allclose(x.norm(dim=1), torch.ones(len(x)), atol=1e-5))


# ---------------------------------------------------------------------------------------------------- gallery
def test_gallery_holds_albums_with_audio_and_readable_reviews(engine: SearchEngine) -> None:
    data, gallery = engine.model.data, engine.gallery
    assert gallery.albums["amazon_id"].to_list() == sorted(set(data.tracks["amazon_id"].to_list()))
    expected_reviews = data.reviews.filter(data.reviews["tokens"].list.len() > 0)["review_idx"].to_list()
    assert gallery.reviews["review_idx"].to_list() == expected_reviews
    assert len(gallery.tracks) == len(data.tracks)
    for emb in (gallery.album_emb, gallery.review_emb, gallery.track_emb):
        assert emb.dtype == torch.float32 and emb.shape[1] == engine.model.embed_dim and _unit(emb)


def test_album_embedding_is_the_normalised_mean_of_its_tracks(engine: SearchEngine) -> None:
    gallery = engine.gallery
    track_ids = gallery.tracks["amazon_id"].to_list()
    for row, aid in enumerate(gallery.albums["amazon_id"].to_list()[:20]):
        rows = [i for i, t in enumerate(track_ids) if t == aid]
        mean = gallery.track_emb[rows].mean(dim=0)
        torch.testing.assert_close(gallery.album_emb[row], mean / mean.norm(), atol=1e-6, rtol=0)


def test_review_embeddings_equal_the_models_text_embedding_of_their_tokens(engine: SearchEngine) -> None:
    from mte.models.contract import TokenMatrix

    tokens = engine.model.data.reviews["tokens"].to_list()
    idx = engine.gallery.reviews["review_idx"].to_list()[:5]
    with torch.inference_mode():
        expected = engine.model.model.embed_text(TokenMatrix.from_lists([tokens[i] for i in idx]).batch(np.arange(5)))
    torch.testing.assert_close(engine.gallery.review_emb[:5], expected, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------ text search
def test_by_text_ranks_albums_with_their_own_snippets(engine: SearchEngine) -> None:
    hits = engine.by_text("great guitar album with catchy songs", k=7)
    assert len(hits) == 7 and all(isinstance(h, AlbumHit) for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    assert len({h.amazon_id for h in hits}) == 7
    reviews = engine.gallery.reviews
    for hit in hits:
        own = {snippet(s, t) for s, t in reviews.filter(reviews["amazon_id"] == hit.amazon_id)
               .select("summary", "text").iter_rows()}
        assert len(hit.snippets) <= 2 and set(hit.snippets) <= own
    json.dumps([asdict(h) for h in hits])  # a web page can send them as they are


def test_by_text_scores_are_cosine_similarities_to_the_album_embeddings(engine: SearchEngine) -> None:
    query = "calm acoustic folk"
    q = torch.from_numpy(engine.embed_text(query))
    expected = engine.gallery.album_emb @ q
    for hit in engine.by_text(query, k=5):
        row = engine.gallery.albums["amazon_id"].to_list().index(hit.amazon_id)
        assert hit.score == pytest.approx(float(expected[row]), abs=1e-5)
    assert float(expected.max()) == pytest.approx(engine.by_text(query, k=1)[0].score, abs=1e-6)


def test_k_larger_than_the_gallery_returns_everything(engine: SearchEngine) -> None:
    assert len(engine.by_text("rock", k=10_000)) == len(engine.gallery.albums)


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_blank_query_is_a_one_line_error(engine: SearchEngine, query: str) -> None:
    with pytest.raises(SearchError, match="empty query") as info:
        engine.by_text(query)
    assert "\n" not in str(info.value)


def test_query_without_known_words_is_an_error(engine: SearchEngine) -> None:
    with pytest.raises(SearchError, match="vocabulary"):
        engine.by_text("qqxqz zzyzzx")
    with pytest.raises(SearchError, match="vocabulary"):
        engine.by_text("the and of")  # stop words only


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k_is_an_error(engine: SearchEngine, k) -> None:
    with pytest.raises(SearchError, match="k must be"):
        engine.by_text("rock", k=k)


# ------------------------------------------------------------------------------------------ descriptor search
@pytest.mark.parametrize("doc_path", AB_DOCS, ids=lambda p: p.name[:10])
def test_real_acousticbrainz_documents_find_reviews_and_albums(engine: SearchEngine, doc_path: Path) -> None:
    reviews, albums = engine.by_descriptor(doc_path, k=5)
    assert len(reviews) == 5 and len(albums) == 5
    assert all(isinstance(r, ReviewHit) and r.snippet for r in reviews)
    for hits in (reviews, albums):
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
    known = set(engine.gallery.reviews["review_idx"].to_list())
    assert {r.review_idx for r in reviews} <= known
    # the same document as a dict or as bytes gives the same answer
    as_dict = engine.by_descriptor(json.loads(doc_path.read_text()), k=5)
    as_bytes = engine.by_descriptor(doc_path.read_bytes(), k=5)
    assert as_dict == as_bytes == (reviews, albums)


def test_a_gallery_tracks_own_descriptor_finds_its_album_first(engine: SearchEngine, synthetic_raw: Path) -> None:
    tracks = engine.gallery.tracks
    single = tracks.group_by("amazon_id").len().filter(pl.col("len") == 1)["amazon_id"].to_list()
    row = tracks.filter(tracks["amazon_id"].is_in(single)).row(0, named=True)
    doc = synthetic_raw / "acousticbrainz_descriptors" / row["file"]
    _, albums = engine.by_descriptor(doc, k=3)
    assert albums[0].amazon_id == row["amazon_id"] and albums[0].score == pytest.approx(1.0, abs=1e-5)


def test_a_reviews_own_embedding_finds_it_first(engine: SearchEngine) -> None:
    row = 3
    hits = engine.reviews_near(engine.gallery.review_emb[row].numpy(), k=1)
    assert hits[0].review_idx == engine.gallery.reviews["review_idx"][row]


def test_descriptor_errors_are_one_line_and_say_why(engine: SearchEngine, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"lowlevel": {')
    cases = {
        str(broken): "broken_json",
        str(tmp_path / "missing.json"): "not found",
        b"[1, 2]": "not_an_object",
    }
    doc = json.loads(AB_DOCS[0].read_text())
    del doc["lowlevel"]["mfcc"]["icov"]
    for source, reason in [*cases.items(), (doc, "missing_mfcc"), (np.zeros(169), "169 feature values")]:
        with pytest.raises(SearchError, match=reason) as info:
            engine.by_descriptor(source)
        assert "\n" not in str(info.value)
    with pytest.raises(SearchError, match="non-finite"):
        engine.by_descriptor(np.full(369, np.nan))


def test_lowlevel_all_model_reads_real_documents_and_refuses_other_extractors(
    synthetic_raw: Path, session_tmp: Path
) -> None:
    from mte.data.prepare import PrepareConfig, prepare

    processed = prepare(synthetic_raw, PrepareConfig(features="lowlevel_all", workers=1),
                        processed_dir=session_tmp / "processed-lowlevel-all")
    ckpt = make_untrained_checkpoint(processed, session_tmp / "search" / "untrained-lowlevel-all.ckpt")
    engine = SearchEngine.from_checkpoint(ckpt)
    assert engine.feature_set == "lowlevel_all"
    for doc_path in AB_DOCS:
        reviews, albums = engine.by_descriptor(doc_path, k=3)
        assert len(reviews) == 3 and len(albums) == 3
    doc = json.loads(AB_DOCS[0].read_text())
    del doc["lowlevel"]["barkbands"]  # as if from an extractor without this descriptor
    with pytest.raises(SearchError, match=r"lacks \d+ of the model's \d+ lowlevel_all features"):
        engine.by_descriptor(doc)


def test_audio_file_search_with_a_generated_tone(engine: SearchEngine, tmp_path: Path) -> None:
    pytest.importorskip("essentia", reason="Essentia (the `audio` extra) is not installed")
    from test_audio import write_test_wav

    messages: list[str] = []
    reviews, albums = engine.by_audio(write_test_wav(tmp_path / "tone.wav"), k=4, progress=messages.append)
    assert len(reviews) == 4 and len(albums) == 4 and any("Essentia" in m for m in messages)
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("not audio at all")
    with pytest.raises(SearchError, match=r"notes\.mp3"):
        engine.by_audio(not_audio)


def test_similar_albums_excludes_the_album_itself(engine: SearchEngine) -> None:
    aid = engine.gallery.albums["amazon_id"][0]
    hits = engine.similar_albums(aid, k=5)
    assert len(hits) == 5 and aid not in {h.amazon_id for h in hits}
    with pytest.raises(SearchError, match="unknown album"):
        engine.similar_albums("NOPE000000")


# -------------------------------------------------------------------------------------------------------- map
def test_map_2d_covers_the_gallery_and_projects_queries_onto_it(engine: SearchEngine) -> None:
    m = engine.map_2d()
    n = len(engine.gallery.albums)
    assert all(len(m[key]) == n for key in ("amazon_id", "artist", "title", "genre", "x", "y"))
    assert m["genres"] == sorted({g for g in m["genre"] if g})
    assert 0 < m["explained_variance"][1] <= m["explained_variance"][0] <= 1
    xy = engine.project(engine.gallery.album_emb[:3])
    np.testing.assert_allclose(xy, np.array([m["x"][:3], m["y"][:3]]).T, atol=1e-6)
    assert engine.project(engine.embed_text("rock")).shape == (1, 2)
    json.dumps(m)


def test_pca_is_deterministic_and_matches_an_exact_svd() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=gen) * torch.linspace(3, 0.1, 16)
    mean, comps, shares = fit_pca_2d(x)
    mean2, comps2, _ = fit_pca_2d(x)
    assert torch.equal(comps, comps2) and torch.equal(mean, mean2)
    _, s, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    for i in range(2):  # same axes as the exact PCA, up to sign
        assert abs(float(comps[:, i] @ vh[i])) == pytest.approx(1.0, abs=1e-3)
    assert shares[0] == pytest.approx(float(s[0] ** 2 / (s**2).sum()), rel=1e-3)


def test_snippet_is_short_and_cut_at_a_word() -> None:
    assert snippet("Great", "Loved it.") == "Great — Loved it."
    assert snippet(None, "") == ""
    long = snippet("Summary", "word " * 200)
    assert len(long) <= 240 and long.endswith("…") and not long[:-1].endswith(" ")


@pytest.mark.parametrize("value", ["rock'n'roll (live), 80s", "R&B: smooth", "a=b", "${oc.env:HOME}", "x\\'y",
                                   "end\\", "C:\\music\\song.mp3", "epoch=3-step=9.ckpt", "tab\there", "[live]"])
def test_cli_values_survive_hydras_override_grammar(value: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from mte.cli import quote_free_values

    (arg,) = quote_free_values([f"query={value}"])
    parsed = OverridesParser.create().parse_override(arg).value()
    assert OmegaConf.create({"query": parsed}).query == value
    untouched = ["query=null", "query=", "k=5", 'query="already quoted"', "query='x, y'"]
    assert quote_free_values(untouched) == untouched


# ------------------------------------------------------------------------------------ trained model, slow tests
@pytest.mark.slow
def test_genre_words_find_albums_of_that_genre_above_chance(trained_ckpt: Path) -> None:
    from mte.data.synth import GENRE_WORDS

    engine = SearchEngine.from_checkpoint(trained_ckpt)
    genres = engine.gallery.albums["genre"].to_list()
    k, hits, expected = 10, 0, 0.0
    for genre, words in GENRE_WORDS.items():
        share = genres.count(genre) / len(genres)
        if share * len(genres) < 5:
            continue
        found = [h.genre for h in engine.by_text(" ".join(words), k=k)]
        hits += found.count(genre)
        expected += share * k
    # chance = the genre's share of the gallery; measured here: 45 hits where 9.4 were expected
    assert hits > 2 * expected, (hits, expected)


@pytest.mark.slow
def test_cli_prints_a_ranked_table_and_leaves_no_files(trained_ckpt: Path, tmp_path: Path) -> None:
    proc = run_module("mte.search", f"ckpt_path={trained_ckpt}", "query=dreamy synth pop with heavy reverb", "k=4",
                      "index_dir=null", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:5] == ["rank", "artist", "title", "genre",
                                                                              "score"])
    ranks = [line.split()[0] for line in lines[header + 1 :] if not line.startswith("      ")]
    assert ranks == ["1", "2", "3", "4"]
    assert list(tmp_path.iterdir()) == []  # no outputs/, .hydra/ or logs

    proc = run_module("mte.search", f"ckpt_path={trained_ckpt}", "query=heavy metal (loud!), rock'n'roll: R&B",
                      "k=3", "format=json", "quiet=true", cwd=tmp_path)
    result = json.loads(proc.stdout)
    assert [len(result["albums"]), proc.stderr] == [3, ""]
    assert set(result["albums"][0]) == {"amazon_id", "artist", "title", "genre", "score", "snippets"}


@pytest.mark.slow
def test_cli_descriptor_search_lists_reviews_and_albums(trained_ckpt: Path) -> None:
    proc = run_module("mte.search", f"ckpt_path={trained_ckpt}", f"descriptor={AB_DOCS[0]}", "k=3",
                      "format=json", "quiet=true")
    result = json.loads(proc.stdout)
    assert len(result["reviews"]) == 3 and len(result["albums"]) == 3


def _bad_inputs(tmp: Path, ckpt: Path) -> dict[str, tuple[list[str], str]]:
    broken = tmp / "broken.json"
    broken.write_text('{"lowlevel": ')
    garbage = tmp / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    foreign = tmp / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    text = tmp / "song.mp3"
    text.write_text("this is not audio")
    c = f"ckpt_path={ckpt}"
    return {
        "no checkpoint": (["query=rock"], "no checkpoint"),
        "unknown checkpoint": ([f"ckpt_path={tmp / 'missing.ckpt'}", "query=rock"], "checkpoint not found"),
        "garbage checkpoint": ([f"ckpt_path={garbage}", "query=rock"], "not a usable mte checkpoint"),
        "incompatible checkpoint": ([f"ckpt_path={foreign}", "query=rock"], "not a usable mte checkpoint"),
        "broken descriptor": ([c, f"descriptor={broken}"], "broken_json"),
        "missing descriptor": ([c, f"descriptor={tmp / 'nope.json'}"], "not found"),
        "unreadable audio": ([c, f"audio={text}"], "song.mp3"),
        "missing audio": ([c, f"audio={tmp / 'nope.wav'}"], "audio file not found"),
        "empty query": ([c, "query="], "empty query"),
        "two inputs": ([c, "query=rock", f"descriptor={AB_DOCS[0]}"], "exactly one of"),
        "bad k": ([c, "query=rock", "k=0"], "k must be"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no checkpoint", "unknown checkpoint", "garbage checkpoint",
                                  "incompatible checkpoint", "broken descriptor", "missing descriptor",
                                  "unreadable audio", "missing audio", "empty query", "two inputs", "bad k"])
def test_cli_bad_input_is_one_line_and_exit_2(case: str, trained_ckpt: Path, tmp_path: Path) -> None:
    args, expected = _bad_inputs(tmp_path, trained_ckpt)[case]
    if case == "unreadable audio":
        pytest.importorskip("essentia", reason="Essentia (the `audio` extra) is not installed")
    proc = run_module("mte.search", *args, "quiet=true", "index_dir=null", check=False, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
