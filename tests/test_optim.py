"""LazyAdam is Adam on dense parameters and on every row a sparse gradient touches; other rows stay put."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mte.models.optim import LazyAdam


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: list[torch.Tensor]) -> None:
    for x in inputs:
        optimizer.zero_grad()
        model(x).pow(2).sum().backward()
        optimizer.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_dense_parameters_follow_torch_adam_exactly(weight_decay):
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    ours = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    ours.load_state_dict(ref.state_dict())
    inputs = [torch.randn(4, 6, dtype=torch.float64) for _ in range(7)]
    _train(ref, torch.optim.Adam(ref.parameters(), lr=0.01, weight_decay=weight_decay), inputs)
    _train(ours, LazyAdam(ours.parameters(), lr=0.01, weight_decay=weight_decay), inputs)
    for a, b in zip(ref.parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_sparse_rows_match_dense_adam_when_touched_and_stay_put_otherwise():
    torch.manual_seed(0)
    dense = nn.EmbeddingBag(10, 4, mode="mean").double()
    sparse = nn.EmbeddingBag(10, 4, mode="mean", sparse=True).double()
    sparse.load_state_dict(dense.state_dict())
    before = sparse.weight.detach().clone()
    # rows 0-5 are used at every step (so lazy == dense for them); rows 6-9 never
    inputs = [torch.randint(0, 6, (3, 4)) for _ in range(5)]
    for x in inputs:
        x[0, :] = torch.arange(4)
        x[1, :] = torch.tensor([4, 5, 0, 1])
    _train(dense, torch.optim.Adam(dense.parameters(), lr=0.05), inputs)
    _train(sparse, LazyAdam(sparse.parameters(), lr=0.05), inputs)
    torch.testing.assert_close(sparse.weight[:6], dense.weight[:6], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sparse.weight[6:], before[6:], rtol=0, atol=0)


def test_invalid_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="LazyAdam"):
        LazyAdam([nn.Parameter(torch.zeros(1))], lr=-1)
