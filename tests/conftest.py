"""Shared fixtures: real MARD-format dirs on disk (synthetic generator), prepared once per session.

The environment is pinned before any test imports mte: W&B offline, no hub access, caches and outputs under a
per-session temp dir so tests never touch ~/.cache/mte or ./outputs.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="mte-tests-"))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["MTE_CACHE_DIR"] = str(_SESSION_TMP / "cache")
os.environ["MTE_OUTPUT_DIR"] = str(_SESSION_TMP / "outputs")
warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).resolve().parent / "data"


def in_ci() -> bool:
    """True on a CI runner (``CI=true``, set by GitHub Actions, GitLab and most others)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(condition: bool, message: str) -> None:
    """A test needs something from outside the repo (Chromium + chromedriver, ``../shared`` data).

    Locally a missing piece skips the test with ``message``; in CI it fails the test with it, so a runner that lost
    its browser or shared data dir shows red instead of a green run made of skips.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"{message} — required in CI (CI={os.environ.get('CI')})", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def require_resource():
    """:func:`require` as a fixture: ``require_resource(path.is_file(), "what is missing and how to get it")``."""
    return require


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


@pytest.fixture(scope="session")
def synthetic_raw(session_tmp: Path) -> Path:
    """A small synthetic MARD raw dir (quirks on), shared by the session; treat it as read-only."""
    from mte.data.synth import generate

    out = session_tmp / "raw-small"
    generate(out, albums=160, seed=0, tracks_per_album=1, quirks=True)
    return out


@pytest.fixture(scope="session")
def processed_dir(synthetic_raw: Path, session_tmp: Path) -> Path:
    """``synthetic_raw`` prepared with seed369 features and an album split (160 albums: every split holds albums of
    several genres), the vocabulary's defaults otherwise."""
    from mte.data.prepare import PrepareConfig, prepare

    return prepare(synthetic_raw, PrepareConfig(split="album"), processed_dir=session_tmp / "processed-small")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised DistilBERT saved like a hub model (seed 0); treat it as read-only."""
    from helpers import save_tiny_distilbert

    return save_tiny_distilbert(tmp_path_factory.mktemp("tiny-distilbert"), seed=0)


@pytest.fixture(scope="session")
def other_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny DistilBERT (seed 1): other weights, the same tokenizer."""
    from helpers import save_tiny_distilbert

    return save_tiny_distilbert(tmp_path_factory.mktemp("tiny-distilbert-2"), seed=1)
