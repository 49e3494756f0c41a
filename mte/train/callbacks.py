"""Lightning callbacks: retrieval metrics on the held-out split (and the checkpoint selection they imply), and an
embedding projector.

Metrics are computed once per validation (or test) run over *all* embeddings of the split, gathered from every
DDP rank and de-duplicated by item index — so 2-process numbers equal 1-process numbers on the same weights — and
scored by :func:`mte.eval.protocols.evaluate_embeddings`, the very function ``python -m mte.evaluate`` calls.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only

from mte.cli import UserError
from mte.eval.protocols import EvalSet, evaluate_embeddings
from mte.eval.results import write_text_atomic

COUNTS = ("n_queries", "n_excluded", "n_gallery")
"""Metric suffixes that count items rather than measure the model: not carried into ``val_best/*``."""


def gather_rows(module: pl.LightningModule, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor's rows from every rank; ranks may hold different numbers of rows."""
    if module._trainer is None or module.trainer.world_size == 1:
        return tensor
    sizes = module.all_gather(torch.tensor(len(tensor), device=tensor.device)).flatten().tolist()
    width = max(sizes)
    padded = torch.zeros((width, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: len(tensor)] = tensor
    stacked = module.all_gather(padded)
    return torch.cat([stacked[rank, :n] for rank, n in enumerate(sizes)])


class _SplitEmbeddings:
    """Accumulates the eval-step outputs of one split: dataloader 0 = reviews, 1 = tracks."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))

    def add(self, outputs: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        for key, value in outputs.items():
            self.parts[dataloader_idx][key].append(value.detach())

    def collect(self, module: pl.LightningModule, dataloader_idx: int) -> dict[str, torch.Tensor]:
        """This modality's embeddings from all ranks, one row per item, ordered by item index."""
        local = {k: torch.cat(v) for k, v in self.parts[dataloader_idx].items()}
        merged = {k: gather_rows(module, v) for k, v in local.items()}
        index, first = _first_occurrence(merged["index"])
        return {"index": index, **{k: v[first] for k, v in merged.items() if k != "index"}}


def _first_occurrence(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique values of ``index`` and the position of one occurrence of each (DDP pads by repeating)."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(len(index), device=index.device)
    first = torch.full((len(unique),), len(index), dtype=torch.long, device=index.device)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    return unique, first


def _lower_is_better(name: str) -> bool:
    return name.endswith(("MedR", "MeanR"))


SELECTIONS = ("best", "last")


class RetrievalMetrics(Callback):
    """Logs R@K, mAP@K, median and mean rank in both directions after every validation and test run.

    ``val_best/*`` are the validation metrics of ONE epoch, the *selected* one — the epoch whose checkpoint is
    tested — never per-metric maxima over epochs (those mix epochs and overstate every metric but the monitored
    one). ``selection="best"``: the epoch with the best ``monitor`` so far (strictly better replaces, as
    Lightning's ``ModelCheckpoint`` does, so it is the epoch of ``best.ckpt``); ``"last"``: the latest epoch
    (:func:`apply_selection` picks it when the test albums are also validation albums). The selected epoch and its
    metrics are part of the callback's state, so a resumed run carries them. Test metrics come with
    ``bootstrap``-sample 95% intervals (``test/t2a/R@10_lo`` / ``_hi``); validation skips them to stay cheap.
    """

    def __init__(
        self,
        ks: Sequence[int] = (1, 5, 10),
        map_k: int = 10,
        bootstrap: int = 1000,
        monitor: str = "val/t2a/R@10",
        selection: str = "best",
    ) -> None:
        self.ks = tuple(ks)
        self.map_k = map_k
        self.bootstrap = bootstrap
        self.monitor = monitor
        self.selection = selection
        self.best: dict[str, float] = {}
        self.best_epoch: int | None = None
        self.last: dict[str, dict[str, float]] = {}
        self._buffer = _SplitEmbeddings()

    # Lightning hook plumbing: the same collection for validation and test.
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._buffer = _SplitEmbeddings()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._buffer.add(outputs, dataloader_idx)

    on_test_batch_end = on_validation_batch_end

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:  # a few batches only: metrics would be meaningless
            return
        metrics = self._compute(pl_module, "val")
        if self._selects(metrics):
            self.best_epoch = int(trainer.current_epoch)
            self.best = {name.replace("val/", "val_best/", 1): value for name, value in metrics.items()
                         if not name.endswith(COUNTS)}
        self._log(pl_module, {**metrics, **self.best})

    def _selects(self, metrics: dict[str, float]) -> bool:
        """Whether this validation's epoch becomes the selected one."""
        if self.selection == "last" or self.best_epoch is None:
            return True
        lower = _lower_is_better(self.monitor)
        worst = math.inf if lower else -math.inf

        def score(value: float | None) -> float:
            return worst if value is None or math.isnan(value) else value

        current = score(metrics.get(self.monitor))
        best = score(self.best.get(self.monitor.replace("val/", "val_best/", 1)))
        return current < best if lower else current > best

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(pl_module, self._compute(pl_module, "test"))

    def _compute(self, pl_module: pl.LightningModule, stage: str) -> dict[str, float]:
        reviews, tracks = self._buffer.collect(pl_module, 0), self._buffer.collect(pl_module, 1)
        self._buffer = _SplitEmbeddings()
        data = EvalSet(text=reviews["embedding"].float(), review_album=reviews["album"],
                       audio=tracks["embedding"].float(), track_album=tracks["album"])
        bootstrap = self.bootstrap if stage == "test" else 0
        metrics = evaluate_embeddings(data, "album", stage, bootstrap, seed=0, ks=self.ks, map_k=self.map_k)
        self.last[stage] = metrics
        return metrics

    @staticmethod
    def _log(pl_module: pl.LightningModule, metrics: dict[str, float]) -> None:
        # Every rank holds identical gathered values, so no further reduction is needed.
        for name, value in metrics.items():
            pl_module.log(name, float(value), prog_bar=name.endswith("t2a/R@10"), sync_dist=False)

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best), "best_epoch": self.best_epoch, "selection": self.selection,
                "monitor": self.monitor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict.get("best", {}))
        self.best_epoch = state_dict.get("best_epoch")

    @property
    def selection_label(self) -> str:
        """How the tested checkpoint was chosen, as ``metrics.json`` records it: ``best <monitor>`` or ``last``."""
        return "last" if self.selection == "last" else f"best {self.monitor}"


def apply_selection(callbacks: Sequence[Callback], test_touches_val: bool) -> str:
    """Make checkpoint selection honest, and the retrieval callback's ``val_best/*`` the selected epoch's.

    ``test_touches_val``: some test album is also a validation album (``data.split=paper``, where test == val).
    Selecting the best validation epoch would then select on the reported set, so the *last* checkpoint is kept:
    ``ModelCheckpoint`` stops monitoring (its ``best.ckpt`` is overwritten every epoch: the last one) and
    ``val_best/*`` are the last epoch's. Otherwise the retrieval callback follows the checkpoint's ``monitor``, so
    ``val_best/*`` are the epoch of ``best.ckpt`` (``callbacks.retrieval.selection=last`` asks for the last
    checkpoint on any split). Early stopping on validation would stop on the reported set
    too: refused with a one-line error. Returns the selection as ``metrics.json`` records it.
    """
    retrieval = next((c for c in callbacks if isinstance(c, RetrievalMetrics)), None)
    checkpoint = next((c for c in callbacks if type(c).__name__ == "ModelCheckpoint"), None)
    if retrieval is not None and retrieval.selection not in SELECTIONS:
        raise UserError(f"callbacks.retrieval.selection={retrieval.selection!r}; choose one of {', '.join(SELECTIONS)}")
    if test_touches_val and any(type(c).__name__ == "EarlyStopping" for c in callbacks):
        raise UserError("early stopping on validation with test albums in the validation split (data.split=paper: "
                        "test == val) would stop on the reported set; drop callbacks=early_stopping")
    if test_touches_val or (retrieval is not None and retrieval.selection == "last"):
        if retrieval is not None:
            retrieval.selection = "last"
        if checkpoint is not None:
            checkpoint.monitor = None
        return "last"
    if retrieval is not None and checkpoint is not None and checkpoint.monitor:
        retrieval.monitor = checkpoint.monitor
    if retrieval is not None:
        return retrieval.selection_label
    return f"best {checkpoint.monitor}" if checkpoint is not None and checkpoint.monitor else "last"


class ModelCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's checkpoint callback, with ``last.ckpt`` rewritten at the end of *every* validation.

    Lightning 2.6 rewrites ``last.ckpt`` only in an epoch whose monitored metric improved, so after a plateau
    ``last.ckpt`` was an old epoch: ``metrics.json``'s ``last_checkpoint`` named it, and resuming from it trained
    the same epochs again (and escaped the check that a resume has epochs left to train).
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # where Lightning saves when validation runs once an epoch
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)

    def _save_last_if_missed(self, trainer: pl.Trainer) -> None:
        if (self.save_last and not self._should_skip_saving_checkpoint(trainer)
                and self._last_global_step_saved != trainer.global_step):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class EmbeddingProjector(Callback):
    """At the end of training, writes a sample of both modalities of the val split to the embedding projectors.

    Every row carries modality, artist, album title, genre and (for reviews) a snippet of the text. Written to
    TensorBoard's projector (when a TensorBoard logger is active), to a W&B table (when W&B is active), and always
    as ``projector/{tensors,metadata}.tsv`` in the run dir for projector.tensorflow.org.
    """

    def __init__(self, n_reviews: int = 500, n_albums: int = 200, snippet_chars: int = 120, seed: int = 0) -> None:
        self.n_reviews, self.n_albums, self.snippet_chars, self.seed = n_reviews, n_albums, snippet_chars, seed

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if dm is None:
            return
        embeddings, rows = self._sample(dm, pl_module)
        header = ["modality", "artist", "album", "genre", "text"]
        out_dir = Path(trainer.default_root_dir) / "projector"
        write_projector_tsv(out_dir, embeddings, header, rows)
        for logger in trainer.loggers:
            kind = type(logger).__name__
            if kind == "TensorBoardLogger":
                logger.experiment.add_embedding(
                    embeddings,
                    metadata=rows,
                    metadata_header=header,
                    tag="joint_space",
                    global_step=trainer.global_step,
                )
            elif kind == "WandbLogger":
                # one array per row, not a list: W&B checks a list's type number by number (0.28 s against 0.04 s
                # for 700 rows of 128 at the end of every run); an array is typed by its shape
                data = [[*row, emb] for row, emb in zip(rows, embeddings.numpy(), strict=True)]
                logger.log_table(key="embeddings", columns=[*header, "embedding"], data=data)

    @torch.no_grad()
    def _sample(self, dm: Any, pl_module: pl.LightningModule) -> tuple[torch.Tensor, list[list[str]]]:
        generator = torch.Generator().manual_seed(self.seed)
        reviews = dm.split_reviews("val")
        reviews = reviews[torch.randperm(len(reviews), generator=generator)[: self.n_reviews].numpy()]
        tracks = dm.split_tracks("val")
        tracks = tracks[torch.randperm(len(tracks), generator=generator)[: self.n_albums].numpy()]
        was_training = pl_module.training
        pl_module.eval()
        text_batch = {k: v.to(pl_module.device) for k, v in dm.text.batch(reviews).items()}
        text = pl_module.embed_text(text_batch).cpu()
        audio = pl_module.embed_audio(torch.from_numpy(dm.audio[tracks]).to(pl_module.device)).cpu()
        pl_module.train(was_training)
        albums = dm.data.albums
        review_rows = dm.data.reviews[reviews]
        rows = []
        for album_row, snippet in zip(
            dm.review_album[reviews].tolist(), review_rows.get_column("text").to_list(), strict=True
        ):
            rows.append(["review", *self._album_meta(albums, album_row), (snippet or "")[: self.snippet_chars]])
        for album_row in dm.track_album[tracks].tolist():
            rows.append(["audio", *self._album_meta(albums, album_row), ""])
        return torch.cat([text, audio]), rows

    @staticmethod
    def _album_meta(albums: Any, row: int) -> list[str]:
        record = albums.row(row, named=True)
        return [str(record.get("artist") or ""), str(record.get("title") or ""), str(record.get("genre") or "")]


def write_projector_tsv(out_dir: Path, embeddings: torch.Tensor, header: list[str], rows: list[list[str]]) -> None:
    """The two TSV files the standalone TensorFlow projector loads (tensors, and metadata with a header), each
    written atomically (:func:`mte.eval.results.write_text_atomic`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = [[cell.replace("\t", " ").replace("\n", " ") for cell in row] for row in rows]
    tensors = [[f"{x:.6f}" for x in vec] for vec in embeddings.tolist()]
    tables = {"tensors.tsv": tensors, "metadata.tsv": [header, *clean]}
    for name, table in tables.items():
        text = io.StringIO(newline="")
        csv.writer(text, delimiter="\t").writerows(table)
        write_text_atomic(out_dir / name, text.getvalue())
