"""The model's input contract: saved in checkpoints, enough on its own, and never silently reading other data.

Each test names the defect it catches. Checkpoints are written in-process (an untrained network, or a baseline run
through ``mte.train.run.run``): what is tested is how input is read, not how good a model is.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers import REPO, run_module
from test_search import make_untrained_checkpoint

from mte.data.prepare import PrepareConfig, load_reference, prepare
from mte.data.processed import ProcessedData
from mte.eval.evaluation import evaluate
from mte.models.contract import CHECKPOINT_KEY, ContractError, InputContract, TokenMatrix
from mte.models.inference import CheckpointError, load_checkpoint
from mte.search.engine import SearchEngine
from mte.search.export import default_index_dir, find_index_dir


@pytest.fixture(scope="module")
def untrained_ckpt(processed_dir: Path, session_tmp: Path) -> Path:
    return make_untrained_checkpoint(processed_dir, session_tmp / "search" / "untrained.ckpt")


@pytest.fixture(scope="module")
def other_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another MARD-format dir (other albums, other artists): the user's own collection."""
    from mte.data.synth import generate

    out = tmp_path_factory.mktemp("contract-other") / "other-mard"
    generate(out, albums=60, seed=11, tracks_per_album=2, quirks=False)
    return out


def _private_run(synthetic_raw: Path, root: Path, **config) -> tuple[Path, Path]:
    """(processed dir, untrained checkpoint) in ``root``: a processed dir the test may re-prepare or delete."""
    processed = prepare(synthetic_raw, PrepareConfig(**config), processed_dir=root / "processed", verbose=False)
    return processed, make_untrained_checkpoint(processed, root / "run" / "checkpoints" / "best.ckpt")


def _a_word(ckpt: Path) -> str:
    """The model's most frequent word (any query of known words will do)."""
    return str(load_checkpoint(ckpt).vocabulary.id_to_token(2))


# --------------------------------------------------------------------------------------------------------------
# the contract itself
# --------------------------------------------------------------------------------------------------------------


def test_the_checkpoint_carries_the_contract_and_it_encodes_as_the_processed_dir(untrained_ckpt: Path,
                                                                                   processed_dir: Path) -> None:
    """Defect: the contract is not saved with the model, or encodes text/descriptors differently from prepare."""
    payload = torch.load(untrained_ckpt, weights_only=False)
    assert CHECKPOINT_KEY in payload and CHECKPOINT_KEY not in payload["hyper_parameters"]  # loggers never see it
    contract = load_checkpoint(untrained_ckpt).contract
    assert json.loads(json.dumps(contract.to_dict())) == payload[CHECKPOINT_KEY]  # plain JSON-able data
    data = ProcessedData.load(processed_dir)
    # word ids: the contract's review strings (what a transformer reads) re-encode into exactly the stored ids
    reviews = data.reviews.head(50)
    assert contract.encode(contract.review_texts(reviews)) == [list(t) for t in reviews["tokens"].to_list()]
    # descriptors: the model input of training, bit for bit
    np.testing.assert_array_equal(contract.model_features(data.raw_features()), data.standardized_features())
    assert contract.feature_names == data.feature_names and contract.text_fields == ["summary", "reviewText"]


def test_token_matrix_pads_rows_like_the_bow_batch_layout() -> None:
    """Defect: padding that differs between training, evaluation and search (other widths, lengths or ids)."""
    matrix = TokenMatrix.from_lists([[5, 6, 7], [], [9]])
    batch = matrix.batch(np.array([2, 0, 1]))
    assert batch["tokens"].tolist() == [[9, 0, 0], [5, 6, 7], [0, 0, 0]] and batch["lengths"].tolist() == [1, 3, 0]
    assert TokenMatrix.from_lists([[], []]).batch(np.array([0, 1]))["tokens"].shape == (2, 1)  # width >= 1
    chunks = list(matrix.consecutive_batches(2))
    assert [c["lengths"].tolist() for c in chunks] == [[3, 0], [1]]
    # a processed dir's column keeps its 32-bit ids; its batches are int64 like any other
    stored = TokenMatrix.from_series(pl.Series("tokens", [[5, 6, 7], None, [9]], dtype=pl.List(pl.UInt32)))
    assert stored.values.dtype == np.uint32
    stored_batch = stored.batch(np.array([2, 0, 1]))
    assert stored_batch["tokens"].dtype == torch.int64 and torch.equal(stored_batch["tokens"], batch["tokens"])


