"""IDF-weighted pooling and unknown-word skipping in the bag-of-words branch (``text=tfidf``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mte.data.text import PAD_ID, UNK_ID
from mte.models.text import BagOfWords, build_text_backbone, document_frequencies


def _batch(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    tokens = torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows])
    return {"tokens": tokens, "lengths": torch.tensor([len(r) for r in rows])}


def test_document_frequencies_count_reviews_not_occurrences():
    df = document_frequencies([[2, 2, 3], [3], None, [], [4, 2]], vocab_size=6)
    assert df.tolist() == [0.0, 0.0, 2.0, 2.0, 1.0, 0.0]


def test_idf_pooling_is_the_idf_weighted_mean_of_the_word_vectors():
    torch.manual_seed(0)
    bag = BagOfWords(6, word_dim=4, weighting="idf")
    bag.set_document_frequencies(torch.tensor([0.0, 0.0, 9.0, 1.0, 4.0, 0.0]), n_documents=9)
    idf = {t: math.log(10 / (1 + df)) + 1 for t, df in {2: 9.0, 3: 1.0, 4: 4.0, 1: 0.0}.items()}
    table = bag.embedding.weight.detach()
    row = [2, 3, 3, 4, UNK_ID]
    weights = torch.tensor([idf[t] for t in row], dtype=torch.float32)
    expected = (weights[:, None] * table[row]).sum(0) / weights.sum()
    out = bag(_batch([row, [2]]))
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], table[2])  # one word: its own vector whatever its weight


def test_skip_unknown_leaves_unk_out_and_plain_mean_keeps_it():
    torch.manual_seed(0)
    plain, skipping = BagOfWords(5, word_dim=3), BagOfWords(5, word_dim=3, skip_unknown=True)
    skipping.embedding.weight.data.copy_(plain.embedding.weight.data)
    table = plain.embedding.weight.detach()
    batch = _batch([[2, UNK_ID, UNK_ID, 3], [UNK_ID]])
    torch.testing.assert_close(skipping(batch)[0], table[[2, 3]].mean(0))
    torch.testing.assert_close(plain(batch)[0], table[[2, UNK_ID, UNK_ID, 3]].mean(0))
    assert torch.equal(skipping(batch)[1], torch.zeros(3))  # only unknown words: nothing known, the zero vector


def test_weighted_pooling_updates_only_the_rows_a_batch_used():
    bag = BagOfWords(8, word_dim=3, sparse=True, weighting="idf", skip_unknown=True)
    bag.set_document_frequencies(torch.ones(8), n_documents=4)
    bag(_batch([[2, 5, UNK_ID]])).sum().backward()
    grad = bag.embedding.weight.grad.coalesce()
    assert sorted(grad.indices()[0].tolist()) == [1, 2, 5]
    dense = grad.to_dense()
    assert torch.count_nonzero(dense[UNK_ID]) == 0 and torch.count_nonzero(dense[2]) > 0


def test_tfidf_config_builds_an_idf_bag_and_saves_its_weights():
    bag = build_text_backbone({"name": "tfidf", "word_dim": 4}, vocab_size=7)
    assert isinstance(bag, BagOfWords) and bag.weighting == "idf" and bag.skip_unknown
    bag.set_document_frequencies(torch.arange(7, dtype=torch.float64), n_documents=10)
    state = bag.state_dict()
    assert "token_weight" in state and state["token_weight"][UNK_ID] == 0 and state["token_weight"][PAD_ID] == 0
    assert np.isclose(float(state["token_weight"][3]), math.log(11 / 4) + 1)
    # the published mean keeps its old state dict (old checkpoints still load)
    assert "token_weight" not in build_text_backbone({"name": "bow", "word_dim": 4}, vocab_size=7).state_dict()
    with pytest.raises(ValueError, match="weighting"):
        BagOfWords(5, weighting="bm25")


def test_word_dropout_averages_a_random_subset_in_training_and_every_word_in_evaluation():
    """With one-hot word vectors the pooled vector shows which words were kept: in training a random share
    ``1 − p`` of the review's words, averaged among themselves (dropped words are not zeros in the mean); in
    evaluation all of them."""
    torch.manual_seed(0)
    vocab, words = 64, list(range(2, 62))
    bag = build_text_backbone({"name": "bow", "word_dim": vocab, "word_dropout": 0.25}, vocab_size=vocab)
    assert isinstance(bag, BagOfWords) and bag.word_dropout == 0.25
    with torch.no_grad():
        bag.embedding.weight.copy_(torch.eye(vocab))
    batch = _batch([words] * 200)
    bag.train()
    out = bag(batch)
    kept = out > 0
    assert not kept[:, [PAD_ID, UNK_ID, 62, 63]].any()  # only the review's own words
    counts = kept.sum(dim=1, keepdim=True)
    torch.testing.assert_close(out[kept], (1.0 / counts.expand_as(out))[kept])  # a mean over the kept words
    assert abs(kept.float().mean().item() * vocab / len(words) - 0.75) < 0.02
    bag.eval()
    torch.testing.assert_close(bag(batch)[0, words], torch.full((len(words),), 1.0 / len(words)))


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_word_dropout_outside_zero_to_one_is_refused(p):
    with pytest.raises(ValueError, match="word_dropout"):
        BagOfWords(8, word_dim=3, word_dropout=p)


def test_head_dropout_keeps_a_share_scaled_up_and_passes_gradients_through_the_kept_entries_only():
    """The CPU dropout of the projection heads: Bernoulli(1 − p) keeps, scaled by 1 / (1 − p), identity in eval."""
    from mte.models.heads import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.3)
    x = torch.ones(400, 500, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.7)
    drop.eval()
    assert drop(x) is x
