"""End to end: `python -m mte.train` as a user runs it, and what the real clients (W&B, TensorBoard) read back.

Every test here launches real training subprocesses on a small synthetic MARD (generated and prepared once into
the session cache by the first run), so they are marked slow; CI runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, read_wandb_offline_run, run_module, save_tiny_distilbert

pytestmark = pytest.mark.slow

SMALL = ["data.synthetic.albums=200", "trainer.max_epochs=2", "data.batch_size=32"]
METRICS = ["R@1", "R@5", "R@10", "mAP@10", "MedR", "MeanR"]


def train(run_dir: Path, *overrides: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return run_module("mte.train", *SMALL, f"hydra.run.dir={run_dir}", *overrides, **kwargs)


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def test_run_dir_holds_checkpoints_metrics_config_and_every_logger(tmp_path):
    run_dir = tmp_path / "run"
    proc = train(run_dir, "logger=many")
    assert "R@10" in proc.stdout and str(run_dir) in proc.stdout  # the printed table and where the files are
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    metrics = metrics_of(run_dir)
    for stage in ("val", "val_best", "test"):
        for direction in ("t2a", "a2t"):
            for name in METRICS:
                assert f"{stage}/{direction}/{name}" in metrics, f"{stage}/{direction}/{name} missing"
    assert 0 <= metrics["test/t2a/R@1"] <= metrics["test/t2a/R@5"] <= metrics["test/t2a/R@10"] <= 100
    assert metrics["val_best/t2a/R@10"] >= metrics["val/t2a/R@10"]

    # W&B offline run: what `wandb sync` would upload — the summary holds the logged metrics, the config the run's
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    wandb_run = read_wandb_offline_run(offline_run)
    assert wandb_run["summary"]["val/t2a/R@10"] == pytest.approx(metrics["val/t2a/R@10"], abs=1e-4)
    assert wandb_run["summary"]["test/t2a/R@10"] == pytest.approx(metrics["test/t2a/R@10"], abs=1e-4)
    assert wandb_run["config"]["loss"]["margin"] == 0.05 and wandb_run["config"]["text"]["name"] == "bow"
    assert wandb_run["run"].display_name == "data.batch_size=32,data.synthetic.albums=200,trainer.max_epochs=2"

    # TensorBoard: scalar events with our metric names, and the embedding projector's files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run_dir / "tensorboard"))  # reads every event file of the dir, as TensorBoard does
    acc.Reload()
    assert {"val/t2a/R@10", "test/t2a/R@10", "train/loss"} <= set(acc.Tags()["scalars"])
    projector = list((run_dir / "tensorboard").rglob("projector_config.pbtxt"))
    assert projector, "no TensorBoard projector config"
    (metadata,) = (run_dir / "tensorboard").rglob("metadata.tsv")
    header, *rows = metadata.read_text().splitlines()
    assert header.split("\t") == ["modality", "artist", "album", "genre", "text"]
    assert {r.split("\t")[0] for r in rows} == {"review", "audio"}
    # the CSV logger and the standalone projector files
    assert list((run_dir / "csv").rglob("metrics.csv"))
    assert (run_dir / "projector" / "tensors.tsv").is_file()


def test_same_seed_same_metrics_on_cpu(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(a, "logger=none", "seed=3")
    train(b, "logger=none", "seed=3")
    assert metrics_of(a) == metrics_of(b)


def test_multirun_sweep_gives_one_dir_per_job_grouped_in_wandb(tmp_path):
    sweep = tmp_path / "sweep"
    run_module(
        "mte.train",
        "-m",
        *SMALL,
        "trainer.max_epochs=1",
        "loss.margin=0.05,0.2",
        "model.embed_dim=16,32",
        f"hydra.sweep.dir={sweep}",
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    groups, names = set(), set()
    for job in jobs:
        assert "val_best/t2a/R@10" in metrics_of(job)
        (offline_run,) = (job / "wandb").glob("offline-run-*")
        wandb_run = read_wandb_offline_run(offline_run)["run"]
        names.add(wandb_run.display_name)
        groups.add(wandb_run.run_group)
    # the run name is built from the job's overrides, so every job of the sweep has its own
    assert len(names) == 4 and all("loss.margin=" in n and "model.embed_dim=" in n for n in names)
    assert len(groups) == 1 and groups.pop().startswith("sweep-")


def test_killed_run_resumes_from_last_checkpoint_and_finishes(tmp_path):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    args = [*SMALL, "trainer.max_epochs=500", "logger=csv", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mte.train", *args],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while not last.exists() and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run_dir / "metrics.json").exists()
    epoch = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    train(run_dir, "logger=csv", f"trainer.max_epochs={epoch + 2}", f"ckpt_path={last}")
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["epochs"] == epoch + 2
    assert "test/t2a/R@10" in resumed["metrics"]


def test_ddp_two_processes_give_the_same_metrics_as_one(tmp_path):
    trained = tmp_path / "trained"
    train(trained, "logger=none", "trainer.max_epochs=1")
    best = json.loads((trained / "metrics.json").read_text())["best_checkpoint"]
    one, two = tmp_path / "one", tmp_path / "two"
    train(one, "logger=none", "train=false", f"ckpt_path={best}", "trainer=cpu")
    train(two, "logger=none", "train=false", f"ckpt_path={best}", "trainer=ddp_cpu")
    m1, m2 = metrics_of(one), metrics_of(two)
    test_keys = [k for k in m1 if k.startswith("test/")]
    assert test_keys
    for key in test_keys:
        assert m2[key] == pytest.approx(m1[key], abs=1e-6), key


def test_ddp_cpu_training_runs(tmp_path):
    run_dir = tmp_path / "ddp"
    train(run_dir, "logger=none", "trainer=ddp_cpu", "trainer.max_epochs=1")
    assert "val_best/t2a/R@10" in metrics_of(run_dir)


def test_distilbert_command_with_a_local_model_and_feature_cache(tmp_path):
    model_dir = save_tiny_distilbert(tmp_path / "tiny-distilbert", seed=0)
    first = train(
        tmp_path / "a",
        "text=distilbert",
        "loss.bidirectional=false",
        f"text.pretrained={model_dir}",
        "logger=none",
        "trainer.max_epochs=1",
    )
    assert "val_best/t2a/R@10" in metrics_of(tmp_path / "a")
    second = train(
        tmp_path / "b",
        "text=distilbert",
        "loss.bidirectional=false",
        f"text.pretrained={model_dir}",
        "logger=none",
        "trainer.max_epochs=1",
    )
    out1, out2 = first.stdout + first.stderr, second.stdout + second.stderr
    assert "miss" in out1.lower() and "hit" in out2.lower(), (out1[-2000:], out2[-2000:])


def test_optuna_search_runs_trials_and_optimises_the_returned_metric(tmp_path):
    sweep = tmp_path / "optuna"
    proc = run_module(
        "mte.train",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        *SMALL,
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert "best_value" in results and 0 <= results["best_value"] <= 100
    assert len([p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()]) == 2
    del proc


def test_fast_dev_run(tmp_path):
    run_module("mte.train", "debug=fdr", "data.synthetic.albums=200", f"hydra.run.dir={tmp_path / 'fdr'}")
