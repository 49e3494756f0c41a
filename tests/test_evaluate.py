"""``mte.evaluate`` / ``mte.eval.protocols`` / ``mte.eval.evaluation``: exact protocols, the query rule, the same
numbers as training (one function), honest selection, other data, files, errors.

The protocol tests compare the evaluator with a brute force written out plainly below (score every pair, sort
with irrelevant-first ties, read off ranks and AP) on random data with duplicate vectors (ties) and albums of
several tracks. The checkpoint tests train one tiny model in-process (hydra compose + ``mte.train.run.run``) on
the session's processed dir; CLI tests run ``python -m mte.evaluate`` as a user would and are marked slow.
"""

from __future__ import annotations

import filecmp
import itertools
import json
import re
import shutil
import statistics
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from helpers import REPO, rank_and_ap, run_module

from mte.eval.evaluation import data_tag, default_out_dir, evaluate, markdown_table, title_labels
from mte.eval.protocols import PROTOCOLS, EvalSet, EvaluationError, evaluate_embeddings, query_mask

CONF = REPO / "conf"
METRICS = ("R@1", "R@5", "R@10", "mAP@10", "MedR", "MeanR")


# --------------------------------------------------------------------------------------------------------------
# brute force, written plainly
# --------------------------------------------------------------------------------------------------------------


class NearTie(Exception):
    """Two different gallery vectors score within float32 rounding of each other: the data can't decide ties."""


def brute_force(query, gallery, query_labels, gallery_labels, ks=(1, 5, 10), map_k=10) -> dict[str, float]:
    """Score every (query, gallery) pair in float64, sort with ties broken irrelevant-first, read off the metrics."""
    q, g = np.asarray(query, dtype=np.float64), np.asarray(gallery, dtype=np.float64)
    ranks, aps = [], []
    for i in range(len(q)):
        scores = [float(np.dot(q[i], g[j])) for j in range(len(g))]
        relevant = [gallery_labels[j] == query_labels[i] for j in range(len(g))]
        if not any(relevant):
            continue
        _check_separated(scores, g)
        rank, ap = rank_and_ap(scores, relevant, map_k)
        ranks.append(rank)
        aps.append(ap)
    out = {f"R@{k}": 100.0 * sum(r <= k for r in ranks) / len(ranks) for k in ks}
    out[f"mAP@{map_k}"] = 100.0 * sum(aps) / len(aps)
    out["MedR"] = float(statistics.median(ranks))
    out["MeanR"] = sum(ranks) / len(ranks)
    out["n_queries"] = float(len(ranks))
    out["n_gallery"] = float(len(g))
    return out


def _check_separated(scores: list[float], g: np.ndarray) -> None:
    """Identical gallery vectors tie exactly; different ones must differ by far more than float32 rounding."""
    distinct: dict[bytes, float] = {}
    for j, s in enumerate(scores):
        distinct.setdefault(g[j].tobytes(), s)
    values = sorted(distinct.values())
    if any(b - a < 1e-5 for a, b in itertools.pairwise(values)):
        raise NearTie


def plain_album_vectors(audio: np.ndarray, track_album: list[int]) -> dict[int, np.ndarray]:
    """Album → normalised mean of its tracks (float64), in a loop."""
    out = {}
    for album in sorted(set(track_album)):
        rows = [audio[i].astype(np.float64) for i in range(len(track_album)) if track_album[i] == album]
        mean = np.sum(rows, axis=0) / len(rows)
        out[album] = mean / np.linalg.norm(mean)
    return out


