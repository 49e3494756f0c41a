"""Experiment loggers: W&B that works with no account and no network, and logger construction from config."""

from __future__ import annotations

import contextlib
import netrc
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

WANDB_HOST = "api.wandb.ai"


def wandb_mode() -> str:
    """``online`` when the user asked for it or is logged in, else ``offline`` (``WANDB_MODE`` always wins)."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit:
        return explicit
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators(WANDB_HOST):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def _hydra_run_names() -> tuple[str | None, str | None]:
    """(job name built from the overrides, group for a multirun sweep) when running under Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None, None
    name = hydra_cfg.job.override_dirname or "default"
    group = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        group = "sweep-" + Path(hydra_cfg.sweep.dir).as_posix().replace("/", "_").lstrip("._")
    return name, group


def wandb_logger(
    save_dir: str,
    project: str = "mte",
    entity: str | None = None,
    tags: Sequence[str] = (),
    group: str | None = None,
    name: str | None = None,
):
    """A Lightning ``WandbLogger`` whose files live under the run dir, online or offline (see :func:`wandb_mode`).

    The run name defaults to the Hydra overrides (``loss.margin=0.1,model.embed_dim=64``) and, in a multirun, all
    jobs share one group so W&B shows the sweep together.
    """
    from pytorch_lightning.loggers import WandbLogger

    mode = wandb_mode()
    auto_name, auto_group = _hydra_run_names()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    if mode == "offline":
        print(f"W&B: offline run under {save_dir}/wandb — upload later with: wandb sync {save_dir}/wandb/offline-run-*")
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        entity=entity,
        name=name or auto_name,
        group=group or auto_group,
        tags=list(tags),
        offline=mode == "offline",
        mode=mode,
    )


WANDB_TARGET = "mte.train.loggers.wandb_logger"
_warm_up: threading.Thread | None = None


def warm_up_wandb(cfg: Mapping[str, Any] | None) -> None:
    """When the run logs to W&B: import the SDK now, and start its service process in a background thread.

    Call it before torch is imported. Why (measured on the 2-core dev machine): ``wandb.init`` imports
    ``wandb.sdk.launch``, whose pydantic models look up their own source (``inspect.getmodule``), walking every
    loaded module: 0.15 s in a fresh interpreter, 0.8 s once torch and Lightning are loaded; the SDK's own import
    does the same. Imports are Python, which a thread cannot overlap with the torch and Lightning imports (one
    interpreter lock), so they run here, first: over six alternating pairs of runs this start took 0.45 s less
    than importing the SDK in a thread during Lightning's import. The service process's start is mostly waiting,
    so it overlaps. :func:`build_loggers` waits for the thread; ``wandb.init`` itself runs on the main thread. A
    failure here is left to ``wandb.init`` to report.
    """
    global _warm_up
    if _warm_up is not None or not any((spec or {}).get("_target_") == WANDB_TARGET for spec in (cfg or {}).values()):
        return
    try:
        import wandb
    except Exception:  # the logger's own start reports a real problem, with its context
        return
    with contextlib.suppress(ImportError):  # where this SDK version has it
        import wandb.sdk.launch.inputs.internal  # what wandb.init imports

    def start() -> None:
        with contextlib.suppress(Exception):
            wandb.setup()

    _warm_up = threading.Thread(target=start, name="mte-wandb-warm-up", daemon=True)
    _warm_up.start()


def build_loggers(cfg: Mapping[str, Any] | None) -> list[Any]:
    """Instantiate every logger in the ``logger`` config group (a mapping name → ``_target_`` config)."""
    from hydra.utils import instantiate

    if _warm_up is not None:
        _warm_up.join()
    return [instantiate(spec) for spec in (cfg or {}).values() if spec is not None]


def keep_csv_history(loggers: Sequence[Any]) -> list[Path]:
    """Before a resumed run logs: move each CSV logger's earlier ``metrics.csv`` to ``metrics-<n>.csv`` beside it.

    Lightning's CSV logger deletes a ``metrics.csv`` it finds in its dir, so resuming in the run dir erased the
    epochs before the resume. Returns the files kept (the new ``metrics.csv`` holds the resumed epochs).
    """
    kept = []
    for logger in loggers:
        if type(logger).__name__ != "CSVLogger":
            continue
        current = Path(logger.log_dir) / "metrics.csv"
        if not current.is_file():
            continue
        n = 1
        while (current.parent / f"metrics-{n}.csv").exists():
            n += 1
        current.rename(current.parent / f"metrics-{n}.csv")
        kept.append(current.parent / f"metrics-{n}.csv")
    return kept


def finish_loggers(loggers: Sequence[Any]) -> None:
    """Close W&B runs so offline files (summary, config) are complete — needed between multirun jobs."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            import wandb

            if wandb.run is not None:
                wandb.finish()
