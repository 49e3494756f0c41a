"""Reports over finished runs: markdown tables, sweep plots and a map of the joint space.

``python -m mte.report DIR`` (see :mod:`mte.report`) reads every ``metrics.json`` below ``DIR`` — a multirun dir,
a single run dir, or any folder of runs — and writes ``report.md`` plus PNG figures. It only reads what runs
already wrote (``metrics.json``, Hydra's ``.hydra/overrides.yaml``, ``config.yaml``, ``hydra.yaml``), so it
works on sweeps from any launcher, on Optuna studies and on runs copied from another machine. The one figure
that needs a model, the embedding map, loads the best run's checkpoint.

Choices that keep the report honest:

* The *best run* is chosen on the validation metric the sweep optimised (``optimized_metric``, by default
  ``val_best/t2a/R@10``), never on test numbers; tables show test numbers with their 95% bootstrap intervals.
* Run names are the overrides that differ between runs (what the sweep varied); overrides shared by every run
  are printed once above the tables.
* Paper rows (experiment ``paper/<row>``) get Table 1 of the paper beside our numbers. The paper reported only
  review → audio, so only the t2a table has that column.

Matplotlib runs on the Agg backend (files only, no display needed); ``torch`` and the model code are imported
only for the embedding map, so a report without it stays light.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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

DIRECTION_TITLES = {"t2a": "Review → audio (t2a)", "a2t": "Audio → reviews (a2t)"}
TABLE_METRICS = ("R@1", "R@5", "R@10", "mAP@10", "MedR")
DEFAULT_SELECTION = "val_best/t2a/R@10"
NAME_EXCLUDED = ("hydra.", "ckpt_path", "data.raw_dir", "data.processed_dir", "data.cache_dir", "logger", "tags")
"""Override keys that describe where a run ran, not what it tested: left out of run names and sweeps."""
MAX_CURVES = 10
FIGURE_PATTERNS = ("recall_at_k.png", "sweep_*.png", "heatmap_*.png", "embedding_map.png")
"""The files a report writes besides report.md (replaced on every run)."""


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

    @property
    def tags(self) -> list[str]:
        return [str(t) for t in (self.payload.get("tags") or self.config.get("tags") or [])]

    @property
    def experiment(self) -> str | None:
        """The experiment config the run used (``experiment=…`` override, Hydra's recorded choice, or a tag)."""
        for candidate in (self.overrides.get("experiment"), self.choices.get("experiment")):
            if candidate and candidate != "null":
                return candidate
        return next((t for t in self.tags if t.startswith("paper/")), None)

    @property
    def paper_row(self) -> str | None:
        """The Table 1 row this run reproduces (``paper/<row>`` experiment or tag), if any."""
        for candidate in (self.experiment, *self.tags):
            if candidate and candidate.startswith("paper/") and candidate[6:] in PAPER_TABLE1:
                return candidate[6:]
        return None

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


def _natural_key(path: Path) -> list[Any]:
    """Sort job dirs 0, 1, 2, …, 10 (not 0, 1, 10, 2)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts]


def find_runs(root: Path) -> list[Run]:
    """Every run below ``root`` (``root`` itself included): a dir holding a ``metrics.json`` with metrics."""
    root = Path(root)
    runs = []
    for metrics_file in sorted(root.rglob("metrics.json"), key=lambda p: _natural_key(p.parent)):
        run = load_run(metrics_file.parent)
        if run is not None:
            runs.append(run)
    name_runs(runs, root)
    return runs


def load_run(path: Path) -> Run | None:
    """A run dir's metrics and Hydra records; ``None`` when its ``metrics.json`` is not a run's."""
    try:
        payload = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), dict):
        return None
    metrics = {k: float(v) for k, v in payload["metrics"].items() if isinstance(v, int | float)}
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


# --------------------------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------------------------


def format_metric(metrics: dict[str, float], name: str, digits: int = 2) -> str:
    """``19.95 [18.10, 21.70]`` (value and 95% interval), the value alone without an interval, ``—`` if absent."""
    value = metrics.get(name)
    if not _finite(value):
        return "—"
    low, high = metrics.get(f"{name}_lo"), metrics.get(f"{name}_hi")
    text = f"{value:.{digits}f}"
    if _finite(low) and _finite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def metric_table(runs: Sequence[Run], direction: str, stage: str = "test") -> str:
    """One markdown row per run: R@1/5/10, mAP@10, MedR (with intervals), plus the paper's numbers where known."""
    with_paper = direction == "t2a" and any(r.paper_row for r in runs)
    header = ["run", *TABLE_METRICS] + (["paper R@1 / R@5 / R@10"] if with_paper else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|"]
    for run in runs:
        cells = [_escape(run.name), *(format_metric(run.metrics, f"{stage}/{direction}/{m}") for m in TABLE_METRICS)]
        if with_paper:
            row = run.paper_row
            cells.append(
                " / ".join(f"{v:g}" for v in PAPER_TABLE1[row][1]) + f" ({PAPER_TABLE1[row][0]})" if row else ""
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_table(runs: Sequence[Run], rows_param: str, cols_param: str, metric: str) -> str:
    """A ``rows_param × cols_param`` grid of one metric (best cell in bold); mean when cells hold several runs."""
    grid, row_values, col_values = _grid(runs, rows_param, cols_param, metric)
    finite = [v for v in grid.values() if _finite(v)]
    top = (min if metric.endswith(("MedR", "MeanR")) else max)(finite) if finite else None
    header = [f"{rows_param} \\ {cols_param}", *(str(c) for c in col_values)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", *["---:"] * len(col_values)]) + "|"]
    for r in row_values:
        cells = []
        for c in col_values:
            value = grid.get((r, c))
            text = f"{value:.2f}" if _finite(value) else "—"
            cells.append(f"**{text}**" if value is not None and value == top else text)
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _grid(
    runs: Sequence[Run], rows_param: str, cols_param: str, metric: str
) -> tuple[dict[tuple[Any, Any], float], list[Any], list[Any]]:
    cells: dict[tuple[Any, Any], list[float]] = {}
    for run in runs:
        if rows_param in run.overrides and cols_param in run.overrides and _finite(run.metrics.get(metric)):
            key = (parse_value(run.overrides[rows_param]), parse_value(run.overrides[cols_param]))
            cells.setdefault(key, []).append(run.metrics[metric])
    row_values = sorted({k[0] for k in cells}, key=_sort_key)
    col_values = sorted({k[1] for k in cells}, key=_sort_key)
    return {k: sum(v) / len(v) for k, v in cells.items()}, row_values, col_values


def _notes(runs: Sequence[Run]) -> list[str]:
    notes = []
    if any(r.payload.get("baseline") == "random" for r in runs):
        notes.append(
            "Random: exact expected metrics of a uniformly random ranking; its brackets are the 95% chance band "
            "(where one random ranking's score falls), not a bootstrap interval."
        )
    if any(r.payload.get("baseline") == "cca" for r in runs):
        notes.append(
            "CCA: fitted on the train split and scored on the held-out split (the paper scored its CCA on its "
            "training data, so its CCA row is optimistic)."
        )
    if any(r.paper_row for r in runs):
        notes.append("Paper: Table 1 of the published model (review → audio on its held-out 10%, R@K in %).")
    return notes


# --------------------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _recall_ks(runs: Sequence[Run], stage: str, direction: str) -> list[int]:
    pattern = re.compile(rf"^{stage}/{direction}/R@(\d+)$")
    ks = {int(m.group(1)) for r in runs for name in r.metrics if (m := pattern.match(name))}
    return sorted(ks)


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_recall_curves(runs: Sequence[Run], out: Path, stage: str = "test") -> Path | None:
    """R@K against K for both directions, one line per run (the best ``MAX_CURVES`` by the selection metric),
    with the 95% interval as a band."""
    ranked = sorted(runs, key=lambda r: -(r.metrics.get(r.selection_metric) or -math.inf))
    shown = ranked[:MAX_CURVES]
    if not any(_recall_ks(shown, stage, d) for d in DIRECTION_TITLES):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharey=False)
    for ax, direction in zip(axes, DIRECTION_TITLES, strict=True):
        ks = _recall_ks(shown, stage, direction)
        for run in shown:
            points = [(k, run.metrics.get(f"{stage}/{direction}/R@{k}")) for k in ks]
            points = [(k, v) for k, v in points if _finite(v)]
            if not points:
                continue
            x, y = zip(*points, strict=True)
            (line,) = ax.plot(x, y, marker="o", label=_short(run.name))
            low = [run.metrics.get(f"{stage}/{direction}/R@{k}_lo") for k in x]
            high = [run.metrics.get(f"{stage}/{direction}/R@{k}_hi") for k in x]
            if all(_finite(v) for v in [*low, *high]):
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xticks(ks)
        ax.set_xlabel("K (albums / reviews retrieved)")
        ax.set_ylabel(f"{stage} R@K (%)")
        ax.set_title(DIRECTION_TITLES[direction])
        ax.grid(alpha=0.3)
    title = f"Recall@K on the {stage} split (bands: 95% intervals)"
    if len(runs) > len(shown):
        title += f" — best {len(shown)} of {len(runs)} runs by {shown[0].selection_metric}"
    fig.suptitle(title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, max(1, len(labels))), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * math.ceil(len(labels) / 3), 1, 1))
    return _save(fig, out / "recall_at_k.png")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _is_numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_parameter(runs: Sequence[Run], param: str, swept: dict[str, list[Any]], out: Path, metric: str) -> Path:
    """The selection metric (left) and its test counterpart with 95% intervals (right) against one parameter;
    one line per setting of the other swept parameters when there are few of them."""
    plt = _pyplot()
    values = [v for v in swept[param] if v is not None]  # runs at the default have no x position
    numeric = _is_numeric(values)
    position = {v: (float(v) if numeric else i) for i, v in enumerate(values)}
    others = [p for p in swept if p != param]
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if param in run.overrides:
            if len(others) == 1:  # the legend title names the parameter; entries need only its value
                label = run.overrides.get(others[0], "—")
            else:
                label = ", ".join(f"{p}={run.overrides.get(p, '—')}" for p in others) or "runs"
            groups.setdefault(label, []).append(run)
    test_metric = metric.replace("val_best/", "test/", 1).replace("val/", "test/", 1)
    panels = [metric] if test_metric == metric else [metric, test_metric]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.6), squeeze=False)
    log_x = numeric and min(values) > 0 and max(values) / min(values) >= 20
    for ax, name in zip(axes[0], panels, strict=True):
        for index, (label, members) in enumerate(groups.items()):
            scored = [r for r in members if _finite(r.metrics.get(name))]
            points = sorted(
                ((position[parse_value(r.overrides[param])], r.metrics[name], r) for r in scored), key=lambda p: p[0]
            )
            if not points:
                continue
            # dodge the groups a little sideways so their error bars at one x do not hide each other
            x = [_dodge(p[0], index, len(groups), list(position.values()), log_x) for p in points]
            y = [p[1] for p in points]
            low = [p[2].metrics.get(f"{name}_lo") for p in points]
            high = [p[2].metrics.get(f"{name}_hi") for p in points]
            kwargs = {"marker": "o", "capsize": 3, "label": _short(label, 40)}
            if all(_finite(v) for v in [*low, *high]):
                err = [
                    [yi - lo for yi, lo in zip(y, low, strict=True)],
                    [hi - yi for yi, hi in zip(y, high, strict=True)],
                ]
                ax.errorbar(x, y, yerr=err, **kwargs)
            else:
                ax.errorbar(x, y, **kwargs)
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks([position[v] for v in values], [str(v) for v in values])
        ax.set_xlabel(param)
        ax.set_ylabel(name + (" (%)" if "R@" in name or "mAP" in name else ""))
        ax.set_title(name + (" (error bars: 95% intervals)" if name.startswith("test/") else ""), fontsize=10)
        ax.grid(alpha=0.3)
    if len(groups) > 1:
        axes[0][0].legend(fontsize=8, title=", ".join(others), title_fontsize=8)
    fig.suptitle(f"{metric.split('/')[-1]} against {param}")
    fig.tight_layout()
    return _save(fig, out / f"sweep_{_slug(param)}.png")