def brute_protocol(s: EvalSet, protocol: str) -> dict[str, dict[str, float]]:
    """Both directions of ``protocol`` built from the definitions in the module docstring, then brute-forced."""
    text, audio = s.text.numpy(), s.audio.numpy()
    review_album, track_album = s.review_album.tolist(), s.track_album.tolist()
    if protocol == "album":
        vectors = plain_album_vectors(audio, track_album)
        albums, ids = np.stack(list(vectors.values())), list(vectors)
        return {"t2a": brute_force(text, albums, review_album, ids),
                "a2t": brute_force(albums, text, ids, review_album)}
    if protocol == "track":
        return {"t2a": brute_force(text, audio, review_album, track_album),
                "a2t": brute_force(audio, text, track_album, review_album)}
    assert protocol == "seed"
    vectors = plain_album_vectors(audio, track_album)
    rows = np.stack([vectors[a] for a in review_album])  # one audio row per review row
    titles = [int(s.album_title[a]) for a in review_album]
    return {"t2a": brute_force(text, rows, titles, titles), "a2t": brute_force(rows, text, titles, titles)}


def random_eval_set(seed: int, collapsed: bool = False) -> EvalSet:
    """12 albums of 1–3 tracks (ids not 0..n-1), 50 reviews, with built-in exact ties:

    album 7 has album 1's tracks (identical album vectors), one track repeats another album's track, two reviews
    share a vector, a review equals a track, and albums share titles (seed protocol)."""
    g = torch.Generator().manual_seed(seed)
    dim, n_reviews = 6, 50
    per_album = [1, 2, 3, 1, 2, 1, 3, 2, 1, 2, 1, 2]  # album 7 has as many tracks as album 1
    album_ids = [3 * a + 5 for a in range(len(per_album))]
    track_album = torch.tensor([album_ids[a] for a, n in enumerate(per_album) for _ in range(n)])
    audio = F.normalize(torch.randn(len(track_album), dim, generator=g), dim=1)
    rows = {a: (track_album == album_ids[a]).nonzero().squeeze(1) for a in range(len(per_album))}
    audio[rows[7]] = audio[rows[1]]  # same tracks, same order → identical album embeddings
    audio[rows[4][1]] = audio[rows[2][0]]  # a track shared by two albums
    review_album = torch.tensor(album_ids + [album_ids[i] for i in torch.randint(len(album_ids), (n_reviews - 12,),
                                                                                   generator=g).tolist()])
    text = F.normalize(torch.randn(n_reviews, dim, generator=g), dim=1)
    text[5] = text[6]
    text[9] = audio[0]
    if collapsed:  # a collapsed model: every embedding is e₁ (exact in any sum and norm) — everything ties
        text[:] = F.one_hot(torch.tensor(0), dim).float()
        audio[:] = text[0]
    title = torch.zeros(max(album_ids) + 1, dtype=torch.long)
    title[album_ids] = torch.tensor([0, 1, 2, 0, 3, 4, 2, 5, 6, 7, 0, 8])
    return EvalSet(text=text, review_album=review_album, audio=audio, track_album=track_album, album_title=title)


def _separated_set(start: int) -> EvalSet:
    """The first random set from ``start`` on whose distinct scores are well apart (ties decided by data only)."""
    for seed in range(start, start + 50):
        s = random_eval_set(seed)
        try:
            for protocol in PROTOCOLS:
                brute_protocol(s, protocol)
        except NearTie:
            continue
        return s
    raise AssertionError("no well-separated random set found")


# --------------------------------------------------------------------------------------------------------------
# protocols: exact against the brute force
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("start", [0, 100])
def test_protocol_matches_brute_force(protocol: str, start: int) -> None:
    s = _separated_set(start)
    assert len(set(s.track_album.tolist())) < len(s.track_album)  # some album has several tracks
    got = evaluate_embeddings(s, protocol, stage="test", bootstrap=0)
    for direction, expected in brute_protocol(s, protocol).items():
        for name, value in expected.items():
            assert got[f"test/{direction}/{name}"] == pytest.approx(value, rel=1e-12, abs=1e-12), (direction, name)
        assert got[f"test/{direction}/n_excluded"] == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collapsed_model_gets_the_worst_ranks(protocol: str) -> None:
    """Every score equal: pessimistic ties put every irrelevant item first, in every protocol."""
    s = random_eval_set(0, collapsed=True)
    got = evaluate_embeddings(s, protocol, stage="val", bootstrap=0)
    for direction, expected in brute_protocol(s, protocol).items():
        for name, value in expected.items():
            assert got[f"val/{direction}/{name}"] == pytest.approx(value, rel=1e-12, abs=1e-12), (direction, name)
    n_albums = len(set(s.track_album.tolist()))
    if protocol == "album":
        assert got["val/t2a/MedR"] == n_albums and got["val/t2a/R@1"] == 0


