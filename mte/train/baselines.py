"""Baselines that run like any training run: ``python -m mte.train model=random`` and ``model=cca``.

Both go through :func:`mte.train.run.run` (same data preparation, same held-out splits and queries, same album
protocol, same ``metrics.json`` names — ``kind: "baseline"`` — and printed table), so a report can put them beside
trained models without footnotes.

* **Random** (:func:`random_split_metrics`): the *exact expected* metrics of a uniformly random ranking of the
  gallery, per query, averaged — no sampled rankings, so the number does not wobble from run to run.
  ``R@K`` is hypergeometric (``1 − C(G−r, K)/C(G, K)``), ``MeanR`` is the mean of ``(G+1)/(r+1)`` and
  ``mAP@K`` the exact expectation (see :func:`expected_average_precision`). ``MedR`` is the exact median of
  the rank of a random query under a random ranking (:func:`random_median_rank`) — the value a realised MedR
  concentrates around. The median of the per-query *expected* ranks would be simpler but is the wrong number
  for a2t: ranks are skewed (most mass near 1, a long tail), so on synthetic data it came out at 130 while
  random rankings' realised MedR fell in [55, 108]. For t2a (one relevant album per query) both are
  ``(G+1)/2``. Test metrics get ``_lo``/``_hi``
  bounds like trained runs, but they mean something slightly different: the 95% *chance band* — the range
  in which one random ranking's realised score falls on these queries (seeded simulation of the exact
  per-query rank distribution, :func:`random_chance_band`). A trained model inside that band is
  indistinguishable from chance.
* **CCA** (:class:`CCABaseline`): regularised canonical correlation analysis between a TF-IDF/LSA text vector
  and the standardised descriptor vector, fitted in closed form on the **train** split and evaluated on the
  held-out split with :func:`mte.eval.protocols.evaluate_embeddings`, the evaluator of trained runs. The paper's
  CCA row (2.54/6.90/9.74) was, by its own code, evaluated on the data it was fitted on; ours is not, so it is
  the honest (lower) variant.

Text features for CCA: bag of words from the stored vocabulary ids (the same tokens the bow model reads, stop
words already removed), sublinear TF × smooth IDF (IDF from train reviews), rows L2-normalised, then reduced to
``model.text_dim`` dimensions by a truncated SVD of the train matrix (``torch.svd_lowrank``; classic LSA).
``[PAD]`` and ``[UNK]`` are dropped: UNK pools every rare word into one meaningless column.
Audio: the standardised descriptor vector of each track (train-split statistics, as the trained models see it).
CCA pairs each train review with the mean standardised vector of its album's tracks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mte.data.processed import ProcessedData
from mte.eval.metrics import expected_random_rank, expected_random_recall, median
from mte.eval.protocols import EvalSet, evaluate_embeddings, query_mask
from mte.eval.ranking import relevant_counts
from mte.eval.results import print_summary, write_results
from mte.models.baselines import CCAEmbedder, CCAProjection, RandomEmbedder, save_baseline, tfidf
from mte.models.contract import InputContract
from mte.train import BASELINES  # the names of the baselines defined here (re-exported)

# --------------------------------------------------------------------------------------------------------------
# the held-out split, as the trained runs' evaluation sees it
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SplitItems:
    """Reviews and tracks of one split, with their album labels (row numbers in ``albums.parquet``).

    The labels are the ones :class:`mte.train.datamodule.MardDataModule` gives its evaluation batches, so baselines
    are scored exactly as trained models are.
    """

    reviews: np.ndarray  # review_idx, ascending
    review_album: np.ndarray
    tracks: np.ndarray  # track_idx, ascending
    track_album: np.ndarray


def album_rows(data: ProcessedData) -> tuple[np.ndarray, np.ndarray]:
    """Album row of every review and of every track (int64), in ``review_idx``/``track_idx`` order."""
    row = {a: i for i, a in enumerate(data.albums.get_column("amazon_id").to_list())}
    review_album = np.asarray([row[a] for a in data.reviews.get_column("amazon_id").to_list()], dtype=np.int64)
    track_album = np.asarray([row[a] for a in data.tracks.get_column("amazon_id").to_list()], dtype=np.int64)
    return review_album, track_album


def split_items(data: ProcessedData, split: str, queries: bool = False) -> SplitItems:
    """The paired reviews and the tracks of ``split`` (works for ``data.split=paper``, where test == val).

    ``queries``: only the reviews that query (:func:`mte.eval.protocols.query_mask` for a model that reads tokens,
    as both baselines do), so baselines are scored on the very queries trained models are; fitting uses them all,
    as training pairs do.
    """
    review_album, track_album = album_rows(data)
    reviews, tracks = data.split_review_indices(split), data.split_track_indices(split)
    if queries:
        lengths = data.reviews.get_column("tokens").gather(reviews).list.len().fill_null(0).to_numpy()
        reviews = reviews[query_mask(token_lengths=lengths)]
    if len(reviews) == 0 or len(tracks) == 0:
        raise ValueError(f"{data.root}: the {split!r} split has no paired reviews/tracks")
    return SplitItems(reviews, review_album[reviews], tracks, track_album[tracks])


def _album_gallery(items: SplitItems) -> tuple[Tensor, Tensor]:
    """(review labels, album ids of the gallery): the album protocol ranks each split album once."""
    return torch.from_numpy(items.review_album), torch.unique(torch.from_numpy(items.track_album))


# --------------------------------------------------------------------------------------------------------------
# Random: exact expectations
# --------------------------------------------------------------------------------------------------------------


def expected_average_precision(n_gallery: int, n_relevant: int, k: int) -> float:
    """Exact ``E[AP@k]`` (fraction) of a uniformly random ranking with ``n_relevant`` of ``n_gallery`` relevant.

    ``AP@k = (1/min(r, k)) Σ_{i≤k} rel(i)·P(i)`` with ``P(i) = (1/i) Σ_{j≤i} rel(j)``. By linearity
    ``E[rel(i)·rel(j)]`` is ``r/G`` for ``j = i`` and ``r(r−1)/(G(G−1))`` for ``j < i`` (two given positions both
    relevant), so ``E[AP@k] = (1/min(r,k)) Σ_{i≤min(k,G)} (1/i)·(r/G + (i−1)·r(r−1)/(G(G−1)))``.
    """
    if not 1 <= n_relevant <= n_gallery or k < 1:
        raise ValueError(f"need 1 <= n_relevant <= n_gallery and k >= 1, got {n_relevant}, {n_gallery}, {k}")
    g, r = n_gallery, n_relevant
    pair = Fraction(r * (r - 1), g * (g - 1)) if g > 1 else Fraction(0)
    total = sum(Fraction(1, i) * (Fraction(r, g) + (i - 1) * pair) for i in range(1, min(k, g) + 1))
    return float(total / min(r, k))


def random_direction_metrics(
    query_labels: Tensor,
    gallery_labels: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    prefix: str = "test/t2a",
) -> dict[str, float]:
    """Exact expected metrics of one direction for a random ranker, under the names of
    :func:`mte.eval.metrics.metrics_from_ranks` (including ``n_queries``/``n_excluded``).

    Computed once per distinct relevant-count ``r`` and weighted by how many queries have it, so a split with
    85,000 queries costs a handful of exact (rational) evaluations.
    """
    n_gallery = gallery_labels.numel()
    count = relevant_counts(query_labels, gallery_labels)
    scored = count[count > 0]
    head = f"{prefix}/" if prefix else ""
    out: dict[str, float] = {}
    if scored.numel() == 0:
        names = [f"R@{k}" for k in ks] + ([f"mAP@{map_k}"] if map_k > 0 else []) + ["MedR", "MeanR"]
        out = {head + n: math.nan for n in names}
    else:
        values, inverse = torch.unique(scored, return_inverse=True)
        weights = torch.bincount(inverse, minlength=values.numel()).to(torch.float64) / scored.numel()
        rs = values.tolist()

        def average(per_r: list[float]) -> float:
            return float((torch.tensor(per_r, dtype=torch.float64) * weights).sum())

        for k in ks:
            out[head + f"R@{k}"] = 100.0 * average([expected_random_recall(n_gallery, r, k) for r in rs])
        if map_k > 0:
            out[head + f"mAP@{map_k}"] = 100.0 * average([expected_average_precision(n_gallery, r, map_k) for r in rs])
        out[head + "MedR"] = random_median_rank(n_gallery, rs, weights.tolist())
        out[head + "MeanR"] = average([expected_random_rank(n_gallery, r) for r in rs])
    out[head + "n_queries"] = float(scored.numel())
    out[head + "n_excluded"] = float(count.numel() - scored.numel())
    return out


def random_median_rank(
    n_gallery: int, n_relevant: Sequence[int], weights: Sequence[float], tol: float = 1e-12
) -> float:
    """Exact median of the first relevant rank of a random query (a query with ``n_relevant[i]`` relevant items
    has probability ``weights[i]``) under a uniformly random ranking.

    The smallest ``m`` with ``F(m) ≥ 1/2`` for the mixture CDF ``F``; when ``F(m)`` is exactly 1/2 the median
    is ``m + 0.5`` (the mean of the two middle values, as :func:`mte.eval.metrics.median` does for an even count).
    """
    cdf = torch.zeros(n_gallery, dtype=torch.float64)
    for r, w in zip(n_relevant, weights, strict=True):
        part = _first_rank_cdf(n_gallery, int(r))
        cdf[: part.numel()] += w * part
        cdf[part.numel() :] += w
    m = int(torch.searchsorted(cdf, torch.tensor([0.5 - tol], dtype=torch.float64)))  # 0-based: rank m + 1
    return m + 1.5 if abs(float(cdf[m]) - 0.5) <= tol else float(m + 1)


def _first_rank_cdf(n_gallery: int, n_relevant: int) -> Tensor:
    """``P(first relevant rank ≤ k)`` for ``k = 1 … G−r+1`` (float64): ``1 − C(G−r, k)/C(G, k)``."""
    g, r = n_gallery, n_relevant
    k = torch.arange(1, g - r + 2, dtype=torch.float64)
    ratios = (g - r - k + 1) / (g - k + 1)  # C(G−r, k)/C(G, k) = Π_{j<k} (G−r−j)/(G−j)
    cdf = 1.0 - torch.cumprod(ratios, 0)
    cdf[-1] = 1.0
    return cdf


def simulate_random_ranker(
    n_gallery: int,
    n_relevant: Tensor,
    n: int,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    generator: torch.Generator | None = None,
    max_elements: int = 1 << 22,
) -> dict[str, Tensor]:
    """Realised metrics of ``n`` independent random rankings (one per query each): metric → ``Tensor[n]``.

    Per query, the rank ``X`` of the first relevant item is drawn from its exact distribution (inverse CDF);
    given ``X``, the other ``r−1`` relevant items are a uniform subset of the positions after ``X``, which is
    all AP@k needs (walk positions ``X+1 … k``). Cheaper by far than ranking a random score matrix, and exact
    in distribution.
    """
    counts = n_relevant.to(torch.long)
    n_queries = counts.numel()
    out: dict[str, list[Tensor]] = {name: [] for name in [*(f"R@{k}" for k in ks), f"mAP@{map_k}", "MedR", "MeanR"]}
    rows = max(1, max_elements // max(n_queries, 1))
    groups = [(int(r), torch.nonzero(counts == r).squeeze(1)) for r in torch.unique(counts).tolist()]
    cdfs = {r: _first_rank_cdf(n_gallery, r) for r, _ in groups}
    for lo in range(0, n, rows):
        b = min(rows, n - lo)
        rank = torch.empty(b, n_queries, dtype=torch.float64)
        ap = torch.empty(b, n_queries, dtype=torch.float64)
        for r, columns in groups:
            u = torch.rand(b, columns.numel(), generator=generator, dtype=torch.float64)
            first = torch.searchsorted(cdfs[r], u).clamp(max=cdfs[r].numel() - 1) + 1
            rank[:, columns] = first.to(torch.float64)
            ap[:, columns] = _sample_ap(first, n_gallery, r, map_k, generator)
        for k in ks:
            out[f"R@{k}"].append(100.0 * (rank <= k).to(torch.float64).mean(1))
        out[f"mAP@{map_k}"].append(100.0 * ap.mean(1))
        out["MedR"].append(median(rank))
        out["MeanR"].append(rank.mean(1))
    return {name: torch.cat(parts) for name, parts in out.items()}


def _sample_ap(first: Tensor, n_gallery: int, n_relevant: int, k: int, generator: torch.Generator | None) -> Tensor:
    """AP@k of random rankings whose first relevant rank is ``first``: the rest are drawn position by position."""
    hit = first <= k
    hits = hit.to(torch.float64)
    total = torch.where(hit, 1.0 / first.to(torch.float64), 0.0)
    remaining = torch.where(hit, n_relevant - 1, 0).to(torch.float64)
    for position in range(2, min(k, n_gallery) + 1):
        active = (position > first) & (remaining > 0)
        if not active.any():
            continue
        p = remaining / (n_gallery - position + 1)
        draw = active & (torch.rand(first.shape, generator=generator, dtype=torch.float64) < p)
        hits += draw
        remaining -= draw.to(torch.float64)
        total += torch.where(draw, hits / position, 0.0)
    return total / min(n_relevant, k)


def random_chance_band(
    query_labels: Tensor,
    gallery_labels: Tensor,
    n: int = 1000,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    alpha: float = 0.05,
    generator: torch.Generator | None = None,
) -> dict[str, tuple[float, float]]:
    """``(1−alpha)`` range of one random ranking's realised metrics on these queries (metric → (lo, hi))."""
    count = relevant_counts(query_labels, gallery_labels)
    count = count[count > 0]
    if count.numel() == 0:
        return {}
    simulated = simulate_random_ranker(gallery_labels.numel(), count, n, ks, map_k, generator)
    q = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    return {name: tuple(torch.quantile(values, q).tolist()) for name, values in simulated.items()}  # type: ignore[misc]


