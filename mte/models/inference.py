"""A trained checkpoint, ready to embed: reviews or free text, descriptor vectors, whole splits, other MARD dirs.

Evaluation, search, export and the web page all start from :func:`load_checkpoint`. Everything that turns raw
reviews and descriptors into model input comes from the model's :class:`~mte.models.contract.InputContract`, saved
in the checkpoint, so a checkpoint file alone embeds queries and prepares another MARD dir
(:meth:`LoadedModel.prepare_raw_dir`). The processed dir the model was trained on is loaded only when asked for
(:attr:`LoadedModel.data`), and then verified against the contract: a dir re-prepared with another split seed or
vocabulary is a one-line error, never silently different data.

Baselines (``model=cca|random``) leave checkpoints too (:mod:`mte.models.baselines`); they load into the same
:class:`LoadedModel`, so ``mte.evaluate`` and search treat them like trained models.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mte.cli import UserError
from mte.data.prepare import PrepareConfig, prepare
from mte.data.processed import ProcessedData
from mte.models.baselines import BASELINE_FORMAT, load_baseline
from mte.models.contract import CHECKPOINT_KEY, FEATURES_FILE, VOCAB_FILES, InputContract, TokenMatrix

if TYPE_CHECKING:
    import polars as pl

    from mte.data.text import Vocabulary


class CheckpointError(ValueError, UserError):
    """A checkpoint that cannot be used; the message is one line naming the file and the problem."""


class LoadedModel:
    """A model in eval mode with its input contract, embedding anything the contract can turn into input.

    ``model`` has the embedding interface of :class:`~mte.models.module.EmbeddingModel` (``embed_text(batch)``,
    ``embed_audio(x)``, ``text_input_kind``, ``embed_dim``) — a trained network or a baseline. ``data`` is the
    processed dir it was trained on, loaded lazily from the contract's record (or ``processed_dir``) and checked.
    """

    def __init__(
        self,
        model: Any,
        data: ProcessedData | None = None,
        checkpoint: Path | str = "",
        batch_size: int = 1024,
        contract: InputContract | None = None,
        processed_dir: str | Path | None = None,
    ) -> None:
        self.model = model
        self.checkpoint = Path(checkpoint)
        self.batch_size = batch_size
        self.contract = contract or getattr(model, "input_contract", None) or _legacy_contract(model, data)
        self._data = data
        self._processed_dir = processed_dir

    # -- the data it was trained on ----------------------------------------------------------------------------
    @property
    def data(self) -> ProcessedData:
        """The processed dir the model was trained on, checked against the contract (same vocabulary, feature
        statistics, text fields and split albums); :class:`CheckpointError` when it is gone."""
        if self._data is None:
            root = self._processed_dir or self.contract.processed_dir
            if not root or not Path(root).expanduser().is_dir():
                raise CheckpointError(
                    f"{self.checkpoint}: the processed dir it was trained on ({root}) is gone; evaluate or search "
                    f"another MARD dir with data.raw_dir=PATH, or pass processed_dir= (re-prepared with its config: "
                    f"{_config_hint(self.contract)})"
                )
            data = ProcessedData.load(root)
            self.contract.check(data)
            self._data = data
        return self._data

    def prepare_raw_dir(
        self, raw_dir: str | Path, cache_dir: str | Path | None = None, workers: int = 0, verbose: bool = True
    ) -> ProcessedData:
        """Another MARD-format dir, prepared (cached) with this model's contract — its vocabulary, feature set and
        statistics, text fields; every paired album in ``test`` — and loaded. Needs only the checkpoint.
        ``verbose``: prepare's summary line on stdout."""
        path = prepare(raw_dir, PrepareConfig(workers=workers), cache_dir=cache_dir,
                       reference=self.reference_dir(cache_dir), verbose=verbose)
        data = ProcessedData.load(path)
        self.contract.check(data, same_splits=False)
        return data

    def reference_dir(self, cache_dir: str | Path | None = None) -> Path:
        """A processed dir holding exactly the contract's vocabulary and feature files: the training dir itself
        when it still holds them byte for byte, else one made from the contract (see
        :meth:`~mte.models.contract.InputContract.reference_dir`)."""
        recorded = self.contract.processed_dir
        if recorded and (Path(recorded) / "manifest.json").is_file():
            try:
                same = all((Path(recorded) / n).read_text(encoding="utf-8") == self.contract.files[n]
                           for n in (FEATURES_FILE, *VOCAB_FILES))
            except OSError:
                same = False
            if same:
                return Path(recorded)
        return self.contract.reference_dir(cache_dir)

    # -- facts -------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())  # type: ignore[attr-defined]
        return next(tensors, torch.empty(0)).device

    @property
    def vocabulary(self) -> Vocabulary:
        """The training vocabulary: encodes free-text queries for bow/LSTM models."""
        return self.contract.vocabulary

    @property
    def reads_tokens(self) -> bool:
        """True for word-id text branches (bow/LSTM, baselines), False for transformers (strings)."""
        return self.model.text_input_kind == "tokens"  # type: ignore[attr-defined]

    @property
    def standardize(self) -> bool:
        """Whether the model reads standardised descriptors (``data.standardize``, default true)."""
        return self.contract.standardize

    @property
    def embed_dim(self) -> int:
        return int(self.model.embed_dim)  # type: ignore[attr-defined]

    @property
    def text_backbone_name(self) -> str:
        """What reads the text: bow | lstm | hf | distilbert | minilm, or the baseline's name."""
        hparams = getattr(self.model, "hparams", None) or {}
        return str((hparams.get("text") or {}).get("name") or getattr(self.model, "name", ""))

    # -- embedding ---------------------------------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length embeddings of free texts (queries), encoded as in training."""
        if self.reads_tokens:
            return self.embed_token_ids(self.contract.encode(texts))
        backbone = self.model.text_backbone  # type: ignore[attr-defined]
        return self._embed_batches(list(texts), lambda chunk: dict(backbone.tokenize(chunk)))

    def embed_token_ids(self, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        """Unit-length embeddings of texts given as vocabulary ids (bow/LSTM)."""
        return self._embed_batches(list(token_lists), lambda chunk: TokenMatrix.from_lists(chunk).batch(
            np.arange(len(chunk))))

    @torch.inference_mode()
    def embed_reviews(self, reviews: pl.DataFrame | np.ndarray) -> torch.Tensor:
        """Review rows (a frame of a processed dir encoded with this contract, or ``review_idx`` rows of
        :attr:`data`) exactly as training-time evaluation embeds them: stored word ids in consecutive batches of
        ``batch_size`` (so the floats equal the training callback's), or the joined text fields for transformers."""
        if isinstance(reviews, np.ndarray):
            reviews = self.data.reviews[reviews]
        if not self.reads_tokens:
            return self.embed_texts(self.contract.review_texts(reviews))
        tokens = self.contract.review_tokens(reviews)
        out = [self.model.embed_text({k: v.to(self.device) for k, v in batch.items()}).float().cpu()  # type: ignore[attr-defined]
               for batch in tokens.consecutive_batches(self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @torch.inference_mode()
    def _embed_batches(self, inputs: list, to_batch: Callable[[list], dict[str, torch.Tensor]]) -> torch.Tensor:
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
        """Unit-length audio embeddings of RAW descriptor vectors, made model input by the contract."""
        x = torch.from_numpy(self.contract.model_features(raw))
        out = [
            self.model.embed_audio(x[i : i + self.batch_size].to(self.device)).float().cpu()  # type: ignore[attr-defined]
            for i in range(0, len(x), self.batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)


def _legacy_contract(model: Any, data: ProcessedData | None) -> InputContract:
    """Checkpoints written before contracts existed: the contract of the processed dir they recorded."""
    hparams = getattr(model, "hparams", None) or {}
    data_cfg = hparams.get("data") or {}
    if data is None:
        root = data_cfg.get("processed_dir")
        if not root:
            raise CheckpointError("the checkpoint carries no input contract and records no processed dir")
        data = ProcessedData.load(root)
    text = hparams.get("text") or {}
    hf = text.get("pretrained") if text.get("name") in ("hf", "distilbert", "minilm") else None
    return InputContract.from_processed(data, standardize=bool(data_cfg.get("standardize", True)),
                                        hf_tokenizer=hf)


def _config_hint(contract: InputContract) -> str:
    config = contract.prepare_config
    keys = ("features", "split", "split_seed", "text_fields")
    parts = [f"data.{k}={config[k]}" for k in keys if k in config]
    parts += [f"data.vocab.{k}={v}" for k, v in (config.get("vocab") or {}).items()]
    raw = contract.source.get("raw_dir")
    return " ".join(([f"data.raw_dir={raw}"] if raw else []) + parts)


def _check_device(device: str) -> None:
    """A device this machine has, or one line saying so (torch's own error blamed the checkpoint)."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise CheckpointError(f"device={device!r} is not a torch device (cpu, cuda, cuda:1, mps, …)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"device={device}: torch finds no CUDA GPU on this machine; use device=cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise CheckpointError(f"device={device}: torch finds no Apple GPU on this machine; use device=cpu")


def load_checkpoint(path: str | Path, processed_dir: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load a training or baseline checkpoint; :class:`CheckpointError` (one line) when unusable.

    ``processed_dir`` overrides the dir recorded in the checkpoint (e.g. after moving the cache); it is checked
    against the checkpoint's contract when first used.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _check_device(device)
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(payload, dict):
            raise TypeError(f"holds a {type(payload).__name__}, not a dict")
        if payload.get("format") == BASELINE_FORMAT:
            model, contract = load_baseline(payload)
        else:
            model, contract = _load_network(payload)
    except (KeyError, TypeError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        if isinstance(e, UserError):
            raise
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a usable mte checkpoint ({type(e).__name__}: {first_line})") from None
    model.to(device).eval()
    if contract is None:
        data = ProcessedData.load(processed_dir) if processed_dir else None
        return LoadedModel(model, data, path, contract=_legacy_contract(model, data))
    audio_dim = (getattr(model, "hparams", None) or {}).get("audio_dim")
    if audio_dim is not None and audio_dim != len(contract.feature_names):
        raise CheckpointError(f"{path}: the network reads {audio_dim} audio features but its contract names "
                              f"{len(contract.feature_names)}")
    return LoadedModel(model, None, path, contract=contract, processed_dir=processed_dir)


def _load_network(payload: dict[str, Any]) -> tuple[Any, InputContract | None]:
    """An :class:`~mte.models.module.EmbeddingModel` from a Lightning checkpoint dict, and its contract."""
    from mte.models.module import EmbeddingModel  # imports Lightning (~2 s): only networks need it, not baselines

    model = EmbeddingModel(**payload["hyper_parameters"])
    model.load_state_dict(payload["state_dict"])
    contract = InputContract.from_dict(payload[CHECKPOINT_KEY]) if CHECKPOINT_KEY in payload else None
    model.input_contract = contract
    return model, contract
