"""mte.models.embedding_bag: torch's forward bit for bit, torch's gradient (summed in another order), one row per
distinct word, and LazyAdam taking those rows without re-sorting them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mte.models.embedding_bag import embedding_bag, padded_bags, stable_order
from mte.models.optim import LazyAdam, sparse_rows


def _batch(seed: int, batch: int = 12, width: int = 30, vocab: int = 50) -> torch.Tensor:
    """Padded ids with repeated words, an empty review and a full-width one."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, width, (batch,), generator=g)
    lengths[0], lengths[1] = width, 0
    tokens = torch.randint(1, vocab, (batch, width), generator=g)
    return tokens.masked_fill(torch.arange(width)[None, :] >= lengths[:, None], 0)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize(("mode", "weighted"), [("mean", False), ("sum", False), ("sum", True)])
def test_equals_torch_embedding_bag(mode: str, weighted: bool, sparse: bool) -> None:
    torch.manual_seed(0)
    tokens = _batch(0)
    reference = nn.EmbeddingBag(50, 7, mode=mode, padding_idx=0, sparse=sparse).double()
    weight = reference.weight.detach().clone().requires_grad_()
    psw = torch.rand(tokens.shape, dtype=torch.double) if weighted else None
    upstream = torch.randn(len(tokens), 7, dtype=torch.double)

    expected = reference(tokens, per_sample_weights=psw)
    ours = embedding_bag(weight, tokens, mode, per_sample_weights=psw, sparse=sparse)
    assert torch.equal(ours, expected)  # the forward is torch's own call
    expected.backward(upstream)
    ours.backward(upstream)
    assert weight.grad.is_sparse is sparse
    ref_grad = reference.weight.grad.to_dense() if sparse else reference.weight.grad
    torch.testing.assert_close(weight.grad.to_dense() if sparse else weight.grad, ref_grad, rtol=1e-12, atol=1e-12)
    if sparse:  # one row per distinct word of the batch, padding excluded
        rows, _ = sparse_rows(weight.grad)
        assert rows.tolist() == sorted(set(tokens[tokens != 0].tolist()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(6))
def test_flat_bags_equal_the_padded_call_bit_for_bit(dtype: torch.dtype, seed: int) -> None:
    """The fast path (non-padding ids end to end) against torch's padded call, at a training batch's size, with
    padding inside rows (what word dropout leaves), empty reviews, and the weighted bags that keep the padded call."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(1800, 300, generator=g, dtype=dtype)
    tokens = _batch(seed, batch=128, width=192, vocab=1800)
    tokens = tokens.masked_fill(torch.rand(tokens.shape, generator=g) < 0.3, 0)
    tokens[5] = 0
    weights = torch.rand(tokens.shape, generator=g, dtype=dtype)
    for mode, psw in (("mean", None), ("sum", None), ("sum", weights)):
        expected = torch.nn.functional.embedding_bag(tokens, weight, mode=mode, padding_idx=0, per_sample_weights=psw)
        assert torch.equal(padded_bags(weight, tokens, mode, psw), expected)


@pytest.mark.parametrize("bound", [2, 1800, 1 << 16, 70_000, 1 << 31])
def test_stable_order_is_torchs_stable_sort(bound: int) -> None:
    """The radix permutation equals torch's stable one, index for index: with many ties (each tie's positions must
    stay in order), for ids within one 16-bit pass and beyond (a second pass on the high bits, which a bug in the
    digit order would break), and at 2¹⁶ itself."""
    g = torch.Generator().manual_seed(bound % 97)
    ids = torch.randint(0, bound, (5_000,), generator=g)
    ids[:3] = torch.tensor([bound - 1, 0, bound - 1])
    assert torch.equal(stable_order(ids), ids.sort(stable=True).indices)
    assert stable_order(ids).dtype == torch.int64


def test_stable_order_of_no_ids_and_of_ids_beyond_32_bits() -> None:
    assert stable_order(torch.zeros(0, dtype=torch.long)).tolist() == []
    huge = torch.tensor([1 << 40, 3, 1 << 40, 2])
    assert stable_order(huge).tolist() == [3, 1, 0, 2]


def test_all_padding_batch_has_no_gradient_rows() -> None:
    weight = torch.randn(10, 3, requires_grad=True)
    out = embedding_bag(weight, torch.zeros(4, 5, dtype=torch.long), "mean", sparse=True)
    assert torch.equal(out, torch.zeros(4, 3))
    out.sum().backward()
    assert weight.grad._nnz() == 0


def test_no_autograd_node_without_grad() -> None:
    weight = torch.randn(10, 3, requires_grad=True)
    with torch.no_grad():
        out = embedding_bag(weight, _batch(1, vocab=10), "mean", sparse=True)
    assert out.grad_fn is None


def test_lazy_adam_steps_equal_with_either_backward() -> None:
    """Several LazyAdam steps on torch's sparse gradient (duplicates, coalesced by the optimiser) and on ours."""
    torch.manual_seed(1)
    reference = nn.EmbeddingBag(50, 7, mode="mean", padding_idx=0, sparse=True).double()
    weight = nn.Parameter(reference.weight.detach().clone())
    opt_ref, opt_ours = LazyAdam(reference.parameters(), lr=0.01), LazyAdam([weight], lr=0.01)
    for step in range(4):
        tokens = _batch(step)
        target = torch.randn(len(tokens), 7, dtype=torch.double)
        for opt, out in ((opt_ref, reference(tokens)), (opt_ours, embedding_bag(weight, tokens, "mean", sparse=True))):
            opt.zero_grad()
            ((out - target) ** 2).sum().backward()
            opt.step()
    torch.testing.assert_close(weight.detach(), reference.weight.detach(), rtol=1e-12, atol=1e-12)


def test_sparse_rows_coalesces_only_when_needed() -> None:
    values = torch.arange(6.0).reshape(3, 2)
    unsorted = torch.sparse_coo_tensor(torch.tensor([[4, 1, 4]]), values, (6, 2), check_invariants=True)
    rows, summed = sparse_rows(unsorted)
    assert rows.tolist() == [1, 4] and summed.tolist() == [[2.0, 3.0], [4.0, 6.0]]
    increasing = torch.sparse_coo_tensor(torch.tensor([[1, 3, 4]]), values, (6, 2), check_invariants=True)
    rows, same = sparse_rows(increasing)
    assert rows.tolist() == [1, 3, 4] and same.data_ptr() == increasing._values().data_ptr()
