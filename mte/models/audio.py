"""Audio branch: the projection head applied directly to the standardised descriptor vector.

The descriptors (MFCC covariance etc.) are already a fixed-size summary of the track, so the published model has
no audio backbone at all — the branch *is* the head. Keeping it a plain ProjectionHead means audio and text
embeddings come out of identical code and are comparable by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mte.models.heads import HEAD_KINDS, ProjectionHead

AUDIO_ENCODERS: tuple[str, ...] = HEAD_KINDS  # "mlp" (published) and "linear"


def build_audio_encoder(cfg: Mapping[str, Any], in_dim: int) -> ProjectionHead:
    """Build the audio encoder: [B, in_dim] standardised descriptors → [B, embed_dim] unit vectors.

    Config keys: name ("mlp" | "linear"), hidden_dim (256), embed_dim (128), batch_norm (False), dropout (0.0),
    input_dropout (0.0: share of the descriptor values hidden at each training step).
    The result exposes in_dim, out_dim and embed_dim (out_dim == embed_dim).
    """
    name = cfg.get("name", "mlp")
    if name not in AUDIO_ENCODERS:
        raise ValueError(f"unknown audio encoder {name!r}; expected one of {AUDIO_ENCODERS}")
    return ProjectionHead(
        in_dim,
        hidden_dim=int(cfg.get("hidden_dim", 256)),
        embed_dim=int(cfg.get("embed_dim", 128)),
        kind=name,
        batch_norm=bool(cfg.get("batch_norm", False)),
        dropout=float(cfg.get("dropout", 0.0)),
        input_dropout=float(cfg.get("input_dropout", 0.0)),
    )
