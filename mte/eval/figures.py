"""The report's figures (PNG, matplotlib on the Agg backend): recall@K curves, metric against a swept parameter,
two-parameter heatmaps, and a PCA map of the joint space.

Matplotlib, ``torch`` and the model code are imported inside the functions that draw, so reading and naming runs
(:mod:`mte.eval.runs`) stays light.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mte.eval.runs import Run, _finite, grid_values, parse_value

DIRECTION_TITLES = {"t2a": "Review → audio (t2a)", "a2t": "Audio → reviews (a2t)"}
MAX_CURVES = 10
FIGURE_PATTERNS = ("recall_at_k.png", "sweep_*.png", "heatmap_*.png", "embedding_map.png")
"""The files a report writes besides report.md (replaced on every run)."""


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

    grid, row_values, col_values = grid_values(runs, rows_param, cols_param, metric)
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

    from mte.eval.protocols import album_embeddings, query_mask
    from mte.models.inference import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    data = loaded.data
    album_row = {a: i for i, a in enumerate(data.albums.get_column("amazon_id").to_list())}
    tracks = data.split_track_indices("test")
    reviews = data.split_review_indices("test")
    if loaded.reads_tokens:  # the reviews that query in evaluation: the others have no input to place
        keep = query_mask(token_lengths=data.reviews.get_column("tokens").gather(reviews).list.len().fill_null(0))
    else:
        keep = query_mask(texts=loaded.review_texts(reviews))
    reviews = reviews[keep]
    if len(tracks) == 0 or len(reviews) == 0:
        return None
    generator = torch.Generator().manual_seed(seed)
    reviews = np.sort(reviews[torch.randperm(len(reviews), generator=generator)[:n_reviews].numpy()])
    track_album = np.asarray([album_row[a] for a in data.tracks.get_column("amazon_id").gather(tracks).to_list()])
    review_album = np.asarray([album_row[a] for a in data.reviews.get_column("amazon_id").gather(reviews).to_list()])
    track_emb = loaded.embed_raw_features(data.raw_features()[tracks])
    album_emb, album_ids = album_embeddings(track_emb, torch.from_numpy(track_album))
    albums = album_ids.tolist()
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
