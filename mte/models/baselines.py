"""Baselines as models: the fitted CCA and a random projection, with a trained network's embedding interface.

``python -m mte.train model=cca|random`` fits nothing iterative (see :mod:`mte.train.baselines` for the fit and
the run's metrics), but leaves a checkpoint like a trained run, ``<run>/checkpoints/best.ckpt``: a
``torch.save``'d dict with the format tag :data:`BASELINE_FORMAT`, the baseline's ``kind``, its state (e.g. the CCA
projection) and the input contract of its data. :func:`mte.models.inference.load_checkpoint` turns it into a
module with ``embed_text(batch)`` / ``embed_audio(x)`` / ``text_input_kind`` / ``embed_dim``, so ``mte.evaluate``
(on the own split or ``data.raw_dir=OTHER``) and search treat a baseline exactly like a trained model.

Both read word ids (``text_input_kind = "tokens"``, padded batches from
:class:`~mte.models.contract.TokenMatrix`) and standardised descriptors (their contract says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mte.models.contract import CHECKPOINT_KEY, InputContract
from mte.paths import atomic_write

BASELINE_FORMAT = "mte-baseline/1"


# --------------------------------------------------------------------------------------------------------------
# the math shared by fitting (mte.train.baselines) and embedding
# --------------------------------------------------------------------------------------------------------------


def tfidf(counts: Tensor, idf: Tensor) -> Tensor:
    """Sublinear TF × IDF, rows L2-normalised (sparse in, sparse out); IDF 0 drops a column ([PAD], [UNK])."""
    counts = counts.coalesce()
    rows, cols = counts.indices()
    values = (1.0 + torch.log(counts.values())) * idf[cols]
    norms = torch.zeros(counts.shape[0], dtype=torch.float64).index_add_(0, rows, values**2).sqrt()
    values = values / norms[rows].clamp(min=1e-12)
    return torch.sparse_coo_tensor(counts.indices(), values, counts.shape, check_invariants=False).coalesce()


@dataclass
class CCAProjection:
    """A fitted CCA: centre, project, scale by ``correlations ** power``."""

    x_mean: Tensor
    y_mean: Tensor
    x_weights: Tensor  # [dx, k]
    y_weights: Tensor  # [dy, k]
    correlations: Tensor  # [k], descending

    def transform_x(self, x: Tensor, power: float = 0.0) -> Tensor:
        return ((x.to(torch.float64) - self.x_mean) @ self.x_weights) * self.correlations.clamp(min=0) ** power

    def transform_y(self, y: Tensor, power: float = 0.0) -> Tensor:
        return ((y.to(torch.float64) - self.y_mean) @ self.y_weights) * self.correlations.clamp(min=0) ** power


def batch_counts(batch: Mapping[str, Tensor], vocab_size: int) -> Tensor:
    """Sparse ``[B, vocab_size]`` float64 word counts of a padded ``{"tokens", "lengths"}`` batch."""
    tokens, lengths = batch["tokens"].cpu(), batch["lengths"].cpu()
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    rows = torch.arange(tokens.shape[0])[:, None].expand_as(tokens)[mask]
    index = torch.stack([rows, tokens[mask]])
    ones = torch.ones(index.shape[1], dtype=torch.float64)
    return torch.sparse_coo_tensor(index, ones, (tokens.shape[0], vocab_size), check_invariants=False).coalesce()


# --------------------------------------------------------------------------------------------------------------
# the embedders
# --------------------------------------------------------------------------------------------------------------


class CCAEmbedder(nn.Module):
    """TF-IDF → LSA text vector and standardised audio vector, each projected by a fitted :class:`CCAProjection`
    and L2-normalised (the CCA baseline's joint space)."""

    name = "cca"
    text_input_kind = "tokens"

    def __init__(self, idf: Tensor, components: Tensor, cca: CCAProjection, power: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("idf", idf.to(torch.float64))
        self.register_buffer("components", components.to(torch.float64))
        for key, value in vars(cca).items():
            self.register_buffer(f"cca_{key}", value.to(torch.float64))
        self.power = float(power)

    @property
    def cca(self) -> CCAProjection:
        return CCAProjection(*(getattr(self, f"cca_{k}") for k in CCAProjection.__dataclass_fields__))

    @property
    def embed_dim(self) -> int:
        return int(self.cca_correlations.numel())

    def embed_counts(self, counts: Tensor) -> Tensor:
        """Unit-length float32 embeddings of reviews given as sparse word counts."""
        text = torch.sparse.mm(tfidf(counts, self.idf.cpu()), self.components.cpu())
        return F.normalize(self.cca.transform_x(text.to(self.idf.device), self.power), dim=1).float()

    def embed_text(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self.embed_counts(batch_counts(batch, self.idf.numel()))

    def embed_audio(self, audio: Tensor) -> Tensor:
        """Unit-length float32 embeddings of standardised descriptor vectors."""
        return F.normalize(self.cca.transform_y(audio, self.power), dim=1).float()

    def checkpoint_state(self) -> dict[str, Any]:
        return {"config": {"power": self.power}, "state": {k: v.cpu() for k, v in self.state_dict().items()}}

    @classmethod
    def from_checkpoint_state(cls, config: Mapping[str, Any], state: Mapping[str, Tensor]) -> CCAEmbedder:
        cca = CCAProjection(*(state[f"cca_{k}"] for k in CCAProjection.__dataclass_fields__))
        return cls(state["idf"], state["components"], cca, float(config.get("power", 0.0)))


class RandomEmbedder(nn.Module):
    """Fixed random projections of word counts and of standardised descriptors: a model at chance.

    Its evaluation gives one realisation of chance-level rankings (the run's own metrics are the exact
    expectations, :mod:`mte.train.baselines`). The projections are drawn from ``seed`` on load, so the checkpoint
    holds a few numbers instead of a vocabulary-sized matrix.
    """

    name = "random"
    text_input_kind = "tokens"

    def __init__(self, seed: int, vocab_size: int, audio_dim: int, embed_dim: int = 128) -> None:
        super().__init__()
        self.config = {"seed": int(seed), "vocab_size": int(vocab_size), "audio_dim": int(audio_dim),
                       "embed_dim": int(embed_dim)}
        generator = torch.Generator().manual_seed(int(seed))
        self.register_buffer("text_projection", torch.randn(vocab_size, embed_dim, generator=generator,
                                                            dtype=torch.float64), persistent=False)
        self.register_buffer("audio_projection", torch.randn(audio_dim, embed_dim, generator=generator,
                                                             dtype=torch.float64), persistent=False)

    @property
    def embed_dim(self) -> int:
        return self.config["embed_dim"]

    def embed_text(self, batch: Mapping[str, Tensor]) -> Tensor:
        counts = batch_counts(batch, self.config["vocab_size"])
        return F.normalize(torch.sparse.mm(counts, self.text_projection.cpu()), dim=1).float()

    def embed_audio(self, audio: Tensor) -> Tensor:
        return F.normalize(audio.to(torch.float64) @ self.audio_projection, dim=1).float()

    def checkpoint_state(self) -> dict[str, Any]:
        return {"config": dict(self.config), "state": {}}

    @classmethod
    def from_checkpoint_state(cls, config: Mapping[str, Any], state: Mapping[str, Tensor]) -> RandomEmbedder:
        return cls(**config)


EMBEDDERS: dict[str, type[CCAEmbedder] | type[RandomEmbedder]] = {"cca": CCAEmbedder, "random": RandomEmbedder}


# --------------------------------------------------------------------------------------------------------------
# the checkpoint file
# --------------------------------------------------------------------------------------------------------------


def save_baseline(path: Path, embedder: CCAEmbedder | RandomEmbedder, contract: InputContract) -> Path:
    """Write a baseline checkpoint atomically (temp file + rename); returns ``path``."""
    payload = {"format": BASELINE_FORMAT, "kind": embedder.name, **embedder.checkpoint_state(),
               CHECKPOINT_KEY: contract.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def load_baseline(payload: Mapping[str, Any]) -> tuple[CCAEmbedder | RandomEmbedder, InputContract]:
    """The embedder and contract of a checkpoint dict written by :func:`save_baseline`."""
    kind = payload.get("kind")
    if kind not in EMBEDDERS:
        raise ValueError(f"unknown baseline kind {kind!r}; expected one of {', '.join(EMBEDDERS)}")
    embedder = EMBEDDERS[kind].from_checkpoint_state(payload.get("config") or {}, payload.get("state") or {})
    return embedder, InputContract.from_dict(payload[CHECKPOINT_KEY])
