"""The results format: one ``metrics.json`` schema, one atomic writer, one printed summary.

Every result mte writes is a ``metrics.json`` of the form::

    {"kind": "run" | "evaluation" | "baseline",
     "metrics": {"test/t2a/R@10": 41.2, "test/t2a/R@10_lo": …, "val_best/t2a/R@10": …, …},   # flat names
     …kind-specific fields}

* ``run`` (``python -m mte.train``, written into the run dir): ``best_checkpoint``, ``last_checkpoint``,
  ``epochs``, ``processed_dir``, ``tags``, ``selection`` (how the tested checkpoint was chosen: ``best
  val/t2a/R@10``, or ``last`` when the test albums are also validation albums, e.g. ``data.split=paper``; with
  ``train=false``, the given ``ckpt_path``) and ``selected_epoch`` (the epoch whose validation metrics are
  ``val_best/*``).
* ``baseline`` (``python -m mte.train model=random|cca``): the run fields plus ``baseline`` (its name).
* ``evaluation`` (``python -m mte.evaluate``, written into ``<run>/eval/<split>-<protocol>[-<tag>]/``):
  ``checkpoint``, ``protocol``, ``split``, ``processed_dir``, ``raw_dir``, ``bootstrap``, ``seed``, …

A file without ``kind`` (written before the field existed) is a run, unless it has an evaluation's ``protocol`` and
``checkpoint`` fields. This module imports nothing heavy (``rich`` only when printing), so ``mte.report`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mte.cli import UserError
from mte.paths import atomic_write, output_dir_entries

KINDS = ("run", "evaluation", "baseline")
COLUMNS = ("R@1", "R@5", "R@10", "mAP@10", "MedR", "MeanR")
STAGE_ORDER = ("val_best", "val", "train", "test")


# --------------------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------------------


def write_text_atomic(path: Path | str, text: str) -> None:
    """UTF-8 text through :func:`mte.paths.atomic_write`: readers (and a killed run) never see half a file."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(path: Path | str, payload: Mapping[str, Any]) -> None:
    """:func:`write_text_atomic` of indented, key-sorted JSON."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_results(path: Path | str, kind: str, metrics: Mapping[str, float], **fields: Any) -> dict[str, Any]:
    """Write a ``metrics.json`` of ``kind`` (atomically, creating its dir) and return the payload written."""
    if kind not in KINDS:
        raise ValueError(f"unknown results kind {kind!r}; one of {', '.join(KINDS)}")
    payload = {**fields, "kind": kind, "metrics": dict(metrics)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, payload)
    return payload


# --------------------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------------------


def result_kind(payload: Mapping[str, Any]) -> str:
    """The payload's kind; files from before the field existed are runs, or evaluations by their fields."""
    kind = payload.get("kind")
    if kind in KINDS:
        return str(kind)
    if "protocol" in payload and "checkpoint" in payload:
        return "evaluation"
    return "baseline" if payload.get("baseline") else "run"


def read_results(path: Path | str) -> dict[str, Any] | None:
    """A ``metrics.json`` with its ``kind`` filled in, or None when it is not one of ours (unreadable, no
    ``metrics`` object) — a folder of runs may hold other tools' files of the same name."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), dict):
        return None
    return {**payload, "kind": result_kind(payload)}


class ResultsDirError(FileExistsError, UserError):
    """A results dir that holds files mte did not write there; nothing was touched. The message is one line."""


def check_results_dir(out_dir: Path | str, kind: str, option: str = "out_dir") -> None:
    """Raise :class:`ResultsDirError` unless writing ``metrics.json`` and ``metrics.md`` of ``kind`` into ``out_dir``
    replaces only what an earlier mte result of that kind wrote: ``out_dir`` is missing or a dir, and if it holds
    either file, its ``metrics.json`` is mte's, of this kind (``metrics.md`` is then that result's table)."""
    out = Path(out_dir)
    entries = output_dir_entries(out, option, ResultsDirError)
    present = [name for name in ("metrics.json", "metrics.md") if name in entries]
    if not present:
        return
    payload = read_results(out / "metrics.json")
    if payload is None or payload["kind"] != kind:
        raise ResultsDirError(f"refusing to overwrite {out / present[0]}: it is not an mte {kind}'s result; choose "
                              f"another {option}")


def run_dir_of_checkpoint(ckpt_path: Path | str) -> Path:
    """The run dir a checkpoint belongs to: ``<run>`` for ``<run>/checkpoints/x.ckpt``, else the file's dir."""
    ckpt = Path(ckpt_path).expanduser().absolute()
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


# --------------------------------------------------------------------------------------------------------------
# the printed summary
# --------------------------------------------------------------------------------------------------------------


def summary_rows(metrics: Mapping[str, float]) -> list[str]:
    """The ``{stage}/{direction}`` prefixes that have any table metric, val_best/val/train/test first."""
    prefixes: dict[str, None] = {}
    for name in metrics:
        head, _, metric = name.rpartition("/")
        if metric in COLUMNS and head.count("/") == 1:
            prefixes.setdefault(head)
    rank = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    return sorted(prefixes, key=lambda p: (rank.get(p.split("/")[0], len(rank)), p.split("/")[1] != "t2a"))


def print_summary(
    metrics: Mapping[str, float],
    title: str = "retrieval (album protocol; R@K and mAP in %)",
    footer: Sequence[str] = (),
) -> None:
    """The one printed results table (train, baselines and evaluate all print it): a row per stage/direction and
    the metrics as columns (narrow enough for an 80-column terminal), then the R@10 intervals and ``footer``."""
    from rich.console import Console
    from rich.table import Table

    rows = summary_rows(metrics)
    table = Table(title=title)
    table.add_column("split/direction")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for row in rows:
        values = [metrics.get(f"{row}/{c}") for c in COLUMNS]
        table.add_row(row, *("—" if v is None else f"{v:.2f}" for v in values))
    intervals = [f"{row}/R@10 [{metrics[f'{row}/R@10_lo']:.2f}, {metrics[f'{row}/R@10_hi']:.2f}]"
                 for row in rows if f"{row}/R@10_lo" in metrics and f"{row}/R@10_hi" in metrics]
    console = Console()
    console.print(table)
    if intervals:
        console.print("95% bootstrap intervals (albums resampled): " + " · ".join(intervals), soft_wrap=True)
    for line in footer:
        console.print(line, soft_wrap=True)