def test_token_matrix_batch_equals_padding_each_row_by_hand() -> None:
    """Defect: a gathered id landing in another row or column (the batch writes the rows' ids end to end through
    the padding mask) — random rows, empty ones and repeats, against padding each row by hand."""
    rng = np.random.default_rng(3)
    ids = [rng.integers(1, 60_000, n).tolist() for n in rng.integers(0, 40, 300)]
    ids[7] = []
    matrix = TokenMatrix.from_lists(ids)
    for rows in (rng.integers(0, 300, 64), np.array([7, 7, 3, 7]), np.array([], dtype=np.int64)):
        width = max([len(ids[r]) for r in rows] + [1])
        expected = [ids[r] + [0] * (width - len(ids[r])) for r in rows]
        batch = matrix.batch(rows)
        assert batch["tokens"].tolist() == expected
        assert batch["lengths"].tolist() == [len(ids[r]) for r in rows]


def test_reference_dir_from_the_contract_alone_equals_the_training_dir(untrained_ckpt: Path, processed_dir: Path,
                                                                         tmp_path: Path) -> None:
    """Defect: a reference rebuilt from the checkpoint differs from the training dir (other ids or statistics),
    so another dir prepared with it would not be encoded as in training (and not share its cache entry)."""
    contract = load_checkpoint(untrained_ckpt).contract
    rebuilt = contract.reference_dir(tmp_path)
    assert rebuilt.is_relative_to(tmp_path / "contracts")
    assert load_reference(rebuilt).digest == load_reference(processed_dir).digest
    for name in ("features.json", "vocab/tokenizer.json", "vocab/vocab_config.json"):
        assert filecmp.cmp(rebuilt / name, processed_dir / name, shallow=False), name
    assert contract.reference_dir(tmp_path) == rebuilt  # written once per contract


# --------------------------------------------------------------------------------------------------------------
# never silently other data
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "expected"), [
    ({"split_seed": 1}, ["test split", "data.split_seed 0 → 1"]),
    ({"vocab": {"min_freq": 5}}, ["vocabulary", "data.vocab.min_freq 2 → 5"]),
])
def test_a_re_prepared_processed_dir_is_a_one_line_error(synthetic_raw: Path, tmp_path: Path, change: dict,
                                                         expected: list[str]) -> None:
    """Defect (issue 10 item 2): re-preparing the checkpoint's processed dir with another split seed silently
    evaluated another test set (possibly trained-on albums); another vocab.min_freq crashed with an index error."""
    processed, ckpt = _private_run(synthetic_raw, tmp_path)
    before = evaluate(ckpt, bootstrap=0, write=False).metrics
    shutil.rmtree(processed)
    prepare(synthetic_raw, PrepareConfig(**change), processed_dir=processed, verbose=False)
    with pytest.raises(ContractError) as info:
        evaluate(ckpt, bootstrap=0, write=False)
    message = str(info.value)
    assert "\n" not in message and str(processed) in message and all(e in message for e in expected), message
    with pytest.raises(ContractError):  # search reads the same data, so it refuses too
        SearchEngine.from_checkpoint(ckpt)
    # restoring the training config restores the data: same numbers as before
    shutil.rmtree(processed)
    prepare(synthetic_raw, PrepareConfig(), processed_dir=processed, verbose=False)
    assert evaluate(ckpt, bootstrap=0, write=False).metrics == before


def test_resuming_onto_other_data_is_refused(processed_dir: Path, synthetic_raw: Path, tmp_path: Path,
                                             untrained_ckpt: Path) -> None:
    """Defect: ``ckpt_path=`` resume on a re-prepared dir would continue training with other word ids."""
    from mte.models.module import EmbeddingModel

    other = prepare(synthetic_raw, PrepareConfig(split_seed=3), processed_dir=tmp_path / "p", verbose=False)
    model = load_checkpoint(untrained_ckpt).model
    assert isinstance(model, EmbeddingModel)
    checkpoint = torch.load(untrained_ckpt, weights_only=False)
    model.on_load_checkpoint(checkpoint)  # its own data: fine
    model.input_contract = InputContract.from_processed(ProcessedData.load(other))
    with pytest.raises(ContractError, match="trained on other data"):
        model.on_load_checkpoint(checkpoint)


