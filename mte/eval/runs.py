"""Reading finished runs for ``mte.report``: their ``metrics.json`` (:mod:`mte.eval.results`), Hydra's records, the
evaluations made of them, and what distinguishes them (names, swept parameters, the best run).

A dir holding a ``metrics.json`` of kind ``run`` or ``baseline`` is a run; one of kind ``evaluation``
(``python -m mte.evaluate``, written into ``<run>/eval/<split>-<protocol>[-<tag>]/``) is attached to the run whose
checkpoint it evaluated — it is a result *about* that run, not another run. Only the standard library and PyYAML
are imported, so ``python -m mte.report`` starts in a second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mte.data.cache import load_manifest
from mte.eval.results import read_results, run_dir_of_checkpoint

PAPER_TABLE1: dict[str, tuple[str, tuple[float, float, float]]] = {
    "nonlinear": ("non-linear", (5.68, 10.97, 15.36)),
    "linear_bidirectional": ("linear + bidirectional", (8.46, 15.37, 22.30)),
    "distilbert": ("DistilBERT", (1.99, 4.22, 6.4)),
    "nonlinear_bidirectional": ("non-linear + bidirectional", (10.0, 16.74, 22.22)),
    "lstm": ("+ LSTM", (9.6, 17.34, 22.39)),
    "neighborhood": ("+ neighbourhood sampling", (19.95, 31.3, 39.2)),
    "cca": ("CCA", (2.54, 6.90, 9.74)),
}
"""Table 1 of the paper (review → audio, R@1/R@5/R@10 in %), keyed by the ``paper/<row>`` experiment names."""

PAPER_VARIANTS = {"paper/": "as described", "paper_code/": "as run"}
"""Experiment prefixes of Table 1 rows: ``paper/<row>`` trains what the paper describes, ``paper_code/<row>`` what
the published code ran (conf/experiment/paper_code/); both are matched to the paper's row ``<row>``."""

SEED_PROTOCOL = "seed"
"""The published protocol (one audio row per review row, a hit on album-title match): the one Table 1 used."""

DEFAULT_SELECTION = "val_best/t2a/R@10"
NAME_EXCLUDED = ("hydra.", "ckpt_path", "data.raw_dir", "data.processed_dir", "data.cache_dir", "logger", "tags")

# --------------------------------------------------------------------------------------------------------------
# reading runs
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One finished run: its metrics and what Hydra recorded about how it was launched."""

    path: Path
    metrics: dict[str, float]
    payload: dict[str, Any]
    overrides: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    name: str = ""
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``run`` or ``baseline`` (see :mod:`mte.eval.results`)."""
        return str(self.payload.get("kind") or "run")

    @property
    def tags(self) -> list[str]:
        return [str(t) for t in (self.payload.get("tags") or self.config.get("tags") or [])]

    @property
    def experiment(self) -> str | None:
        """The experiment config the run used (``experiment=…`` override, Hydra's recorded choice, or a tag)."""
        for candidate in (self.overrides.get("experiment"), self.choices.get("experiment")):
            if candidate and candidate != "null":
                return candidate
        return next((t for t in self.tags if t.startswith(tuple(PAPER_VARIANTS))), None)

    def _paper_match(self) -> tuple[str, str] | None:
        """(row, variant) of the Table 1 row this run reproduces, from its experiment or a tag."""
        for candidate in (self.experiment, *self.tags):
            for prefix, variant in PAPER_VARIANTS.items():
                if candidate and candidate.startswith(prefix) and candidate[len(prefix) :] in PAPER_TABLE1:
                    return candidate[len(prefix) :], variant
        return None

    @property
    def paper_row(self) -> str | None:
        """The Table 1 row this run reproduces (``paper/<row>`` or ``paper_code/<row>`` experiment or tag), if any."""
        match = self._paper_match()
        return match[0] if match else None

    @property
    def paper_variant(self) -> str | None:
        """``as described`` (``paper/<row>``) or ``as run`` (``paper_code/<row>``, the published code's quirks)."""
        match = self._paper_match()
        return match[1] if match else None

    @property
    def split(self) -> str | None:
        """``data.split`` as the run composed it (``.hydra/config.yaml``), else as overridden."""
        data = self.config.get("data")
        value = data.get("split") if isinstance(data, dict) else None
        return str(value) if value is not None else self.overrides.get("data.split")

    @property
    def leak(self) -> Leak | None:
        """How the run's split leaks held-out reviews into training, or ``None`` when it does not.

        Read from the processed dir the run trained on (``processed_dir`` in its ``metrics.json``): prepare writes
        ``leaky: true`` and the ``leak`` counts into that dir's ``manifest.json`` for ``data.split=published``. When
        that dir is gone (copied runs, a cleaned cache) the split's name decides, size unknown.
        """
        processed = self.payload.get("processed_dir")
        manifest = load_manifest(Path(str(processed))) if processed else None
        if isinstance(manifest, dict) and manifest.get("leaky"):
            return Leak.from_manifest(manifest)
        if self.split == "published" and not isinstance(manifest, dict):
            return Leak(detail="data.split=published; its manifest is gone, so the size is unknown")
        return None

    def seed_evaluation(self, split: str = "test") -> Evaluation | None:
        """The ``python -m mte.evaluate … protocol=seed`` result of this run's own ``split``, if one was made."""
        for evaluation in self.evaluations:
            if evaluation.protocol == SEED_PROTOCOL and evaluation.split == split and not evaluation.payload.get(
                "raw_dir"
            ):
                return evaluation
        return None

    def seed_command(self, split: str = "test") -> str:
        """The command that writes :meth:`seed_evaluation` (into ``<run>/eval/<split>-seed/``)."""
        checkpoint = self.checkpoint() or self.path / "checkpoints" / "best.ckpt"
        extra = f" split={split}" if split != "test" else ""
        return f"python -m mte.evaluate ckpt_path={checkpoint} protocol={SEED_PROTOCOL}{extra}"

    @property
    def selection_metric(self) -> str:
        return str(self.config.get("optimized_metric") or DEFAULT_SELECTION)

    def checkpoint(self) -> Path | None:
        """The best (else last) checkpoint, when it still exists; baselines have none."""
        for key in ("best_checkpoint", "last_checkpoint"):
            value = self.payload.get(key)
            if value:
                path = Path(value)
                for candidate in (path, self.path / "checkpoints" / path.name):
                    if candidate.is_file():
                        return candidate
        return None


