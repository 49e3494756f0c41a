#!/usr/bin/env python
"""Benchmark ``python -m mte.prepare`` at full MARD scale and print what was measured.

    .venv/bin/python scripts/bench_prepare.py [--raw /tmp/mard-full] [--tracks 1] [--workers 0]

1. Generates the full-scale synthetic MARD (65,566 albums, 263,525 reviews, 28,403 descriptor files of ~85 KB)
   into ``--raw`` if it is not there yet (timed).
2. Runs prepare as a user would (``python -m mte.prepare data=mard …`` in a subprocess) into a fresh processed
   dir, measuring wall time, the peak RSS of the largest process (getrusage RUSAGE_CHILDREN) and the peak summed
   RSS of the whole process tree (main + parser pool, sampled from /proc every 50 ms).
3. Runs it again (cache hit): CLI wall time, and the time of the ``prepare()`` call itself in a fresh interpreter.

Targets from the issue: ≤ 60 s wall and ≤ 4 GiB peak RSS on the 2-core dev machine; cache hit well under 1 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tree_rss_bytes(root_pid: int) -> int:
    """Summed RSS of ``root_pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * page
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """(wall s, max single-process RSS bytes, peak tree RSS bytes, stdout) of one subprocess run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_bytes(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}\n{err[-3000:]}")
    max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    return wall, max_rss, peak[0], out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, default=Path("/tmp/mard-full"), help="full-scale raw dir (made if absent)")
    parser.add_argument("--albums", type=int, default=None, help="albums to generate (default: full scale)")
    parser.add_argument("--tracks", type=int, default=1, help="descriptor files per album when generating")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="data.workers for prepare (0 = one per CPU)")
    parser.add_argument("--features", default="seed369")
    parser.add_argument("--keep", action="store_true", help="keep the processed dir (printed)")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from mte.data.synth import FULL_SCALE, generate

    albums = args.albums or FULL_SCALE["albums"]
    gen_s = None
    if not (args.raw / "mard_reviews.json").is_file():
        print(f"generating {albums:,} albums × {args.tracks} track(s) into {args.raw} …", flush=True)
        t0 = time.perf_counter()
        generate(args.raw, albums=albums, seed=args.seed, tracks_per_album=args.tracks)
        gen_s = time.perf_counter() - t0
    n_files = sum(1 for _ in os.scandir(args.raw / "acousticbrainz_descriptors"))
    size = sum(e.stat().st_size for e in os.scandir(args.raw / "acousticbrainz_descriptors"))
    size += (args.raw / "mard_reviews.json").stat().st_size + (args.raw / "mard_metadata.json").stat().st_size

    work = Path(tempfile.mkdtemp(prefix="mte-bench-prepare-"))
    out = work / "processed"
    env = {**os.environ, "MTE_CACHE_DIR": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "mte.prepare", "data=mard", f"data.raw_dir={args.raw}",
           f"data.processed_dir={out}", f"data.workers={args.workers}", f"data.features={args.features}"]
    wall, max_rss, tree_rss, stdout = run_measured(cli, env)
    lines = stdout.strip().splitlines()
    hit_wall, _, _, hit_out = run_measured(cli, env)
    call = (
        "import sys, time; t = time.perf_counter(); from mte.data.prepare import prepare, PrepareConfig; "
        f"p = prepare({str(args.raw)!r}, PrepareConfig(features={args.features!r}), processed_dir={str(out)!r}, "
        "verbose=False); dt = time.perf_counter() - t; "
        "print(f'{dt:.3f}', 'polars' in sys.modules, 'numpy' in sys.modules, 'torch' in sys.modules)"
    )
    call_wall, _, _, call_out = run_measured([sys.executable, "-c", call], env)
    call_s, polars_loaded, numpy_loaded, torch_loaded = call_out.split()

    gib = 1024**3
    print("\n== bench_prepare ==")
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    print(f"input: {args.raw} — {n_files:,} descriptor files, {size / 1e9:.2f} GB in all"
          + (f"; generated in {gen_s:.1f} s" if gen_s is not None else " (already there)"))
    print(f"command: {' '.join(cli[1:])}")
    print(f"summary: {lines[-2] if len(lines) >= 2 else '?'}")
    print(f"prepare (cold): wall {wall:.1f} s · peak RSS largest process {max_rss / gib:.2f} GiB · "
          f"peak RSS process tree {tree_rss / gib:.2f} GiB")
    print(f"prepare (cache hit): CLI wall {hit_wall:.2f} s (Hydra + interpreter start included); prepare() call "
          f"{float(call_s):.3f} s in a fresh interpreter (whole process {call_wall:.2f} s); heavy modules loaded on "
          f"the hit path: polars={polars_loaded} numpy={numpy_loaded} torch={torch_loaded}")
    print(f"same dir both runs: {hit_out.strip().splitlines()[-1] == lines[-1]}")
    if args.keep:
        print(f"processed dir kept: {out}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