def _dodge(x: float, index: int, n_groups: int, positions: list[float], log_x: bool) -> float:
    """``x`` shifted by ±1.5% of the axis span per group (multiplicatively on a log axis)."""
    shift = 0.015 * (index - (n_groups - 1) / 2)
    if log_x:
        return x * (max(positions) / min(positions)) ** shift
    span = (max(positions) - min(positions)) or 1.0
    return x + shift * span


def plot_heatmap(runs: Sequence[Run], rows_param: str, cols_param: str, metric: str, out: Path) -> Path | None:
    """The two-parameter grid of :func:`grid_table` as an annotated heatmap."""
    import numpy as np

    grid, row_values, col_values = _grid(runs, rows_param, cols_param, metric)
    if not grid:
        return None
    plt = _pyplot()
    matrix = np.full((len(row_values), len(col_values)), np.nan)
    for (r, c), value in grid.items():
        matrix[row_values.index(r), col_values.index(c)] = value
    fig, ax = plt.subplots(figsize=(1.4 * len(col_values) + 3.5, 0.9 * len(row_values) + 2.5))
    cmap = "viridis_r" if metric.endswith(("MedR", "MeanR")) else "viridis"
    image = ax.imshow(matrix, cmap=cmap, aspect="auto")
    finite = matrix[np.isfinite(matrix)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(len(row_values)):
        for j in range(len(col_values)):
            if np.isfinite(matrix[i, j]):
                dark = (matrix[i, j] < middle) != cmap.endswith("_r")
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(len(col_values)), [str(v) for v in col_values])
    ax.set_yticks(range(len(row_values)), [str(v) for v in row_values])
    ax.set_xlabel(cols_param)
    ax.set_ylabel(rows_param)
    ax.set_title(f"{metric} by {rows_param} × {cols_param}", fontsize=10)
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    return _save(fig, out / f"heatmap_{_slug(rows_param)}_x_{_slug(cols_param)}.png")