# --------------------------------------------------------------------------------------------------------------
# the training callback: the same function, one selected epoch
# --------------------------------------------------------------------------------------------------------------


class _Trainer:
    """The two trainer attributes the callback's validation hook reads (Lightning's Trainer, not our code)."""

    def __init__(self, epoch: int) -> None:
        self.sanity_checking, self.current_epoch = False, epoch


def _feed(callback, module, s: EvalSet, stage: str, epoch: int, order: torch.Generator) -> None:
    """Hand the callback one evaluation run's batches as the data module's loaders would, shuffled across batches
    and with a repeated row (DDP pads by repeating), for reviews (loader 0) and tracks (loader 1)."""
    hooks = {"val": (callback.on_validation_epoch_start, callback.on_validation_batch_end,
                     callback.on_validation_epoch_end),
             "test": (callback.on_test_epoch_start, callback.on_test_batch_end, callback.on_test_epoch_end)}[stage]
    start, batch_end, epoch_end = hooks
    trainer = _Trainer(epoch)
    start(trainer, module)
    sides = [(0, s.text, s.review_album), (1, s.audio, s.track_album)]
    for loader, embedding, album in sides:
        rows = torch.cat([torch.randperm(len(album), generator=order), torch.tensor([0])])
        for chunk in rows.split(7):
            outputs = {"embedding": embedding[chunk], "album": album[chunk], "index": chunk}
            batch_end(trainer, module, outputs, None, 0, loader)
    epoch_end(trainer, module)


@pytest.mark.filterwarnings("ignore:You are trying to")
def test_callback_metrics_are_evaluate_embeddings_of_the_same_embeddings() -> None:
    """The callback gathers, de-duplicates and orders the rows, then calls the very function mte.evaluate calls:
    equal numbers, intervals included (no copy of the album protocol to keep in step)."""
    import pytorch_lightning as pl

    from mte.train.callbacks import RetrievalMetrics

    s = random_eval_set(3)
    callback = RetrievalMetrics(bootstrap=200)
    _feed(callback, pl.LightningModule(), s, "test", 0, torch.Generator().manual_seed(0))
    expected = evaluate_embeddings(s, "album", stage="test", bootstrap=200)
    assert callback.last["test"] == expected and "test/t2a/R@10_lo" in expected


@pytest.mark.filterwarnings("ignore:You are trying to")
def test_val_best_is_one_epoch_the_selected_one() -> None:
    """val_best/* are all the metrics of the epoch with the best val/t2a/R@10 (strictly better replaces, as
    ModelCheckpoint does) — not per-metric maxima over epochs; with selection=last, the last epoch's; and the
    selected epoch survives a resume (state_dict)."""
    import pytorch_lightning as pl

    from mte.train.callbacks import RetrievalMetrics

    module, order = pl.LightningModule(), torch.Generator().manual_seed(1)
    epochs = [random_eval_set(seed) for seed in (10, 11, 12, 13)]
    val = [evaluate_embeddings(e, "album", stage="val", bootstrap=0) for e in epochs]
    best_epoch = max(range(4), key=lambda i: (val[i]["val/t2a/R@10"], -i))  # the first of equal maxima
    # the data must make per-metric maxima differ from one epoch's values, else the test could not fail
    maxima = {k: max(v[k] for v in val) for k in val[0] if k.endswith(("R@1", "a2t/R@10"))}
    assert any(val[best_epoch][k] != m for k, m in maxima.items())
    for selection, chosen in (("best", best_epoch), ("last", 3)):
        callback = RetrievalMetrics(selection=selection)
        for epoch, e in enumerate(epochs):
            _feed(callback, module, e, "val", epoch, order)
        assert callback.best_epoch == chosen
        expected = {k.replace("val/", "val_best/"): v for k, v in val[chosen].items()
                    if not k.endswith(("n_queries", "n_excluded", "n_gallery"))}
        assert callback.best == expected, selection
    resumed = RetrievalMetrics()
    resumed.load_state_dict(callback.state_dict())
    assert (resumed.best, resumed.best_epoch) == (callback.best, callback.best_epoch)


