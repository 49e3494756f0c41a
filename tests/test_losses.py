"""Losses: the embed-once margin loss equals re-embedding every copy (mte.models.reembedding), plus sanity checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mte.models.losses import (
    InfoNCELoss,
    MarginRankingLoss,
    hardest_negatives,
    info_nce_loss,
    margin_ranking_loss,
    pairwise_distance,
    sample_negatives,
    sample_positives,
)
from mte.models.reembedding import reembedded_margin_loss

# ----------------------------------------------------------------------------------------------------------------
# the literal reference (mte.models.reembedding): duplicate the raw inputs of every triple and re-embed each copy
# ----------------------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """A branch of the published model, small: Linear → ReLU → Linear → L2 normalise."""

    def __init__(self, n_in: int, seed: int, hidden: int = 16, n_out: int = 8) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out)).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


ALBUM = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 6])  # albums 2, 4 and 6 have no second row


def make_batch(seed: int = 0, n_text: int = 10, n_audio: int = 7):
    g = torch.Generator().manual_seed(seed)
    text_inputs = torch.randn(len(ALBUM), n_text, generator=g, dtype=torch.float64)
    audio_inputs = torch.randn(len(ALBUM), n_audio, generator=g, dtype=torch.float64)
    return Encoder(n_text, seed=seed + 1), Encoder(n_audio, seed=seed + 2), text_inputs, audio_inputs


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("neighborhood", [True, False])
@pytest.mark.parametrize("mining", ["random", "hardest"])
def test_value_and_gradients_equal_the_reembedded_margin_loss(distance, bidirectional, neighborhood, mining):
    text_encoder, audio_encoder, text_inputs, audio_inputs = make_batch()
    # a big margin so that most hinge terms are active and the gradients are not trivially 0
    loss_fn = MarginRankingLoss(
        margin=0.8,
        negatives=4,
        bidirectional=bidirectional,
        weights=(1.0, 0.7, 0.3, 0.2),
        distance=distance,
        mining=mining,
        neighborhood=neighborhood,
    )
    text, audio = text_encoder(text_inputs), audio_encoder(audio_inputs)
    indices = loss_fn.sample_indices(text, audio, ALBUM, torch.Generator().manual_seed(3))
    ours = margin_ranking_loss(text, audio, ALBUM, margin=0.8, weights=loss_fn.weights, distance=distance, **indices)[
        "loss"
    ]
    reference = reembedded_margin_loss(
        text_encoder,
        audio_encoder,
        text_inputs,
        audio_inputs,
        ALBUM,
        margin=0.8,
        weights=loss_fn.weights,
        distance=distance,
        **indices,
    )
    assert ours.item() > 0
    assert torch.allclose(ours, reference, rtol=1e-10, atol=1e-12)

    params = [*text_encoder.parameters(), *audio_encoder.parameters()]
    ours_grad = torch.autograd.grad(ours, params)
    reference_grad = torch.autograd.grad(reference, params)
    for g_ours, g_ref in zip(ours_grad, reference_grad, strict=True):
        assert torch.allclose(g_ours, g_ref, rtol=1e-9, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in ours_grad)


def test_module_forward_is_the_functional_on_the_sampled_indices():
    text_encoder, audio_encoder, text_inputs, audio_inputs = make_batch(seed=4)
    text, audio = text_encoder(text_inputs), audio_encoder(audio_inputs)
    loss_fn = MarginRankingLoss(negatives=5, weights=(1, 1, 1, 1), neighborhood=True)
    out = loss_fn(text, audio, ALBUM, generator=torch.Generator().manual_seed(9))
    indices = loss_fn.sample_indices(text, audio, ALBUM, torch.Generator().manual_seed(9))
    expected = margin_ranking_loss(text, audio, ALBUM, weights=(1, 1, 1, 1), **indices)
    assert set(out) == {"loss", "t2a", "a2t", "tt", "aa"}
    for key in out:
        assert torch.equal(out[key], expected[key])
    assert torch.allclose(out["loss"], out["t2a"] + out["a2t"] + out["tt"] + out["aa"])


# ----------------------------------------------------------------------------------------------------------------
# index sampling
# ----------------------------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(albums=st.lists(st.integers(0, 5), min_size=1, max_size=24), k=st.integers(1, 15), seed=st.integers(0, 999))
def test_negatives_never_share_the_anchor_album(albums, k, seed):
    album = torch.tensor(albums)
    negatives = sample_negatives(album, k, torch.Generator().manual_seed(seed))
    assert negatives.shape == (len(albums), k) and negatives.dtype == torch.long
    for i, row in enumerate(negatives.tolist()):
        admissible = {j for j, a in enumerate(albums) if a != albums[i]}
        if not admissible:
            assert row == [-1] * k
        elif len(admissible) >= k:
            assert len(set(row)) == k and set(row) <= admissible  # without replacement
        else:
            assert set(row) == admissible  # every admissible row used, the rest with replacement


def test_negatives_are_uniform():
    album = torch.tensor([0, 1, 2, 3, 4, 5, 0, 0])
    counts = torch.zeros(8)
    g = torch.Generator().manual_seed(0)
    for _ in range(2000):
        counts += torch.bincount(sample_negatives(album, 2, g)[0], minlength=8)
    # row 0 (album 0) may use rows 1..5, each with probability 2/5
    assert counts[[0, 6, 7]].sum() == 0
    assert torch.allclose(counts[1:6] / 2000, torch.full((5,), 0.4), atol=0.04)


def test_sampling_is_reproducible_with_a_generator():
    album = torch.randint(5, (30,), generator=torch.Generator().manual_seed(0))
    first = sample_negatives(album, 10, torch.Generator().manual_seed(1))
    again = sample_negatives(album, 10, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert torch.equal(
        sample_positives(album, torch.Generator().manual_seed(2)),
        sample_positives(album, torch.Generator().manual_seed(2)),
    )


@settings(max_examples=60, deadline=None)
@given(albums=st.lists(st.integers(0, 4), min_size=1, max_size=20), seed=st.integers(0, 999))
def test_positives_share_the_album_and_are_another_row(albums, seed):
    positives = sample_positives(torch.tensor(albums), torch.Generator().manual_seed(seed)).tolist()
    for i, p in enumerate(positives):
        others = [j for j, a in enumerate(albums) if a == albums[i] and j != i]
        if others:
            assert p in others
        else:
            assert p == -1


def test_hardest_negatives_are_the_closest_other_album_items():
    g = torch.Generator().manual_seed(0)
    album = torch.tensor([0, 0, 1, 2, 2, 3, 4, 5])
    dist = torch.rand(8, 8, generator=g)
    hardest = hardest_negatives(dist, album, 3)
    for i in range(8):
        candidates = sorted((float(dist[i, j]), j) for j in range(8) if album[j] != album[i])
        assert hardest[i].tolist() == [j for _, j in candidates[:3]]
    # fewer candidates than k: reused cyclically, closest first; none at all: -1
    two_albums = torch.tensor([0, 0, 0, 1])
    assert hardest_negatives(dist[:4, :4], two_albums, 4)[0].tolist() == [3, 3, 3, 3]
    closest = [j for _, j in sorted((float(dist[3, j]), j) for j in range(3))]
    assert hardest_negatives(dist[:4, :4], two_albums, 5)[3].tolist() == closest + closest[:2]
    assert (hardest_negatives(dist[:3, :3], torch.zeros(3, dtype=torch.long), 2) == -1).all()


# ----------------------------------------------------------------------------------------------------------------
# distances and the hinge
# ----------------------------------------------------------------------------------------------------------------


def test_pairwise_distance_matches_definitions():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(5, 6, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=1)
    assert torch.allclose(pairwise_distance(a, b), torch.cdist(a, b), atol=1e-7)
    assert torch.allclose(pairwise_distance(a, b, "cosine"), 1 - F.cosine_similarity(a[:, None], b[None], dim=-1))
    unnormalised = torch.randn(3, 6, generator=g, dtype=torch.float64) * 4
    assert torch.allclose(pairwise_distance(unnormalised, a), torch.cdist(unnormalised, a), atol=1e-7)
    with pytest.raises(ValueError, match="distance"):
        pairwise_distance(a, b, "manhattan")


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_gradient_is_finite_at_zero_distance(distance):
    x = torch.randn(4, 8)
    x = (x / x.norm(dim=1, keepdim=True)).requires_grad_()
    pairwise_distance(x, x, distance).sum().backward()
    assert torch.isfinite(x.grad).all()
    # and through the loss: text == audio exactly, every true pair at distance 0
    emb = F.normalize(torch.randn(6, 8), dim=1).requires_grad_()
    album = torch.arange(6)
    out = MarginRankingLoss(distance=distance, negatives=3)(emb, emb, album, torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(emb.grad).all()


def test_hinge_hand_example():
    # two albums, one row each; text_0 = audio_0, text_1 = audio_1 orthogonal → d(true) = 0, d(false) = √2
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    album = torch.tensor([0, 1])
    negatives = torch.tensor([[1], [0]])
    out = margin_ranking_loss(text, text, album, margin=2.0, negatives_t2a=negatives, negatives_a2t=negatives)
    assert out["t2a"].item() == pytest.approx(2.0 - math.sqrt(2))
    assert out["loss"].item() == pytest.approx(2 * (2.0 - math.sqrt(2)))
    out = margin_ranking_loss(text, text, album, margin=1.0, negatives_t2a=negatives, weights=(1, 0, 0, 0))
    assert out["loss"].item() == 0.0 and out["a2t"].item() == 0.0


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_loss_is_zero_when_margin_at_most_minus_two(distance):
    g = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    audio = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    album = torch.randint(4, (16,), generator=g)
    loss_fn = MarginRankingLoss(margin=-2.0, weights=(1, 1, 1, 1), distance=distance, neighborhood=True)
    out = loss_fn(text, audio, album, torch.Generator().manual_seed(1))
    assert all(value.item() == 0.0 for value in out.values())


def test_rows_without_a_negative_are_masked_not_nan():
    text = F.normalize(torch.randn(5, 4), dim=1).requires_grad_()
    audio = F.normalize(torch.randn(5, 4), dim=1)
    one_album = torch.zeros(5, dtype=torch.long)
    out = MarginRankingLoss(weights=(1, 1, 1, 1), neighborhood=True)(text, audio, one_album)
    assert all(value.item() == 0.0 for value in out.values())
    out["loss"].backward()
    assert torch.isfinite(text.grad).all() and (text.grad == 0).all()
    # a row without a positive only drops out of the intra-modal terms
    album = torch.tensor([0, 0, 1, 2, 3])
    negatives = sample_negatives(album, 3)
    positives = torch.tensor([1, 0, -1, -1, -1])
    out = margin_ranking_loss(
        text, audio, album, margin=5.0, positives=positives, negatives_tt=negatives, weights=(0, 0, 1, 0)
    )
    d = pairwise_distance(text, text)
    expected = torch.stack([5.0 + d[i, positives[i]] - d[i, negatives[i]] for i in (0, 1)]).mean()
    assert torch.allclose(out["tt"], expected)


def test_unidirectional_uses_only_text_to_audio():
    g = torch.Generator().manual_seed(0)
    text, audio = F.normalize(torch.randn(8, 4, generator=g), dim=1), F.normalize(torch.randn(8, 4, generator=g), dim=1)
    loss_fn = MarginRankingLoss(margin=0.5, bidirectional=False, weights=(2.0, 1.0, 0.0, 0.0))
    assert loss_fn.weights == (2.0, 0.0, 0.0, 0.0)
    out = loss_fn(text, audio, torch.arange(8), torch.Generator().manual_seed(0))
    assert out["a2t"].item() == 0.0 and out["t2a"].item() > 0
    assert torch.allclose(out["loss"], 2.0 * out["t2a"])


def test_configuration_errors():
    text = torch.randn(3, 4)
    with pytest.raises(ValueError, match="negatives"):
        margin_ranking_loss(text, text, torch.arange(3), negatives_t2a=None)
    with pytest.raises(ValueError, match="positives"):
        negatives = sample_negatives(torch.arange(3), 2)
        margin_ranking_loss(
            text,
            text,
            torch.arange(3),
            negatives_t2a=negatives,
            negatives_a2t=negatives,
            negatives_tt=negatives,
            weights=(1, 1, 1, 0),
        )
    with pytest.raises(ValueError, match="neighborhood"):
        MarginRankingLoss(neighborhood=True)
    with pytest.raises(ValueError, match="mining"):
        MarginRankingLoss(mining="semi-hard")
    with pytest.raises(ValueError):
        sample_negatives(torch.arange(3), 0)


@pytest.fixture
def single_thread():
    """Tiny tensors: one intra-op thread is ~20x faster than two when the cores are busy (OpenMP spinning)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("single_thread")
