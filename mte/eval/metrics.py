"""Exact retrieval metrics in bounded memory (pure torch).

Setting: each query (a review for ``t2a``, an album's audio for ``a2t``) ranks the whole gallery by similarity;
gallery items with the query's label (album) are *relevant*. Names follow the project's convention,
``{stage}/{direction}/{metric}`` with metrics ``R@1 R@5 R@10 mAP@10 MedR MeanR``.

Conventions
-----------
* Similarity is the dot product. Embeddings are L2-normalised, so it orders exactly like cosine similarity and
  like negative Euclidean distance (up to float rounding; the metrics are *defined* on the dot product).
* Ranks are 1-based. **Ties are counted pessimistically**: among equal scores, irrelevant items come first. The
  rank of the first relevant item is ``1 + #{irrelevant g : score(g) ≥ best relevant score}``. Why: with the
  usual "sort and take the position" a collapsed model (every embedding equal, a real failure mode early in
  training or with a broken branch) would be ranked by index order and could look perfect; pessimistic ties give
  it the worst possible rank, and a model is only credited for an order it actually produces.
* R@K and mAP@K are percentages (0–100), like the paper's table; MedR and MeanR are in ranks. MedR is the usual
  median (mean of the two middle ranks when the count is even), so it can end in .5.
* Queries with no relevant item in the gallery cannot be scored: they get rank −1 / AP NaN from the per-query
  functions and are *excluded* from the aggregates, whose ``n_queries`` counts the scored queries and
  ``n_excluded`` the others (0 in the normal evaluation, where every held-out album has audio and reviews).
* Exactness: the relevant scores are *gathered* from the same score matrix the counts are taken on, so the
  comparisons never mix two roundings of one dot product. Tested against a brute-force sort.

Memory and time: queries are scored in chunks (``chunk_size`` rows, capped so a chunk holds at most
``max_chunk_elements`` scores, two reused float32 buffers of 64 MiB by default); the ``Q×G`` matrix is never
built. 85,000 queries × 8,700 gallery items × 128-d (ranks and AP@10) take ~4–6 s on 2 CPU cores, most of it
the matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Literal

import torch
from torch import Tensor

MAX_CHUNK_ELEMENTS = 1 << 24
"""Default cap on scores per chunk (16 Mi; two float32 buffers of that size = 128 MiB)."""


# --------------------------------------------------------------------------------------------------------------
# the single exact pass: rank of the first relevant item and AP@K, per query
# --------------------------------------------------------------------------------------------------------------


def _check_inputs(query: Tensor, gallery: Tensor, query_labels: Tensor, gallery_labels: Tensor) -> None:
    if query.dim() != 2 or gallery.dim() != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"expected query [Q, D] and gallery [G, D]; got {tuple(query.shape)}, {tuple(gallery.shape)}")
    if query_labels.shape != query.shape[:1] or gallery_labels.shape != gallery.shape[:1]:
        raise ValueError(
            f"labels must be [Q] and [G]; got {tuple(query_labels.shape)} for Q={query.shape[0]} and "
            f"{tuple(gallery_labels.shape)} for G={gallery.shape[0]}"
        )
    if gallery.shape[0] == 0:
        raise ValueError("the gallery is empty")


def _relevant_positions(query_labels: Tensor, gallery_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where each query's relevant items are, without a ``Q×G`` mask.

    Returns ``(order, start, count)``: ``order`` sorts the gallery by label, and the relevant items of query q
    are ``order[start[q] : start[q] + count[q]]`` (``count`` 0 when its label is absent from the gallery).
    """
    order = torch.argsort(gallery_labels, stable=True)
    labels, counts = torch.unique_consecutive(gallery_labels[order], return_counts=True)
    starts = counts.cumsum(0) - counts
    slot = torch.searchsorted(labels, query_labels).clamp(max=labels.numel() - 1)
    found = labels[slot] == query_labels
    count = torch.where(found, counts[slot], 0)
    start = torch.where(found, starts[slot], 0)
    return order, start, count


