"""FAISS indexes over a gallery's embeddings (optional: the ``index`` extra), written by an export.

Which index (see :func:`build_faiss_index`): below :data:`IVF_MIN_SIZE` vectors a flat (exact) inner-product index.
Measured on the 2-core dev machine, D=128: an exact scan of MARD's 263k reviews takes ~40 ms per query (flat FAISS
and torch alike), while IVF (nlist 2053, nprobe 32) takes ~0.1 ms but found only 28% of the true top 10 on
isotropic random vectors (100% on tightly clustered ones) — so at MARD scale exactness wins and IVF starts at 1M
vectors, with nlist = 4·√n lists (1M → 4000) probing :data:`DEFAULT_NPROBE` of them (raise it for better recall).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mte.search.errors import Progress, SearchError, one_line

IVF_MIN_SIZE = 1_000_000
DEFAULT_NPROBE = 64
SEARCHED = ("albums", "reviews")
"""The gallery tables search ranks (and so gets indexes for)."""


def build_faiss_index(
    vectors: np.ndarray, ivf_min_size: int = IVF_MIN_SIZE, nlist: int | None = None, nprobe: int = DEFAULT_NPROBE
) -> tuple[Any, dict[str, Any]]:
    """An inner-product FAISS index over ``vectors`` (rows = ids), and a description for the manifest.

    Flat (exact) below ``ivf_min_size`` vectors; IVF-Flat above, with ``nlist`` lists (default 4·√n, at most n/39
    so k-means has the 39 points per centroid FAISS asks for) trained on all vectors, searched with ``nprobe``.
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n < max(ivf_min_size, 1):
        index = faiss.IndexFlatIP(dim)
        index.add(x)
        return index, {"type": "flat", "n": n}
    lists = int(nlist) if nlist else round(4 * np.sqrt(n))
    lists = max(1, min(lists, n // 39 or 1))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 0  # reproducible k-means
    index.train(x)
    index.add(x)
    index.nprobe = min(int(nprobe), lists)
    return index, {"type": "ivf", "n": n, "nlist": lists, "nprobe": index.nprobe}


def write_faiss_indexes(
    tables: dict[str, np.ndarray], out: Path, ivf_min_size: int, nlist: int | None, nprobe: int, say: Progress
) -> dict[str, Any]:
    """``<name>.faiss`` for each table's embeddings; returns the manifest entries."""
    import faiss

    specs = {}
    for name, vectors in tables.items():
        say(f"building the FAISS index of {len(vectors)} {name}")
        index, spec = build_faiss_index(vectors, ivf_min_size=ivf_min_size, nlist=nlist, nprobe=nprobe)
        faiss.write_index(index, str(out / f"{name}.faiss"))
        specs[name] = {**spec, "file": f"{name}.faiss"}
    return specs


def load_faiss(index_dir: Path, spec: dict[str, Any]) -> Any | None:
    """The FAISS index a manifest entry names, or None when faiss is not installed (exact search then)."""
    try:
        import faiss
    except ImportError:
        return None
    path = index_dir / str(spec.get("file", ""))
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        raise SearchError(f"index dir {index_dir}: cannot read {path.name} ({one_line(e)}); "
                          f"re-run python -m mte.export faiss=true") from None
    if spec.get("type") == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(spec.get("nprobe", DEFAULT_NPROBE))
    return index
