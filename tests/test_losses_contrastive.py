"""The contrastive losses beyond the published margin loss: InfoNCE's additive margin and SigLIP's sigmoid loss.

Each is checked against a hand computation written out pair by pair, and against the property that makes it
worth having (the margin moves the optimum; same-album pairs are positives, not negatives).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mte.models.losses import InfoNCELoss, SigmoidLoss, info_nce_loss, sigmoid_loss
from mte.models.module import build_loss


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1
    )


def test_info_nce_margin_is_an_additive_cosine_margin_on_the_true_pair():
    text, audio, album = _unit(5, 4, 0), _unit(5, 4, 1), torch.tensor([0, 0, 1, 2, 3])
    scale, margin = torch.tensor(8.0, dtype=torch.float64), 0.3
    shifted_audio_sim = text @ audio.T - margin * torch.eye(5, dtype=torch.float64)
    logits = (scale * shifted_audio_sim).masked_fill(
        (album[:, None] == album[None, :]) & ~torch.eye(5, dtype=torch.bool), -math.inf
    )
    target = torch.arange(5)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(info_nce_loss(text, audio, album, scale, margin)["loss"], expected)
    # a margin makes every true pair harder: the loss grows with it
    assert info_nce_loss(text, audio, album, scale, margin)["loss"] > info_nce_loss(text, audio, album, scale)["loss"]


def test_info_nce_margin_keeps_a_gradient_where_plain_info_nce_is_saturated():
    # true pairs ahead of every negative by ~0.7 in cosine: plain InfoNCE at a high scale is done;
    # with margin 0.9 the true pairs are still behind and keep being pushed
    text = torch.eye(3, dtype=torch.float64)
    audio = F.normalize(torch.eye(3, dtype=torch.float64) + 0.35, dim=1).requires_grad_()
    album = torch.arange(3)
    scale = torch.tensor(100.0, dtype=torch.float64)
    plain = info_nce_loss(text, audio, album, scale)["loss"]
    with_margin = info_nce_loss(text, audio, album, scale, 0.9)["loss"]
    assert plain.item() < 1e-6 < 1.0 < with_margin.item()


def test_info_nce_module_reads_margin_from_its_config():
    loss = build_loss(
        {"name": "infonce", "temperature": 0.07, "learn_temperature": True, "bidirectional": True, "margin": 0.2}
    )
    assert isinstance(loss, InfoNCELoss) and loss.margin == pytest.approx(0.2)
    with pytest.raises(ValueError, match="margin"):
        InfoNCELoss(margin=-0.1)


def test_sigmoid_loss_hand_example_counts_same_album_pairs_as_positives():
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    audio = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.6, -0.8]], dtype=torch.float64)
    album = torch.tensor([0, 0, 1])
    scale, bias = 5.0, -2.0

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    total = 0.0
    for i in range(3):
        for j in range(3):
            z = scale * float(text[i] @ audio[j]) + bias
            label = 1.0 if album[i] == album[j] else -1.0  # (0, 1) and (1, 0): one album, so a match
            total -= log_sigmoid(label * z)
    out = sigmoid_loss(
        text, audio, album, torch.tensor(scale, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64)
    )
    assert out["loss"].item() == pytest.approx(total / 3)
    assert (out["positive"] + out["negative"]).item() == pytest.approx(out["loss"].item())


def test_sigmoid_module_learns_scale_and_bias_and_separates_pairs():
    torch.manual_seed(0)
    text = torch.nn.Parameter(_unit(8, 6, 2).float())
    audio = torch.nn.Parameter(_unit(8, 6, 3).float())
    album = torch.arange(8)
    loss_fn = SigmoidLoss()
    assert loss_fn.logit_scale.exp().item() == pytest.approx(10.0)
    assert loss_fn.logit_bias.item() == pytest.approx(-10.0)
    optimiser = torch.optim.Adam([text, audio, *loss_fn.parameters()], lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        loss_fn(F.normalize(text, dim=1), F.normalize(audio, dim=1), album)["loss"].backward()
        optimiser.step()
    sim = F.normalize(text, dim=1) @ F.normalize(audio, dim=1).T
    assert torch.equal(sim.argmax(dim=1), album)  # every review's own track is now its nearest
    assert loss_fn.logit_bias.grad is not None


def test_build_loss_knows_sigmoid():
    assert isinstance(build_loss({"name": "sigmoid", "temperature": 0.1, "bias": -10.0}), SigmoidLoss)
    with pytest.raises(ValueError, match="sigmoid"):
        build_loss({"name": "nope"})
