"""Projection heads: map a branch's feature vector into the shared, L2-normalised embedding space.

Both branches of the published model end in the same head, Linear(in, 256) → ReLU → Linear(256, 128), and the
ranking loss compares unit vectors, so normalisation lives here rather than in the loss: every consumer
(training, retrieval metrics, search) then sees the same unit-length embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

HeadKind = Literal["mlp", "linear"]
HEAD_KINDS: tuple[str, ...] = ("mlp", "linear")


def random_share(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool tensor whose entries are True with probability ``p`` (exact to 2⁻³¹), from 31-bit random integers:
    on the CPU twice as cheap as ``bernoulli_``, which draws element by element."""
    return torch.empty(shape, dtype=torch.int32, device=device).random_() < int(p * 2**31)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask comes from 31-bit random integers instead of ``bernoulli_``.

    Why: on the CPU, torch draws a dropout mask element by element (~13 ns each: 0.4 ms for a 128 × 256 batch, two
    per step, 5% of a bag-of-words step on the dev machine); filling an int32 tensor with random bits and comparing
    it with ``p · 2³¹`` gives the same Bernoulli(1 − p) mask, exact to 2⁻³¹, and halves the cost of the dropout's
    forward and backward together. Kept entries are scaled by 1 / (1 − p), as torch does; other devices use torch's
    kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.p >= 1:
            return super().forward(x)
        keep = random_share(x.shape, 1.0 - self.p)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


class ProjectionHead(nn.Module):
    """Feature vector [B, in_dim] → unit-length embedding [B, embed_dim].

    kind="mlp" is the published head (Linear → [BatchNorm] → ReLU → [Dropout] → Linear); kind="linear" is the
    paper's "linear" variant, a single Linear(in_dim, embed_dim) — kept because it beat the non-linear head on
    review→audio without bidirectional training (Table 1), so it is a real baseline, not a toy.

    ``input_dropout`` drops input features before the first layer in training (outside ``net``, so checkpoints keep
    their parameter names): the audio branch's 2,649 descriptor values then cannot single out an album by a few.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 256,
        embed_dim: int = 128,
        kind: HeadKind = "mlp",
        batch_norm: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown projection head kind {kind!r}; expected one of {HEAD_KINDS}")
        self.in_dim = in_dim
        self.embed_dim = embed_dim
        self.out_dim = embed_dim  # same name as the backbones use, so callers need not special-case heads
        self.kind = kind
        self.input_dropout = Dropout(input_dropout) if input_dropout > 0 else None
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, embed_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(Dropout(dropout))
            layers.append(nn.Linear(hidden_dim, embed_dim))
            self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-length embeddings of ``x`` — or, with ``rows``, of the batch ``x[rows]``, computed without copying.

        ``rows`` is for batches that repeat inputs (neighbourhood sampling puts an album's one track in two rows):
        ``x`` then holds each distinct input once and the first — widest — layer runs once per distinct input; its
        output is expanded before anything with per-row randomness or batch statistics (dropout, batch norm), so
        every row is computed as if it were alone, and the repeated rows' gradients are summed into that layer.
        """
        layers = [self.net] if isinstance(self.net, nn.Linear) else list(self.net)
        if self.input_dropout is not None:  # one mask per distinct input: repeated rows stay one track
            x = self.input_dropout(x)
        hidden = layers[0](x)
        if rows is not None:
            hidden = hidden.index_select(0, rows)
        for layer in layers[1:]:
            hidden = layer(hidden)
        # F.normalize clamps the norm at eps, so an all-zero output stays zero instead of becoming NaN.
        return F.normalize(hidden, dim=-1)


def build_head(cfg: Mapping[str, Any] | None, in_dim: int) -> ProjectionHead:
    """Build a head from config keys kind, hidden_dim, embed_dim, batch_norm, dropout, input_dropout (optional)."""
    cfg = cfg or {}
    return ProjectionHead(
        in_dim,
        hidden_dim=int(cfg.get("hidden_dim", 256)),
        embed_dim=int(cfg.get("embed_dim", 128)),
        kind=cfg.get("kind", "mlp"),
        batch_norm=bool(cfg.get("batch_norm", False)),
        dropout=float(cfg.get("dropout", 0.0)),
        input_dropout=float(cfg.get("input_dropout", 0.0)),
    )
