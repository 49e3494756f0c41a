"""End to end: `python -m mte.train` as a user runs it, and what the real clients (W&B, TensorBoard) read back.

Every test here launches real training subprocesses on a small synthetic MARD (generated and prepared once into
the session cache by the first run), so they are marked slow; CI runs them.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # the README's own command on a machine without the weights (an empty HF cache below, hub offline)
        (["text=distilbert", "loss.bidirectional=false"], "error: cannot load text encoder 'distilbert-base-uncased': "
         "not in the local HF cache and no network — pass text.pretrained=<local dir>"),
        # used to exit 0 and write an untrained model's test metrics as the run's result
        (["trainer.max_epochs=0"], "error: trainer.max_epochs=0: a training run needs at least 1 epoch"),
        (["sampler=neighborhood"], "error: sampler=neighborhood pairs every review with another of its album, but "
         "loss=infonce has no neighbourhood terms"),
        (["runtime.threads=-2"], "error: runtime.threads=-2: must be 'auto' or a positive integer"),
    ],
)
def test_user_errors_are_one_line_exit_2_before_anything_runs(tmp_path, args, message):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    env = {"MTE_CACHE_DIR": str(cache), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = run_module("mte.train", *args, f"hydra.run.dir={run_dir}", "logger=none", check=False, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-3000:]  # the sentence alone, no traceback
    assert not cache.exists()  # refused before synthetic data were generated or prepared
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoints").exists()


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
    config = wandb_run["config"]
    assert config["loss"]["name"] == "infonce" and config["data"]["vocab"]["min_albums"] == 0.009  # experiment=best
    assert config["text"]["name"] == "bow"
    assert wandb_run["run"].display_name == "data.batch_size=32,data.synthetic.albums=200,trainer.max_epochs=2"
    # the projector's table: one row per sampled review or album, its embedding a list of embed_dim numbers
    (table_file,) = (offline_run / "files" / "media" / "table").glob("embeddings_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["modality", "artist", "album", "genre", "text", "embedding"]
    assert table["data"] and all(len(row[-1]) == config["model"]["embed_dim"] for row in table["data"])

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


def _retrieval_best(ckpt: dict) -> dict[str, float]:
    """The RetrievalMetrics callback's saved state: the best value so far of every val metric (``val_best/…``)."""
    (key,) = [k for k in ckpt["callbacks"] if k.startswith("RetrievalMetrics")]
    return ckpt["callbacks"][key]["best"]


def _adam_steps(ckpt: dict) -> set[int]:
    return {int(state["step"]) for state in ckpt["optimizer_states"][0]["state"].values()}


def _logged_steps(csv_file: Path) -> list[int]:
    import csv

    with csv_file.open() as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]


def test_killed_run_resumes_from_last_checkpoint_and_finishes(tmp_path):
    """Resume continues the killed run: global step, optimiser state and the best-so-far metrics carry over.

    A silent restart from scratch would train the same number of epochs, so the epoch count proves nothing. Instead:
    the resumed process logs its first step past the killed run's global step; the final global step is the killed
    one plus exactly the new epochs' steps; Adam's per-parameter step counts equal the final global step (a fresh
    optimiser would count only the resumed steps); and a sentinel best value planted in the checkpoint (R@10 =
    100, no real epoch reaches it) comes out as the run's val_best — only carried callback state can report it.
    """
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
    killed_ckpt = run_dir / "killed.ckpt"
    os.replace(last, killed_ckpt)  # the resumed run will write last.ckpt again
    killed = torch.load(killed_ckpt, map_location="cpu", weights_only=False)
    completed, step = killed["epoch"] + 1, killed["global_step"]  # saved at the end of epoch `epoch` (0-based)
    steps_per_epoch = step // completed
    assert step > 0 and step == steps_per_epoch * completed and _adam_steps(killed) == {step}
    best = _retrieval_best(killed)
    assert 0 <= best["val_best/t2a/R@10"] < 100
    best["val_best/t2a/R@10"] = 100.0  # the sentinel
    torch.save(killed, killed_ckpt)
    shutil.rmtree(run_dir / "csv", ignore_errors=True)  # the killed run's log: what is logged next is the resumed's

    # a budget the checkpoint has already used up would train nothing: refused before anything runs
    refused = train(run_dir, "logger=csv", f"trainer.max_epochs={completed}", f"ckpt_path={killed_ckpt}", check=False)
    assert refused.returncode == 2 and refused.stderr.strip().startswith("error: trainer.max_epochs="), refused.stderr
    assert "resuming would train nothing" in refused.stderr and not (run_dir / "metrics.json").exists()
    train(run_dir, "logger=csv", f"trainer.max_epochs={completed + 2}", f"ckpt_path={killed_ckpt}")
    resumed = json.loads((run_dir / "metrics.json").read_text())
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epochs"] == completed + 2
    assert final["global_step"] == step + 2 * steps_per_epoch
    assert _adam_steps(final) == {final["global_step"]}  # the optimiser kept counting: its state was restored
    (csv_log,) = (run_dir / "csv").rglob("metrics.csv")
    assert min(_logged_steps(csv_log)) >= step, "the resumed run logged steps from 0: it restarted"
    assert _retrieval_best(final)["val_best/t2a/R@10"] == 100.0  # val_best carried through the resumed fit
    assert resumed["metrics"]["val/t2a/R@10"] < 100.0 and "test/t2a/R@10" in resumed["metrics"]
    # metrics.json reports the finished run's selection (not the state saved in best.ckpt, which test restores)
    assert resumed["metrics"]["val_best/t2a/R@10"] == 100.0


