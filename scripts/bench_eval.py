"""Benchmark the evaluator at MARD scale (85k review queries, 8.7k albums) and print what it measured.

Two parts, each in a fresh process so its peak RSS is its own:

* ``ranking`` — embedding excluded: random unit vectors of MARD's shapes (``--reviews`` × 128 text rows,
  ``--albums`` albums of ``--tracks`` track(s)) through :func:`mte.eval.protocols.evaluate_embeddings`, both
  directions, ``--bootstrap`` resamples — exactly what ``python -m mte.evaluate`` runs after embedding. Also
  times each direction without the bootstrap, and the bootstrap alone.
* ``e2e`` — embedding included: :func:`mte.eval.evaluation.evaluate` of a real checkpoint on every paired album of a
  full-scale raw dir (``--raw``, default /tmp/mard-full; made with ``python -m mte.synth`` at full scale). The dir
  is first prepared against the checkpoint's processed dir (timed separately; cached after the first run). Without
  ``--ckpt`` a small model is trained first (``python -m mte.train``, 1 epoch).

Usage::

    python scripts/bench_eval.py                 # both parts
    python scripts/bench_eval.py --part ranking --protocols album,track
    python scripts/bench_eval.py --part e2e --ckpt outputs/runs/…/checkpoints/best.ckpt --raw /data/mard

Figures depend on the machine and on what else runs: the load average is printed before and after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"


def part_ranking(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F

    from mte.eval.metrics import bootstrap_intervals, per_query_metrics
    from mte.eval.protocols import EvalSet, evaluate_embeddings, protocol_tasks
    from mte.eval.ranking import retrieval_ranks

    print(f"[ranking] {load()}; torch threads {torch.get_num_threads()}", flush=True)
    g = torch.Generator().manual_seed(0)
    n_tracks = args.albums * args.tracks
    review_album = torch.cat([torch.arange(args.albums), torch.randint(args.albums, (args.reviews - args.albums,),
                                                                      generator=g)]).sort().values
    eval_set = EvalSet(
        text=F.normalize(torch.randn(args.reviews, args.dim, generator=g), dim=1),
        review_album=review_album,
        audio=F.normalize(torch.randn(n_tracks, args.dim, generator=g), dim=1),
        track_album=torch.arange(args.albums).repeat_interleave(args.tracks),
        album_title=torch.randint(args.albums * 9 // 10, (args.albums,), generator=g),
    )
    base = rss_mib()
    print(f"[ranking] inputs: {args.reviews:,} reviews × {args.dim}, {args.albums:,} albums × {args.tracks} track(s);"
          f" RSS with inputs {base:.0f} MiB", flush=True)
    for protocol in args.protocols.split(","):
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = evaluate_embeddings(eval_set, protocol, "test", bootstrap=args.bootstrap)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        sizes = ", ".join(f"{d} {int(metrics[f'test/{d}/n_queries']):,} q × {int(metrics[f'test/{d}/n_gallery']):,} g"
                          for d in ("t2a", "a2t"))
        print(f"[ranking] {protocol:5s}: {total:6.2f} s wall ({cpu:.2f} s CPU) both directions + bootstrap "
              f"{args.bootstrap} ({sizes}); peak RSS {peak_rss_mib():.0f} MiB", flush=True)
        if args.breakdown:
            for direction, task in protocol_tasks(eval_set, protocol).items():
                t1, c1 = time.perf_counter(), time.process_time()
                rank, ap = retrieval_ranks(task.query, task.gallery, task.query_labels, task.gallery_labels)
                t2, c2 = time.perf_counter(), time.process_time()
                scored = rank > 0
                bootstrap_intervals(per_query_metrics(rank, ap), n=args.bootstrap,
                                    generator=torch.Generator().manual_seed(0), clusters=task.query_cluster[scored])
                t3, c3 = time.perf_counter(), time.process_time()
                print(f"[ranking]        {direction}: ranks + AP@10 {t2 - t1:5.2f} s wall ({c2 - c1:.2f} s CPU), "
                      f"bootstrap {t3 - t2:5.2f} s wall ({c3 - c2:.2f} s CPU)", flush=True)
    print(f"[ranking] peak RSS {peak_rss_mib():.0f} MiB (process, incl. torch ≈ {base:.0f} MiB at start); {load()}",
          flush=True)


def _train_small(out: Path) -> Path:
    """A 1-epoch bag-of-words checkpoint on the default small synthetic MARD (when no --ckpt is given)."""
    cmd = [sys.executable, "-m", "mte.train", "data.synthetic.albums=300", "trainer.max_epochs=1", "logger=none",
           f"hydra.run.dir={out}"]
    print(f"[e2e] training a small checkpoint: {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return Path(json.loads((out / "metrics.json").read_text())["best_checkpoint"])


def _prepare_in_child(ckpt: Path, raw: str) -> None:
    """Prepare ``raw`` against the checkpoint's processed dir in a child process, so its memory peak is not ours."""
    code = ("import sys, time; from mte.models.inference import load_checkpoint; from mte.data.prepare import prepare; "
            "t = time.perf_counter(); ref = load_checkpoint(sys.argv[1]).data.root; out = prepare(sys.argv[2], "
            "reference=ref); print(f'[e2e] prepare {sys.argv[2]} against {ref}: {time.perf_counter() - t:.1f} s "
            "(cached after the first run) -> {out}', flush=True)")
    subprocess.run([sys.executable, "-c", code, str(ckpt), raw], check=True)


