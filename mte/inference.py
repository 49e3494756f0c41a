"""A trained checkpoint, ready to embed: reviews or free text, descriptor vectors, whole splits.

Evaluation, search, export and the web page all start from :func:`load_checkpoint`; it finds the processed dir the
model was trained on (recorded in the checkpoint), so the vocabulary, the train-split feature statistics and the
held-out split are exactly the training run's.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mte.cli import UserError
from mte.data.processed import ProcessedData


class CheckpointError(ValueError, UserError):
    """A checkpoint that cannot be used; the message is one line naming the file and the problem."""


@dataclass
class LoadedModel:
    """An :class:`~mte.models.module.EmbeddingModel` in eval mode with the processed data it was trained on."""

    model: object
    data: ProcessedData
    checkpoint: Path
    batch_size: int = 1024

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device  # type: ignore[attr-defined]

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length embeddings of free texts (queries or reviews), encoded as in training."""
        backbone = self.model.text_backbone  # type: ignore[attr-defined]
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            if backbone.input_kind == "tokens":
                batch = _pad_tokens(self.data.vocabulary().encode_batch(chunk))
            else:
                batch = dict(backbone.tokenize(chunk))
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out.append(self.model.embed_text(batch).float().cpu())  # type: ignore[attr-defined]
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @torch.inference_mode()
    def embed_raw_features(self, raw: np.ndarray) -> torch.Tensor:
        """Unit-length audio embeddings of RAW descriptor vectors, standardised with the train-split statistics
        unless the model was trained on raw values (``data.standardize: false``, the published setup)."""
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        if raw.shape[1] != len(self.data.feature_names):
            raise ValueError(
                f"descriptor vector has {raw.shape[1]} values; this model expects {len(self.data.feature_names)} "
                f"({self.data.feature_set})"
            )
        if self.standardize:
            raw = (raw - self.data.feature_mean) / self.data.feature_std
        x = torch.from_numpy(raw.astype(np.float32))
        out = [
            self.model.embed_audio(x[i : i + self.batch_size].to(self.device)).float().cpu()  # type: ignore[attr-defined]
            for i in range(0, len(x), self.batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @property
    def standardize(self) -> bool:
        """Whether the model was trained on standardised descriptors (``data.standardize``, default true)."""
        data_cfg = self.model.hparams.get("data") or {}  # type: ignore[attr-defined]
        return bool(data_cfg.get("standardize", True))

    @property
    def embed_dim(self) -> int:
        return int(self.model.hparams["model"].get("embed_dim", 128))  # type: ignore[attr-defined]


def _pad_tokens(ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    tokens = torch.zeros(len(ids), max([1, *lengths.tolist()]), dtype=torch.long)
    for row, seq in enumerate(ids):
        tokens[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return {"tokens": tokens, "lengths": lengths}


def load_checkpoint(path: str | Path, processed_dir: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load a training checkpoint and its processed data; :class:`CheckpointError` (one line) when unusable.

    ``processed_dir`` overrides the dir recorded in the checkpoint (e.g. after moving the cache).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    from mte.models.module import EmbeddingModel

    try:
        model = EmbeddingModel.load_from_checkpoint(str(path), map_location=device, weights_only=False)
    except (KeyError, TypeError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a usable mte checkpoint ({type(e).__name__}: {first_line})") from None
    model.eval()
    data_cfg = model.hparams.get("data") or {}
    root = processed_dir or data_cfg.get("processed_dir")
    if not root:
        raise CheckpointError(f"{path}: the checkpoint records no processed dir; pass processed_dir=PATH")
    data = ProcessedData.load(root)
    if len(data.feature_names) != model.hparams["audio_dim"]:
        raise CheckpointError(
            f"{path}: trained on {model.hparams['audio_dim']} audio features but {root} has "
            f"{len(data.feature_names)} ({data.feature_set})"
        )
    return LoadedModel(model=model, data=data, checkpoint=path)
