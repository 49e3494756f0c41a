"""Projection heads, audio encoder and the word-level text backbones (bag of words, BiLSTM)."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn

from mte.models.audio import build_audio_encoder
from mte.models.heads import Dropout, ProjectionHead, build_head
from mte.models.text import BagOfWords, BiLSTM, build_text_backbone


def _batch(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    """0-padded token batch as the data module collates it."""
    width = max((len(r) for r in rows), default=0)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return {"tokens": tokens, "lengths": torch.tensor([len(r) for r in rows], dtype=torch.long)}


# ---------------------------------------------------------------- heads / audio


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_head_shapes_and_unit_norm(kind: str) -> None:
    torch.manual_seed(0)
    head = ProjectionHead(40, hidden_dim=16, embed_dim=8, kind=kind)
    y = head(torch.randn(5, 40) * 10)
    assert y.shape == (5, 8)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(5))
    assert head.out_dim == head.embed_dim == 8


def test_published_mlp_head_layers() -> None:
    head = ProjectionHead(369)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(369, 256), (256, 128)]
    assert any(isinstance(m, nn.ReLU) for m in head.modules())


def test_linear_head_is_one_layer() -> None:
    head = ProjectionHead(369, kind="linear")
    assert [m for m in head.modules() if not isinstance(m, ProjectionHead)] == [head.net]
    assert isinstance(head.net, nn.Linear) and head.net.out_features == 128


def test_head_zero_output_is_not_nan() -> None:
    head = ProjectionHead(4, kind="linear", embed_dim=3)
    nn.init.zeros_(head.net.weight)
    nn.init.zeros_(head.net.bias)
    assert torch.equal(head(torch.randn(2, 4)), torch.zeros(2, 3))


def test_head_batch_norm_and_dropout_options() -> None:
    head = build_head({"batch_norm": True, "dropout": 0.5, "hidden_dim": 32, "embed_dim": 16}, 10)
    kinds = [type(m) for m in head.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, Dropout, nn.Linear]  # mte's nn.Dropout (a cheaper CPU mask)
    with pytest.raises(ValueError, match="unknown projection head kind"):
        ProjectionHead(3, kind="deep")  # type: ignore[arg-type]


def test_audio_encoder_factory() -> None:
    enc = build_audio_encoder({"name": "mlp"}, 369)
    assert (enc.in_dim, enc.out_dim, enc.embed_dim) == (369, 128, 128)
    y = enc(torch.randn(3, 369))
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(3))
    lin = build_audio_encoder({"name": "linear", "embed_dim": 64}, 169)
    assert isinstance(lin.net, nn.Linear) and lin.out_dim == 64
    with pytest.raises(ValueError, match="unknown audio encoder"):
        build_audio_encoder({"name": "cnn"}, 10)


# ---------------------------------------------------------------- bag of words


def test_bow_is_masked_mean() -> None:
    torch.manual_seed(0)
    bow = BagOfWords(20, word_dim=6)
    batch = _batch([[3, 4, 5], [7], [2, 2, 9, 11]])
    out = bow(batch)
    w = bow.embedding.weight.detach()
    expected = torch.stack([w[[3, 4, 5]].mean(0), w[[7]].mean(0), w[[2, 2, 9, 11]].mean(0)])
    torch.testing.assert_close(out, expected)
    assert bow.out_dim == 6 and bow.input_kind == "tokens"


def test_bow_empty_review_is_zero() -> None:
    bow = BagOfWords(20, word_dim=6)
    out = bow(_batch([[], [3, 4]]))
    assert torch.equal(out[0], torch.zeros(6))
    assert torch.isfinite(out).all()
    assert torch.equal(bow(_batch([[], []])), torch.zeros(2, 6))  # width-0 batch


def test_bow_gradients_reach_used_embeddings_only() -> None:
    bow = BagOfWords(20, word_dim=6)
    bow(_batch([[3, 4], [5], []])).sum().backward()
    grad = bow.embedding.weight.grad
    assert grad is not None
    used = {3, 4, 5}
    for i in range(20):
        assert bool(grad[i].abs().sum() > 0) == (i in used), i


@pytest.mark.parametrize("cls", [BagOfWords, BiLSTM])
def test_sparse_embedding_gradients(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    dense, sparse = cls(20, word_dim=6), cls(20, word_dim=6, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    batch = _batch([[3, 4], [5], []])
    for model in (dense, sparse):
        model(batch).pow(2).sum().backward()
    grad = sparse.embedding.weight.grad
    assert grad is not None and grad.is_sparse
    assert set(grad.coalesce().indices()[0].tolist()) <= {0, 3, 4, 5}
    torch.testing.assert_close(grad.to_dense(), dense.embedding.weight.grad)


# ---------------------------------------------------------------- BiLSTM


def test_lstm_out_dim_and_order_sensitivity() -> None:
    torch.manual_seed(0)
    lstm = BiLSTM(50, word_dim=8, hidden=256)
    assert lstm.out_dim == 512
    out = lstm(_batch([[3, 4, 5, 6], [6, 5, 4, 3]]))
    assert out.shape == (2, 512)
    assert not torch.allclose(out[0], out[1], atol=1e-4)  # a bag of words could not tell these apart


def test_lstm_lengths_zero_and_one() -> None:
    torch.manual_seed(0)
    lstm = BiLSTM(50, word_dim=8, hidden=16)
    out = lstm(_batch([[], [7], [7, 8]]))
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(32))
    assert out[1].abs().sum() > 0
    assert torch.equal(lstm(_batch([[], []])), torch.zeros(2, 32))


def test_lstm_packing_matches_single_items() -> None:
    torch.manual_seed(0)
    lstm = BiLSTM(50, word_dim=8, hidden=16).eval()
    rows = [[3, 4, 5], [9], [10, 11, 12, 13, 14, 15], [], [2, 2]]
    together = lstm(_batch(rows))
    for i, r in enumerate(rows):
        alone = lstm(_batch([r]))
        torch.testing.assert_close(together[i], alone[0], atol=1e-6, rtol=1e-5)
    # lengths may be omitted: they are recovered from the 0-padding
    batch = _batch(rows)
    del batch["lengths"]
    torch.testing.assert_close(lstm(batch), together)


def test_lstm_gradients_flow() -> None:
    lstm = BiLSTM(50, word_dim=8, hidden=16)
    lstm(_batch([[3, 4], [5]])).sum().backward()
    assert lstm.embedding.weight.grad is not None and lstm.embedding.weight.grad[3].abs().sum() > 0
    assert all(p.grad is not None for p in lstm.lstm.parameters())


# ---------------------------------------------------------------- factories


def test_text_backbone_factory() -> None:
    bow = build_text_backbone({"name": "bow", "word_dim": 12}, vocab_size=100)
    assert isinstance(bow, BagOfWords) and bow.out_dim == 12 and bow.input_kind == "tokens"
    lstm = build_text_backbone({"name": "lstm", "word_dim": 12, "hidden": 8}, vocab_size=100)
    assert isinstance(lstm, BiLSTM) and lstm.out_dim == 16 and lstm.input_kind == "tokens"
    assert not lstm.embedding.sparse
    assert build_text_backbone({"name": "bow", "sparse": True}, vocab_size=100).embedding.sparse
    with pytest.raises(ValueError, match="unknown text backbone"):
        build_text_backbone({"name": "gpt"}, vocab_size=100)


@pytest.mark.parametrize(("kind", "batch_norm", "dropout"),
                         [("mlp", False, 0.3), ("mlp", True, 0.0), ("linear", False, 0.0)])
def test_head_on_distinct_rows_equals_the_head_on_the_batch(kind, batch_norm, dropout):
    """Repeated inputs run the first layer once: same embeddings (dropout masks too) and the same gradients."""
    torch.manual_seed(0)
    head = ProjectionHead(40, hidden_dim=16, embed_dim=8, kind=kind, batch_norm=batch_norm, dropout=dropout).double()
    distinct = torch.randn(5, 40, dtype=torch.double)
    rows = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4, 1])
    upstream = torch.randn(len(rows), 8, dtype=torch.double)
    outputs, grads = [], []
    for args in ((distinct[rows],), (distinct, rows)):
        head.zero_grad()
        torch.manual_seed(1)
        out = head(*args)
        out.backward(upstream)
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in head.parameters()])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-12, atol=1e-12)
    for ours, reference in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_model_shares_the_first_audio_layer_between_rows_of_one_track():
    from mte.models.module import EmbeddingModel

    torch.manual_seed(0)
    model = EmbeddingModel(text={"name": "bow"}, audio={"name": "mlp", "dropout": 0.2}, model={},
                           loss={"name": "infonce"}, vocab_size=20, audio_dim=12).double()
    tracks = torch.tensor([3, 3, 7, 1, 1, 9])
    audio = torch.randn(10, 12, dtype=torch.double)[tracks]
    torch.manual_seed(2)
    shared = model.embed_audio(audio, tracks)
    torch.manual_seed(2)
    alone = model.embed_audio(audio)
    torch.testing.assert_close(shared, alone, rtol=1e-12, atol=1e-12)
    model.eval()  # all distinct: the plain path
    assert torch.equal(model.embed_audio(audio[:3], tracks[[0, 2, 3]]), model.embed_audio(audio[:3]))


def test_the_first_audio_layer_is_shared_only_where_enough_rows_repeat_a_track():
    """Sharing pays from ``SHARED_TRACK_SHARE`` of the rows on (neighbourhood sampling's couples); a batch that
    repeats fewer (random sampling's few chance repeats) runs every row, as sharing would cost more than it saves."""
    from mte.models.module import SHARED_TRACK_SHARE, EmbeddingModel

    model = EmbeddingModel(text={"name": "bow"}, audio={"name": "mlp"}, model={}, loss={"name": "infonce"},
                           vocab_size=20, audio_dim=12)
    first_layer_rows: list[int] = []
    model.audio_encoder.net[0].register_forward_hook(lambda _m, args, _out: first_layer_rows.append(len(args[0])))
    few = torch.arange(40)
    few[-1] = 0  # one repeat in 40 rows: 2.5%
    many = torch.arange(40) // 2  # every track twice: 50%
    assert 1 / 40 < SHARED_TRACK_SHARE < 0.5
    for tracks in (few, many):
        model.embed_audio(torch.randn(40, 12), tracks)
    assert first_layer_rows == [40, 20]


def test_input_dropout_hides_inputs_in_training_only_and_keeps_parameter_names() -> None:
    """The audio branch's input dropout: training sees a masked descriptor vector (here: an input read through
    one weight only, so a hidden input zeroes the pre-activation), evaluation the whole vector; checkpoints keep the
    parameter names of a head without it."""
    torch.manual_seed(0)
    head = build_audio_encoder({"name": "mlp", "input_dropout": 0.5, "hidden_dim": 4, "embed_dim": 3}, 200)
    plain = build_audio_encoder({"name": "mlp", "hidden_dim": 4, "embed_dim": 3}, 200)
    assert head.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(head.state_dict())
    x = torch.randn(64, 200)
    head.eval(), plain.eval()
    torch.testing.assert_close(head(x), plain(x))
    head.train()
    seen = []
    head.net[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    head(x)
    kept = seen[0] != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.03
    torch.testing.assert_close(seen[0][kept], (x * 2)[kept])
