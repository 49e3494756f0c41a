"""Baselines: the Random baseline's exact expectations, CCA's closed form, and both as `python -m mte.train` runs."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mte.data.processed import ProcessedData
from mte.eval.metrics import retrieval_metrics
from mte.train.baselines import (
    CCABaseline,
    cca_split_metrics,
    expected_average_precision,
    fit_cca,
    random_direction_metrics,
    random_split_metrics,
    simulate_random_ranker,
)

METRICS = ["R@1", "R@5", "R@10", "mAP@10", "MedR", "MeanR"]


# -- Random ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("g", "r", "k"), [(1, 1, 10), (6, 1, 3), (6, 2, 3), (7, 3, 10), (8, 5, 4)])
def test_expected_average_precision_equals_enumeration(g, r, k):
    """Average AP@k over every placement of the r relevant items (all placements are equally likely)."""
    total, n = Fraction(0), 0
    for placed in itertools.combinations(range(1, g + 1), r):
        hits, ap = 0, Fraction(0)
        for position in range(1, min(k, g) + 1):
            if position in placed:
                hits += 1
                ap += Fraction(hits, position)
        total += ap / min(r, k)
        n += 1
    assert expected_average_precision(g, r, k) == pytest.approx(float(total / n), abs=1e-15)


def _labels(n_albums: int, reviews_per_album: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Review labels (album of each review) and album labels: the album protocol's two sides."""
    return torch.repeat_interleave(torch.arange(n_albums), reviews_per_album), torch.arange(n_albums)


def test_random_expectations_match_monte_carlo_through_the_real_evaluator():
    """Random embeddings ranked by the evaluator trained runs use: their average converges to the exact values."""
    gen = torch.Generator().manual_seed(0)
    reviews_per_album = torch.randint(1, 9, (30,), generator=gen)
    review_labels, album_labels = _labels(30, reviews_per_album)
    directions = {"t2a": (review_labels, album_labels), "a2t": (album_labels, review_labels)}
    sims = 250
    for direction, (q_labels, g_labels) in directions.items():
        exact = random_direction_metrics(q_labels, g_labels, prefix=direction)
        runs = []
        for _ in range(sims):
            q = F.normalize(torch.randn(len(q_labels), 8, generator=gen), dim=1)
            g = F.normalize(torch.randn(len(g_labels), 8, generator=gen), dim=1)
            runs.append(retrieval_metrics(q, g, q_labels, g_labels, prefix=direction))
        for name in ["R@1", "R@5", "R@10", "mAP@10", "MeanR"]:
            values = np.array([run[f"{direction}/{name}"] for run in runs])
            standard_error = values.std(ddof=1) / math.sqrt(sims)
            assert abs(values.mean() - exact[f"{direction}/{name}"]) < 4 * standard_error + 1e-9, (direction, name)
        # a sample median is not unbiased, but with ~30–130 queries it sits near the distribution's median
        realised = np.array([run[f"{direction}/MedR"] for run in runs])
        assert abs(np.median(realised) - exact[f"{direction}/MedR"]) <= 0.1 * exact[f"{direction}/MedR"] + 1
        assert exact[f"{direction}/n_queries"] == len(q_labels) and exact[f"{direction}/n_excluded"] == 0


def test_random_median_rank_is_the_median_of_the_rank_distribution():
    # a2t: albums with 1, 1, 3 of G = 5 reviews. P(rank ≤ m) is m/5 for r = 1 and 1 − C(2, m)/C(5, m) for r = 3:
    # the mixture CDF is 1/3 at m = 1 and 17/30 at m = 2, so the median is 2 (expected ranks: 3, 3, 1.5)
    review_labels, album_labels = _labels(3, torch.tensor([1, 1, 3]))
    exact = random_direction_metrics(album_labels, review_labels, prefix="")
    assert exact["MedR"] == 2.0 and exact["MeanR"] == pytest.approx((3 + 3 + 1.5) / 3)
    # t2a with G = 3 albums: ranks uniform on 1..3, median 2; G = 4: CDF exactly 1/2 at 2, median 2.5 = (G+1)/2
    exact = random_direction_metrics(review_labels, album_labels, prefix="")
    assert exact["MedR"] == 2.0 and exact["R@1"] == pytest.approx(100 / 3)
    review_labels, album_labels = _labels(4, torch.tensor([2, 1, 1, 3]))
    assert random_direction_metrics(review_labels, album_labels, prefix="")["MedR"] == 2.5


def test_chance_band_simulation_matches_the_exact_expectation():
    gen = torch.Generator().manual_seed(1)
    review_labels, album_labels = _labels(40, torch.randint(1, 12, (40,), generator=gen))
    for q_labels, g_labels in [(review_labels, album_labels), (album_labels, review_labels)]:
        exact = random_direction_metrics(q_labels, g_labels, prefix="")
        counts = torch.stack([(g_labels == label).sum() for label in q_labels])
        simulated = simulate_random_ranker(len(g_labels), counts, 4000, generator=gen)
        for name in ["R@1", "R@5", "R@10", "mAP@10", "MeanR"]:
            values = simulated[name]
            assert abs(float(values.mean()) - exact[name]) < 4 * float(values.std()) / math.sqrt(4000) + 1e-9, name


