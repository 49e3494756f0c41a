"""Where mte keeps things on disk: its caches and its Hydra configs.

One function per location so that every entry point (prepare, train, search, …) agrees on the layout:

* the cache root (:func:`cache_root`): one environment variable, ``MTE_CACHE_DIR``, moves all of it. It has one
  home, here: the configs reach it through the ``${mte.cache:}`` resolver (``data.cache_dir`` in
  conf/data/mard.yaml), registered when this module is imported, so the YAML and the code cannot disagree;
* the configs (:func:`config_dir`): every Hydra entry point reads them from there, in a source checkout, an
  editable install and an installed wheel alike;
* how a file is written (:func:`atomic_write`): results, caches, baseline checkpoints and prepare's manifest all go
  through a temp file and a rename, so no reader (and no killed run) ever sees half a file.

Nothing heavy is imported here (omegaconf only, which every entry point loads anyway): the prepare cache-hit path
goes through this module and must stay well under a second.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from omegaconf import OmegaConf

CACHE_ENV = "MTE_CACHE_DIR"
CACHE_RESOLVER = "mte.cache"
CONFIG_SUBDIR_RESOLVER = "mte.config_subdir"


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


def config_dir() -> Path:
    """The Hydra config dir every entry point composes from (``@hydra.main(config_path=str(config_dir()))``).

    ``conf/`` lives once, at the repository's top level; the build maps it into the package (setup.py:
    ``package_dir={"mte.conf": "conf"}``), so an installed wheel has it as ``mte/conf``, while a source checkout or
    an editable install (whose ``mte`` is the checkout's) finds it beside the package.
    """
    shipped = package_root() / "conf"
    return shipped if shipped.is_dir() else package_root().parent / "conf"


def run_config_subdir(ckpt_path: object = None) -> str:
    """Where Hydra records a training run's config (``hydra.output_subdir``): ``.hydra`` for a run, and
    ``.hydra/resume-<date>_<time>`` for a resume (``ckpt_path=…``) in the run's dir. Hydra writes it before any mte
    code runs, so a resume that is then refused (another model, no epochs left) used to overwrite the config the
    run had trained with — and ``mte.report`` described the run by the refused overrides."""
    if ckpt_path in (None, ""):
        return ".hydra"
    return f".hydra/resume-{time.strftime('%Y-%m-%d_%H-%M-%S')}"


if not OmegaConf.has_resolver(CONFIG_SUBDIR_RESOLVER):
    # conf/hydra/default.yaml: ``output_subdir: ${mte.config_subdir:${ckpt_path}}``; cached, so one process
    # records one resume in one place however often Hydra resolves the key
    OmegaConf.register_new_resolver(CONFIG_SUBDIR_RESOLVER, run_config_subdir, use_cache=True)

if not OmegaConf.has_resolver(CACHE_RESOLVER):
    # conf/data/mard.yaml: ``cache_dir: ${mte.cache:}``. Resolved when read (not when composed), so MTE_CACHE_DIR
    # set after start-up, e.g. by a test's conftest, still counts. Every entry point imports this module for
    # config_dir(), so the resolver is there before Hydra resolves anything.
    OmegaConf.register_new_resolver(CACHE_RESOLVER, lambda: str(cache_root()))


def atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` by calling ``write`` on a binary temp file in the same dir, then renaming it into place.

    The rename is atomic on one filesystem, so readers see the old file or the whole new one; a failed or killed
    write leaves no half-written file (the temp file is removed on any error). The file gets the mode any new file
    gets (0666 less the umask): ``tempfile.mkstemp`` would make it 0600, unreadable to the other users of a shared
    cache or outputs dir.
    """
    path = Path(path)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def output_dir_entries(out: Path, option: str, error: Callable[[str], Exception]) -> list[str]:
    """The names in an output dir a tool is about to write (dirs end in '/'; none when it does not exist yet), for
    its check that it replaces only its own files. A path there that is not a dir (a file, a symlink) is
    ``error``: a one-line refusal naming ``option``."""
    if not out.exists() and not out.is_symlink():
        return []
    if out.is_symlink() or not out.is_dir():
        raise error(f"{option}={out} exists and is not a directory; choose another {option}")
    return sorted(entry.name + ("/" if entry.is_dir() else "") for entry in out.iterdir())


def _new_temp_file(path: Path) -> tuple[int, str]:
    """A new, empty temp file beside ``path`` (a hidden, random name), opened for writing: its fd and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        with contextlib.suppress(FileExistsError):
            return os.open(tmp, flags, 0o666), tmp
