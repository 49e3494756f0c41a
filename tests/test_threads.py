"""runtime.threads: `auto` leaves the cores other processes use alone, a number is taken as is, and the run
applies it before torch does any work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mte.train.threads import MAX_AUTO_THREADS, ThreadsError, auto_threads, parse_threads, resolve_threads


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