# --------------------------------------------------------------------------------------------------------------
# a checkpoint file alone is enough
# --------------------------------------------------------------------------------------------------------------


def test_a_copied_checkpoint_evaluates_another_dir_after_its_data_is_deleted(synthetic_raw: Path, other_raw: Path,
                                                                              tmp_path: Path) -> None:
    """Defect (issue 10 item 3): without its run dir and processed dir the checkpoint was useless."""
    _, ckpt = _private_run(synthetic_raw, tmp_path / "train")
    with_data = evaluate(ckpt, raw_dir=other_raw, bootstrap=0, cache_dir=tmp_path / "cache1", write=False)
    copy = tmp_path / "elsewhere" / "model.ckpt"
    copy.parent.mkdir()
    shutil.copy2(ckpt, copy)
    shutil.rmtree(tmp_path / "train")
    alone = evaluate(copy, raw_dir=other_raw, bootstrap=0, cache_dir=tmp_path / "cache2", out_dir=tmp_path / "out")
    assert alone.metrics == with_data.metrics and alone.metrics["test/t2a/n_gallery"] > 0
    reference = alone.payload["reference"]["processed_dir"]
    assert Path(reference).is_relative_to(tmp_path / "cache2" / "contracts")  # made from the checkpoint alone
    # its own split needs its own data: a one-line error that says what to do
    with pytest.raises(CheckpointError, match=r"data\.raw_dir=PATH"):
        evaluate(copy, bootstrap=0, write=False)


def test_search_and_export_take_their_gallery_from_another_dir(untrained_ckpt: Path, other_raw: Path,
                                                               tmp_path: Path) -> None:
    """Defect: search could only show the training data, not a user's own MARD-format collection."""
    ckpt = tmp_path / "best.ckpt"
    shutil.copy2(untrained_ckpt, ckpt)
    engine = SearchEngine.from_checkpoint(ckpt, raw_dir=other_raw, cache_dir=tmp_path / "cache")
    other = ProcessedData.load(engine.source.processed_dir)
    assert sorted(engine.gallery.albums["amazon_id"]) == sorted(other.tracks["amazon_id"].unique())
    assert engine.info["raw_dir"] == str(other_raw.absolute()) and engine.by_text(_a_word(ckpt), k=3)
    out = engine.export()
    assert out == default_index_dir(ckpt, other_raw) != default_index_dir(ckpt)
    assert find_index_dir(ckpt, other_raw) == out and find_index_dir(ckpt) is None
    again = SearchEngine.from_checkpoint(ckpt, out, raw_dir=other_raw, cache_dir=tmp_path / "cache")
    torch.testing.assert_close(again.gallery.album_emb, engine.gallery.album_emb, rtol=0, atol=0)
    with pytest.raises(Exception, match="other data"):  # the other dir's export is not the training data's
        SearchEngine.from_checkpoint(ckpt, out)
    from fastapi.testclient import TestClient

    from mte.web.app import create_app

    with TestClient(create_app(again)) as client:  # the page says whose albums it searches
        info = client.get("/api/info").json()
    assert info["description"].endswith(f"reviews of {other_raw.name}") and str(other_raw) in info["gallery"]


# --------------------------------------------------------------------------------------------------------------
# baselines leave checkpoints that evaluate like trained models
# --------------------------------------------------------------------------------------------------------------


def _run_baseline(name: str, raw: Path, run_dir: Path) -> dict:
    from hydra import compose, initialize_config_dir

    from mte.train.run import run

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "data=mard", f"data.raw_dir={raw}",
                                          f"data.processed_dir={run_dir / 'processed'}", "data.features=seed369",
                                          "logger=none", f"paths.output_dir={run_dir}"])
    run(cfg)
    return json.loads((run_dir / "metrics.json").read_text())