def test_training_with_the_margin_loss_separates_albums():
    torch.manual_seed(0)
    n_albums, per_album = 8, 4
    album = torch.arange(n_albums).repeat_interleave(per_album)
    centres = torch.randn(n_albums, 6)
    text_inputs = centres[album] + 0.3 * torch.randn(len(album), 6)
    audio_inputs = centres[album] @ torch.randn(6, 5) + 0.3 * torch.randn(len(album), 5)
    text_encoder, audio_encoder = Encoder(6, seed=1).float(), Encoder(5, seed=2).float()
    loss_fn = MarginRankingLoss(margin=0.2, negatives=5, weights=(1, 1, 0.5, 0.5), neighborhood=True)
    optimiser = torch.optim.Adam([*text_encoder.parameters(), *audio_encoder.parameters()], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        out = loss_fn(text_encoder(text_inputs), audio_encoder(audio_inputs), album, g)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.2 * losses[0]


# ----------------------------------------------------------------------------------------------------------------
# InfoNCE
# ----------------------------------------------------------------------------------------------------------------


def test_info_nce_masks_other_rows_of_the_same_album_hand_example():
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    audio = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.6, -0.8]], dtype=torch.float64)
    album = torch.tensor([0, 0, 1])  # rows 0 and 1: two reviews (and tracks) of one album
    scale = 3.0
    s = (scale * text @ audio.T).tolist()

    def ce(logits, target):  # -log softmax(logits)[target] over the entries that are not masked
        return -logits[target] + math.log(sum(math.exp(v) for v in logits))

    # t2a row 0 may not see column 1 (same album), row 1 not column 0; row 2 sees every column
    t2a = (ce([s[0][0], s[0][2]], 0) + ce([s[1][1], s[1][2]], 0) + ce(s[2], 2)) / 3
    a2t = (ce([s[0][0], s[2][0]], 0) + ce([s[1][1], s[2][1]], 0) + ce([s[0][2], s[1][2], s[2][2]], 2)) / 3
    out = info_nce_loss(text, audio, album, torch.tensor(scale, dtype=torch.float64))
    assert out["t2a"].item() == pytest.approx(t2a)
    assert out["a2t"].item() == pytest.approx(a2t)
    assert out["loss"].item() == pytest.approx((t2a + a2t) / 2)