@torch.no_grad()
def retrieval_ranks(
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    map_k: int = 10,
    chunk_size: int = 4096,
    max_chunk_elements: int = MAX_CHUNK_ELEMENTS,
) -> tuple[Tensor, Tensor]:
    """Rank of the first relevant item and AP@``map_k`` of every query, in one chunked pass.

    Returns ``(rank, ap)``: ``rank`` ``LongTensor[Q]`` (1-based, ties pessimistic, −1 for a query without a
    relevant item); ``ap`` float64 ``[Q]`` in ``[0, 1]`` (NaN for those queries; all NaN when ``map_k == 0``,
    which skips the AP work).

    How, per chunk of queries, with scores ``S = Q_c · Gᵀ``: gather the relevant scores from ``S``, then overwrite
    them with −inf so ``S`` holds only irrelevant scores. Then ``rank = 1 + #{S ≥ best relevant}`` (one pass),
    and with the relevant scores sorted ``s₁ ≥ s₂ ≥ …`` the m-th relevant item sits, pessimistically, at
    ``r_m = m + #{irrelevant ≥ s_m}``; only ``r_m ≤ K`` matters for AP@K and then that count is < K, so it is
    read off the K best irrelevant scores (a top-K, not a sort), for the rows where an m ≥ 2 can still count.
    Cost: one matrix product, one compare-and-count pass, and a top-K on a few rows.
    """
    _check_inputs(query, gallery, query_labels, gallery_labels)
    if chunk_size < 1 or map_k < 0:
        raise ValueError(f"need chunk_size >= 1 and map_k >= 0, got {chunk_size}, {map_k}")
    n_query, n_gallery = query.shape[0], gallery.shape[0]
    device = query.device
    order, start, count = _relevant_positions(query_labels.to(device), gallery_labels.to(device))
    rank = torch.full((n_query,), -1, dtype=torch.long, device=device)
    ap = torch.full((n_query,), math.nan, dtype=torch.float64, device=device)
    # float32 at least: the counts below are sums of 0/1 scores, exact in float32 up to 2**24 items
    dtype = torch.promote_types(torch.promote_types(query.dtype, gallery.dtype), torch.float32)
    if n_gallery >= 1 << 24:
        dtype = torch.float64
    query, gallery_t = query.to(dtype), gallery.to(dtype).T
    rows = max(1, min(chunk_size, n_query, max_chunk_elements // n_gallery))
    # two reused buffers: allocating fresh pages for every chunk costs about as much as the matrix product
    scores_buffer = torch.empty(rows, n_gallery, dtype=dtype, device=device)
    flags_buffer = torch.empty_like(scores_buffer)
    for lo in range(0, n_query, rows):
        hi = min(lo + rows, n_query)
        n_rel = count[lo:hi]
        width = int(n_rel.max())
        if width == 0:
            continue
        scores = torch.mm(query[lo:hi], gallery_t, out=scores_buffer[: hi - lo])  # [C, G]
        offset = torch.arange(width, device=device)
        is_rel = offset < n_rel[:, None]  # [C, width]
        # padding slots repeat the query's first relevant item: scattering −inf there twice is harmless
        rel_index = order[start[lo:hi, None] + torch.where(is_rel, offset, 0)]
        rel_scores = scores.gather(1, rel_index).masked_fill(~is_rel, -math.inf)
        best = rel_scores.max(dim=1, keepdim=True).values
        scores.scatter_(1, rel_index, -math.inf)  # scores now hold irrelevant items only
        # 0/1 floats and a float sum: ~5x faster on CPU than summing a bool tensor
        n_above = torch.ge(scores, best, out=flags_buffer[: hi - lo]).sum(dim=1).long()
        chunk_rank = 1 + n_above
        has_rel = n_rel > 0
        rank[lo:hi] = torch.where(has_rel, chunk_rank, -1)
        if map_k > 0:
            ap[lo:hi] = torch.where(has_rel, _average_precision(scores, rel_scores, n_rel, chunk_rank, map_k), math.nan)
    return rank, ap


def _average_precision(irrelevant: Tensor, rel_scores: Tensor, n_rel: Tensor, rank: Tensor, k: int) -> Tensor:
    """AP@k of a chunk, from its irrelevant scores (relevant ones at −inf), padded relevant scores and ranks.

    The first relevant item contributes ``1/rank`` when ``rank ≤ k``. The m-th (m ≥ 2) sits at
    ``m + #{irrelevant ≥ s_m} ≥ m + rank − 1``, so it can only count when ``rank < k``: the top-k irrelevant
    scores are needed for those rows alone (none in t2a with one track per album).
    """
    rank = rank.to(torch.float64)
    total = torch.where(rank <= k, 1.0 / rank, 0.0)
    deeper = ((n_rel >= 2) & (rank < k)).nonzero().squeeze(1)
    if deeper.numel():
        # copying a few rows is cheaper than a top-k on all; for many rows, the other way round
        if 4 * deeper.numel() < irrelevant.shape[0]:
            top_irr = _topk_values(irrelevant[deeper], k)
        else:
            top_irr = _topk_values(irrelevant, k)[deeper]
        total[deeper] = _precision_sum(top_irr, rel_scores[deeper], n_rel[deeper], k)
    return total / n_rel.clamp(min=1, max=k).to(torch.float64)


def _topk_values(x: Tensor, k: int, block: int = 64) -> Tensor:
    """The k largest values of each row (descending), ~2–4x faster than ``topk`` on long CPU rows.

    Cut each row into blocks and keep the k blocks with the largest maxima: they hold the k largest values
    (an element of another block is ≤ its block's maximum ≤ each of the k kept maxima, i.e. ≤ k values
    already kept), ties included as values. The top-k then runs on ``k·block`` candidates instead of the row.
    """
    rows, n = x.shape
    n_blocks = n // block
    if n_blocks <= 2 * k:
        return x.topk(min(k, n), dim=1).values
    main = x[:, : n_blocks * block].reshape(rows, n_blocks, block)
    best_blocks = main.amax(dim=2).topk(k, dim=1).indices  # [rows, k]
    columns = best_blocks[:, :, None] * block + torch.arange(block, device=x.device)
    candidates = x.gather(1, columns.reshape(rows, k * block))
    if n_blocks * block < n:  # the ragged tail is always a candidate
        candidates = torch.cat([candidates, x[:, n_blocks * block :]], dim=1)
    return candidates.topk(k, dim=1).values


def _precision_sum(top_irr: Tensor, rel_scores: Tensor, n_rel: Tensor, k: int) -> Tensor:
    """``Σ_{m: r_m ≤ k} m / r_m`` per row, where ``r_m = m + #{irrelevant ≥ s_m}`` (pessimistic position)
    and ``top_irr`` holds the (up to) k largest irrelevant scores of each row."""
    top_rel = rel_scores.topk(min(k, rel_scores.shape[1]), dim=1).values  # s_1 ≥ s_2 ≥ …, −inf padding
    above = (top_irr[:, None, :] >= top_rel[:, :, None]).sum(-1)  # min(#irrelevant ≥ s_m, k): exact if < k
    m = torch.arange(1, top_rel.shape[1] + 1, device=rel_scores.device, dtype=torch.float64)
    position = m + above
    counted = (m <= n_rel[:, None]) & (position <= k)
    return torch.where(counted, m / position, 0.0).sum(1)


def ranks_of_first_relevant(
    query: Tensor, gallery: Tensor, query_labels: Tensor, gallery_labels: Tensor, chunk_size: int = 4096
) -> Tensor:
    """1-based rank of the best-scoring relevant gallery item per query, ties pessimistic — ``LongTensor[Q]``.

    ``rank = 1 + #{irrelevant g : q·g ≥ max over relevant r of q·r}``; −1 for a query whose label is not in the
    gallery (excluded from the aggregates, see the module docstring).
    """
    return retrieval_ranks(query, gallery, query_labels, gallery_labels, map_k=0, chunk_size=chunk_size)[0]


def average_precision_at_k(
    query: Tensor,
    gallery: Tensor,
    query_labels: Tensor,
    gallery_labels: Tensor,
    k: int = 10,
    chunk_size: int = 4096,
) -> Tensor:
    """AP@k per query, float64 in ``[0, 1]`` (NaN for a query without a relevant item).

    ``AP@k = (1 / min(R, k)) · Σ_{i ≤ k} P(i)·rel(i)`` with R the number of relevant gallery items and the
    ranking ordered by score, irrelevant before relevant among equal scores.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return retrieval_ranks(query, gallery, query_labels, gallery_labels, map_k=k, chunk_size=chunk_size)[1]


# --------------------------------------------------------------------------------------------------------------
# per-query values, aggregates and bootstrap intervals
# --------------------------------------------------------------------------------------------------------------


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


Statistic = Literal["mean", "median"]
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
) -> dict[str, float]:
    """All retrieval metrics of one direction: ``{prefix}/R@k`` (%), ``{prefix}/mAP@{map_k}`` (%),
    ``{prefix}/MedR``, ``{prefix}/MeanR``, ``{prefix}/n_queries`` (scored queries) and ``{prefix}/n_excluded``
    (queries without a relevant item, left out of every metric).

    ``prefix`` is ``{stage}/{direction}``: ``t2a`` queries are reviews against the albums' audio, ``a2t``
    queries are audio against the reviews. With ``bootstrap=n`` > 0, every metric also gets its 95% percentile
    bootstrap interval over queries as ``{prefix}/{metric}_lo`` and ``…_hi``.
    """
    rank, ap = retrieval_ranks(query, gallery, query_labels, gallery_labels, map_k=map_k, chunk_size=chunk_size)
    return metrics_from_ranks(rank, ap if map_k > 0 else None, ks, map_k, prefix, bootstrap, generator)


def metrics_from_ranks(
    rank: Tensor,
    ap: Tensor | None,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    prefix: str = "val/t2a",
    bootstrap: int = 0,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Aggregates, optional bootstrap bounds and query counts of one direction from per-query ranks and AP.

    The one assembly of metric names and values: :func:`retrieval_metrics` and every evaluation protocol end here,
    so equal ranks always give equal numbers.
    """
    per_query = per_query_metrics(rank, ap, ks, map_k)
    out = summarize(per_query, prefix)
    if bootstrap > 0:
        for name, (low, high) in bootstrap_intervals(per_query, n=bootstrap, generator=generator).items():
            out[f"{prefix}/{name}_lo"], out[f"{prefix}/{name}_hi"] = float(low), float(high)
    n_scored = int((rank > 0).sum())
    out[f"{prefix}/n_queries"] = float(n_scored)
    out[f"{prefix}/n_excluded"] = float(rank.numel() - n_scored)
    return out


@torch.no_grad()
def _bootstrap(
    stats: Mapping[str, tuple[Tensor, Statistic]],
    n: int,
    alpha: float,
    generator: torch.Generator | None,
    max_chunk_elements: int,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every statistic; all metrics share the same resamples.

    A resample is held as its count vector ``W[j]`` (how often query j was drawn), built with one
    ``scatter_add`` per chunk of resamples. Means are then one matrix product ``W @ V / N`` for all metrics, and
    a median is read off the cumulative counts once the queries are sorted by that metric — no ``[b, N]``
    gathers and no sorting per resample (≈3x faster than indexing the values).
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
    values = {name: v[base] for name, v in values.items()}
    mean_matrix = torch.stack([values[name] for name in means], dim=1) if means else None  # [N, m]
    median_order = {name: (None if i == 0 else values[name].argsort()) for i, name in enumerate(medians)}
    # 1-based positions of the middle element(s) of a sorted sample of size N
    middle = torch.tensor([[(size + 1) // 2, size // 2 + 1]], dtype=f64, device=device)
    ones = torch.ones(1, dtype=f64, device=device)
    replicates: dict[str, list[Tensor]] = {name: [] for name in stats}
    per_chunk = max(1, max_chunk_elements // size)
    for lo in range(0, n, per_chunk):
        b = min(per_chunk, n - lo)
        draws = torch.randint(size, (b, size), generator=generator, device=device)
        counts = torch.zeros(b, size, dtype=f64, device=device).scatter_add_(1, draws, ones.expand(b, size))
        if mean_matrix is not None:
            chunk_means = counts @ mean_matrix / size
            for j, name in enumerate(means):
                replicates[name].append(chunk_means[:, j])
        for name, order in median_order.items():
            cumulative = (counts if order is None else counts[:, order]).cumsum(dim=1)
            at = torch.searchsorted(cumulative, middle.expand(b, 2).contiguous()).clamp(max=size - 1)
            sorted_values = values[name] if order is None else values[name][order]
            replicates[name].append(sorted_values[at].mean(dim=1))
    quantiles = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=f64, device=device)
    out = {}
    for name, chunks in replicates.items():
        low, high = torch.quantile(torch.cat(chunks), quantiles).tolist()
        out[name] = (low, high)
    return out


def bootstrap_intervals(
    per_query: Mapping[str, Tensor],
    n: int = 1000,
    alpha: float = 0.05,
    generator: torch.Generator | None = None,
    max_chunk_elements: int = 1 << 23,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap ``(1 − alpha)`` intervals of every metric of :func:`per_query_metrics`.

    Keys are metric names (``R@1`` … ``mAP@10``, ``MedR``, ``MeanR``). The queries are resampled with
    replacement ``n`` times and all metrics share the same resamples (paired intervals); at most
    ``max_chunk_elements`` counts are held at once. Queries are treated as independent; reviews of one album
    are not, so for t2a the interval is somewhat optimistic (resampling albums would be the conservative
    choice).
    """
    return _bootstrap(_statistics(per_query), n, alpha, generator, max_chunk_elements)


def bootstrap_interval(
    per_query_values: Tensor,
    n: int = 1000,
    alpha: float = 0.05,
    generator: torch.Generator | None = None,
    statistic: Statistic = "mean",
    max_chunk_elements: int = 1 << 23,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 − alpha)`` interval of the mean (or median) of per-query values.

    For R@k pass ``100 * hits_at_k(rank, k)``; for MedR the ranks with ``statistic="median"``.
    """
    return _bootstrap({"value": (per_query_values, statistic)}, n, alpha, generator, max_chunk_elements)["value"]


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


def random_baseline_metrics(
    query_labels: Tensor, gallery_labels: Tensor, ks: Sequence[int] = (1, 5, 10), prefix: str = "val/t2a"
) -> dict[str, float]:
    """Expected ``{prefix}/R@k`` (%) and ``{prefix}/MeanR`` of the Random baseline (a uniformly random ranking),
    averaged over the queries that have a relevant item — the same queries :func:`retrieval_metrics` scores."""
    n_gallery = gallery_labels.numel()
    _, _, count = _relevant_positions(query_labels, gallery_labels)
    n_relevant, n_queries = (t.tolist() for t in torch.unique(count[count > 0], return_counts=True))
    n_scored = sum(n_queries)
    head = f"{prefix}/" if prefix else ""

    def average(expected: Callable[[int], float]) -> float:
        return sum(q * expected(r) for r, q in zip(n_relevant, n_queries, strict=True)) / n_scored

    if n_scored == 0:
        return {**{f"{head}R@{k}": math.nan for k in ks}, f"{head}MeanR": math.nan}
    out = {f"{head}R@{k}": 100.0 * average(lambda r, k=k: expected_random_recall(n_gallery, r, k)) for k in ks}
    out[f"{head}MeanR"] = average(lambda r: expected_random_rank(n_gallery, r))
    return out
