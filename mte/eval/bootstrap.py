"""Percentile bootstrap intervals of retrieval metrics, resampling *clusters* of queries (albums), not queries.

Why clusters: the reviews of one album are not independent queries — they describe the same music, and a model
that finds an album tends to find it for all its reviews. Resampling reviews as if independent then makes the t2a
interval too narrow. So every query carries a cluster id (its album), a resample draws albums with replacement and
takes *all* reviews of each drawn album (a cluster bootstrap), and a metric of a resample is the weighted mean (or
median) over the queries it holds. When every cluster holds one query (a2t under the album protocol: one query per
album) this is exactly the ordinary bootstrap, draw for draw (a test checks the equality).

All metrics of one call share the same resamples (paired intervals), and the draws come from one seeded
generator, so reruns give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

Statistic = Literal["mean", "median"]


def _cluster_index(clusters: Tensor | None, size: int, order: Tensor) -> tuple[Tensor, int]:
    """Per query (in ``order``), a cluster number 0..C−1 by first appearance in that order, and C.

    Numbering by first appearance makes the one-query-per-cluster case the identity map, so its draws and counts
    are those of the ordinary bootstrap, bit for bit.
    """
    if clusters is None:
        return torch.arange(size, device=order.device), size
    if clusters.shape != (size,):
        raise ValueError(f"need one cluster id per query ({size}), got shape {tuple(clusters.shape)}")
    _, inverse = torch.unique(clusters.to(order.device)[order], return_inverse=True)
    n_clusters = int(inverse.max()) + 1
    first = torch.full((n_clusters,), size, dtype=torch.long, device=order.device)
    first.scatter_reduce_(0, inverse, torch.arange(size, device=order.device), reduce="amin")
    relabel = torch.empty_like(first)
    relabel[first.argsort()] = torch.arange(n_clusters, device=order.device)
    return relabel[inverse], n_clusters


@torch.no_grad()
def _bootstrap(
    stats: Mapping[str, tuple[Tensor, Statistic]],
    n: int,
    alpha: float,
    generator: torch.Generator | None,
    max_chunk_elements: int,
    clusters: Tensor | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every statistic; all metrics share the same resamples.

    A resample is held as its count vector ``W[j]`` (how often query j was drawn — its cluster's draw count),
    built with one ``scatter_add`` per chunk of resamples. Means are then one matrix product ``W @ V / ΣW`` for all
    metrics, and a median is read off the cumulative counts once the queries are sorted by that metric — no
    ``[b, N]`` gathers of values and no sorting per resample (≈3x faster than indexing the values).
    """
    if n < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n >= 1 and 0 < alpha < 1, got {n}, {alpha}")
    if any(stat not in ("mean", "median") for _, stat in stats.values()):
        raise ValueError("statistic must be 'mean' or 'median'")
    sizes = {values.numel() for values, _ in stats.values()}
    if len(sizes) != 1:
        raise ValueError(f"need per-query values of one common length, got lengths {sorted(sizes)}")
    size = sizes.pop()
    if size == 0:
        return {name: (math.nan, math.nan) for name in stats}
    device = next(iter(stats.values()))[0].device
    f64 = torch.float64
    values = {name: v.reshape(-1).to(device=device, dtype=f64) for name, (v, _) in stats.items()}
    means = [name for name, (_, stat) in stats.items() if stat == "mean"]
    medians = [name for name, (_, stat) in stats.items() if stat == "median"]
    # Resampling positions of any fixed order is the same bootstrap; sorting by the first median's values lets
    # that median be read off the counts directly (other medians need a column gather).
    base = values[medians[0]].argsort() if medians else torch.arange(size, device=device)
    cluster_of, n_clusters = _cluster_index(clusters, size, base)
    values = {name: v[base] for name, v in values.items()}
    mean_matrix = torch.stack([values[name] for name in means], dim=1) if means else None  # [N, m]
    median_order = {name: (None if i == 0 else values[name].argsort()) for i, name in enumerate(medians)}
    ones = torch.ones(1, dtype=f64, device=device)
    replicates: dict[str, list[Tensor]] = {name: [] for name in stats}
    per_chunk = max(1, max_chunk_elements // size)
    for lo in range(0, n, per_chunk):
        b = min(per_chunk, n - lo)
        draws = torch.randint(n_clusters, (b, n_clusters), generator=generator, device=device)
        drawn = torch.zeros(b, n_clusters, dtype=f64, device=device).scatter_add_(1, draws, ones.expand(b, n_clusters))
        counts = drawn if clusters is None else drawn[:, cluster_of]  # [b, N]: each query weighs its cluster's draws
        total = counts.sum(dim=1)  # N for the ordinary bootstrap; varies with the drawn clusters' sizes
        if mean_matrix is not None:
            chunk_means = counts @ mean_matrix / total[:, None]
            for j, name in enumerate(means):
                replicates[name].append(chunk_means[:, j])
        if medians:
            # 1-based positions of the middle element(s) of each resample's sorted sample of size total
            middle = torch.stack([torch.div(total + 1, 2, rounding_mode="floor"),
                                  torch.div(total, 2, rounding_mode="floor") + 1], dim=1)
        for name, order in median_order.items():
            cumulative = (counts if order is None else counts[:, order]).cumsum(dim=1)
            at = torch.searchsorted(cumulative, middle).clamp(max=size - 1)
            sorted_values = values[name] if order is None else values[name][order]
            replicates[name].append(sorted_values[at].mean(dim=1))
    quantiles = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=f64, device=device)
    out = {}
    for name, chunks in replicates.items():
        low, high = torch.quantile(torch.cat(chunks), quantiles).tolist()
        out[name] = (low, high)
    return out


def bootstrap_interval(
    per_query_values: Tensor,
    n: int = 1000,
    alpha: float = 0.05,
    generator: torch.Generator | None = None,
    statistic: Statistic = "mean",
    max_chunk_elements: int = 1 << 23,
    clusters: Tensor | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 − alpha)`` interval of the mean (or median) of per-query values.

    ``clusters`` (one id per value, e.g. the query's album) resamples clusters instead of values; None treats every
    value as its own cluster. For R@k pass ``100 * hits_at_k(rank, k)``; for MedR the ranks with
    ``statistic="median"``.
    """
    stats = {"value": (per_query_values, statistic)}
    return _bootstrap(stats, n, alpha, generator, max_chunk_elements, clusters)["value"]
