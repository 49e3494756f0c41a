"""Where mte keeps things on disk.

One function per location so that every entry point (prepare, train, search, …) agrees on the cache layout and a
user can move all of it with a single environment variable (``MTE_CACHE_DIR``). Nothing heavy is imported here:
the prepare cache-hit path goes through this module and must stay well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MTE_CACHE_DIR"


def cache_root() -> Path:
    """The root of mte's caches: ``$MTE_CACHE_DIR`` when set (tests point it at a tmp dir), else ``~/.cache/mte``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mte"


def processed_root(cache_dir: Path | None = None) -> Path:
    """Where prepare puts processed dirs keyed by input fingerprint + config (``<cache>/processed``)."""
    return (cache_dir if cache_dir is not None else cache_root()) / "processed"


def package_root() -> Path:
    """The installed ``mte`` package directory (resources live under it)."""
    return Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    """A file shipped in ``mte/resources`` (stop words, descriptor template, …)."""
    return package_root() / "resources" / name
