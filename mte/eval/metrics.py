"""Metric assembly: per-query values → ``{stage}/{direction}/{metric}`` aggregates, bootstrap bounds and counts.

Names are ``{stage}/{direction}/{metric}`` with metrics ``R@1 R@5 R@10 mAP@10 MedR MeanR``; the ranks come from
the one kernel, :func:`mte.eval.ranking.retrieval_ranks`, and :func:`metrics_from_ranks` is the one place
that turns them into numbers — every protocol, the training callback, ``mte.evaluate`` and the baselines end there.

* R@K and mAP@K are percentages (0–100), like the paper's table; MedR and MeanR are in ranks. MedR is the usual
  median (mean of the two middle ranks when the count is even), so it can end in .5.
* Queries with no relevant item in the gallery (rank −1) are *excluded* from the aggregates, whose ``n_queries``
  counts the scored queries and ``n_excluded`` the others (0 in the normal evaluation, where every held-out album
  has audio and reviews).
* Intervals (``_lo``/``_hi``): 95% percentile bootstrap (:mod:`mte.eval.bootstrap`), resampling the queries'
  clusters (albums) when ``clusters`` is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

import torch
from torch import Tensor

from mte.eval.bootstrap import Statistic, _bootstrap
from mte.eval.ranking import retrieval_ranks


def hits_at_k(rank: Tensor, k: int) -> Tensor:
    """Per-query hit indicator (float 0/1) for R@k: the first relevant item is in the top k. Rank −1 is a miss;
    filter excluded queries first (``rank > 0``) when averaging."""
    return ((rank >= 1) & (rank <= k)).to(torch.float64)


def per_query_metrics(
    rank: Tensor, ap: Tensor | None = None, ks: Iterable[int] = (1, 5, 10), map_k: int = 10
) -> dict[str, Tensor]:
    """Per-query values of every metric, over the scored queries (rank > 0) only — float64 tensors.

    Keys ``R@k`` (0 or 100), ``mAP@{map_k}`` (AP in percent, when ``ap`` is given) and ``rank``. The aggregate
    of each metric is the mean of its values, except ``MedR``/``MeanR``: median/mean of ``rank``
    (see :data:`STATISTICS`). Feed this to :func:`summarize` and :func:`bootstrap_intervals`.
    """
    scored = rank > 0
    out = {f"R@{k}": 100.0 * hits_at_k(rank[scored], k) for k in ks}
    if ap is not None:
        out[f"mAP@{map_k}"] = 100.0 * ap[scored].to(torch.float64)
    out["rank"] = rank[scored].to(torch.float64)
    return out


STATISTICS: dict[str, tuple[str, Statistic]] = {"MedR": ("rank", "median"), "MeanR": ("rank", "mean")}
"""Metrics that are not the mean of their own per-query values: name → (per-query key, statistic)."""


def median(values: Tensor) -> Tensor:
    """Median along the last dim; the mean of the two middle values for an even count (numpy's convention)."""
    n = values.shape[-1]
    upper = values.kthvalue(n // 2 + 1, dim=-1).values
    if n % 2:
        return upper
    return (values.kthvalue(n // 2, dim=-1).values + upper) / 2


def _statistics(per_query: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Statistic]]:
    """Metric name → (per-query values, statistic)."""
    out: dict[str, tuple[Tensor, Statistic]] = {
        name: (values, "mean") for name, values in per_query.items() if name != "rank"
    }
    if "rank" in per_query:
        out.update({name: (per_query[key], stat) for name, (key, stat) in STATISTICS.items()})
    return out


def summarize(per_query: Mapping[str, Tensor], prefix: str = "") -> dict[str, float]:
    """Aggregate :func:`per_query_metrics` into ``{prefix}/{metric}`` floats (NaN when no query was scored)."""
    head = f"{prefix}/" if prefix else ""
    out = {}
    for name, (values, stat) in _statistics(per_query).items():
        if values.numel() == 0:
            out[head + name] = math.nan
        else:
            out[head + name] = float(values.to(torch.float64).mean() if stat == "mean" else median(values))
    return out


def retrieval_metrics(
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    prefix: str = "val/t2a",
    chunk_size: int = 4096,
    bootstrap: int = 0,
    generator: torch.Generator | None = None,
    clusters: Tensor | None = None,
) -> dict[str, float]:
    """All retrieval metrics of one direction: ``{prefix}/R@k`` (%), ``{prefix}/mAP@{map_k}`` (%),
    ``{prefix}/MedR``, ``{prefix}/MeanR``, ``{prefix}/n_queries`` (scored queries) and ``{prefix}/n_excluded``
    (queries without a relevant item, left out of every metric).

    ``prefix`` is ``{stage}/{direction}``: ``t2a`` queries are reviews against the albums' audio, ``a2t``
    queries are audio against the reviews. With ``bootstrap=n`` > 0, every metric also gets its 95% percentile
    bootstrap interval as ``{prefix}/{metric}_lo`` and ``…_hi``, resampling ``clusters`` (one id per query, e.g.
    its album) or, when None, the queries themselves.
    """
    rank, ap = retrieval_ranks(query, gallery, query_labels, gallery_labels, map_k=map_k, chunk_size=chunk_size)
    return metrics_from_ranks(rank, ap if map_k > 0 else None, ks, map_k, prefix, bootstrap, generator, clusters)


def metrics_from_ranks(
    rank: Tensor,
    ap: Tensor | None,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    prefix: str = "val/t2a",
    bootstrap: int = 0,
    generator: torch.Generator | None = None,
    clusters: Tensor | None = None,
) -> dict[str, float]:
    """Aggregates, optional bootstrap bounds and query counts of one direction from per-query ranks and AP.

    The one assembly of metric names and values: :func:`retrieval_metrics` and every evaluation protocol end here,
    so equal ranks always give equal numbers. ``clusters``: one id per query (its album), for the cluster bootstrap.
    """
    per_query = per_query_metrics(rank, ap, ks, map_k)
    out = summarize(per_query, prefix)
    if bootstrap > 0:
        scored_clusters = None if clusters is None else clusters.to(rank.device)[rank > 0]
        intervals = bootstrap_intervals(per_query, n=bootstrap, generator=generator, clusters=scored_clusters)
        for name, (low, high) in intervals.items():
            out[f"{prefix}/{name}_lo"], out[f"{prefix}/{name}_hi"] = float(low), float(high)
    n_scored = int((rank > 0).sum())
    out[f"{prefix}/n_queries"] = float(n_scored)
    out[f"{prefix}/n_excluded"] = float(rank.numel() - n_scored)
    return out


def bootstrap_intervals(
    per_query: Mapping[str, Tensor],
    n: int = 1000,
    alpha: float = 0.05,
    generator: torch.Generator | None = None,
    max_chunk_elements: int = 1 << 23,
    clusters: Tensor | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap ``(1 − alpha)`` intervals of every metric of :func:`per_query_metrics`.

    Keys are metric names (``R@1`` … ``mAP@10``, ``MedR``, ``MeanR``). ``n`` resamples shared by all metrics
    (paired intervals); at most ``max_chunk_elements`` counts are held at once. ``clusters`` (one id per scored
    query, e.g. its album) makes it a cluster bootstrap — albums are drawn with replacement, each with all its
    queries — since the reviews of one album are not independent; None resamples queries (see
    :mod:`mte.eval.bootstrap`).
    """
    return _bootstrap(_statistics(per_query), n, alpha, generator, max_chunk_elements, clusters)


# --------------------------------------------------------------------------------------------------------------
# random baseline
# --------------------------------------------------------------------------------------------------------------


def expected_random_recall(n_gallery: int, n_relevant: int, k: int) -> float:
    """Exact R@k (fraction in ``[0, 1]``, not percent) of a uniformly random ranking of the gallery.

    A hit unless all k top items are irrelevant (hypergeometric): ``1 − C(G − r, k) / C(G, k)``.
    """
    if not 0 <= n_relevant <= n_gallery or k < 0:
        raise ValueError(f"need 0 <= n_relevant <= n_gallery and k >= 0, got {n_relevant}, {n_gallery}, {k}")
    k = min(k, n_gallery)
    miss = Fraction(math.comb(n_gallery - n_relevant, k), math.comb(n_gallery, k))
    return float(1 - miss)


def expected_random_rank(n_gallery: int, n_relevant: int) -> float:
    """Expected rank of the first relevant item in a uniformly random ranking: ``(G + 1) / (r + 1)``."""
    if not 1 <= n_relevant <= n_gallery:
        raise ValueError(f"need 1 <= n_relevant <= n_gallery, got {n_relevant}, {n_gallery}")
    return (n_gallery + 1) / (n_relevant + 1)
