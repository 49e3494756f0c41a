"""``python -m mte.serve ckpt_path=… [port=8765] [data.raw_dir=DIR]`` — a local web page to search the joint space.

A thin Hydra entry point: it loads the :class:`~mte.search.engine.SearchEngine` once, builds the FastAPI app of
:mod:`mte.web.app` and runs it with uvicorn until Ctrl-C. The page: a text box (text → albums), an upload field
(audio via Essentia, or an AcousticBrainz JSON → reviews and albums), a ranked result list and a 2-D map of the
album gallery coloured by genre. A bad checkpoint, processed dir, index dir or a busy port prints one ``error:``
line on stderr and exits with status 2, before anything slow happens where possible.

Examples::

    python -m mte.serve ckpt_path=outputs/runs/…/checkpoints/best.ckpt
    python -m mte.serve ckpt_path=… port=9000 max_upload_mb=100
    python -m mte.serve ckpt_path=… data.raw_dir=~/my-mard     # search your own MARD-format collection
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time

import hydra
from omegaconf import DictConfig, OmegaConf

from mte.cli import UserError, user_errors
from mte.paths import config_dir


class ServeError(UserError):
    """A setting that keeps the server from starting (port in use, missing web extra)."""


def _check_port(host: str, port: int) -> None:
    """Fail in a second, not after loading the model, when the address cannot be bound.

    The hint names what to change: a port in use (or reserved) → another ``port=``; a host that is not an address
    of this machine or does not resolve → another ``host=`` (another port would not help there).
    """
    if not 1 <= port <= 65535:
        raise ServeError(f"port={port} is out of range: choose a TCP port from 1 to 65535 (default 8765)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except socket.gaierror as e:  # the name does not resolve
            raise ServeError(f"cannot listen on host={host} ({e.strerror or e}): pass host=127.0.0.1 (this machine "
                             "only) or an address of one of its network interfaces") from None
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):  # busy, or a privileged port (< 1024)
                why = "in use" if e.errno == errno.EADDRINUSE else "needs privileges"
                raise ServeError(f"cannot listen on {host}:{port} (port {why}: {e.strerror}); "
                                 "pass port=OTHER") from None
            raise ServeError(f"cannot listen on host={host} ({e.strerror or e}): it is not an address of this machine; "
                             "pass host=127.0.0.1 or one of its network interfaces' addresses") from None


def _port(value: object) -> int:
    """``port=`` as an int; ``port=abc`` is a one-line error too."""
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ServeError(f"port={value!r} is not a number: choose a TCP port from 1 to 65535 (default 8765)") from None


def serve(cfg: DictConfig) -> None:
    """Load the engine, then serve until interrupted."""
    try:
        import uvicorn

        from mte.web.app import Settings, create_app
    except ImportError as e:
        raise ServeError(f"the web page needs the web extra ({e.name} is missing): pip install 'mte[web]'") from None
    from mte.search.engine import SearchEngine
    from mte.search.errors import SearchError
    from mte.search.export import find_index_dir

    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ServeError("ckpt_path is required: python -m mte.serve ckpt_path=<run>/checkpoints/best.ckpt")
    host, port = str(cfg.host), _port(cfg.port)
    _check_port(host, port)
    start = time.perf_counter()
    try:
        data = cfg.get("data") or {}
        raw_dir = data.get("raw_dir") or None
        index_dir = cfg.get("index_dir") or find_index_dir(cfg.ckpt_path, raw_dir)
        engine = SearchEngine.from_checkpoint(
            cfg.ckpt_path, index_dir, processed_dir=cfg.get("processed_dir"), raw_dir=raw_dir,
            cache_dir=data.get("cache_dir") or None, workers=int(data.get("workers") or 0),
            progress=lambda msg: print(f"[serve] {msg}", file=sys.stderr, flush=True),
        )
    except SearchError as e:
        raise ServeError(str(e)) from None
    settings = Settings(
        k=int(cfg.k), max_upload_mb=float(cfg.max_upload_mb), max_pending_jobs=int(cfg.max_pending_jobs),
        extract_timeout_s=float(cfg.extract_timeout_s),
    )
    app = create_app(engine, settings)
    counts = engine.gallery.counts()
    elapsed = time.perf_counter() - start
    print(f"[serve] {counts['albums']} albums, {counts['reviews']} reviews ready in {elapsed:.1f} s",
          file=sys.stderr, flush=True)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving http://{shown}:{port}/  (Ctrl-C to stop)", flush=True)
    # a short graceful shutdown: Ctrl-C should not wait for browsers' idle keep-alive connections
    uvicorn.run(app, host=host, port=port, log_level=str(cfg.log_level), access_log=cfg.log_level == "info",
                timeout_graceful_shutdown=3)
    # Nothing is left to save (uploads' temp files went with the app's shutdown), and finalising the interpreter
    # (garbage-collecting torch and polars objects) takes seconds: leave at once, so Ctrl-C feels immediate.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="serve")
def main(cfg: DictConfig) -> None:
    with user_errors():  # bad input → "error: …" on stderr, exit status 2
        serve(cfg)


if __name__ == "__main__":
    main()