def plot_embedding_map(run: Run, out: Path, n_reviews: int = 600, seed: int = 0, max_genres: int = 9) -> Path | None:
    """The test split in the run's joint space, projected to 2-D by PCA: albums (mean of their tracks'
    embeddings, as the album protocol ranks them) and a sample of reviews, coloured by album genre.

    PCA rather than t-SNE: it is deterministic, fast and keeps distances' large-scale structure, which is what
    tells whether the two modalities share one space or sit in two separate clouds. The PCA is an exact SVD
    (``torch.linalg.svd``; ``pca_lowrank`` starts from a random matrix, so two reports of one run would differ),
    with each axis's sign fixed so its largest loading is positive.
    """
    checkpoint = run.checkpoint()
    if checkpoint is None:
        return None
    import numpy as np
    import torch

    from mte.models.inference import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    data = loaded.data
    album_row = {a: i for i, a in enumerate(data.albums.get_column("amazon_id").to_list())}
    tracks = data.split_track_indices("test")
    reviews = data.split_review_indices("test")
    if len(tracks) == 0 or len(reviews) == 0:
        return None
    generator = torch.Generator().manual_seed(seed)
    reviews = np.sort(reviews[torch.randperm(len(reviews), generator=generator)[:n_reviews].numpy()])
    track_album = np.asarray([album_row[a] for a in data.tracks.get_column("amazon_id").gather(tracks).to_list()])
    review_album = np.asarray([album_row[a] for a in data.reviews.get_column("amazon_id").gather(reviews).to_list()])
    track_emb = loaded.embed_raw_features(data.raw_features()[tracks])
    albums, inverse = np.unique(track_album, return_inverse=True)
    album_emb = torch.zeros(len(albums), track_emb.shape[1]).index_add_(0, torch.from_numpy(inverse), track_emb)
    album_emb = torch.nn.functional.normalize(album_emb, dim=1)
    review_emb = loaded.embed_reviews(reviews)
    points = torch.cat([album_emb, review_emb]).double()
    centred = points - points.mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)  # a few hundred × embed_dim: cheap
    axes = vh[:2] * torch.sign(vh[:2].gather(1, vh[:2].abs().argmax(1, keepdim=True)))
    xy = np.pad((centred @ axes.T).numpy(), ((0, 0), (0, 2 - len(axes))))
    explained = torch.nn.functional.pad(singular[:2] ** 2 / (singular**2).sum().clamp(min=1e-300), (0, 2 - len(axes)))
    genres = data.albums.get_column("genre").fill_null("unknown").to_list()
    album_genre = [genres[a] for a in albums]
    review_genre = [genres[a] for a in review_album]
    return _draw_map(xy, album_genre, review_genre, explained.tolist(), run, out, max_genres)