def test_selection_is_last_when_test_albums_are_validation_albums() -> None:
    """data.split=paper (test == val): the checkpoint must not be chosen on the reported set."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from mte.cli import UserError
    from mte.train.callbacks import RetrievalMetrics, apply_selection

    for touches, rule in ((False, "best val/t2a/R@10"), (True, "last")):
        callbacks = [RetrievalMetrics(), ModelCheckpoint(monitor="val/t2a/R@10", mode="max", filename="best")]
        assert apply_selection(callbacks, test_touches_val=touches) == rule
        assert callbacks[0].selection == ("last" if touches else "best")
        assert callbacks[1].monitor == (None if touches else "val/t2a/R@10")  # None: best.ckpt = the last epoch
    with pytest.raises(UserError, match="early stopping"):
        apply_selection([RetrievalMetrics(), EarlyStopping(monitor="val/t2a/R@10")], test_touches_val=True)


def test_query_rule() -> None:
    """One rule: a review queries when the model has input for it (≥ 1 token, or non-blank text)."""
    assert query_mask(token_lengths=[0, 3, 1, 0]).tolist() == [False, True, True, False]
    assert query_mask(texts=["Great.", "", "  ", None, "x"]).tolist() == [True, False, False, False, True]
    with pytest.raises(ValueError, match="exactly one"):
        query_mask()


def test_bootstrap_intervals_bracket_every_metric_and_names_follow_the_design() -> None:
    s = random_eval_set(1)
    got = evaluate_embeddings(s, "track", stage="test", bootstrap=300)
    for direction in ("t2a", "a2t"):
        for name in METRICS:
            key = f"test/{direction}/{name}"
            assert got[f"{key}_lo"] <= got[key] <= got[f"{key}_hi"], key
        assert got[f"test/{direction}/n_gallery"] == (len(s.audio) if direction == "t2a" else len(s.text))
    assert got == evaluate_embeddings(s, "track", stage="test", bootstrap=300)  # seeded: reruns agree


def test_unknown_protocol_is_a_one_line_error() -> None:
    with pytest.raises(EvaluationError, match="unknown protocol 'nope'"):
        evaluate_embeddings(random_eval_set(0), "nope", bootstrap=0)


@pytest.mark.parametrize(("key", "value"), [("bootstrap", "abc"), ("seed", "1.5"), ("batch_size", "many")])
def test_a_setting_that_is_no_integer_is_a_one_line_error(key: str, value: str) -> None:
    from omegaconf import OmegaConf

    from mte.eval.evaluation import evaluate_from_config

    cfg = OmegaConf.create({"ckpt_path": "/no/such.ckpt", "data": {}, key: value})
    with pytest.raises(EvaluationError, match=f"^{key}='{value}': must be an integer$"):
        evaluate_from_config(cfg)


def test_title_labels_match_literally_with_amazon_id_fallback() -> None:
    albums = pl.DataFrame({"amazon_id": ["A1", "A2", "A3", "A4", "A5", "A6"],
                           "title": ["Hits", "Hits", "hits", None, None, "  "]})
    labels = title_labels(albums).tolist()
    assert labels[0] == labels[1]  # same title: a hit for each other (as published)
    assert len({labels[0], labels[2], labels[3], labels[4], labels[5]}) == 5  # case kept; no title → own class


def test_markdown_table_and_out_dir_names(tmp_path: Path) -> None:
    metrics = evaluate_embeddings(random_eval_set(2), "album", stage="test", bootstrap=50)
    table = markdown_table(metrics, "test", "album", {"checkpoint": "`x.ckpt`"})
    header, _rule, *rows = [line for line in table.splitlines() if line.startswith("|")]
    assert header.split("|")[4].strip() == "R@1" and len(rows) == 2 and rows[0].startswith("| t2a")
    assert f"{metrics['test/t2a/R@10']:.2f} [" in rows[0]
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    assert default_out_dir(ckpt, "test", "album") == tmp_path / "run" / "eval" / "test-album"
    tag = data_tag(tmp_path / "my mard")
    assert default_out_dir(ckpt, "test", "seed", tag) == tmp_path / "run" / "eval" / f"test-seed-{tag}"
    assert tag.startswith("my_mard-") and data_tag(tmp_path / "other" / "my mard") != tag


def test_evaluate_config_defaults() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=["ckpt_path=x.ckpt"], return_hydra_config=True)
    assert (cfg.split, cfg.protocol, cfg.bootstrap, cfg.out_dir, cfg.device) == ("test", "album", 1000, None, "cpu")
    assert cfg.data.raw_dir is None and cfg.hydra.output_subdir is None and cfg.hydra.run.dir == "."


# --------------------------------------------------------------------------------------------------------------
# a real checkpoint
# --------------------------------------------------------------------------------------------------------------


def _train(run_dir: Path, raw: Path, processed: Path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_dir

    from mte.train.run import run

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=mard", f"data.raw_dir={raw}", f"data.processed_dir={processed}", "data.batch_size=32",
            "trainer.max_epochs=2", "logger=none", f"paths.output_dir={run_dir}", "callbacks.projector=null",
            # the shared processed_dir fixture: seed369, album split, every word (the default recipe differs)
            "data.features=seed369", "data.split=album", "data.vocab.min_albums=1",
            *overrides,
        ])
    run(cfg)
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(synthetic_raw: Path, processed_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(best checkpoint, the training run's metrics.json) of a 2-epoch bag-of-words model on ``processed_dir``."""
    run_dir = tmp_path_factory.mktemp("eval-run")
    record = _train(run_dir, synthetic_raw, processed_dir)
    return Path(record["best_checkpoint"]), record