@dataclass(frozen=True)
class Leak:
    """A leaky split (``data.split=published``): held-out albums that also have training rows."""

    detail: str
    """e.g. ``71 of 118 test albums (60%) also in train; 72 of 116 val albums (62%)``."""

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Leak:
        leak = manifest.get("leak") if isinstance(manifest.get("leak"), dict) else {}
        counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
        parts = []
        for split in ("test", "val"):
            shared, total = leak.get(f"albums_train_{split}"), counts.get(f"{split}_albums")
            if isinstance(shared, int | float) and isinstance(total, int | float) and total:
                share = f"{100 * shared / total:.0f}%"
                parts.append(f"{int(shared)} of {int(total)} {split} albums ({share}) also in train")
        return cls("; ".join(parts) or "manifest says leaky (no counts)")


def _natural_key(path: Path) -> list[Any]:
    """Sort job dirs 0, 1, 2, …, 10 (not 0, 1, 10, 2)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts]


@dataclass
class Evaluation:
    """One ``python -m mte.evaluate`` result (``kind: "evaluation"``); shown under the run it evaluated."""

    path: Path
    metrics: dict[str, float]
    payload: dict[str, Any]

    @property
    def split(self) -> str:
        return str(self.payload.get("split") or "test")

    @property
    def protocol(self) -> str:
        return str(self.payload.get("protocol") or "album")

    @property
    def name(self) -> str:
        """``album protocol, test`` (+ ``, data <dir name>`` for another MARD dir)."""
        raw_dir = self.payload.get("raw_dir")
        return f"{self.protocol} protocol, {self.split}" + (f", data {Path(raw_dir).name}" if raw_dir else "")

    def run_dirs(self) -> list[Path]:
        """Where its run may be: the checkpoint's run dir, and the dir above ``eval/`` (the default out dir)."""
        out = [run_dir_of_checkpoint(self.payload["checkpoint"])] if self.payload.get("checkpoint") else []
        if self.path.parent.name == "eval":
            out.append(self.path.parent.parent)
        return out


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def load_results(root: Path) -> tuple[list[Run], list[Evaluation]]:
    """Every run below ``root`` (``root`` itself included), named, with its evaluations attached; and the
    evaluations whose run is not below ``root`` (e.g. ``root`` is an eval dir, or ``out_dir`` put it elsewhere)."""
    root = Path(root)
    runs: list[Run] = []
    evaluations: list[Evaluation] = []
    for metrics_file in sorted(root.rglob("metrics.json"), key=lambda p: _natural_key(p.parent)):
        payload = read_results(metrics_file)
        if payload is None:
            continue
        if payload["kind"] == "evaluation":
            evaluations.append(Evaluation(metrics_file.parent, _numbers(payload["metrics"]), payload))
        else:
            runs.append(load_run(metrics_file.parent, payload))
    name_runs(runs, root)
    return runs, attach_evaluations(runs, evaluations)


def attach_evaluations(runs: Sequence[Run], evaluations: Iterable[Evaluation]) -> list[Evaluation]:
    """Put each evaluation under its run (matched by resolved path); return those without a run here."""
    by_path = {run.path.resolve(): run for run in runs}
    orphans = []
    for evaluation in evaluations:
        run = next((by_path[p.resolve()] for p in evaluation.run_dirs() if p.resolve() in by_path), None)
        if run is None:
            orphans.append(evaluation)
        else:
            run.evaluations.append(evaluation)
    return orphans


