"""The ranking kernel and metric assembly against a plainly written brute-force reference (python loops, full sort,
explicit ties); the bootstrap against a naive one, and the cluster bootstrap's honesty on correlated reviews."""

from __future__ import annotations

import math
import random

import pytest
import torch
from helpers import rank_and_ap
from hypothesis import given, settings
from hypothesis import strategies as st

from mte.eval.bootstrap import bootstrap_interval
from mte.eval.metrics import (
    bootstrap_intervals,
    expected_random_rank,
    expected_random_recall,
    hits_at_k,
    median,
    metrics_from_ranks,
    per_query_metrics,
    retrieval_metrics,
    summarize,
)
from mte.eval.ranking import _topk_values, relevant_counts, retrieval_ranks

# ----------------------------------------------------------------------------------------------------------------
# brute-force reference
# ----------------------------------------------------------------------------------------------------------------


def brute_force(query, gallery, query_labels, gallery_labels, k):
    """Per query: (rank of the first relevant item, AP@k); (-1, nan) when nothing is relevant.

    Every gallery item is sorted by (score descending, relevant after irrelevant) — the pessimistic tie-break —
    and the metrics are read off the sorted list exactly as defined.
    """
    ranks, aps = [], []
    for q in range(len(query)):
        scores = (gallery @ query[q]).tolist()
        relevant = [int(gallery_labels[g]) == int(query_labels[q]) for g in range(len(gallery))]
        if not any(relevant):
            ranks.append(-1)
            aps.append(math.nan)
            continue
        rank, ap = rank_and_ap(scores, relevant, k)
        ranks.append(rank)
        aps.append(ap)
    return ranks, aps


def quantised_data(seed, n_query, n_gallery, n_albums, dim=4, levels=2, absent_albums=0):
    """Small-integer embeddings: every dot product is exact in float32 and ties are everywhere.

    Galleries hold several items per album; ``absent_albums`` extra labels appear in queries only.
    """
    g = torch.Generator().manual_seed(seed)
    gallery = torch.randint(-levels, levels + 1, (n_gallery, dim), generator=g).float()
    query = torch.randint(-levels, levels + 1, (n_query, dim), generator=g).float()
    gallery_labels = torch.randint(n_albums, (n_gallery,), generator=g)
    query_labels = torch.randint(n_albums + absent_albums, (n_query,), generator=g)
    return query, gallery, query_labels, gallery_labels


def assert_matches_brute_force(query, gallery, query_labels, gallery_labels, k, chunk_size):
    rank, ap = retrieval_ranks(query, gallery, query_labels, gallery_labels, map_k=k, chunk_size=chunk_size)
    expected_rank, expected_ap = brute_force(query, gallery, query_labels, gallery_labels, k)
    assert rank.tolist() == expected_rank
    expected_ap = torch.tensor(expected_ap, dtype=torch.float64)
    assert torch.allclose(ap, expected_ap, rtol=0, atol=1e-12, equal_nan=True)


# ----------------------------------------------------------------------------------------------------------------
# exactness
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 4096])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_matches_brute_force_with_ties_and_many_relevant(seed, chunk_size, k):
    data = quantised_data(seed, n_query=40, n_gallery=30, n_albums=6, absent_albums=2)
    assert_matches_brute_force(*data, k=k, chunk_size=chunk_size)


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_continuous_scores(seed):
    g = torch.Generator().manual_seed(seed)
    query = torch.nn.functional.normalize(torch.randn(50, 8, generator=g, dtype=torch.float64), dim=1)
    gallery = torch.nn.functional.normalize(torch.randn(60, 8, generator=g, dtype=torch.float64), dim=1)
    query_labels, gallery_labels = torch.randint(12, (50,), generator=g), torch.randint(12, (60,), generator=g)
    assert_matches_brute_force(query, gallery, query_labels, gallery_labels, k=10, chunk_size=16)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_query=st.integers(1, 25),
    n_gallery=st.integers(1, 25),
    n_albums=st.integers(1, 6),
    k=st.integers(1, 30),
    chunk_size=st.integers(1, 30),
    levels=st.integers(0, 2),
)
def test_matches_brute_force_property(seed, n_query, n_gallery, n_albums, k, chunk_size, levels):
    data = quantised_data(seed, n_query, n_gallery, n_albums, dim=3, levels=levels, absent_albums=1)
    assert_matches_brute_force(*data, k=k, chunk_size=chunk_size)


