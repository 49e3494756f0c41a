"""scripts/gpu_check.py: a clear one-line stop without CUDA, and its CPU dry run (the GPU code path on a tiny
dataset). The GPU figures themselves are measured by running the script on a GPU machine, never by tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_without_cuda_it_stops_with_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert _script().main(["--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA device here")
    assert not (tmp_path / "out").exists()  # nothing generated before the check


@pytest.mark.slow
def test_dry_run_goes_through_the_gpu_code_path_on_a_cpu(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--skip", "train", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["features"]["fp32"]["reviews_per_s"] > 0 and report["features"]["bf16"]["reviews_per_s"] > 0
    assert report["tune"]["steps"] == 12 and report["tune"]["steps_per_s"] > 0
    assert "[gpu_check] fine-tune: 12 steps" in proc.stdout