def test_info_nce_without_shared_albums_is_clip():
    g = torch.Generator().manual_seed(0)
    text, audio = F.normalize(torch.randn(6, 4, generator=g), dim=1), F.normalize(torch.randn(6, 4, generator=g), dim=1)
    logits = 10.0 * text @ audio.T
    target = torch.arange(6)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(info_nce_loss(text, audio, torch.arange(6), torch.tensor(10.0))["loss"], clip)
    # a batch of one album: only the true pair remains in every row → nothing to contrast
    assert info_nce_loss(text, audio, torch.zeros(6, dtype=torch.long), torch.tensor(10.0))["loss"].item() == 0.0


def test_info_nce_module_temperature():
    loss_fn = InfoNCELoss()
    assert loss_fn.temperature == pytest.approx(0.07)
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    text = F.normalize(torch.randn(5, 4), dim=1).requires_grad_()
    out = loss_fn(text, F.normalize(torch.randn(5, 4), dim=1), torch.tensor([0, 0, 1, 2, 3]))
    assert set(out) == {"loss", "t2a", "a2t"}
    out["loss"].backward()
    assert loss_fn.logit_scale.grad is not None and torch.isfinite(text.grad).all()
    with torch.no_grad():
        loss_fn.logit_scale.fill_(10.0)  # beyond log(100): clamped in place before use, like CLIP
    loss_fn(text, text, torch.arange(5))
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(100))
    assert not InfoNCELoss(learn_temperature=False).logit_scale.requires_grad


def test_infonce_unidirectional_keeps_only_the_text_to_audio_term():
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    audio = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    album = torch.tensor([0, 0, 1, 2, 3, 4])
    both = InfoNCELoss()(text, audio, album)
    one = InfoNCELoss(bidirectional=False)(text, audio, album)
    torch.testing.assert_close(one["loss"], both["t2a"])
    assert float(one["a2t"]) == 0.0