@pytest.mark.parametrize("chunk_size", [1, 6, 64])
def test_matches_brute_force_large_gallery_good_model(chunk_size):
    """A gallery long enough for the blockwise top-k, and a model good enough that several relevant items
    land in the top 10 (the AP path beyond the first relevant item)."""
    g = torch.Generator().manual_seed(0)
    n_albums = 300
    centres = torch.randint(-3, 4, (n_albums, 6), generator=g)
    gallery_labels = torch.randint(n_albums, (1500,), generator=g)
    gallery = (3 * centres[gallery_labels] + torch.randint(-2, 3, (1500, 6), generator=g)).float()
    query_labels = gallery_labels[torch.randint(1500, (64,), generator=g)]
    query = (3 * centres[query_labels] + torch.randint(-2, 3, (64, 6), generator=g)).float()
    rank, _ = retrieval_ranks(query, gallery, query_labels, gallery_labels)
    assert (rank <= 5).float().mean() > 0.3  # the interesting regime is covered
    assert_matches_brute_force(query, gallery, query_labels, gallery_labels, k=10, chunk_size=chunk_size)


@pytest.mark.parametrize("n", [5, 640, 700, 1000])
@pytest.mark.parametrize("k", [1, 10])
def test_blockwise_topk_values_with_ties(n, k):
    g = torch.Generator().manual_seed(n)
    x = torch.randint(-5, 6, (20, n), generator=g).float()
    x[:, ::7] = -math.inf
    assert torch.equal(_topk_values(x, k), x.topk(min(k, n), dim=1).values)


def test_small_max_chunk_elements_gives_the_same_result():
    data = quantised_data(7, n_query=100, n_gallery=50, n_albums=10)
    full = retrieval_ranks(*data, map_k=10)
    tiny = retrieval_ranks(*data, map_k=10, max_chunk_elements=120)  # 2 queries per chunk
    assert torch.equal(full[0], tiny[0])
    assert torch.allclose(full[1], tiny[1], equal_nan=True)


def test_hand_example_ties_are_pessimistic():
    query = torch.tensor([[1.0, 0.0]])
    # scores 0.9 (relevant), 0.9 (irrelevant), 0.5 (relevant), 0.1 (irrelevant)
    gallery = torch.tensor([[0.9, 0.0], [0.9, 0.0], [0.5, 0.0], [0.1, 0.0]])
    query_labels, gallery_labels = torch.tensor([7]), torch.tensor([7, 3, 7, 3])
    # pessimistic order: irrelevant 0.9, relevant 0.9, relevant 0.5, irrelevant 0.1
    rank, ap = retrieval_ranks(query, gallery, query_labels, gallery_labels, map_k=10)
    assert rank.tolist() == [2]
    assert ap.item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    _, ap2 = retrieval_ranks(query, gallery, query_labels, gallery_labels, map_k=2)
    assert ap2.item() == pytest.approx((1 / 2) / 2)


def test_constant_model_gets_the_worst_rank():
    n_gallery, labels = 20, torch.arange(20) % 5  # 4 relevant items per album
    query, gallery = torch.ones(10, 3), torch.ones(n_gallery, 3)
    query_labels = torch.arange(10) % 5
    rank, ap = retrieval_ranks(query, gallery, query_labels, labels, map_k=10)
    assert rank.tolist() == [n_gallery - 4 + 1] * 10  # behind all 16 irrelevant items
    assert ap.tolist() == [0.0] * 10
    metrics = retrieval_metrics(query, gallery, query_labels, labels, prefix="val/t2a")
    assert metrics["val/t2a/R@10"] == 0.0
    assert metrics["val/t2a/MedR"] == 17.0


def test_perfect_model():
    eye = torch.eye(6)
    metrics = retrieval_metrics(eye, eye, torch.arange(6), torch.arange(6), prefix="test/a2t")
    assert metrics == {
        "test/a2t/R@1": 100.0,
        "test/a2t/R@5": 100.0,
        "test/a2t/R@10": 100.0,
        "test/a2t/mAP@10": 100.0,
        "test/a2t/MedR": 1.0,
        "test/a2t/MeanR": 1.0,
        "test/a2t/n_queries": 6.0,
        "test/a2t/n_excluded": 0.0,
    }