def test_a_cca_baseline_evaluates_on_its_split_and_on_another_dir(synthetic_raw: Path, other_raw: Path,
                                                                   tmp_path: Path) -> None:
    """Defect (issue 9 item 2): model=cca left no checkpoint mte.evaluate accepts, so it could not be evaluated
    on another dir."""
    record = _run_baseline("cca", synthetic_raw, tmp_path / "cca")
    ckpt = tmp_path / "cca" / "checkpoints" / "best.ckpt"
    assert Path(record["model_file"]) == ckpt
    own = evaluate(ckpt, bootstrap=0, write=False).metrics
    for key in ("test/t2a/R@10", "test/a2t/R@10", "test/t2a/MeanR", "test/t2a/n_queries"):
        assert own[key] == pytest.approx(record["metrics"][key], abs=1e-6), key  # the run's own numbers
    shutil.rmtree(tmp_path / "cca" / "processed")  # the file alone is enough
    other = evaluate(ckpt, raw_dir=other_raw, bootstrap=0, cache_dir=tmp_path / "cache", write=False)
    albums = ProcessedData.load(other.payload["processed_dir"]).splits["test"]
    assert other.metrics["test/t2a/n_gallery"] == len(albums) > 0 and other.metrics["test/t2a/n_queries"] > 0
    loaded = load_checkpoint(ckpt)
    assert loaded.text_backbone_name == "cca" and loaded.embed_texts(["great guitar"]).norm().item() == pytest.approx(1)


def test_a_random_baseline_checkpoint_ranks_at_chance(synthetic_raw: Path, tmp_path: Path) -> None:
    """Defect: model=random left no checkpoint; its evaluation must sit inside its own chance band."""
    record = _run_baseline("random", synthetic_raw, tmp_path / "random")
    metrics = evaluate(tmp_path / "random" / "checkpoints" / "best.ckpt", bootstrap=0, write=False).metrics
    low, high = record["metrics"]["test/t2a/R@10_lo"], record["metrics"]["test/t2a/R@10_hi"]
    assert low <= metrics["test/t2a/R@10"] <= high, (low, metrics["test/t2a/R@10"], high)


# --------------------------------------------------------------------------------------------------------------
# the command line, as a user runs it
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_checkpoint_alone_with_an_empty_cache(untrained_ckpt: Path, other_raw: Path, synthetic_raw: Path,
                                                  tmp_path: Path) -> None:
    """``python -m mte.evaluate ckpt_path=COPY data.raw_dir=OTHER`` with the run dir and MTE_CACHE_DIR gone; the
    re-prepared training dir is one ``error:`` line, exit 2."""
    processed, ckpt = _private_run(synthetic_raw, tmp_path / "train")
    copy = tmp_path / "copy.ckpt"
    shutil.copy2(ckpt, copy)
    shutil.rmtree(processed)
    prepare(synthetic_raw, PrepareConfig(split_seed=5), processed_dir=processed, verbose=False)
    env = {"MTE_CACHE_DIR": str(tmp_path / "empty-cache")}
    proc = run_module("mte.evaluate", f"ckpt_path={ckpt}", "bootstrap=0", check=False, env=env, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "split_seed 0 → 5" in lines[0], proc.stderr
    shutil.rmtree(tmp_path / "train")
    proc = run_module("mte.evaluate", f"ckpt_path={copy}", f"data.raw_dir={other_raw}", "bootstrap=0",
                      f"out_dir={tmp_path / 'out'}", env=env, cwd=tmp_path)
    payload = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert payload["kind"] == "evaluation" and payload["metrics"]["test/t2a/n_queries"] > 0
    assert "test/t2a" in proc.stdout  # the summary table
    proc = run_module("mte.search", f"ckpt_path={copy}", f"data.raw_dir={other_raw}", f"query={_a_word(copy)}", "k=2",
                      "format=json", "quiet=true", env=env, cwd=tmp_path)
    other_ids = {p.name.split("_")[0] for p in (other_raw / "acousticbrainz_descriptors").iterdir()}
    assert {a["amazon_id"] for a in json.loads(proc.stdout)["albums"]} <= other_ids


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_named_not_blamed_on_the_checkpoint(untrained_ckpt: Path) -> None:
    """device=cuda without a GPU said "not a usable mte checkpoint (RuntimeError: … deserialize … CUDA …)"."""
    with pytest.raises(CheckpointError, match=r"^device=cuda: torch finds no CUDA GPU on this machine; use device=cpu"):
        load_checkpoint(untrained_ckpt, device="cuda")
    with pytest.raises(CheckpointError, match=r"^device='gpu0' is not a torch device"):
        load_checkpoint(untrained_ckpt, device="gpu0")
    assert load_checkpoint(untrained_ckpt, device="cpu").model is not None