def test_random_split_metrics_have_the_trained_runs_names(processed_dir):
    data = ProcessedData.load(processed_dir)
    metrics = random_split_metrics(data, "test", "test", (1, 5, 10), 10, bootstrap=200)
    n_albums = len(data.splits["test"])
    for direction in ("t2a", "a2t"):
        for name in METRICS:
            value = metrics[f"test/{direction}/{name}"]
            assert metrics[f"test/{direction}/{name}_lo"] <= value <= metrics[f"test/{direction}/{name}_hi"], name
    # t2a: one relevant album among n_albums, so R@K = K/G exactly and the expected rank is (G+1)/2
    assert metrics["test/t2a/R@1"] == pytest.approx(100 / n_albums)
    assert metrics["test/t2a/R@10"] == pytest.approx(100 * min(10, n_albums) / n_albums)
    assert metrics["test/t2a/MeanR"] == pytest.approx((n_albums + 1) / 2)
    assert metrics["test/a2t/n_queries"] == n_albums


# -- CCA -------------------------------------------------------------------------------------------------------


def test_cca_recovers_a_planted_correlation():
    """Two shared latent signals with correlations 0.8 and 0.5, hidden by random rotations in 10 and 7 dims."""
    gen = torch.Generator().manual_seed(0)
    n = 40000
    z = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    planted = torch.tensor([0.8, 0.5], dtype=torch.float64)
    # x_i = z_i + e, y_i = z_i + e' with var(e) = (1−ρ)/ρ gives corr(x_i, y_i) = ρ
    noise = ((1 - planted) / planted).sqrt()
    x = torch.randn(n, 10, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 7, generator=gen, dtype=torch.float64)
    x[:, :2] = z + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    y[:, :2] = z + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    x = x @ torch.linalg.qr(torch.randn(10, 10, generator=gen, dtype=torch.float64))[0] * 3.0 + 5.0
    y = y @ torch.linalg.qr(torch.randn(7, 7, generator=gen, dtype=torch.float64))[0] * 0.1 - 2.0
    cca = fit_cca(x, y, dim=4, reg=0.0)
    assert cca.correlations[:2].tolist() == pytest.approx([0.8, 0.5], abs=0.02)
    assert float(cca.correlations[2]) < 0.05
    # the canonical variates are what the correlations say they are
    u, v = cca.transform_x(x), cca.transform_y(y)
    empirical = torch.corrcoef(torch.stack([u[:, 0], v[:, 0]]))[0, 1]
    assert float(empirical) == pytest.approx(float(cca.correlations[0]), abs=1e-6)
    # a ridge only shrinks the correlations it reports
    assert float(fit_cca(x, y, dim=4, reg=0.5).correlations[0]) < float(cca.correlations[0])


def test_cca_beats_random_on_held_out_synthetic_mard(processed_dir):
    data = ProcessedData.load(processed_dir)
    model = CCABaseline.fit(data)
    for split in ("val", "test"):
        cca = cca_split_metrics(model, data, split, split, (1, 5, 10), 10)
        chance = random_split_metrics(data, split, split, (1, 5, 10), 10)
        assert cca[f"{split}/t2a/mAP@10"] > chance[f"{split}/t2a/mAP@10"] + 3, split
        assert cca[f"{split}/t2a/MeanR"] < chance[f"{split}/t2a/MeanR"], split
    # the saved state reproduces the embeddings
    again = CCABaseline.from_state_dict(model.state_dict())
    reviews = data.split_review_indices("test")[:20]
    assert torch.equal(again.embed_reviews(data, reviews), model.embed_reviews(data, reviews))


# -- as runs ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("baseline", ["cca", "random"])
def test_train_entry_point_runs_baselines(tmp_path, baseline):
    from helpers import run_module

    run_dir = tmp_path / baseline
    proc = run_module(
        "mte.train", f"model={baseline}", "data.synthetic.albums=200", "logger=none", f"hydra.run.dir={run_dir}"
    )
    assert "test/t2a" in proc.stdout and "R@10" in proc.stdout
    payload = json.loads((run_dir / "metrics.json").read_text())
    metrics = payload["metrics"]
    for stage in ("val", "val_best", "test"):
        for direction in ("t2a", "a2t"):
            for name in METRICS:
                assert f"{stage}/{direction}/{name}" in metrics, f"{stage}/{direction}/{name}"
    assert "test/t2a/R@10_lo" in metrics and "test/t2a/R@10_hi" in metrics
    assert payload["kind"] == "baseline" and payload["baseline"] == baseline
    # mte.evaluate accepts it (tests/test_contract.py), and the run's files point at it
    assert payload["best_checkpoint"] == str(run_dir / "checkpoints" / "best.ckpt")
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