@pytest.fixture(scope="module")
def other_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mte.data.synth import generate

    out = tmp_path_factory.mktemp("other") / "other-mard"
    generate(out, albums=90, seed=7, tracks_per_album=2)
    return out


def test_own_test_split_reproduces_training_metrics(trained: tuple[Path, dict]) -> None:
    ckpt, record = trained
    result = evaluate(ckpt, split="test", protocol="album", bootstrap=1000)
    test_keys = [k for k in record["metrics"] if k.startswith("test/")]
    assert len(test_keys) >= 2 * (3 * len(METRICS) + 2)  # values, intervals, counts of both directions
    for key in test_keys:
        assert result.metrics[key] == record["metrics"][key], key
    # written where promised, atomically (no temp files left), and the JSON names the protocol
    out = ckpt.parent.parent / "eval" / "test-album"
    assert result.out_dir == out and sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.md"]
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["kind"] == "evaluation" and payload["protocol"] == "album" and payload["split"] == "test"
    # the run's record: its kind, and the tested checkpoint is the epoch whose validation metrics are val_best/*
    assert record["kind"] == "run" and record["selection"] == "best val/t2a/R@10"
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"] == record["selected_epoch"]
    assert payload["metrics"]["test/t2a/R@10"] == record["metrics"]["test/t2a/R@10"]
    assert (out / "metrics.md").read_text() == result.table


@pytest.mark.slow
def test_paper_split_keeps_the_last_checkpoint(synthetic_raw: Path, tmp_path: Path) -> None:
    """split=paper (test == val): the tested checkpoint is the last epoch's, val_best/* are its validation metrics,
    and metrics.json says so — the reported set never selects the model."""
    record = _train(tmp_path / "run", synthetic_raw, tmp_path / "paper", "data.split=paper", "trainer.max_epochs=3")
    assert record["selection"] == "last" and record["selected_epoch"] == 2
    best = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=False)
    assert best["epoch"] == 2
    metrics = record["metrics"]
    val = {k: v for k, v in metrics.items() if k.startswith("val/") and not k.endswith(("n_queries", "n_excluded",
                                                                                           "n_gallery"))}
    assert val and all(metrics[k.replace("val/", "val_best/")] == v for k, v in val.items())