def find_runs(root: Path) -> list[Run]:
    """Every run below ``root``, with its evaluations attached (see :func:`load_results`)."""
    return load_results(root)[0]


def load_run(path: Path, payload: dict[str, Any] | None = None) -> Run | None:
    """A run dir's metrics and Hydra records; ``None`` when its ``metrics.json`` is not a run's (an evaluation's,
    another tool's)."""
    payload = payload if payload is not None else read_results(path / "metrics.json")
    if payload is None or payload["kind"] == "evaluation":
        return None
    metrics = _numbers(payload["metrics"])
    hydra_dir = path / ".hydra"
    overrides = parse_overrides(_read_yaml(hydra_dir / "overrides.yaml") or [])
    config = _read_yaml(hydra_dir / "config.yaml") or {}
    hydra_cfg = (_read_yaml(hydra_dir / "hydra.yaml") or {}).get("hydra", {})
    choices = {str(k): str(v) for k, v in ((hydra_cfg.get("runtime") or {}).get("choices") or {}).items()}
    return Run(path, metrics, payload, overrides, config if isinstance(config, dict) else {}, choices)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def parse_overrides(lines: Iterable[Any]) -> dict[str, str]:
    """Hydra override strings (``key=value``, ``+key=value``, ``++key=value``, ``~key``) → ``{key: value}``."""
    out: dict[str, str] = {}
    for line in lines:
        text = str(line).strip()
        if text.startswith("~"):
            out[text[1:].split("=", 1)[0]] = "~"
            continue
        key, sep, value = text.lstrip("+").partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_value(text: str) -> Any:
    """An override's value as YAML reads it (0.05 → float, 64 → int, true → bool, paper/x → str)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, int | float | str | bool) else text


def _described(overrides: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in overrides.items() if not k.startswith(NAME_EXCLUDED)}


def swept_parameters(runs: Sequence[Run]) -> dict[str, list[Any]]:
    """Override keys whose value differs between runs → the sorted distinct values (as parsed YAML; ``None``
    for runs that left the key at its default)."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(_described(run.overrides)))
    out = {}
    for key in keys:
        raw = [run.overrides.get(key) for run in runs]
        if len(set(raw)) > 1:
            values = {parse_value(v) if v is not None else None for v in raw}
            out[key] = sorted(values, key=_sort_key)
    return out


def _show(value: Any) -> str:
    return "(default)" if value is None else str(value)


def _sort_key(value: Any) -> tuple[int, float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def common_overrides(runs: Sequence[Run]) -> dict[str, str]:
    """Overrides every run shares (same value), shown once instead of in every name."""
    if not runs:
        return {}
    first = _described(runs[0].overrides)
    return {k: v for k, v in first.items() if all(r.overrides.get(k) == v for r in runs[1:])}


def name_runs(runs: Sequence[Run], root: Path) -> None:
    """Name each run by what distinguishes it: its varying overrides, else its experiment, else its path."""
    swept = swept_parameters(runs) if len(runs) > 1 else {}
    for run in runs:
        parts = [f"{k}={run.overrides[k]}" for k in swept if k in run.overrides]
        if len(runs) == 1:
            parts = [f"{k}={v}" for k, v in _described(run.overrides).items()]
        if not parts and run.experiment:
            parts = [run.experiment]
        if not parts:
            relative = run.path.relative_to(root) if run.path.is_relative_to(root) else run.path
            parts = [str(relative) if str(relative) != "." else run.path.name]
        run.name = ", ".join(parts)
    names = [r.name for r in runs]
    for run in runs:  # two runs that differ only in excluded keys: keep them apart by path
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({run.path.name})"


def best_run(runs: Sequence[Run], metric: str | None = None) -> Run | None:
    """The run with the best selection metric (highest, or lowest for ranks); ``None`` if no run has it."""
    scored = [r for r in runs if _finite(r.metrics.get(metric or r.selection_metric))]
    if not scored:
        return None
    sign = -1.0 if (metric or scored[0].selection_metric).endswith(("MedR", "MeanR")) else 1.0
    return max(scored, key=lambda r: sign * r.metrics[metric or r.selection_metric])


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def grid_values(
    runs: Sequence[Run], rows_param: str, cols_param: str, metric: str
) -> tuple[dict[tuple[Any, Any], float], list[Any], list[Any]]:
    """Mean ``metric`` per (rows_param, cols_param) value pair, and the sorted row and column values."""
    cells: dict[tuple[Any, Any], list[float]] = {}
    for run in runs:
        if rows_param in run.overrides and cols_param in run.overrides and _finite(run.metrics.get(metric)):
            key = (parse_value(run.overrides[rows_param]), parse_value(run.overrides[cols_param]))
            cells.setdefault(key, []).append(run.metrics[metric])
    row_values = sorted({k[0] for k in cells}, key=_sort_key)
    col_values = sorted({k[1] for k in cells}, key=_sort_key)
    return {k: sum(v) / len(v) for k, v in cells.items()}, row_values, col_values