def random_split_metrics(
    data: ProcessedData, split: str, stage: str, ks: Sequence[int], map_k: int, bootstrap: int = 0, seed: int = 0
) -> dict[str, float]:
    """Both directions of the Random baseline on ``split`` under the album protocol, with the names and counts of
    :func:`mte.eval.protocols.evaluate_embeddings`."""
    review_labels, album_ids = _album_gallery(split_items(data, split, queries=True))
    out: dict[str, float] = {}
    generator = torch.Generator().manual_seed(seed)
    for direction, (queries, gallery) in {"t2a": (review_labels, album_ids), "a2t": (album_ids, review_labels)}.items():
        prefix = f"{stage}/{direction}"
        out.update(random_direction_metrics(queries, gallery, ks, map_k, prefix))
        out[f"{prefix}/n_gallery"] = float(gallery.numel())
        if bootstrap > 0:
            band = random_chance_band(queries, gallery, bootstrap, ks, map_k, generator=generator)
            for name, (low, high) in band.items():
                out[f"{prefix}/{name}_lo"], out[f"{prefix}/{name}_hi"] = low, high
    return out


# --------------------------------------------------------------------------------------------------------------
# CCA
# --------------------------------------------------------------------------------------------------------------


def token_counts(data: ProcessedData, review_idx: np.ndarray, vocab_size: int) -> Tensor:
    """Sparse ``[n, vocab_size]`` float64 word counts of the given reviews (from the stored vocabulary ids)."""
    tokens = data.reviews.get_column("tokens").gather(np.asarray(review_idx, dtype=np.int64))
    lengths = tokens.list.len().fill_null(0).to_numpy().astype(np.int64)
    values = tokens.explode().drop_nulls().to_numpy().astype(np.int64)
    rows = np.repeat(np.arange(len(review_idx), dtype=np.int64), lengths)
    index = torch.from_numpy(np.stack([rows, values]))
    ones = torch.ones(len(values), dtype=torch.float64)
    return torch.sparse_coo_tensor(index, ones, (len(review_idx), vocab_size), check_invariants=False).coalesce()