def test_protocols_write_side_by_side_and_out_dir_is_honoured(trained: tuple[Path, dict], tmp_path: Path) -> None:
    ckpt, _ = trained
    for protocol in ("track", "seed"):
        result = evaluate(ckpt, protocol=protocol, bootstrap=0, split="val")
        assert result.out_dir == ckpt.parent.parent / "eval" / f"val-{protocol}"
        assert (result.out_dir / "metrics.json").is_file()
    seed = json.loads((ckpt.parent.parent / "eval" / "val-seed" / "metrics.json").read_text())
    assert seed["metrics"]["val/t2a/n_gallery"] == seed["metrics"]["val/t2a/n_queries"]  # one audio row per review
    result = evaluate(ckpt, bootstrap=0, out_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "metrics.json").is_file() and (tmp_path / "mine" / "metrics.md").is_file()


def test_out_dir_never_overwrites_what_evaluate_did_not_write(trained: tuple[Path, dict], tmp_path: Path) -> None:
    """out_dir= naming a file, or a dir holding a user's metrics.json / metrics.md, is refused before any work and
    left as it was; an earlier evaluation there is replaced."""
    from mte.eval.results import ResultsDirError

    ckpt, _ = trained
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.md").write_text("# my draft\n")
    (mine / "metrics.json").write_text('{"my": "numbers"}')
    for out, words in ((notes, f"out_dir={notes} exists and is not a directory"),
                       (mine, f"refusing to overwrite {mine / 'metrics.json'}: it is not an mte evaluation's")):
        with pytest.raises(ResultsDirError, match=re.escape(words)) as info:
            evaluate(ckpt, bootstrap=0, out_dir=out)
        assert "\n" not in str(info.value)
    assert notes.read_text() == "mine" and (mine / "metrics.md").read_text() == "# my draft\n"
    assert (mine / "metrics.json").read_text() == '{"my": "numbers"}'
    ours = tmp_path / "ours"
    evaluate(ckpt, bootstrap=0, out_dir=ours)
    assert evaluate(ckpt, bootstrap=0, out_dir=ours).out_dir == ours  # its own earlier result: replaced


def test_other_raw_dir_uses_the_reference_vocabulary_and_statistics(
    trained: tuple[Path, dict], other_raw: Path, processed_dir: Path, tmp_path: Path
) -> None:
    from mte.data.processed import ProcessedData

    ckpt, _ = trained
    result = evaluate(ckpt, raw_dir=other_raw, bootstrap=100, cache_dir=tmp_path / "cache")
    evaluated = Path(result.payload["processed_dir"])
    assert evaluated != processed_dir and evaluated.is_relative_to(tmp_path / "cache")
    # vocabulary and feature statistics are the checkpoint's, byte for byte
    vocab_files = sorted(p.name for p in (processed_dir / "vocab").iterdir())
    assert vocab_files == sorted(p.name for p in (evaluated / "vocab").iterdir())
    assert all(filecmp.cmp(processed_dir / "vocab" / n, evaluated / "vocab" / n, shallow=False) for n in vocab_files)
    assert filecmp.cmp(processed_dir / "features.json", evaluated / "features.json", shallow=False)
    # every paired album of the other dir is in the gallery, every paired review queries (bow: all have tokens)
    data = ProcessedData.load(evaluated)
    paired = data.albums.filter(pl.col("n_reviews") > 0, pl.col("n_tracks") > 0)
    assert sorted(data.splits["test"]) == sorted(paired["amazon_id"].to_list()) and not data.splits["train"]
    assert result.metrics["test/t2a/n_gallery"] == len(paired)
    n_text = int((data.reviews.filter(pl.col("paired"))["tokens"].list.len() > 0).sum())
    assert result.metrics["test/t2a/n_queries"] == n_text
    assert data.manifest["reference"]["processed_dir"] == str(processed_dir.absolute())
    assert result.out_dir.name == f"test-album-{data_tag(other_raw)}"
    with pytest.raises(EvaluationError, match="use split=test"):
        evaluate(ckpt, raw_dir=other_raw, split="val", write=False)