def test_ddp_training_reports_the_numbers_one_process_gets(tmp_path):
    """Train on two CPU processes (DDP); its test metrics (gathered across ranks) equal what one process computes
    on the same best checkpoint — every metric, not merely that the keys exist."""
    two = tmp_path / "ddp"
    train(two, "logger=none", "trainer=ddp_cpu", "trainer.max_epochs=1")
    m2 = metrics_of(two)
    best = json.loads((two / "metrics.json").read_text())["best_checkpoint"]
    assert best and Path(best).is_file()
    one = tmp_path / "one"
    train(one, "logger=none", "train=false", f"ckpt_path={best}", "trainer=cpu")
    m1 = metrics_of(one)
    test_keys = sorted(k for k in m1 if k.startswith("test/"))
    assert len(test_keys) >= 12 and set(test_keys) <= set(m2)
    for key in test_keys:
        assert m2[key] == pytest.approx(m1[key], abs=1e-6), key
    assert m2["test/t2a/n_queries"] == m1["test/t2a/n_queries"] > 0  # every query counted once, not per rank


def _text_feature_files(cache: Path, model_dir: Path) -> dict[str, tuple[int, int]]:
    """The feature-cache files written for ``model_dir``: name → (inode, mtime_ns)."""
    out = {}
    for meta in (cache / "text_features").glob("text-features-*.json"):
        if json.loads(meta.read_text()).get("model") == str(model_dir):
            for path in (meta, meta.with_suffix(".npy")):
                stat = path.stat()
                out[path.name] = (stat.st_ino, stat.st_mtime_ns)
    return out


def test_distilbert_command_with_a_local_model_and_feature_cache(tmp_path):
    model_dir = save_tiny_distilbert(tmp_path / "tiny-distilbert", seed=0)
    cache = Path(os.environ["MTE_CACHE_DIR"])
    assert not _text_feature_files(cache, model_dir)
    first = train(
        tmp_path / "a",
        "text=distilbert",
        "loss.bidirectional=false",
        f"text.pretrained={model_dir}",
        "logger=none",
        "trainer.max_epochs=1",
    )
    assert "val_best/t2a/R@10" in metrics_of(tmp_path / "a")
    files_a = _text_feature_files(cache, model_dir)
    second = train(
        tmp_path / "b",
        "text=distilbert",
        "loss.bidirectional=false",
        f"text.pretrained={model_dir}",
        "logger=none",
        "trainer.max_epochs=1",
    )
    del first, second
    assert len(files_a) == 2, files_a  # the first run computed the features once: one .npy and its .json
    assert _text_feature_files(cache, model_dir) == files_a  # the second read them: same files, not rewritten