def test_queries_without_relevant_item_are_excluded_and_counted():
    query, gallery, query_labels, gallery_labels = quantised_data(3, 30, 20, n_albums=4, absent_albums=3)
    rank, ap = retrieval_ranks(query, gallery, query_labels, gallery_labels)
    absent = ~torch.isin(query_labels, gallery_labels)
    assert absent.any() and (~absent).any()
    assert (rank[absent] == -1).all() and ap[absent].isnan().all()
    assert (rank[~absent] >= 1).all() and not ap[~absent].isnan().any()

    metrics = retrieval_metrics(query, gallery, query_labels, gallery_labels, prefix="val/t2a")
    kept = retrieval_metrics(query[~absent], gallery, query_labels[~absent], gallery_labels, prefix="val/t2a")
    assert metrics["val/t2a/n_excluded"] == float(absent.sum())
    assert metrics["val/t2a/n_queries"] == float((~absent).sum())
    for name in ("R@1", "R@5", "R@10", "mAP@10", "MedR", "MeanR"):
        assert metrics[f"val/t2a/{name}"] == kept[f"val/t2a/{name}"]


def test_no_scored_query_gives_nan_not_an_error():
    metrics = retrieval_metrics(torch.ones(2, 3), torch.ones(4, 3), torch.tensor([9, 9]), torch.arange(4))
    assert metrics["val/t2a/n_queries"] == 0.0 and metrics["val/t2a/n_excluded"] == 2.0
    assert math.isnan(metrics["val/t2a/R@1"]) and math.isnan(metrics["val/t2a/MedR"])


def test_retrieval_metrics_agree_with_brute_force_aggregates():
    query, gallery, query_labels, gallery_labels = quantised_data(11, 60, 40, n_albums=8)
    ranks, aps = brute_force(query, gallery, query_labels, gallery_labels, 10)
    scored = [(r, a) for r, a in zip(ranks, aps, strict=True) if r > 0]
    ranks_ok = sorted(r for r, _ in scored)
    n = len(scored)
    metrics = retrieval_metrics(query, gallery, query_labels, gallery_labels, prefix="val/a2t", chunk_size=7)
    for k in (1, 5, 10):
        assert metrics[f"val/a2t/R@{k}"] == pytest.approx(100 * sum(r <= k for r in ranks_ok) / n)
    assert metrics["val/a2t/mAP@10"] == pytest.approx(100 * sum(a for _, a in scored) / n)
    assert metrics["val/a2t/MeanR"] == pytest.approx(sum(ranks_ok) / n)
    middle = (ranks_ok[(n - 1) // 2] + ranks_ok[n // 2]) / 2
    assert metrics["val/a2t/MedR"] == middle


def test_half_precision_inputs_are_scored_in_float32():
    data = quantised_data(5, 20, 15, n_albums=4)
    half = retrieval_ranks(data[0].half(), data[1].half(), data[2], data[3])
    full = retrieval_ranks(*data)
    assert torch.equal(half[0], full[0])


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="gallery"):
        retrieval_ranks(torch.ones(2, 3), torch.ones(2, 4), torch.arange(2), torch.arange(2))
    with pytest.raises(ValueError, match="labels"):
        retrieval_ranks(torch.ones(2, 3), torch.ones(2, 3), torch.arange(3), torch.arange(2))
    with pytest.raises(ValueError, match="empty"):
        retrieval_ranks(torch.ones(2, 3), torch.ones(0, 3), torch.arange(2), torch.arange(0))


# ----------------------------------------------------------------------------------------------------------------
# per-query values, median, bootstrap
# ----------------------------------------------------------------------------------------------------------------


def test_hits_and_per_query_metrics():
    rank = torch.tensor([1, 3, -1, 12, 5])
    assert hits_at_k(rank, 5).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]
    ap = torch.tensor([1.0, 0.25, math.nan, 0.0, 0.2], dtype=torch.float64)
    per_query = per_query_metrics(rank, ap, ks=(1, 5), map_k=10)
    assert set(per_query) == {"R@1", "R@5", "mAP@10", "rank"}
    assert per_query["R@5"].tolist() == [100.0, 100.0, 0.0, 100.0]
    assert per_query["rank"].tolist() == [1.0, 3.0, 12.0, 5.0]
    summary = summarize(per_query, prefix="val/t2a")
    assert summary["val/t2a/MedR"] == 4.0 and summary["val/t2a/MeanR"] == 5.25
    assert summary["val/t2a/mAP@10"] == pytest.approx(100 * 1.45 / 4)


def test_median_convention_matches_numpy():
    values = torch.tensor([[5.0, 1.0, 3.0, 2.0], [4.0, 4.0, 1.0, 9.0]])
    assert median(values).tolist() == [2.5, 4.0]
    assert median(torch.tensor([3.0, 1.0, 2.0])).item() == 2.0