def test_a_raw_dir_holding_training_albums_is_scored_on_its_unseen_albums_only(
    trained: tuple[Path, dict], synthetic_raw: Path, processed_dir: Path, tmp_path: Path
) -> None:
    """data.raw_dir=<the training dir> (or a copy, or a superset) is no test of unseen data: the checkpoint's train
    and val albums are left out, so what is scored is its own test albums — the same numbers as split=test."""
    from mte.data.processed import ProcessedData

    ckpt, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_raw, copy)  # new mtimes: another input fingerprint, the same album ids
    result = evaluate(ckpt, raw_dir=copy, bootstrap=0, cache_dir=tmp_path / "cache", write=False)
    own = evaluate(ckpt, split="test", bootstrap=0, write=False)
    trained_on = ProcessedData.load(processed_dir).splits
    seen = {*trained_on["train"], *trained_on["val"]}
    other_test = ProcessedData.load(result.payload["processed_dir"]).splits["test"]
    assert result.payload["seen_albums_left_out"] == {
        "albums": len(seen.intersection(other_test)), "of": len(other_test),
        "how": "the checkpoint's train and val albums"}
    assert len(seen.intersection(other_test)) > 0
    for key, value in own.metrics.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-9), key


def test_seen_albums_are_left_out_or_the_evaluation_refused(processed_dir: Path) -> None:
    from types import SimpleNamespace

    from mte.data.processed import ProcessedData
    from mte.eval.evaluation import leave_out_seen_albums

    data = ProcessedData.load(processed_dir)
    test = data.splits["test"]
    half = SimpleNamespace(source={"seen_albums": test[: len(test) // 2]})
    kept, left_out = leave_out_seen_albums(half, data, "DIR")
    assert kept.splits["test"] == test[len(test) // 2:] and data.splits["test"] == test  # the caller's data as it was
    assert left_out["albums"] == len(test) // 2
    for everything in (SimpleNamespace(source={"seen_albums": test}),  # ids recorded
                       SimpleNamespace(source={"fingerprint": data.manifest["fingerprint"]})):  # an older checkpoint
        with pytest.raises(EvaluationError, match=r"^data.raw_dir=DIR: all \d+ paired albums of it are .*leave "
                                                  r"data.raw_dir out \(split=test\)$"):
            leave_out_seen_albums(everything, data, "DIR")
    unknown = SimpleNamespace(source={"fingerprint": "another"})
    assert leave_out_seen_albums(unknown, data, "DIR") == (data, {
        "albums": None, "of": len(test), "how": "unknown: the checkpoint records no album ids"})


def test_reference_enters_the_cache_key(other_raw: Path, processed_dir: Path, tmp_path: Path) -> None:
    from mte.data.prepare import PrepareConfig, load_reference, prepare

    plain = prepare(other_raw, PrepareConfig(), cache_dir=tmp_path)
    with_ref = prepare(other_raw, PrepareConfig(features="seed169"), cache_dir=tmp_path, reference=processed_dir)
    assert plain != with_ref
    manifest = json.loads((with_ref / "manifest.json").read_text())
    assert manifest["config"]["features"] == "seed369"  # the reference's settings win over the passed config
    assert manifest["reference"]["digest"] == load_reference(processed_dir).digest
    assert prepare(other_raw, cache_dir=tmp_path, reference=processed_dir) == with_ref  # cached


def test_lowlevel_all_reference_fixes_the_schema(synthetic_raw: Path, tmp_path: Path) -> None:
    """The reference's lowlevel_all names are reused; a document lacking one is skipped with the usual reason."""
    from mte.data.prepare import PrepareConfig, prepare
    from mte.data.synth import generate

    reference = prepare(synthetic_raw, PrepareConfig(features="lowlevel_all"), processed_dir=tmp_path / "ref")
    names = json.loads((reference / "features.json").read_text())["names"]
    other = tmp_path / "other"
    generate(other, albums=40, seed=7, quirks=False)
    victim = sorted((other / "acousticbrainz_descriptors").iterdir())[0]
    doc = json.loads(victim.read_text())
    assert "lowlevel.spectral_flux.mean" in names
    del doc["lowlevel"]["spectral_flux"]
    victim.write_text(json.dumps(doc))
    out = prepare(other, PrepareConfig(), processed_dir=tmp_path / "evaluated", reference=reference)
    assert json.loads((out / "features.json").read_text())["names"] == names
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = [i for i in manifest["skipped_items"] if i["source"] == victim.name]
    assert [i["reason"] for i in skipped] == ["missing_stat"] and "reference" in skipped[0]["detail"]


def test_bad_reference_is_a_one_line_error(other_raw: Path, tmp_path: Path) -> None:
    from mte.data.prepare import prepare
    from mte.data.processed import ProcessedDirError

    with pytest.raises(ProcessedDirError, match="not a complete processed dir"):
        prepare(other_raw, processed_dir=tmp_path / "x", reference=tmp_path)


# --------------------------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_prints_the_table_writes_files_and_leaves_no_litter(trained: tuple[Path, dict], tmp_path: Path) -> None:
    ckpt, record = trained
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_module("mte.evaluate", f"ckpt_path={ckpt}", "bootstrap=0", f"out_dir={tmp_path / 'out'}", cwd=cwd)
    assert "test/t2a" in proc.stdout and "R@10" in proc.stdout and "t2a = review → album" in proc.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]
    assert metrics["test/t2a/R@10"] == record["metrics"]["test/t2a/R@10"]
    assert list(cwd.iterdir()) == []  # no outputs/, .hydra/ or log files


@pytest.mark.slow
def test_cli_bad_inputs_exit_2_with_one_line(trained: tuple[Path, dict], synthetic_raw: Path, tmp_path: Path) -> None:
    from mte.data.prepare import PrepareConfig, prepare

    ckpt, _ = trained
    text_file = tmp_path / "notes.ckpt"
    text_file.write_text("not a checkpoint\n")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    seed169 = prepare(synthetic_raw, PrepareConfig(features="seed169"), processed_dir=tmp_path / "p169")
    cases = {
        "not found": [f"ckpt_path={tmp_path / 'missing.ckpt'}"],
        "not a usable mte checkpoint": [f"ckpt_path={text_file}"],
        "foreign.ckpt": [f"ckpt_path={foreign}"],
        "369 audio features": [f"ckpt_path={ckpt}", f"processed_dir={seed169}"],
        "ckpt_path is not set": [],
        "MARD raw dir": [f"ckpt_path={ckpt}", f"data.raw_dir={tmp_path / 'nowhere'}"],
    }
    for expected, args in cases.items():
        proc = run_module("mte.evaluate", *args, check=False, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], (args, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_fine_tuned_transformer_reproduces_training_metrics(
    synthetic_raw: Path, processed_dir: Path, tmp_path: Path
) -> None:
    """HF text path: review strings are tokenised and batched as in training, so the numbers are the same."""
    from helpers import save_tiny_distilbert

    model_dir = save_tiny_distilbert(tmp_path / "tiny-distilbert", seed=0)
    record = _train(tmp_path / "run", synthetic_raw, processed_dir, "text=distilbert", f"text.pretrained={model_dir}",
                    "text.freeze=false", "trainer.max_epochs=1", "text.max_length=64")
    result = evaluate(record["best_checkpoint"], bootstrap=1000, write=False)
    for key in (k for k in record["metrics"] if k.startswith("test/")):
        assert result.metrics[key] == pytest.approx(record["metrics"][key], abs=1e-9), key
    shutil.rmtree(tmp_path / "run", ignore_errors=True)