def test_optuna_search_runs_trials_and_optimises_the_returned_metric(tmp_path):
    """The sweeper optimised what the entry point returns (optimized_metric = val_best/t2a/R@10): its best value
    is the best trial's metrics.json value, the max over the trials, and its best params are that trial's."""
    sweep = tmp_path / "optuna"
    run_module(
        "mte.train",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        *SMALL,
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 3
    trials = []
    for job in jobs:
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        trials.append((metrics_of(job)["val_best/t2a/R@10"], overrides))
    values = [v for v, _ in trials]
    assert results["best_value"] == pytest.approx(max(values), abs=1e-9)
    best_overrides = [o for v, o in trials if v == pytest.approx(results["best_value"], abs=1e-9)]
    assert any(all(str(o.get(k)) == str(v) for k, v in results["best_params"].items()) for o in best_overrides), (
        results, trials)


def test_fast_dev_run_trains_one_step_validates_once_and_reports_no_test(tmp_path):
    """debug=fdr: one training step, one validation pass, no test, no logger files, no "best" model."""
    run_dir = tmp_path / "fdr"
    proc = run_module("mte.train", "debug=fdr", "data.synthetic.albums=200", f"hydra.run.dir={run_dir}")
    assert "no test (a fast dev run)" in proc.stdout and "tested checkpoint" not in proc.stdout  # it said "tested"
    result = json.loads((run_dir / "metrics.json").read_text())
    metrics = result["metrics"]
    assert 0 <= metrics["val/t2a/R@10"] <= 100 and metrics["val/t2a/n_queries"] > 0  # validation ran
    assert not [k for k in metrics if k.startswith("test/")]  # debug=fdr sets test: false
    assert result["epochs"] == 1 and result["best_checkpoint"] == ""
    if result["last_checkpoint"]:
        ckpt = torch.load(result["last_checkpoint"], map_location="cpu", weights_only=False)
        assert ckpt["global_step"] == 1  # exactly one optimiser step
    assert not [d for d in ("wandb", "tensorboard", "csv") if (run_dir / d).exists()]  # logger=none


def test_last_checkpoint_is_the_last_epoch_even_when_the_best_stays_behind(tmp_path):
    """Lightning 2.6 rewrote last.ckpt only in epochs whose validation R@10 improved: after a plateau "last" was an
    old epoch, and resuming from it trained those epochs again. With a learning rate too small to move a rank, the
    first epoch stays the best one; last.ckpt must still be the third."""
    run_dir = tmp_path / "run"
    train(run_dir, "logger=csv", "trainer.max_epochs=3", "model.optimizer.lr=1e-12", "test=false")
    record = json.loads((run_dir / "metrics.json").read_text())
    best = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=False)
    last = torch.load(record["last_checkpoint"], map_location="cpu", weights_only=False)
    assert best["epoch"] == 0 and last["epoch"] == 2 and last["global_step"] == 3 * best["global_step"]
    resume = ["logger=csv", "model.optimizer.lr=1e-12", f"ckpt_path={record['last_checkpoint']}"]
    refused = train(run_dir, *resume, "trainer.max_epochs=3", check=False)
    assert refused.returncode == 2 and "has already trained 3 epoch(s)" in refused.stderr, refused.stderr
    other = train(run_dir, *resume, "trainer.max_epochs=4", "model.embed_dim=32", check=False)  # a state-dict traceback
    assert other.returncode == 2 and other.stderr.strip().splitlines() == [
        f"error: ckpt_path={record['last_checkpoint']} was trained with other settings (model.embed_dim: 128 → 32); "
        "a resume continues the same run: drop those overrides, or start a new run without ckpt_path"]
    # the refused resumes recorded their configs apart: the run's own still says what it trained with
    recorded = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert recorded["model"]["embed_dim"] == 128 and recorded["trainer"]["max_epochs"] == 3
    assert recorded["ckpt_path"] is None and len(list((run_dir / ".hydra").glob("resume-*/config.yaml"))) >= 1
    # resuming in the run dir keeps the CSV log of the epochs before it (Lightning's CSV logger deleted it)
    train(run_dir, *resume, "trainer.max_epochs=4")
    epochs_in = {name: {row["epoch"] for row in csv.DictReader((run_dir / "csv" / name).open()) if row.get("epoch")}
                 for name in ("metrics-1.csv", "metrics.csv")}
    assert epochs_in["metrics-1.csv"] == {"0", "1", "2"}, epochs_in
    assert "3" in epochs_in["metrics.csv"] and not epochs_in["metrics.csv"] & {"0", "1", "2"}, epochs_in  # + test row
