"""runtime.threads: `auto` leaves the cores other processes use alone, a number is taken as is, and the run
applies it before torch does any work."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mte.train.threads import (
    MAX_AUTO_THREADS,
    CpuClock,
    ThreadsError,
    auto_threads,
    parse_threads,
    resolve_threads,
)


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [
        (2, 0.1, 2),  # an idle 2-core machine: both cores
        (2, 0.6, 1),  # about one core busy elsewhere
        (2, 4.3, 1),  # a shared machine: never 0, never more than what is free
        (16, 10.2, 6),
        (64, 0.0, MAX_AUTO_THREADS),  # small ops stop scaling long before 64 threads
        (1, 0.0, 1),
    ],
)
def test_auto_takes_the_cores_left_idle(cores, load, expected):
    assert auto_threads(cores=cores, load=load, env={}) == expected


def test_auto_follows_an_explicit_omp_num_threads():
    assert auto_threads(cores=2, load=0.0, env={"OMP_NUM_THREADS": "1"}) == 1
    assert auto_threads(cores=2, load=0.0, env={"OMP_NUM_THREADS": "bogus"}) == 2


@pytest.mark.parametrize(("value", "expected"), [("auto", None), ("AUTO", None), (None, None), (3, 3), ("2", 2)])
def test_parse(value, expected):
    assert parse_threads(value) == expected


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "many", ""])
def test_bad_values_are_one_line_errors(value):
    with pytest.raises(ThreadsError, match=r"runtime\.threads=.*must be 'auto' or a positive integer") as info:
        parse_threads(value)
    assert "\n" not in str(info.value)


def test_resolve_a_number_or_auto():
    assert resolve_threads({"threads": 3}) == 3
    assert 1 <= resolve_threads({"threads": "auto"}) <= MAX_AUTO_THREADS
    assert resolve_threads(None) == resolve_threads({})


def test_apply_sets_intra_and_inter_op_threads_in_a_fresh_process():
    code = ("from mte.train.threads import apply_threads; import torch; "
            "print(apply_threads(3), torch.get_num_threads(), torch.get_num_interop_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["3", "3", "3"]


def test_denormals_are_flushed_on_every_worker_thread_inside_the_block_only():
    """A denormal (1e-39) times 1 is 0 inside ``denormals_flushed()`` over both threads of a parallel op (the
    workers start inside the block and inherit the mode), and 1e-39 again on this thread after it; in a process
    that never enters the block it stays 1e-39 — the slow path a dead unit's decayed weights take."""
    count = "int((torch.full((8_000_000,), 1e-39) * 1.0 != 0).sum())"
    flushed = ("import torch; from mte.train.threads import apply_threads, denormals_flushed; apply_threads(2)\n"
               f"with denormals_flushed(): inside = {count}\n"
               "x = torch.tensor([1e-39]); print(torch.get_num_threads(), inside, int((x * 1.0 != 0).sum()))")
    plain = f"import torch; torch.set_num_threads(2); print(torch.get_num_threads(), {count})"
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
            for code in (flushed, plain)]
    assert [out.stdout.split() for out in outs] == [["2", "0", "1"], ["2", "8000000"]]


def test_clock_counts_a_busy_neighbour_and_not_this_process():
    """A child spinning for a second shows as about one busy core; this process's own spinning does not count."""
    clock = CpuClock(min_window=0.0)
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    time.sleep(0.3)  # the interpreter is up and spinning
    clock.others_busy()
    time.sleep(1.0)
    neighbour = clock.others_busy()
    child.wait(timeout=30)
    assert neighbour > 0.6, neighbour
    clock.others_busy()
    start = time.process_time()
    while time.process_time() - start < 0.5:
        pass
    assert clock.others_busy() < neighbour - 0.3


def test_clock_reads_busy_time_of_this_process_cpus(tmp_path, monkeypatch):
    """busy = all fields − idle − iowait, on the CPUs this process may use only, per second of wall time."""
    stat = tmp_path / "stat"
    cpus = sorted(os.sched_getaffinity(0))
    tick = os.sysconf("SC_CLK_TCK")

    def write(busy_ticks: int) -> None:
        lines = ["cpu  9 9 9 9 9 9 9 9 0 0"]
        lines += [f"cpu{i} {busy_ticks} 0 0 500 7 0 0 0 0 0" for i in cpus]
        lines.append(f"cpu{max(cpus) + 1} 99999 0 0 0 0 0 0 0 0 0")  # a CPU this process may not use
        stat.write_text("\n".join(lines) + "\n")

    monkeypatch.setattr(time, "process_time", lambda: 0.0)  # this process uses no CPU in between
    write(0)
    clock = CpuClock(stat_path=str(stat), min_window=0.0)
    write(tick)  # every allowed CPU busy for one second
    time.sleep(0.5)
    busy = clock.others_busy()
    assert len(cpus) * 0.5 < busy <= len(cpus) / 0.5


def test_clock_falls_back_to_the_load_average_without_proc_stat(tmp_path):
    clock = CpuClock(stat_path=str(tmp_path / "missing"), min_window=0.0)
    assert clock.others_busy() == os.getloadavg()[0]