def naive_bootstrap(values, n, alpha, seed, statistic):
    g = torch.Generator().manual_seed(seed)
    reps = []
    for _ in range(n):
        sample = values[torch.randint(len(values), (len(values),), generator=g)]
        reps.append(float(sample.mean() if statistic == "mean" else median(sample)))
    reps = torch.tensor(reps, dtype=torch.float64)
    return torch.quantile(reps, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)).tolist()


@pytest.mark.parametrize("statistic", ["mean", "median"])
def test_bootstrap_agrees_with_a_naive_bootstrap(statistic):
    g = torch.Generator().manual_seed(0)
    values = torch.randint(1, 60, (400,), generator=g).double()
    low, high = bootstrap_interval(values, n=4000, statistic=statistic, generator=g, max_chunk_elements=10_000)
    ref_low, ref_high = naive_bootstrap(values, 4000, 0.05, seed=1, statistic=statistic)
    width = ref_high - ref_low
    assert abs(low - ref_low) < 0.15 * width and abs(high - ref_high) < 0.15 * width


def test_bootstrap_contains_the_estimate_and_shrinks_with_more_queries():
    g = torch.Generator().manual_seed(0)
    rank = torch.randint(1, 200, (20_000,), generator=g)
    widths = []
    for n_queries in (200, 2_000, 20_000):
        per_query = per_query_metrics(rank[:n_queries], ks=(1, 5, 10, 50))
        point = summarize(per_query)
        intervals = bootstrap_intervals(per_query, n=500, generator=torch.Generator().manual_seed(1))
        assert set(intervals) == set(point)
        for name, (low, high) in intervals.items():
            assert low <= point[name] <= high, name
        widths.append(intervals["R@50"][1] - intervals["R@50"][0])
    assert widths[0] > widths[1] > widths[2] > 0
    assert widths[0] / widths[2] == pytest.approx(10, rel=0.3)  # ~ 1/sqrt(n)


def test_bootstrap_is_reproducible_and_exact_for_constant_values():
    values = torch.full((50,), 7.0)
    assert bootstrap_interval(values, n=100) == (7.0, 7.0)
    assert bootstrap_interval(values, n=100, statistic="median") == (7.0, 7.0)
    per_query = per_query_metrics(torch.randint(1, 30, (300,), generator=torch.Generator().manual_seed(2)))
    first = bootstrap_intervals(per_query, n=300, generator=torch.Generator().manual_seed(5))
    second = bootstrap_intervals(per_query, n=300, generator=torch.Generator().manual_seed(5))
    assert first == second


# ----------------------------------------------------------------------------------------------------------------
# the cluster bootstrap: albums, not reviews, are the independent units
# ----------------------------------------------------------------------------------------------------------------


def test_cluster_interval_is_wider_than_the_review_interval_on_correlated_albums():
    """Whether an album is found is one coin per album, shared by its 10 reviews (hits correlated within an album,
    as in real t2a retrieval): treating them as 10 independent queries understates the uncertainty ~sqrt(10)x."""
    g = torch.Generator().manual_seed(0)
    found = torch.rand(60, generator=g) < 0.3
    album = torch.arange(60).repeat_interleave(10)
    rank = torch.where(found[album], 1, 50)
    per_query = per_query_metrics(rank)
    reviews = bootstrap_intervals(per_query, n=2000, generator=torch.Generator().manual_seed(1))
    albums = bootstrap_intervals(per_query, n=2000, generator=torch.Generator().manual_seed(1), clusters=album)
    for name in ("R@1", "R@10", "MeanR"):
        review_width = reviews[name][1] - reviews[name][0]
        album_width = albums[name][1] - albums[name][0]
        assert album_width > 2 * review_width, (name, review_width, album_width)
    # the point estimate is the same and sits inside both
    point = summarize(per_query)
    assert albums["R@1"][0] <= point["R@1"] <= albums["R@1"][1]


def test_cluster_interval_reproduces_a_naive_album_bootstrap():
    """Draw albums with replacement, pool all their reviews, take the metric: the same percentiles (up to Monte
    Carlo error), for unequal album sizes (the weighted mean and median are the pooled sample's)."""
    g = torch.Generator().manual_seed(3)
    sizes = torch.randint(1, 12, (40,), generator=g)
    album = torch.arange(40).repeat_interleave(sizes)
    # continuous values (no lumpy percentiles), albums of different levels so the clusters matter
    values = torch.rand(len(album), generator=g, dtype=torch.float64) * 30 * (1 + (album % 3 == 0) * 5)
    for statistic in ("mean", "median"):
        low, high = bootstrap_interval(values, n=4000, statistic=statistic, clusters=album,
                                       generator=torch.Generator().manual_seed(5), max_chunk_elements=20_000)
        draw = torch.Generator().manual_seed(6)
        reps = []
        for _ in range(4000):
            copies = torch.bincount(torch.randint(40, (40,), generator=draw), minlength=40)
            sample = values.repeat_interleave(copies[album])  # every review of every drawn album, as often as drawn
            reps.append(float(sample.mean() if statistic == "mean" else median(sample)))
        ref = torch.quantile(torch.tensor(reps, dtype=torch.float64), torch.tensor([0.025, 0.975], dtype=torch.float64))
        width = float(ref[1] - ref[0])
        assert abs(low - float(ref[0])) < 0.12 * width and abs(high - float(ref[1])) < 0.12 * width, statistic