def smooth_idf(counts: Tensor, dropped: Sequence[int] = (0, 1)) -> Tensor:
    """``log((1+N)/(1+df)) + 1`` per vocabulary id (sklearn's smooth IDF), 0 for the ``dropped`` ids."""
    counts = counts.coalesce()
    df = torch.zeros(counts.shape[1], dtype=torch.float64).index_add_(
        0, counts.indices()[1], torch.ones(counts.values().numel(), dtype=torch.float64)
    )
    idf = torch.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0
    idf[list(dropped)] = 0.0
    return idf


def _ridge_covariance(centered: Tensor, reg: float) -> Tensor:
    """``C + reg·(tr C / d)·I``: a ridge scaled to the features' mean variance, so ``reg`` means the same for 256
    LSA dimensions and for 369 standardised descriptors. Adding (not shrinking towards) the ridge keeps every
    regularised variance ≥ the sample variance, so the regularised canonical correlations stay in [0, 1]."""
    n, d = centered.shape
    cov = centered.T @ centered / max(n - 1, 1)
    scale = float(torch.trace(cov)) / d if d else 1.0
    return cov + reg * max(scale, 1e-12) * torch.eye(d, dtype=cov.dtype)


def _inverse_sqrt(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    floor = max(float(values.max()), 1e-300) * 1e-12  # rank-deficient without ridge: ignore null directions
    values = values.clamp(min=floor)
    return (vectors * values.rsqrt()) @ vectors.T


def fit_cca(x: Tensor, y: Tensor, dim: int, reg: float = 0.1) -> CCAProjection:
    """Regularised CCA of paired rows ``x [n, dx]``, ``y [n, dy]``, in closed form (float64).

    Whiten each side with its ridge-regularised covariance (``C^{-1/2}``), take the SVD of the whitened cross-covariance
    ``C_xx^{-1/2} C_xy C_yy^{-1/2} = U S Vᵀ``; the canonical directions are ``C_xx^{-1/2} U`` and
    ``C_yy^{-1/2} V`` and ``S`` holds the canonical correlations (exact ones when ``reg = 0``).
    """
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"need >= 2 paired rows, got {x.shape[0]} and {y.shape[0]}")
    if reg < 0.0:
        raise ValueError(f"reg must be >= 0, got {reg}")
    x, y = x.to(torch.float64), y.to(torch.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    wx = _inverse_sqrt(_ridge_covariance(xc, reg))
    wy = _inverse_sqrt(_ridge_covariance(yc, reg))
    cross = xc.T @ yc / max(x.shape[0] - 1, 1)
    u, s, vh = torch.linalg.svd(wx @ cross @ wy, full_matrices=False)
    k = min(dim, s.numel())
    return CCAProjection(x_mean, y_mean, wx @ u[:, :k], wy @ vh[:k].T, s[:k])


@dataclass
class CCABaseline:
    """TF-IDF → LSA text vector and standardised audio vector, tied by a fitted :class:`CCAProjection`."""

    idf: Tensor  # [vocab]
    components: Tensor  # [vocab, text_dim]: right singular vectors of the train TF-IDF matrix
    cca: CCAProjection
    power: float = 0.0

    @classmethod
    def fit(
        cls,
        data: ProcessedData,
        embed_dim: int = 128,
        text_dim: int = 256,
        reg: float = 0.1,
        power: float = 1.0,
        seed: int = 0,
    ) -> CCABaseline:
        """Fit on the train split only: IDF, SVD and CCA never see a held-out review or track."""
        train = split_items(data, "train")
        vocab_size = data.vocabulary().size
        counts = token_counts(data, train.reviews, vocab_size)
        idf = smooth_idf(counts)
        matrix = tfidf(counts, idf)
        q = max(1, min(text_dim, *matrix.shape))
        with torch.random.fork_rng(devices=[]):  # svd_lowrank's random start: reproducible, RNG state untouched
            torch.manual_seed(seed)
            # float32 and 2 power iterations: LSA needs the leading subspace, not 12 exact digits
            _, _, components = torch.svd_lowrank(matrix.float(), q=q, niter=2)
        components = components.double()
        text = torch.sparse.mm(matrix, components)
        audio = torch.from_numpy(album_mean_features(data, train)[train.review_album])
        return cls(idf, components, fit_cca(text, audio, embed_dim, reg), power)

    def embedder(self) -> CCAEmbedder:
        """The fitted baseline as a model with a trained network's embedding interface (what its checkpoint holds)."""
        return CCAEmbedder(self.idf, self.components, self.cca, self.power)

    def embed_reviews(self, data: ProcessedData, review_idx: np.ndarray) -> Tensor:
        """Unit-length float32 embeddings of reviews (by ``review_idx``)."""
        return self.embedder().embed_counts(token_counts(data, review_idx, self.idf.numel()))

    def embed_audio(self, standardized: np.ndarray | Tensor) -> Tensor:
        """Unit-length float32 embeddings of standardised descriptor vectors (one row per track)."""
        return self.embedder().embed_audio(torch.as_tensor(np.asarray(standardized), dtype=torch.float64))

    def state_dict(self) -> dict[str, Any]:
        return {
            "idf": self.idf,
            "components": self.components,
            "power": self.power,
            **{f"cca.{k}": v for k, v in vars(self.cca).items()},
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> CCABaseline:
        cca = CCAProjection(**{k.removeprefix("cca."): v for k, v in state.items() if k.startswith("cca.")})
        return cls(state["idf"], state["components"], cca, float(state["power"]))


def album_mean_features(data: ProcessedData, items: SplitItems) -> np.ndarray:
    """``[n_albums, D]`` float64: mean standardised vector of each album's tracks in ``items`` (0 elsewhere)."""
    features = data.standardized_features()[items.tracks].astype(np.float64)
    n_albums = len(data.albums)
    sums = np.zeros((n_albums, features.shape[1]))
    np.add.at(sums, items.track_album, features)
    counts = np.bincount(items.track_album, minlength=n_albums)
    return sums / np.maximum(counts, 1)[:, None]


def cca_split_metrics(
    model: CCABaseline, data: ProcessedData, split: str, stage: str, ks: Sequence[int], map_k: int, bootstrap: int = 0
) -> dict[str, float]:
    """Both directions on ``split`` with the trained runs' evaluator (:func:`mte.eval.protocols.evaluate_embeddings`,
    album protocol, the same bootstrap seed)."""
    items = split_items(data, split, queries=True)
    audio = data.standardized_features()[items.tracks]
    eval_set = EvalSet(text=model.embed_reviews(data, items.reviews), review_album=torch.from_numpy(items.review_album),
                       audio=model.embed_audio(audio), track_album=torch.from_numpy(items.track_album))
    return evaluate_embeddings(eval_set, "album", stage, bootstrap, seed=0, ks=ks, map_k=map_k)


# --------------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------------


def _evaluation_settings(cfg: Any) -> tuple[tuple[int, ...], int, int]:
    """(ks, map_k, bootstrap) from the retrieval callback's config, so baselines report what trained runs do."""
    spec = (cfg.get("callbacks") or {}).get("retrieval") or {}
    return tuple(spec.get("ks", (1, 5, 10))), int(spec.get("map_k", 10)), int(spec.get("bootstrap", 1000))


def _val_best(val: Mapping[str, float]) -> dict[str, float]:
    """Baselines have one "epoch": their best validation metrics are their validation metrics."""
    return {
        name.replace("val/", "val_best/", 1): value
        for name, value in val.items()
        if not name.endswith(("n_queries", "n_excluded", "n_gallery"))
    }


def evaluate_baseline(cfg: Any, data: ProcessedData, run_dir: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit (CCA) and evaluate one baseline; returns (flat metrics, extra metrics.json fields)."""
    name = cfg.model.name
    ks, map_k, bootstrap = _evaluation_settings(cfg)
    extra: dict[str, Any] = {"baseline": name}
    if name == "random":
        val = random_split_metrics(data, "val", "val", ks, map_k, seed=cfg.seed)
        test = random_split_metrics(data, "test", "test", ks, map_k, bootstrap, seed=cfg.seed)
        embedder = RandomEmbedder(int(cfg.seed), data.vocabulary().size, len(data.feature_names),
                                  int(cfg.model.get("embed_dim", 128)))
        extra["model_file"] = str(save_baseline_checkpoint(run_dir, embedder, data))
    elif name == "cca":
        model = CCABaseline.fit(
            data,
            embed_dim=int(cfg.model.get("embed_dim", 128)),
            text_dim=int(cfg.model.get("text_dim", 256)),
            reg=float(cfg.model.get("reg", 0.1)),
            power=float(cfg.model.get("power", 1.0)),
            seed=int(cfg.seed),
        )
        extra["model_file"] = str(save_baseline_checkpoint(run_dir, model.embedder(), data))
        extra["canonical_correlations"] = [round(float(c), 6) for c in model.cca.correlations[:10]]
        val = cca_split_metrics(model, data, "val", "val", ks, map_k)
        test = cca_split_metrics(model, data, "test", "test", ks, map_k, bootstrap)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return {**val, **_val_best(val), **test}, extra


def save_baseline_checkpoint(run_dir: Path, embedder: CCAEmbedder | RandomEmbedder, data: ProcessedData) -> Path:
    """``<run>/checkpoints/best.ckpt``: the baseline with the input contract of ``data`` (standardised audio, as
    the baselines read it), which ``mte.evaluate`` and search load like a trained model's checkpoint."""
    contract = InputContract.from_processed(data, standardize=True)
    return save_baseline(run_dir / "checkpoints" / "best.ckpt", embedder, contract)


def run_baseline(cfg: Any, data: ProcessedData) -> dict[str, float]:
    """The baseline counterpart of :func:`mte.train.run.run` after data preparation: same files, same table,
    same loggers (so W&B/TensorBoard show baselines beside trained runs)."""
    from omegaconf import OmegaConf

    from mte.train.loggers import build_loggers, finish_loggers

    run_dir = Path(cfg.paths.output_dir)
    loggers = build_loggers(cfg.get("logger"))
    try:
        metrics, extra = evaluate_baseline(cfg, data, run_dir)
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
            logger.log_metrics(metrics, step=0)
            logger.save()
    finally:
        finish_loggers(loggers)
    write_results(
        run_dir / "metrics.json",
        "baseline",
        metrics,
        best_checkpoint=extra["model_file"],
        last_checkpoint="",
        epochs=0,
        processed_dir=str(data.root),
        tags=list(cfg.get("tags") or []),
        selection="none (fitted on train only)",
        **extra,
    )
    print_summary({k: v for k, v in metrics.items() if not k.startswith("val/")},
                  title=f"retrieval, {extra['baseline']} baseline (album protocol; R@K and mAP in %)",
                  footer=[f"run dir: {run_dir}  (metrics.json, checkpoints/best.ckpt, .hydra/config.yaml, logs)"])
    return metrics
