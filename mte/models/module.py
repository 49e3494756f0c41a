"""The LightningModule: a text branch and an audio branch into one L2-normalised space, trained with a ranking loss.

The module is built from plain config mappings (saved as hyper-parameters), so ``EmbeddingModel.load_from_checkpoint``
rebuilds exactly the trained network for evaluation and search without the Hydra config that made it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from mte.cli import plain_dict
from mte.models.audio import build_audio_encoder
from mte.models.contract import CHECKPOINT_KEY, ContractError, InputContract
from mte.models.heads import ProjectionHead
from mte.models.losses import InfoNCELoss, MarginRankingLoss, SigmoidLoss
from mte.models.optim import LazyAdam, parameter_groups
from mte.models.text import build_text_backbone

Batch = dict[str, Any]

# The share of a batch's rows that must repeat a track before the audio branch's first layer runs once per track.
# Why a threshold: gathering the distinct rows and expanding the layer's output back has a cost of its own. Measured
# on the dev machine (full-size batches, 2,649 descriptor values, whole training steps, alternating): with 3% of
# rows repeated — what random sampling gives — sharing cost 2–3% of a step, 6% cost 1.4%, 10% broke even, and
# neighbourhood sampling's 50% saves 9%.
SHARED_TRACK_SHARE = 0.1


def build_loss(cfg: Mapping[str, Any]) -> nn.Module:
    """The ranking loss named by ``cfg['name']`` (``margin`` | ``infonce`` | ``sigmoid``), configured by the other
    keys."""
    losses: dict[str, type[nn.Module]] = {"margin": MarginRankingLoss, "infonce": InfoNCELoss, "sigmoid": SigmoidLoss}
    if cfg["name"] not in losses:
        raise ValueError(f"unknown loss {cfg['name']!r}; choose one of {', '.join(losses)}")
    return losses[cfg["name"]](**{k: v for k, v in cfg.items() if k != "name"})


class EmbeddingModel(pl.LightningModule):
    """Two branches (text, audio) → shared space, trained with ``loss``.

    Args:
        text: text backbone config (``name``: bow | lstm | hf, and its options).
        audio: audio head config (``name``: mlp | linear, ``batch_norm``, ``dropout``).
        model: ``embed_dim``, ``hidden_dim``, ``text_head`` (mlp | linear), ``optimizer``, ``scheduler``.
        loss: loss config (``name``: margin | infonce, and its options).
        vocab_size: word vocabulary size (bow/lstm).
        audio_dim: length of the descriptor feature vector.
        data: the data config the model was trained with and its processed dir (``processed_dir``).

    ``input_contract`` (an :class:`~mte.models.contract.InputContract`, set by whoever builds the model for its data)
    travels in every checkpoint (``on_save_checkpoint``), so evaluation and search read input exactly as training
    did from the checkpoint file alone.
    """

    input_contract: InputContract | None = None

    def __init__(
        self,
        text: Mapping[str, Any],
        audio: Mapping[str, Any],
        model: Mapping[str, Any],
        loss: Mapping[str, Any],
        vocab_size: int,
        audio_dim: int,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        text, audio, model, loss, data = (plain_dict(group) for group in (text, audio, model, loss, data))
        self.save_hyperparameters(
            {
                "text": text,
                "audio": audio,
                "model": model,
                "loss": loss,
                "vocab_size": vocab_size,
                "audio_dim": audio_dim,
                "data": data,
            }
        )
        self.text_backbone = build_text_backbone(text, vocab_size)
        self.text_head = ProjectionHead(
            self.text_backbone.out_dim,
            hidden_dim=model.get("hidden_dim", 256),
            embed_dim=model.get("embed_dim", 128),
            kind=model.get("text_head", "mlp"),
            batch_norm=model.get("text_batch_norm", False),
            dropout=model.get("text_dropout", 0.0),
        )
        self.audio_encoder = build_audio_encoder(
            {**audio, "hidden_dim": model.get("hidden_dim", 256), "embed_dim": model.get("embed_dim", 128)}, audio_dim
        )
        self.loss = build_loss(loss)

    # -- the input contract travels with the weights -------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.input_contract is not None:
            checkpoint[CHECKPOINT_KEY] = self.input_contract.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's contract; resuming onto other data (another vocabulary or split) is refused."""
        if CHECKPOINT_KEY not in checkpoint:
            return
        stored = InputContract.from_dict(checkpoint[CHECKPOINT_KEY])
        if self.input_contract is not None and self.input_contract.digest != stored.digest:
            raise ContractError(
                f"the checkpoint was trained on other data than {self.input_contract.processed_dir} (another "
                f"vocabulary, feature scaling or split); resume on the data it was trained on "
                f"({stored.processed_dir})"
            )
        self.input_contract = stored

    # -- embedding ---------------------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        """Dimension of the shared space."""
        return int(self.hparams["model"].get("embed_dim", 128))

    @property
    def text_input_kind(self) -> str:
        """What the text branch reads: ``tokens`` (word ids), ``hf`` (a transformer's ids) or ``features``."""
        return str(self.text_backbone.input_kind)

    def embed_text(self, batch: Batch) -> torch.Tensor:
        """L2-normalised text embeddings of a batch carrying tokens, HF inputs or cached features."""
        return self.text_head(self.text_backbone(batch))

    def embed_audio(self, audio: torch.Tensor, track_idx: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised audio embeddings of standardised descriptor vectors.

        ``track_idx`` (the rows' track ids, optional) lets rows of the same track share the audio branch's first
        layer: the widest matrix product of a step (e.g. 2,649 descriptor values × 256), half of which repeats
        itself under neighbourhood sampling, where both rows of an album's couple carry its only track. Batches
        with fewer repeats than ``SHARED_TRACK_SHARE`` of their rows run every row, which is cheaper there. The
        result is the same embeddings, row for row (see :meth:`ProjectionHead.forward`).
        """
        if track_idx is None or len(track_idx) < 2:
            return self.audio_encoder(audio)
        distinct, rows = torch.unique(track_idx, return_inverse=True)
        if len(track_idx) - len(distinct) < SHARED_TRACK_SHARE * len(track_idx):
            return self.audio_encoder(audio)
        first = torch.empty_like(distinct).scatter_(0, rows, torch.arange(len(rows), device=rows.device))
        return self.audio_encoder(audio.index_select(0, first), rows)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_text(batch), self.embed_audio(batch["audio"], batch.get("track_idx"))

    # -- training ----------------------------------------------------------------------------------------------
    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All ranks' rows (with gradients for ours), so in-batch negatives span the global batch under DDP."""
        if self._trainer is None or self.trainer.world_size == 1:
            return tensor
        return self.all_gather(tensor, sync_grads=True).flatten(0, 1)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        text, audio = self(batch)
        text, audio, album = self._gather(text), self._gather(audio), self._gather(batch["album"])
        terms = self.loss(text, audio, album)
        if self._trainer is not None and self._logs_this_step():
            size = len(batch["album"])
            self.log_dict({f"train/{name}": value.detach() for name, value in terms.items()}, batch_size=size)
        return terms["loss"]

    def _logs_this_step(self) -> bool:
        """Whether this step's training values reach the loggers: Lightning writes them every
        ``trainer.log_every_n_steps`` steps only, and a ``self.log`` costs ~1 ms of bookkeeping each (5 per step:
        a tenth of a CPU step). The epoch's last step is logged too, so the callbacks see its values at the
        epoch's end as before. Without Lightning's answer (another version), every step logs, as it used to."""
        trainer = self.trainer
        connector = getattr(trainer, "_logger_connector", None)
        should = getattr(connector, "should_update_logs", None)
        return not isinstance(should, bool) or should or bool(getattr(trainer, "is_last_batch", True))

    # -- evaluation: embed both modalities; the RetrievalMetrics callback turns them into metrics --------------
    def _embed_eval(self, batch: Batch, dataloader_idx: int) -> dict[str, torch.Tensor]:
        if dataloader_idx == 0:
            return {"embedding": self.embed_text(batch), "index": batch["review_idx"], "album": batch["album"]}
        return {"embedding": self.embed_audio(batch["audio"]), "index": batch["track_idx"], "album": batch["album"]}

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._embed_eval(batch, dataloader_idx)

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._embed_eval(batch, dataloader_idx)

    # -- optimisation ------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """``model.optimizer``: ``adam`` (L2 ``weight_decay``) or ``adamw`` (decoupled decay) — both LazyAdam, which
        updates only the used rows of sparse word tables — or ``sgd``. Decay reaches weight matrices only
        (:func:`~mte.models.optim.parameter_groups`)."""
        cfg = self.hparams["model"].get("optimizer", {})
        name = cfg.get("name", "adam").lower()
        if name not in ("adam", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {name!r}; choose one of adam, adamw, sgd")
        groups = parameter_groups(self, float(cfg.get("weight_decay", 0.0)))
        lr = cfg.get("lr", 1e-3)
        if name == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr)
        else:
            optimizer = LazyAdam(groups, lr=lr, decoupled_weight_decay=name == "adamw")
        scheduler = self._scheduler(optimizer, self.hparams["model"].get("scheduler") or {})
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _scheduler(self, optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any]):
        """Optional linear warm-up then cosine decay, stepped per batch (``name: cosine``)."""
        name = cfg.get("name", "none")
        if name in (None, "none", "constant"):
            return None
        if name != "cosine":
            raise ValueError(f"unknown scheduler {name!r}; choose 'none' or 'cosine'")
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(int(cfg.get("warmup_fraction", 0.05) * total), total - 1)
        min_ratio = cfg.get("min_lr_ratio", 0.01)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(total - warmup, 1)
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