def test_one_review_per_album_is_exactly_the_ordinary_bootstrap():
    """Clusters of one query each: the same draws, the same intervals, to the last bit (album ids in any order)."""
    rank = torch.randint(1, 40, (300,), generator=torch.Generator().manual_seed(2))
    per_query = per_query_metrics(rank, torch.rand(300, generator=torch.Generator().manual_seed(4)).double())
    albums = torch.randperm(300, generator=torch.Generator().manual_seed(3)) * 7 + 11
    plain = bootstrap_intervals(per_query, n=500, generator=torch.Generator().manual_seed(9))
    clustered = bootstrap_intervals(per_query, n=500, generator=torch.Generator().manual_seed(9), clusters=albums)
    assert plain == clustered


def test_metrics_from_ranks_resamples_the_clusters_of_scored_queries_only():
    """Unscored queries (rank −1) leave the metrics and their clusters leave the bootstrap: the same intervals as
    the scored queries alone."""
    rank = torch.tensor([1, 3, -1, 2, 8, -1, 1, 4, 2, 6])
    album = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 4])
    scored = rank > 0
    got = metrics_from_ranks(rank, None, prefix="t", bootstrap=200, generator=torch.Generator().manual_seed(0),
                             clusters=album)
    ref = metrics_from_ranks(rank[scored], None, prefix="t", bootstrap=200, generator=torch.Generator().manual_seed(0),
                             clusters=album[scored])
    assert got.pop("t/n_excluded") == 2 and ref.pop("t/n_excluded") == 0
    assert got == ref
    with pytest.raises(ValueError, match="one cluster id per query"):
        bootstrap_interval(torch.ones(4), clusters=torch.arange(3))


def test_relevant_counts():
    assert relevant_counts(torch.tensor([3, 1, 9]), torch.tensor([1, 3, 3, 5])).tolist() == [2, 1, 0]
    assert relevant_counts(torch.tensor([3]), torch.tensor([], dtype=torch.long)).tolist() == [0]


def test_bootstrap_validates_arguments():
    with pytest.raises(ValueError):
        bootstrap_interval(torch.ones(5), alpha=1.5)
    with pytest.raises(ValueError):
        bootstrap_interval(torch.ones(5), statistic="mode")
    assert all(math.isnan(v) for v in bootstrap_interval(torch.ones(0)))


# ----------------------------------------------------------------------------------------------------------------
# random baseline
# ----------------------------------------------------------------------------------------------------------------


def test_expected_random_recall_closed_forms():
    assert expected_random_recall(10, 1, 3) == pytest.approx(0.3)
    assert expected_random_recall(10, 2, 1) == pytest.approx(0.2)
    assert expected_random_recall(10, 2, 2) == pytest.approx(1 - (8 * 7) / (10 * 9))
    assert expected_random_recall(10, 0, 5) == 0.0
    assert expected_random_recall(5, 1, 50) == 1.0
    assert expected_random_rank(9, 1) == 5.0
    with pytest.raises(ValueError):
        expected_random_recall(5, 6, 1)


@pytest.mark.parametrize(("n_gallery", "n_relevant", "k"), [(50, 1, 5), (50, 4, 10), (200, 3, 1), (30, 10, 3)])
def test_expected_random_recall_matches_monte_carlo(n_gallery, n_relevant, k):
    rng = random.Random(0)
    trials, hits, first = 20_000, 0, 0
    for _ in range(trials):
        positions = rng.sample(range(n_gallery), n_relevant)  # where the relevant items land
        hits += min(positions) < k
        first += min(positions) + 1
    assert hits / trials == pytest.approx(expected_random_recall(n_gallery, n_relevant, k), abs=0.015)
    assert first / trials == pytest.approx(expected_random_rank(n_gallery, n_relevant), rel=0.03)