def part_e2e(args: argparse.Namespace) -> None:
    from mte.eval.evaluation import evaluate

    ckpt = Path(args.ckpt) if args.ckpt else _train_small(Path(tempfile.mkdtemp(prefix="bench-eval-run-")))
    _prepare_in_child(ckpt, args.raw)
    print(f"[e2e] {load()}", flush=True)
    base = rss_mib()
    t1 = time.perf_counter()
    result = evaluate(ckpt, raw_dir=args.raw, bootstrap=args.bootstrap, protocol="album",
                      out_dir=Path(tempfile.mkdtemp(prefix="bench-eval-out-")))
    total = time.perf_counter() - t1
    m, t = result.metrics, result.timings
    print(f"[e2e] album protocol on {int(m['test/t2a/n_queries']):,} review queries × "
          f"{int(m['test/t2a/n_gallery']):,} albums (a2t {int(m['test/a2t/n_queries']):,} × "
          f"{int(m['test/a2t/n_gallery']):,}), bootstrap {args.bootstrap}; wall s (CPU s):", flush=True)
    print(f"[e2e]   load checkpoint + processed dir {t['load_s']:.2f} ({t['load_cpu_s']:.2f}) | embed "
          f"{t['embed_s']:.2f} ({t['embed_cpu_s']:.2f}) | metrics, embedding excluded {t['metrics_s']:.2f} "
          f"({t['metrics_cpu_s']:.2f}) | embedding included {t['embed_s'] + t['metrics_s']:.2f} "
          f"({t['embed_cpu_s'] + t['metrics_cpu_s']:.2f}) | whole call incl. writing {total:.2f}", flush=True)
    print(f"[e2e]   peak RSS {peak_rss_mib():.0f} MiB (RSS before the call {base:.0f} MiB); {load()}", flush=True)
    if args.bootstrap:
        print(f"[e2e]   test/t2a/R@10 = {m['test/t2a/R@10']:.2f} [{m['test/t2a/R@10_lo']:.2f}, "
              f"{m['test/t2a/R@10_hi']:.2f}]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "ranking", "e2e"), default="all")
    parser.add_argument("--reviews", type=int, default=84_747)
    parser.add_argument("--albums", type=int, default=8_683)
    parser.add_argument("--tracks", type=int, default=1, help="tracks per album (ranking part)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--protocols", default="album", help="comma-separated, ranking part (seed is ~10x slower)")
    parser.add_argument("--breakdown", action="store_true", help="also time each direction and its bootstrap")
    parser.add_argument("--ckpt", default=None, help="checkpoint for the e2e part (default: train a small one)")
    parser.add_argument("--raw", default="/tmp/mard-full", help="full-scale raw MARD dir for the e2e part")
    args = parser.parse_args()
    if args.part == "all":
        for part in ("ranking", "e2e"):
            if part == "e2e" and not Path(args.raw).is_dir():
                print(f"[e2e] skipped: {args.raw} does not exist (python -m mte.synth at full scale makes one)")
                continue
            # the last --part wins in argparse
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--part", part], check=True)
        return
    (part_ranking if args.part == "ranking" else part_e2e)(args)


if __name__ == "__main__":
    main()