def _draw_map(
    xy: Any, album_genre: list[str], review_genre: list[str], explained: list[float], run: Run, out: Path, top: int
) -> Path:
    from collections import Counter

    from matplotlib.lines import Line2D

    plt = _pyplot()
    n_albums = len(album_genre)
    counts = Counter(album_genre + review_genre)
    kept = [g for g, _ in counts.most_common() if g != "unknown"][:top]
    label = {g: (g if g in kept else "other") for g in counts}
    legend_genres = kept + (["other"] if any(v == "other" for v in label.values()) else [])
    # tab10 without its grey (index 7), so no genre looks like "other" (light grey) or the modality keys
    palette = [plt.get_cmap("tab10")(i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]
    colours = {g: palette[i % len(palette)] for i, g in enumerate(kept)} | {"other": (0.75, 0.75, 0.75, 1.0)}
    fig, ax = plt.subplots(figsize=(9.5, 7.5))
    review_xy, album_xy = xy[n_albums:], xy[:n_albums]
    ax.scatter(
        review_xy[:, 0], review_xy[:, 1], s=10, alpha=0.45, marker="o",
        c=[colours[label[g]] for g in review_genre], linewidths=0,
    )  # fmt: skip
    ax.scatter(
        album_xy[:, 0], album_xy[:, 1], s=70, marker="^", edgecolors="black", linewidths=0.7,
        c=[colours[label[g]] for g in album_genre],
    )  # fmt: skip
    genre_handles = [Line2D([], [], marker="s", linestyle="", color=colours[g], markersize=9) for g in legend_genres]
    modality_handles = [  # open markers: the modality key must not read as a genre colour
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black", markersize=5),
        Line2D([], [], marker="^", linestyle="", markerfacecolor="none", markeredgecolor="black", markersize=9),
    ]
    first = ax.legend(genre_handles, legend_genres, title="album genre", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.add_artist(first)
    ax.legend(
        modality_handles,
        [f"review ({len(review_genre)} sampled)", f"album audio ({n_albums}, mean of tracks)"],
        title="modality",
        loc="lower left",
        bbox_to_anchor=(1.01, 0),
    )
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.1f}% of variance)")
    ax.set_title(f"Joint embedding space, test split (PCA)\n{_short(run.name, 80)}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out / "embedding_map.png")


# --------------------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    markdown: Path
    figures: list[Path]
    runs: list[Run]
    best: Run | None
    warnings: list[str] = field(default_factory=list)


def build_report(
    root: Path,
    out: Path | None = None,
    metric: str | None = None,
    embedding_map: bool = True,
    n_reviews: int = 600,
) -> Report:
    """Write ``report.md`` and the figures for every run below ``root`` into ``out`` (default ``root/report``).

    ``metric`` is the selection metric for the best run, the sweep plots and the grid (default: the runs'
    ``optimized_metric``, i.e. ``val_best/t2a/R@10``).
    """
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no runs below {root}: no metrics.json with metrics (is the sweep finished?)")
    out = Path(out) if out is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    for pattern in FIGURE_PATTERNS:  # figures of an earlier report here would be listed by nobody
        for stale in out.glob(pattern):
            stale.unlink()
    metric = metric or runs[0].selection_metric
    best = best_run(runs, metric)
    swept = swept_parameters(runs)
    figures: list[Path] = []
    warnings: list[str] = []
    recall = plot_recall_curves(runs, out)
    figures += [recall] if recall else []
    for param, values in swept.items():
        if sum(v is not None for v in values) >= 2:  # one set value against "default" is no sweep to plot
            figures.append(plot_parameter(runs, param, swept, out, metric))
    grid_params = list(swept) if len(swept) == 2 else []
    heatmap = plot_heatmap(runs, grid_params[0], grid_params[1], metric, out) if grid_params else None
    figures += [heatmap] if heatmap else []
    map_run = best if best is not None and best.checkpoint() else best_run([r for r in runs if r.checkpoint()], metric)
    if embedding_map and map_run is not None:
        try:
            path = plot_embedding_map(map_run, out, n_reviews=n_reviews)
        except Exception as e:  # a moved processed dir or an old checkpoint must not cost the whole report
            warnings.append(f"embedding map skipped ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        else:
            figures += [path] if path else []
    lines = _markdown(root, runs, best, metric, swept, grid_params, figures, out, map_run, warnings)
    markdown = out / "report.md"
    markdown.write_text("\n".join(lines) + "\n")
    return Report(markdown, figures, runs, best, warnings)


def _markdown(
    root: Path,
    runs: Sequence[Run],
    best: Run | None,
    metric: str,
    swept: dict[str, list[Any]],
    grid_params: list[str],
    figures: Sequence[Path],
    out: Path,
    map_run: Run | None,
    warnings: Sequence[str],
) -> list[str]:
    lines = [f"# Retrieval report: `{root}`", ""]
    lines.append(
        f"{len(runs)} run(s) · album protocol · **test split** · R@K and mAP@10 in %, MedR in ranks · "
        "95% bootstrap intervals in brackets."
    )
    common = common_overrides(runs) if len(runs) > 1 else {}
    if common:
        lines += ["", "Common to all runs: " + ", ".join(f"`{k}={v}`" for k, v in common.items())]
    if swept:
        lines += ["", "Varying: " + "; ".join(f"`{k}` ∈ {{{', '.join(map(_show, v))}}}" for k, v in swept.items())]
    if best is not None:
        lines += [
            "",
            f"Best run by `{metric}` (chosen on validation, never on test): **{_escape(best.name)}** — "
            f"{metric} = {best.metrics[metric]:.2f}; test t2a R@10 = {format_metric(best.metrics, 'test/t2a/R@10')}.",
        ]
    for direction, title in DIRECTION_TITLES.items():
        lines += ["", f"## {title}, test", "", metric_table(runs, direction)]
    if grid_params:
        rows_param, cols_param = grid_params
        lines += [
            "",
            f"## {rows_param} × {cols_param}: `{metric}`",
            "",
            grid_table(runs, rows_param, cols_param, metric),
        ]
        test_metric = metric.replace("val_best/", "test/", 1)
        if test_metric != metric:
            lines += ["", f"`{test_metric}`:", "", grid_table(runs, rows_param, cols_param, test_metric)]
    notes = _notes(runs)
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    if figures:
        lines += ["", "## Figures", ""]
        for path in figures:
            caption = _caption(path, map_run)
            lines += [f"![{caption}]({path.relative_to(out) if path.is_relative_to(out) else path})", ""]
    if warnings:
        lines += ["", *(f"> {w}" for w in warnings)]
    lines += ["", "## Runs", "", "| run | dir |", "|---|---|"]
    lines += [f"| {_escape(r.name)} | `{r.path}` |" for r in runs]
    return lines


def _caption(path: Path, map_run: Run | None) -> str:
    if path.name == "recall_at_k.png":
        return "Recall@K per run"
    if path.name.startswith("sweep_"):
        return f"Metric against {path.stem.removeprefix('sweep_')}"
    if path.name.startswith("heatmap_"):
        return "Two-parameter grid"
    if path.name == "embedding_map.png" and map_run is not None:
        return f"Embedding map (PCA) of {map_run.name}"
    return path.stem
