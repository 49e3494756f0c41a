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
@pytest.mark.parametrize(("reference", "decoupled"), [(torch.optim.Adam, False), (torch.optim.AdamW, True)])
def test_dense_parameters_follow_torch_adam_and_adamw_exactly(reference, decoupled, weight_decay):
    """L2 decay matches torch's Adam, decoupled decay torch's AdamW."""
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    ours = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    ours.load_state_dict(ref.state_dict())
    inputs = [torch.randn(4, 6, dtype=torch.float64) for _ in range(7)]
    _train(ref, reference(ref.parameters(), lr=0.01, weight_decay=weight_decay), inputs)
    _train(ours, LazyAdam(ours.parameters(), lr=0.01, weight_decay=weight_decay, decoupled_weight_decay=decoupled),
           inputs)
    for a, b in zip(ref.parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_group_of_two_dtypes_takes_torch_adams_own_path_and_still_steps_as_adam():
    """The fused kernel is called directly only on tensors of one device and dtype; a group mixing float64 and
    float32 goes through ``torch.optim.adam`` (which groups them itself) with the step count it expects."""
    torch.manual_seed(0)
    ref = nn.ModuleList([nn.Linear(6, 5).double(), nn.Linear(6, 5)])
    ours = nn.ModuleList([nn.Linear(6, 5).double(), nn.Linear(6, 5)])
    ours.load_state_dict(ref.state_dict())
    inputs = [torch.randn(4, 6, dtype=torch.float64) for _ in range(7)]
    for model, optimizer in ((ref, torch.optim.Adam(ref.parameters(), lr=0.01, weight_decay=0.01)),
                             (ours, LazyAdam(ours.parameters(), lr=0.01, weight_decay=0.01))):
        for x in inputs:
            optimizer.zero_grad()
            (model[0](x).square().sum() + model[1](x.float()).square().sum()).backward()
            optimizer.step()
    for a, b in zip(ref.parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


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


def _model(optimizer: dict, sparse: bool = True):
    from mte.models.module import EmbeddingModel

    torch.manual_seed(0)
    return EmbeddingModel(text={"name": "bow", "sparse": sparse, "word_dim": 8}, audio={"name": "mlp"},
                          model={"hidden_dim": 16, "embed_dim": 4, "optimizer": optimizer},
                          loss={"name": "infonce"}, vocab_size=30, audio_dim=12)


def test_weight_decay_reaches_weight_matrices_only():
    """Biases, the learnable temperature and word tables stay undecayed (open_clip's rule): decaying logit_scale
    would pull the temperature towards 1, and a sparse table's untouched rows cannot be decayed lazily."""
    model = _model({"name": "adam", "weight_decay": 0.1}, sparse=False)  # a dense table is left out all the same
    decayed, plain = model.configure_optimizers().param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = sorted(names[id(p)] for p in decayed["params"])
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert decayed_names and all(n.endswith(".weight") and "embedding" not in n for n in decayed_names)
    plain_names = {names[id(p)] for p in plain["params"]}
    assert "loss.logit_scale" in plain_names and "text_backbone.embedding.weight" in plain_names
    assert any(n.endswith(".bias") for n in plain_names)
    assert len(decayed["params"]) + len(plain["params"]) == sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_every_optimizer_trains_the_sparse_word_table(name):
    """``model.optimizer.name=adamw`` with the default sparse bag of words: torch's AdamW rejects sparse gradients;
    LazyAdam with decoupled decay takes them."""
    model = _model({"name": name, "lr": 0.1, "weight_decay": 0.01})
    optimizer = model.configure_optimizers()
    before = model.text_backbone.embedding.weight.detach().clone()
    batch = {"tokens": torch.tensor([[2, 3, 4], [5, 6, 0]]), "lengths": torch.tensor([3, 2]),
             "audio": torch.randn(2, 12), "album": torch.tensor([0, 1])}
    text, audio = model(batch)
    model.loss(text, audio, batch["album"])["loss"].backward()
    assert model.text_backbone.embedding.weight.grad.is_sparse
    optimizer.step()
    changed = (model.text_backbone.embedding.weight.detach() != before).any(dim=1)
    assert changed[[2, 3, 4, 5, 6]].all() and not changed[[0, 1, 7]].any()
