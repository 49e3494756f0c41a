"""A trained checkpoint, ready to embed: reviews or free text, descriptor vectors, whole splits.

Evaluation, search, export and the web page all start from :func:`load_checkpoint`; it finds the processed dir the
model was trained on (recorded in the checkpoint), so the vocabulary, the train-split feature statistics and the
held-out split are exactly the training run's.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
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

    @cached_property
    def vocabulary(self):
        """The training vocabulary (loaded once): encodes free-text queries for bow/LSTM models."""
        return self.data.vocabulary()

    @property
    def reads_tokens(self) -> bool:
        """True for bow/LSTM text branches (vocabulary ids), False for transformers (strings)."""
        return self.model.text_backbone.input_kind == "tokens"  # type: ignore[attr-defined]

    def review_texts(self, rows: np.ndarray | None = None) -> list[str]:
        """The strings a transformer reads for reviews (the configured text fields joined, as in training)."""
        from mte.data.datamodule import review_strings

        reviews = self.data.reviews if rows is None else self.data.reviews[rows]
        fields = self.data.manifest.get("config", {}).get("text_fields", ["summary", "reviewText"])
        return review_strings(reviews, fields)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length embeddings of free texts (queries or reviews), encoded as in training."""
        if self.reads_tokens:
            return self.embed_token_ids(self.vocabulary.encode_batch(list(texts)))
        backbone = self.model.text_backbone  # type: ignore[attr-defined]
        return self._embed_batches(list(texts), lambda chunk: dict(backbone.tokenize(chunk)))

    def embed_token_ids(self, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        """Unit-length embeddings of reviews given as vocabulary ids (bow/LSTM)."""
        return self._embed_batches(list(token_lists), pad_token_ids)

    def embed_reviews(self, rows: np.ndarray) -> torch.Tensor:
        """Reviews (``review_idx`` rows) exactly as training embedded them: stored token ids, or the joined text."""
        if self.reads_tokens:
            tokens = self.data.reviews.get_column("tokens").gather(rows).to_list()
            return self.embed_token_ids([list(t or []) for t in tokens])
        return self.embed_texts(self.review_texts(rows))

    @torch.inference_mode()
    def _embed_batches(self, inputs: list, to_batch) -> torch.Tensor:
        """Embed in batches, longest inputs first so each batch pads little; rows come back in input order."""
        out = torch.empty(len(inputs), self.embed_dim)
        order = np.argsort([-len(x) for x in inputs], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = {k: v.to(self.device) for k, v in to_batch([inputs[i] for i in rows]).items()}
            out[torch.from_numpy(rows)] = self.model.embed_text(batch).float().cpu()  # type: ignore[attr-defined]
        return out

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


def pad_token_ids(ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """A 0-padded ``tokens`` matrix and ``lengths``: the batch layout the bow/LSTM backbones read."""
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
