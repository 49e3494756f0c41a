"""A model's input contract: everything that turns raw MARD text and descriptors into the model's input.

Why it exists: a model is only meaningful with the exact inputs it was trained on — the word ids of *its*
vocabulary, the review text fields it read, the descriptor features in *its* order scaled by *its* train-split
statistics. Those used to be looked up in the processed dir a checkpoint recorded, so re-preparing that dir (another
``data.split_seed`` or ``vocab.min_freq``) silently changed the data a checkpoint was evaluated on, and deleting it
made the checkpoint useless. :class:`InputContract` carries them *with the model* (saved in the checkpoint, the way
open_clip ships its preprocessing config and tokenizer), as plain JSON-able data:

* the vocabulary's two files verbatim (``vocab/tokenizer.json`` + ``vocab/vocab_config.json``: the WordLevel
  tokenizer, stop words, lower-casing, ``max_length``) and ``features.json`` verbatim (feature set, names, train
  mean/std) — verbatim so that a processed dir can be rebuilt byte for byte (:meth:`InputContract.reference_dir`);
* the prepare config (text fields, vocabulary settings, feature set, split method and seed), whether descriptors
  are standardised, and for transformer text the Hugging Face tokenizer's name or path;
* where it came from: the processed dir, its cache key and input fingerprint, and a hash of each split's album ids,
  so a checkpoint can tell its own data from a re-prepared dir (:meth:`InputContract.check`).

Training (the data module), evaluation, search and serve all read input through it: texts → token ids
(:meth:`~InputContract.encode`), review rows → strings (:meth:`~InputContract.review_texts`) or padded token batches
(:class:`TokenMatrix`), raw descriptor vectors → model input (:meth:`~InputContract.model_features`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mte.cli import UserError
from mte.data.cache import FORMAT_MARK, FORMAT_VERSION, listed_files, write_feature_matrix
from mte.data.descriptors import standardize
from mte.data.names import SPLITS, TEXT_FIELDS
from mte.data.text import Vocabulary
from mte.paths import cache_root

if TYPE_CHECKING:
    import polars as pl

    from mte.data.processed import ProcessedData

CONTRACT_FORMAT = "mte-input-contract/1"
CHECKPOINT_KEY = "mte_input_contract"
"""Where :class:`mte.models.module.EmbeddingModel` keeps the contract in a Lightning checkpoint (not in the
hyper-parameters: loggers record those, and the vocabulary is ~1 MB)."""
FEATURES_FILE = "features.json"
VOCAB_FILES = ("vocab/tokenizer.json", "vocab/vocab_config.json")
TEXT_JOIN = ". "
"""How a transformer's review string joins the text fields (the word vocabulary splits on any non-word character,
so the separator does not change token ids)."""
_SPLIT_KEYS = ("split", "split_seed", "split_fractions")


class ContractError(ValueError, UserError):
    """A contract that cannot be read, or data that does not match it; the message is one line."""


def review_texts(reviews: pl.DataFrame, text_fields: Sequence[str]) -> list[str]:
    """The text a transformer reads for each review: the configured fields joined (summary first, by default)."""
    parts = [reviews.get_column(TEXT_FIELDS.get(f, f)).fill_null("").to_list() for f in text_fields]
    return [TEXT_JOIN.join(p for p in row if p) for row in zip(*parts, strict=True)]


# --------------------------------------------------------------------------------------------------------------
# token ids: one CSR layout, one padding rule
# --------------------------------------------------------------------------------------------------------------


@dataclass
class TokenMatrix:
    """Token id lists in CSR form; :meth:`batch` pads any rows into the ``{"tokens", "lengths"}`` batch the
    bag-of-words / LSTM branches read (0-padded to the longest row, width >= 1).

    One home for padding: training batches, training-time evaluation, ``mte.evaluate``, search and baselines all pad
    through it, which is what keeps their floats identical.
    """

    values: np.ndarray  # all ids back to back, in any integer dtype (batches are int64)
    offsets: np.ndarray  # int64 [n + 1]

    @classmethod
    def from_series(cls, tokens: pl.Series) -> TokenMatrix:
        """From a ``tokens`` column (List(UInt32); null = no tokens). The ids keep the column's 32-bit type: a
        full-size MARD holds 26M of them, and widening them all (0.12 s of every run's start) buys nothing when
        :meth:`batch` widens the few it gathers."""
        lengths = tokens.list.len().fill_null(0).to_numpy().astype(np.int64)
        values = tokens.explode().drop_nulls().to_numpy()
        return cls(values, _offsets(lengths))

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int]]) -> TokenMatrix:
        lengths = np.asarray([len(x) for x in ids], dtype=np.int64)
        values = np.fromiter((int(i) for seq in ids for i in seq), dtype=np.int64, count=int(lengths.sum()))
        return cls(values, _offsets(lengths))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The padded batch of ``rows`` (in that order).

        The rows' ids are gathered end to end with one fancy-index and written into the zero-padded matrix through
        its non-padding mask, instead of gathering a full ``[B, width]`` index and masking it afterwards: a batch's
        ids are a third of its padded width (on the dev machine, full-size MARD: 140 against 241 µs for a training
        batch of 128 rows, 767 against 2,047 µs for an evaluation batch of 1,024).
        """
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        width = max(int(lengths.max(initial=0)), 1)
        mask = np.arange(width) < lengths[:, None]
        tokens = np.zeros((len(rows), width), dtype=np.int64)
        # position of each gathered id in ``values``: its row's start plus its rank among all the rows' ids, minus
        # the ids of the rows before it
        before = np.cumsum(lengths) - lengths
        positions = np.arange(int(lengths.sum())) + np.repeat(starts - before, lengths)
        tokens[mask] = self.values[positions]
        return {"tokens": torch.from_numpy(tokens), "lengths": torch.from_numpy(lengths)}

    def consecutive_batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Rows ``0..n`` in consecutive batches: the order and batching of training-time evaluation."""
        for lo in range(0, len(self), batch_size):
            yield self.batch(np.arange(lo, min(lo + batch_size, len(self))))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


# --------------------------------------------------------------------------------------------------------------
# the contract
# --------------------------------------------------------------------------------------------------------------


@dataclass
class InputContract:
    """What turns raw MARD reviews and descriptors into a model's input (see the module docstring).

    ``files`` maps processed-dir paths (``features.json``, ``vocab/…``) to their exact text; ``prepare_config`` is
    the prepare config the data was built with (``workers`` left out); ``source`` identifies that data.
    """

    files: dict[str, str]
    prepare_config: dict[str, Any]
    standardize: bool = True
    hf_tokenizer: str | None = None
    source: dict[str, Any] = field(default_factory=dict)

    # -- building and (de)serialising ---------------------------------------------------------------------------
    @classmethod
    def from_processed(
        cls, data: ProcessedData, standardize: bool = True, hf_tokenizer: str | None = None
    ) -> InputContract:
        """The contract of a model trained on ``data`` (read from its files, so it matches them byte for byte)."""
        root = Path(data.root)
        files = {}
        for name in (FEATURES_FILE, *VOCAB_FILES):
            try:
                files[name] = (root / name).read_text(encoding="utf-8")
            except OSError as e:
                raise ContractError(f"{root}: cannot read {name} ({e.strerror or e})") from None
        config = {k: v for k, v in (data.manifest.get("config") or {}).items() if k != "workers"}
        source = {
            "processed_dir": str(root.resolve()),
            "raw_dir": data.manifest.get("raw_dir"),
            "cache_key": data.manifest.get("cache_key"),
            "fingerprint": data.manifest.get("fingerprint"),
            "splits": {name: split_identity(data.splits.get(name, [])) for name in SPLITS},
            # the albums it was fitted (train) and selected (val) on: an evaluation on another dir leaves them out
            "seen_albums": sorted({*data.splits.get("train", []), *data.splits.get("val", [])}),
        }
        return cls(files, config, bool(standardize), hf_tokenizer, source)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what a checkpoint stores)."""
        return {
            "format": CONTRACT_FORMAT,
            "files": dict(self.files),
            "prepare_config": self.prepare_config,
            "standardize": self.standardize,
            "hf_tokenizer": self.hf_tokenizer,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> InputContract:
        if not isinstance(payload, Mapping) or payload.get("format") != CONTRACT_FORMAT:
            got = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
            raise ContractError(f"not an mte input contract of format {CONTRACT_FORMAT} (got {got!r})")
        files = dict(payload.get("files") or {})
        missing = [n for n in (FEATURES_FILE, *VOCAB_FILES) if not isinstance(files.get(n), str)]
        if missing:
            raise ContractError(f"the input contract lacks {', '.join(missing)}")
        return cls(files, dict(payload.get("prepare_config") or {}), bool(payload.get("standardize", True)),
                   payload.get("hf_tokenizer"), dict(payload.get("source") or {}))

    # -- what it says ------------------------------------------------------------------------------------------
    @cached_property
    def features(self) -> dict[str, Any]:
        """``features.json``: feature_set, names, mean, std (train split)."""
        return json.loads(self.files[FEATURES_FILE])

    @property
    def feature_set(self) -> str:
        return str(self.features.get("feature_set") or self.prepare_config.get("features", ""))

    @property
    def feature_names(self) -> list[str]:
        return list(self.features["names"])

    @cached_property
    def feature_mean(self) -> np.ndarray:
        return np.asarray(self.features["mean"], dtype=np.float64)

    @cached_property
    def feature_std(self) -> np.ndarray:
        return np.asarray(self.features["std"], dtype=np.float64)

    @property
    def text_fields(self) -> list[str]:
        return list(self.prepare_config.get("text_fields") or ["summary", "reviewText"])

    @cached_property
    def vocabulary(self) -> Vocabulary:
        """The word vocabulary (bow/LSTM) exactly as training encoded reviews with it."""
        return Vocabulary.from_json(self.files[VOCAB_FILES[0]], self.files[VOCAB_FILES[1]])

    @property
    def processed_dir(self) -> str | None:
        return self.source.get("processed_dir")

    @cached_property
    def digest(self) -> str:
        """Hash of everything that defines model input and the data's identity (names the reference cache dir)."""
        blob = json.dumps({k: v for k, v in self.to_dict().items() if k != "source"} | {
            "splits": self.source.get("splits")}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- model input -------------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Word ids of free texts (queries), exactly as prepare encoded the reviews."""
        return self.vocabulary.encode_batch(list(texts))

    def review_texts(self, reviews: pl.DataFrame) -> list[str]:
        """The strings a transformer reads for these review rows (the configured text fields joined)."""
        return review_texts(reviews, self.text_fields)

    def review_tokens(self, reviews: pl.DataFrame) -> TokenMatrix:
        """The stored word ids of these review rows (a processed dir encoded with this contract's vocabulary)."""
        return TokenMatrix.from_series(reviews.get_column("tokens"))

    def model_features(self, raw: np.ndarray) -> np.ndarray:
        """RAW descriptor vectors (n, D) → the float32 model input: standardised with the train-split statistics,
        unless the model was trained on raw values (``data.standardize: false``, the published setup)."""
        raw = np.atleast_2d(np.asarray(raw))
        if raw.shape[1] != len(self.feature_names):
            raise ValueError(f"descriptor vector has {raw.shape[1]} values; this model expects "
                             f"{len(self.feature_names)} ({self.feature_set})")
        if not self.standardize:
            return raw.astype(np.float32)
        return standardize(raw, self.feature_mean, self.feature_std, threads=torch.get_num_threads())

    # -- identity ----------------------------------------------------------------------------------------------
    def differences(self, data: ProcessedData, same_splits: bool = True) -> list[str]:
        """What in ``data`` differs from this contract (empty: the same input encoding, and with ``same_splits``
        the same albums in every split) — each a short phrase for a one-line error."""
        other = InputContract.from_processed(data)
        out = []
        if self.files[FEATURES_FILE] != other.files[FEATURES_FILE]:
            if self.feature_names != other.feature_names:
                out.append(f"{len(self.feature_names)} audio features ({self.feature_set}) → "
                           f"{len(other.feature_names)} ({other.feature_set})")
            else:
                out.append("train feature statistics")
        if any(self.files[n] != other.files[n] for n in VOCAB_FILES):
            mine, theirs = self.vocabulary, other.vocabulary
            changed = _changed(self.prepare_config.get("vocab") or {}, other.prepare_config.get("vocab") or {},
                               "data.vocab.")
            out.append(f"vocabulary ({mine.size} → {theirs.size} words{', ' + changed if changed else ''})")
        if self.text_fields != other.text_fields:
            out.append(f"text fields ({self.text_fields} → {other.text_fields})")
        if same_splits:
            mine, theirs = self.source.get("splits") or {}, other.source["splits"]
            moved = [n for n in SPLITS if mine.get(n) is not None and mine[n] != theirs[n]]
            if moved:
                config = {k: self.prepare_config.get(k) for k in _SPLIT_KEYS}
                changed = _changed(config, {k: other.prepare_config.get(k) for k in _SPLIT_KEYS}, "data.")
                before, after = ("/".join(str(s[n]["albums"]) for n in moved) for s in (mine, theirs))
                out.append(f"{'/'.join(moved)} split albums ({before} → {after}{', ' + changed if changed else ''})")
        return out

    def check(self, data: ProcessedData, same_splits: bool = True) -> None:
        """:class:`ContractError` (one line naming the dir and what differs) unless ``data`` matches."""
        diffs = self.differences(data, same_splits)
        if diffs:
            raise ContractError(
                f"{data.root} is not the data this model was trained on: {'; '.join(diffs)} differ (re-prepared "
                f"with another config?); restore it with the training config, or evaluate on a MARD dir with "
                f"data.raw_dir=PATH"
            )

    # -- a processed dir made of the contract alone -------------------------------------------------------------
    def reference_dir(self, cache_dir: str | Path | None = None) -> Path:
        """A dir that :func:`mte.data.prepare.prepare` accepts as ``reference=``: this contract's files, byte for
        byte, and a manifest with its prepare config. Written once per contract under
        ``<cache>/contracts/<digest>`` (atomically), so another raw dir is prepared for the model without the
        processed dir it was trained on."""
        root = Path(cache_dir).expanduser() if cache_dir else cache_root()
        target = (root / "contracts" / self.digest).absolute()
        if (target / "manifest.json").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self._write_reference(tmp)
            try:
                os.replace(tmp, target)
            except OSError:  # another process published the same contract first
                if not (target / "manifest.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _write_reference(self, out: Path) -> None:
        import polars as pl

        for name, text in self.files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        # A processed dir's other files must exist for it to count as complete; they hold no rows: the model's
        # data is not part of its contract, only how data becomes input.
        for table in ("albums", "reviews", "tracks"):
            pl.DataFrame().write_parquet(out / f"{table}.parquet")
        write_feature_matrix(out, np.zeros((0, len(self.feature_names)), np.float32))
        (out / "splits.json").write_text(json.dumps({name: [] for name in SPLITS}) + "\n", encoding="utf-8")
        manifest = {
            "format": FORMAT_MARK,
            "format_version": FORMAT_VERSION,
            "files": [*listed_files(out), "manifest.json"],
            "kind": "input-contract",
            "config": self.prepare_config,
            "cache_key": self.source.get("cache_key"),
            "fingerprint": self.source.get("fingerprint"),
            "source": self.source,
            "counts": {},
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def split_identity(album_ids: Sequence[str]) -> dict[str, Any]:
    """A split's identity: its album count and a hash of its sorted album ids."""
    blob = "\n".join(sorted(album_ids)).encode()
    return {"albums": len(album_ids), "sha256": hashlib.sha256(blob).hexdigest()[:16]}


def _changed(mine: Mapping[str, Any], theirs: Mapping[str, Any], prefix: str) -> str:
    """``<prefix>key a → b`` for the settings that differ (what the user would have to change back)."""
    keys = sorted(set(mine) | set(theirs))
    return ", ".join(f"{prefix}{k} {mine.get(k)} → {theirs.get(k)}" for k in keys if mine.get(k) != theirs.get(k))
