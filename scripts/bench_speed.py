#!/usr/bin/env python
"""How fast a training run is, end to end, as a user runs it; prints what it measured.

    .venv/bin/python scripts/bench_speed.py --raw-dir DIR [--cache-dir DIR] [--recipes best,best_margin,...]
                                            [--rounds 3] [--against OTHER_CHECKOUT]
                                            [--skip epochs,startup,sweep,threads] [--epochs 3] [--burners 2]

Four figures (issue 12, targets 1–3), each next to the load average it was taken under and the exact command:

1. **Epoch** (validation and checkpoint included) of each recipe: ``python -m mte.train experiment=<recipe>
   data=mard data.raw_dir=DIR trainer.max_epochs=3 test=false logger=csv``, run as a child process; a callback
   added to the run records when each epoch starts, so an epoch is the time from its start to the next one's (the
   last: to the end of training). Epoch 1 pays one-off warm-up costs; the figure is the mean of the later ones.
   Each epoch's time inside its training steps (forward, backward, optimiser) is printed beside it: the rest is
   assembling batches, Lightning's bookkeeping between steps, validation (printed too) and checkpoints.
2. **Start-up**: the same command with ``trainer.max_epochs=1`` (default logger, W&B offline, then ``logger=csv``):
   the child's wall time outside its epoch, split into phases by timing the package's own functions as they are
   called (interpreter + imports, config checks, prepare (a cache hit), loading the processed dir, model,
   data module, loggers, trainer, the end of the run: checkpoint, metrics.json, logger shutdown).
3. **Sweep**: ``python -m mte.train -m … seed=0,1,2`` (``--sweep-jobs``), 1-epoch jobs: Hydra runs a multirun's
   jobs one after another in one process, so only the first pays the interpreter and the imports; each job's time
   outside its epoch is what a short sweep job costs beyond its training.
4. **Threads**: ms per training step of the default recipe at ``runtime.threads=auto`` (what it resolves to
   here), 1 and 2 threads, interleaved, with the machine as it is and with ``--burners`` busy-loop processes
   added (a shared machine).

The processed data must already be cached (run once without timing, e.g. the epochs part, first): the figures are
for the cache-hit path every sweep job takes. ``--python`` and ``--pythonpath`` run the children from another
checkout (e.g. the code before a change) with this same script. Benchmarks print figures; they are not tests.

The machine's speed drifts (a VM: ±20–40% within the hour here), so every child also measures the machine right
after its run (:func:`machine_rates`): a float32 matrix product of the audio branch's first layer with the run's
thread count, a 64 MB copy and pure-Python dict work. A slow figure next to a slow machine rate is the machine, not
the code.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("best", "best_margin", "paper/neighborhood")
CHILD_FLAG = "--child"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


# ----------------------------------------------------------------------------------------------------------------
# the child: python -m mte.train with timestamps
# ----------------------------------------------------------------------------------------------------------------

PHASES = {
    # (module, attribute, label): the package's own steps of a run, in the order run() calls them
    ("mte.train.checks", "check_train_config", "config checks"),
    ("mte.data.prepare", "prepare_from_config", "prepare (cache hit: fingerprint + manifest)"),
    ("mte.train.run", "build_model", "model build (+ input contract)"),
    ("mte.train.run", "build_datamodule", "data module"),
    ("mte.train.run", "build_callbacks", "callbacks"),
    ("mte.train.loggers", "build_loggers", "loggers: start"),
    ("mte.train.loggers", "finish_loggers", "loggers: finish"),
    ("mte.eval.results", "write_results", "metrics.json"),
}


class _AfterImport:
    """A ``sys.meta_path`` finder that calls ``callback(module)`` right after ``name`` is first imported, wherever
    that happens: the child patches Lightning when the run imports it, not before (importing it up front would move
    that cost out of the run and hide what the run overlaps with it)."""

    def __init__(self, name: str, callback: Any) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        import importlib.util

        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            self.callback(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def _child(events_path: str, argv: list[str]) -> None:
    """Run ``python -m mte.train argv`` in this process, recording phase and epoch times in ``events_path``."""
    import importlib
    import runpy

    events: list[tuple[str, float, float, float]] = []  # (label, start, end, CPU seconds) in perf_counter seconds
    t_main = time.perf_counter()

    def timed(label: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                events.append((label, start, time.perf_counter(), time.process_time() - cpu))

        return wrapper

    for module_name, attr, label in PHASES:
        with contextlib.suppress(ImportError, AttributeError):
            module = importlib.import_module(module_name)
            setattr(module, attr, timed(label, getattr(module, attr)))
    import mte.cli
    import mte.data.processed as processed
    import mte.train.run as run_module

    run_module.run = timed("job", run_module.run)  # each job of a multirun (__main__ looks it up per call)

    load = processed.ProcessedData.load.__func__
    processed.ProcessedData.load = classmethod(timed("load processed dir", load))
    run_imports_lightning = hasattr(mte.cli, "imports_outside_gc")  # else a checkout from before it did
    heavy_imports = getattr(mte.cli, "imports_outside_gc", contextlib.nullcontext)

    @contextlib.contextmanager
    def timed_imports() -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        with heavy_imports():
            yield
        events.append(("imports (torch, lightning, …)", start, time.perf_counter(), time.process_time() - cpu))

    mte.cli.imports_outside_gc = timed_imports

    def patch_lightning(pl: Any) -> None:
        class EpochClock(pl.Callback):
            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                events.append(("epoch start", time.perf_counter(), 0.0, 0.0))
                events.append(("epoch start cpu", time.process_time(), 0.0, 0.0))
                self.in_steps = 0.0

            # the time inside the training steps (forward, backward, optimiser, Lightning's closure); the rest of
            # the epoch is assembling batches, Lightning's bookkeeping between steps, validation and checkpoints
            def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
                self.step_start = time.perf_counter()

            def on_train_batch_end(self, trainer: Any, pl_module: Any, *_: Any) -> None:
                self.in_steps += time.perf_counter() - self.step_start

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                events.append(("training steps", self.in_steps, 0.0, 0.0))

            def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
                events.append(("validation start", time.perf_counter(), 0.0, 0.0))

            def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
                events.append(("validation end", time.perf_counter(), 0.0, 0.0))

            def on_train_end(self, trainer: Any, pl_module: Any) -> None:
                events.append(("train end", time.perf_counter(), 0.0, 0.0))
                events.append(("train end cpu", time.process_time(), 0.0, 0.0))

        build_callbacks = run_module.build_callbacks
        # first, so that "train end" comes before the other callbacks' end-of-training work (the projector)
        run_module.build_callbacks = lambda cfg: [EpochClock(), *build_callbacks(cfg)]
        from pytorch_lightning.loggers import CSVLogger, WandbLogger

        for logger_class in (WandbLogger, CSVLogger):
            method = logger_class.log_hyperparams
            logger_class.log_hyperparams = timed("loggers: log hyper-parameters (W&B: init)", method)
        for name, method in (("__init__", pl.Trainer.__init__), ("fit", pl.Trainer.fit)):
            setattr(pl.Trainer, name, timed(f"trainer.{name.strip('_')}", method))

    sys.meta_path.insert(0, _AfterImport("pytorch_lightning", patch_lightning))
    if not run_imports_lightning:  # import it up front, as this script used to
        with timed_imports():
            importlib.import_module("pytorch_lightning")
    sys.argv = ["mte.train", *argv]
    try:
        runpy.run_module("mte.train", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise
    finally:
        events.append(("exit", time.perf_counter(), 0.0, 0.0))
        start, cpu = time.perf_counter(), time.process_time()
        probe = machine_rates() if "torch" in sys.modules else {}
        probe_cost = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}  # not the run's
        Path(events_path).write_text(json.dumps({"t_main": t_main, "events": events, "machine": probe,
                                                 "probe_cost": probe_cost}))


def machine_rates(seconds: float = 0.5) -> dict[str, float]:
    """The machine's speed now, three ways, each the median of repeats over ``seconds``: GFLOP/s of the audio
    branch's first-layer product (float32, 128 × 2,649 × 256, on this process's torch threads); GB/s of copying
    64 MB (read + write; the optimiser is memory-bound); and millions of pure-Python dict operations per second
    (imports, Hydra and Lightning's bookkeeping are interpreter work). Each can slow down on its own on a shared
    host: the matrix product fits in a core's cache, the other two do not."""
    import torch

    a, w = torch.randn(128, 2649), torch.randn(2649, 256)
    src, dst = torch.ones(16 * 2**20), torch.empty(16 * 2**20)
    keys = [f"key{i}" for i in range(50_000)]

    def python_work() -> None:
        table = {}
        for key in keys:
            table[key] = len(key)
        for key in keys:
            table[key] += 1

    def median_seconds(fn: Any) -> float:
        fn()
        times, deadline = [], time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    matmul = median_seconds(lambda: torch.mm(a, w))
    copy = median_seconds(lambda: dst.copy_(src))
    python = median_seconds(python_work)
    return {"gflops": 2 * 128 * 2649 * 256 / matmul / 1e9, "copy_gbs": 2 * src.numel() * 4 / copy / 1e9,
            "python_mops": 3 * len(keys) / python / 1e6, "threads": torch.get_num_threads()}


def machine_text(result: dict[str, Any]) -> str:
    rates = result.get("machine") or {}
    if not rates:
        return "machine rate not measured"
    return (f"machine right after: {rates['gflops']:.0f} GFLOP/s matmul ({rates['threads']} threads), "
            f"{rates['copy_gbs']:.1f} GB/s copy, {rates.get('python_mops', float('nan')):.1f} M Python dict ops/s")


def run_child(argv: list[str], args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``python -m mte.train argv`` as a child (through :func:`_child`); its events and its wall time."""
    with tempfile.TemporaryDirectory(prefix="mte-bench-speed-") as tmp:
        events_path = Path(tmp) / "events.json"
        full_env = {**os.environ, **(env or {})}
        if args.pythonpath:
            full_env["PYTHONPATH"] = args.pythonpath
        full_env.setdefault("WANDB_SILENT", "true")
        command = [args.python, str(Path(__file__).resolve()), CHILD_FLAG, str(events_path), *argv,
                   f"hydra.run.dir={tmp}/run", f"hydra.sweep.dir={tmp}/sweep"]
        start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=tmp)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
        if proc.returncode != 0:
            raise SystemExit(f"child failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-4000:]}")
        data = json.loads(events_path.read_text())
    probe_cost = data.pop("probe_cost", {"wall": 0.0, "cpu": 0.0})
    return {"wall": wall - probe_cost["wall"], "cpu": cpu - probe_cost["cpu"], **data}


def epoch_cpu_of(result: dict[str, Any]) -> list[float]:
    """CPU seconds of the child process per epoch: what an epoch costs with the cores to itself (one thread)."""
    starts = [e[1] for e in result["events"] if e[0] == "epoch start cpu"]
    end = next(e[1] for e in result["events"] if e[0] == "train end cpu")
    return [b - a for a, b in itertools.pairwise([*starts, end])]


def epochs_of(result: dict[str, Any]) -> tuple[list[float], list[float], list[float]]:
    """(seconds per epoch, validation included; seconds of validation per epoch; seconds inside the training steps
    per epoch) from a child's events."""
    starts = [e[1] for e in result["events"] if e[0] == "epoch start"]
    end = next(e[1] for e in result["events"] if e[0] == "train end")
    bounds = [*starts, end]
    epochs = [b - a for a, b in itertools.pairwise(bounds)]
    v_starts = [e[1] for e in result["events"] if e[0] == "validation start"]
    v_ends = [e[1] for e in result["events"] if e[0] == "validation end"]
    steps = [e[1] for e in result["events"] if e[0] == "training steps"]
    return epochs, [b - a for a, b in zip(v_starts, v_ends, strict=True)], steps


def base_args(args: argparse.Namespace) -> list[str]:
    return ["data=mard", f"data.raw_dir={args.raw_dir}", "test=false", *args.extra]


def env_for(args: argparse.Namespace) -> dict[str, str]:
    return {"MTE_CACHE_DIR": str(args.cache_dir)}


def show_command(argv: list[str], args: argparse.Namespace) -> str:
    prefix = f"MTE_CACHE_DIR={args.cache_dir} " + (f"PYTHONPATH={args.pythonpath} " if args.pythonpath else "")
    return prefix + "python -m mte.train " + " ".join(argv)


# ----------------------------------------------------------------------------------------------------------------
# 1. epochs
# ----------------------------------------------------------------------------------------------------------------


def bench_epochs(args: argparse.Namespace) -> None:
    print(f"\n1. epoch time, validation included ({args.epochs} epochs; figure = mean of epochs 2..)", flush=True)
    for recipe in args.recipes:
        argv = [f"experiment={recipe}", *base_args(args), f"trainer.max_epochs={args.epochs}", "logger=csv"]
        before = load_average()
        result = run_child(argv, args, env_for(args))
        epochs, validation, steps = epochs_of(result)
        cpu = epoch_cpu_of(result)
        later, later_cpu = epochs[1:] or epochs, cpu[1:] or cpu
        wall, cpu_s = sum(later) / len(later), sum(later_cpu) / len(later_cpu)
        each = ", ".join(f"{s:.2f}" for s in epochs)
        checks = ", ".join(f"{s:.2f}" for s in validation)
        inside = ", ".join(f"{s:.2f}" for s in steps)
        print(f"  {recipe:20s} epoch {wall:6.2f} s wall, {cpu_s:6.2f} s CPU   (each: {each} s; inside the steps: "
              f"{inside} s; validation: {checks} s)   load {before} → {load_average()}", flush=True)
        print(f"  {'':20s} {machine_text(result)}", flush=True)
        print(f"  {'':20s} $ {show_command(argv, args)}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# 2. start-up
# ----------------------------------------------------------------------------------------------------------------


def phase_table(result: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    """(phase, wall seconds, CPU seconds) of a 1-epoch child: process start and exit, the timed phases, the rest,
    the total outside the epoch and the epoch. CPU seconds are what the phase costs with a core to itself."""
    events, parent_wall = result["events"], result["wall"]
    epochs, _, _ = epochs_of(result)
    epoch, epoch_cpu = sum(epochs), sum(epoch_cpu_of(result))
    exit_t = next(e[1] for e in events if e[0] == "exit")
    totals: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for label, start, end, cpu_seconds in events:
        if end:
            totals[label] = totals.get(label, 0.0) + end - start
            cpu[label] = cpu.get(label, 0.0) + cpu_seconds
    fit, fit_cpu = totals.pop("trainer.fit", 0.0), cpu.pop("trainer.fit", 0.0)
    totals.pop("job", None)  # the whole run: its parts are the phases
    rows: list[tuple[str, float, float | None]] = [
        ("interpreter start and exit", parent_wall - (exit_t - result["t_main"]), None)]
    rows += [(label, seconds, cpu[label]) for label, seconds in totals.items()]
    rows.append(("trainer.fit outside the epoch (sanity, set-up, wind-down)", fit - epoch, fit_cpu - epoch_cpu))
    accounted = sum(r[1] for r in rows)
    rows.append(("not in a timed phase (hydra, seeding, run bookkeeping)", parent_wall - accounted - epoch, None))
    rows.append(("= outside the epoch", parent_wall - epoch, result["cpu"] - epoch_cpu))
    rows.append(("  the epoch itself", epoch, epoch_cpu))
    return rows


def bench_startup(args: argparse.Namespace) -> None:
    """Each logger's 1-epoch run ``--rounds`` times (and, with ``--against``, the other checkout's run right after
    each, so both see the same phase of a machine whose speed drifts); the median of every phase is printed."""
    rounds = f", median of {args.rounds} runs" if args.rounds > 1 else ""
    print(f"\n2. start-up: a 1-epoch run on cached data, time outside its epoch (target ≤ 8 s{rounds})", flush=True)
    paths = [("this checkout", args.pythonpath)] + ([(f"--against {args.against}", args.against)]
                                                    if args.against else [])
    checkouts = [(name, argparse.Namespace(**{**vars(args), "pythonpath": path})) for name, path in paths]
    for logger in ("default", "csv"):
        argv = ["experiment=best", *base_args(args), "trainer.max_epochs=1"]
        if logger != "default":
            argv.append(f"logger={logger}")
        tables: dict[str, list[list[tuple[str, float, float | None]]]] = {name: [] for name, _ in checkouts}
        walls: dict[str, list[float]] = {name: [] for name, _ in checkouts}
        rates: dict[str, list[str]] = {name: [] for name, _ in checkouts}
        before = load_average()
        for _ in range(args.rounds):
            for name, checkout_args in checkouts:
                result = run_child(argv, checkout_args, env_for(args))
                tables[name].append(phase_table(result))
                walls[name].append(result["wall"])
                rates[name].append(machine_text(result).removeprefix("machine right after: "))
        label = logger if logger != "default" else "wandb (default, offline)"
        print(f"  logger={label}: load {before} → {load_average()}", flush=True)
        for name, checkout_args in checkouts:
            runs = tables[name]
            by_phase = [{phase: (wall, cpu) for phase, wall, cpu in table} for table in runs]
            outside = ", ".join(f"{run['= outside the epoch'][0]:.2f}" for run in by_phase)
            print(f"   {name}: wall {statistics.median(walls[name]):.2f} s; outside the epoch per run: {outside} s",
                  flush=True)
            for rate in rates[name]:
                print(f"    machine right after a run: {rate}", flush=True)
            print(f"    {'phase (median)':64s}   wall     CPU", flush=True)
            for phase, _, cpu in runs[0]:
                seconds = statistics.median(run.get(phase, (0.0, None))[0] for run in by_phase)
                cpus = [run[phase][1] for run in by_phase if run.get(phase, (0, None))[1] is not None]
                cpu_text = f"{statistics.median(cpus):6.2f} s" if cpu is not None and cpus else ""
                print(f"    {phase:64s} {seconds:6.2f} s {cpu_text}", flush=True)
            print(f"    $ {show_command(argv, checkout_args)}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# 3. sweep
# ----------------------------------------------------------------------------------------------------------------


def sweep_jobs(result: dict[str, Any]) -> list[tuple[float, float]]:
    """(seconds, seconds of its epoch) per job of a multirun child. A job's seconds run from the end of the job
    before it (Hydra composing its config, then the job) to its own end; the first job's from the process start,
    interpreter and imports included."""
    events = result["events"]
    exit_t = next(e[1] for e in events if e[0] == "exit")
    process_start = result["t_main"] - (result["wall"] - (exit_t - result["t_main"]))
    jobs = [(start, end) for label, start, end, _ in events if label == "job"]
    rows, previous_end = [], process_start
    for start, end in jobs:
        epoch_starts = [e[1] for e in events if e[0] == "epoch start" and start <= e[1] <= end]
        train_end = next(e[1] for e in events if e[0] == "train end" and start <= e[1] <= end)
        rows.append((end - previous_end, train_end - epoch_starts[0]))
        previous_end = end
    return rows


def bench_sweep(args: argparse.Namespace) -> None:
    """A multirun of ``--sweep-jobs`` 1-epoch jobs (seeds), default logger: each job's time outside its epoch."""
    seeds = ",".join(str(seed) for seed in range(args.sweep_jobs))
    print(f"\n3. sweep: a multirun of {args.sweep_jobs} 1-epoch jobs in one process, time outside each job's epoch "
          "(target ≤ 8 s)", flush=True)
    argv = ["-m", "experiment=best", *base_args(args), "trainer.max_epochs=1", f"seed={seeds}"]
    before = load_average()
    result = run_child(argv, args, env_for(args))
    for k, (seconds, epoch) in enumerate(sweep_jobs(result)):
        what = "process start, imports and the job" if k == 0 else "Hydra's next config and the job"
        print(f"  job {k}: {seconds:6.2f} s ({what}), its epoch {epoch:5.2f} s, outside the epoch "
              f"{seconds - epoch:5.2f} s", flush=True)
    print(f"  whole multirun {result['wall']:.2f} s wall   load {before} → {load_average()}; {machine_text(result)}",
          flush=True)
    print(f"  $ {show_command(argv, args)}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# 4. threads
# ----------------------------------------------------------------------------------------------------------------


def _burn() -> None:  # pragma: no cover - a busy loop, killed by the parent
    while True:
        pass


@contextlib.contextmanager
def burners(n: int) -> Iterator[None]:
    """``n`` busy-loop processes for the duration of the block (a CPU shared with other jobs)."""
    procs = [multiprocessing.get_context("spawn").Process(target=_burn, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


def bench_threads(args: argparse.Namespace) -> None:
    """Steps of the default recipe's model on real batches, at several thread counts, interleaved in rounds."""
    import torch
    from hydra import compose, initialize_config_dir

    from mte.data.prepare import prepare_from_config
    from mte.data.processed import ProcessedData
    from mte.models.optim import LazyAdam
    from mte.train.run import build_datamodule, build_model
    from mte.train.threads import auto_threads

    os.environ["MTE_CACHE_DIR"] = str(args.cache_dir)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=best", *base_args(args), "logger=none"])
    data = ProcessedData.load(prepare_from_config(cfg.data))
    torch.manual_seed(0)
    model = build_model(cfg, data)
    batches = list(itertools.islice(build_datamodule(cfg, model, data).train_dataloader(), 40))
    optimizer = LazyAdam([p for p in model.parameters() if p.requires_grad], lr=1e-3)  # no schedule: no trainer

    def steps(n_threads: int, chunk: list[dict[str, Any]]) -> float:
        torch.set_num_threads(n_threads)
        start = time.perf_counter()
        for i, batch in enumerate(chunk):
            optimizer.zero_grad(set_to_none=True)
            model.training_step(batch, i).backward()
            optimizer.step()
        return time.perf_counter() - start

    print(f"\n4. threads: ms per training step (experiment=best model, batch {cfg.data.batch_size}, real batches; "
          f"{len(os.sched_getaffinity(0))} cores)", flush=True)
    for label, n_burners in (("as the machine is", 0), (f"+{args.burners} busy processes", args.burners)):
        with burners(n_burners):
            auto = auto_threads()
            counts = sorted({1, 2, auto})
            seconds = dict.fromkeys(counts, 0.0)
            before = load_average()
            for round_ in range(-1, args.thread_rounds):
                chunk = batches[(round_ % 8) * 5:(round_ % 8) * 5 + 5]
                for n in counts:
                    elapsed = steps(n, chunk)
                    if round_ >= 0:
                        seconds[n] += elapsed
            per_step = {n: 1e3 * s / (5 * args.thread_rounds) for n, s in seconds.items()}
            figures = ", ".join(f"{n} thread{'s' if n > 1 else ''}{' (auto)' if n == auto else ''} "
                                f"{ms:.1f} ms" for n, ms in per_step.items())
            print(f"  {label:28s} {figures}   load {before} → {load_average()}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--raw-dir", type=Path, required=True, help="MARD raw dir (e.g. python -m mte.synth scale=full)")
    p.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("MTE_CACHE_DIR", "/tmp/mte-bench-cache")),
                   help="MTE_CACHE_DIR holding the prepared data (default: $MTE_CACHE_DIR or %(default)s)")
    p.add_argument("--recipes", default=",".join(RECIPES), help="experiments for part 1 (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per part-1 run (default: %(default)s)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: epochs,startup,sweep,threads")
    p.add_argument("--sweep-jobs", type=int, default=3, help="jobs of the part-3 multirun (default: %(default)s)")
    p.add_argument("--burners", type=int, default=2, help="busy processes for the loaded figure (default: 2)")
    p.add_argument("--thread-rounds", type=int, default=8, help="rounds of 5 steps per thread count (default: 8)")
    p.add_argument("--python", default=sys.executable, help="interpreter of the children (default: this one)")
    p.add_argument("--pythonpath", default="", help="PYTHONPATH of the children (another checkout)")
    p.add_argument("--rounds", type=int, default=1, help="start-up runs per logger; medians are printed (default: 1)")
    p.add_argument("--against", default="",
                   help="another checkout (its root) whose start-up runs alternate with this one's, for before/after")
    p.add_argument("extra", nargs="*", help="more overrides for every run, e.g. runtime.threads=1")
    args = p.parse_args(argv)
    args.recipes = [r for r in args.recipes.split(",") if r]
    args.raw_dir = args.raw_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD_FLAG]:
        _child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable); load {load_average()}; "
          f"children: {args.python}" + (f" PYTHONPATH={args.pythonpath}" if args.pythonpath else ""), flush=True)
    if "epochs" not in skip:
        bench_epochs(args)
    if "startup" not in skip:
        bench_startup(args)
    if "sweep" not in skip:
        bench_sweep(args)
    if "threads" not in skip:
        bench_threads(args)
    print(f"\nload at end {load_average()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
