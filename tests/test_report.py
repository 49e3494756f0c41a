"""`python -m mte.report`: tables, grids and figures from run dirs laid out as Hydra and mte.train write them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from mte.eval.report import PAPER_TABLE1, build_report
from mte.eval.runs import find_runs, parse_overrides
from mte.report import main

DIRECTIONS = ("t2a", "a2t")
NAMES = ("R@1", "R@5", "R@10", "mAP@10", "MedR", "MeanR")


def fake_metrics(base: float) -> dict[str, float]:
    """Every metric name a trained run writes, with values derived from ``base`` (R@10 = base)."""
    metrics: dict[str, float] = {}
    for stage in ("val", "val_best", "test"):
        shift = {"val": 0.0, "val_best": 1.0, "test": -0.5}[stage]
        for direction in DIRECTIONS:
            values = {
                "R@1": base / 4 + shift,
                "R@5": base / 2 + shift,
                "R@10": base + shift,
                "mAP@10": base / 3 + shift,
                "MedR": 40 - base / 2,
                "MeanR": 60 - base / 2,
            }
            for name, value in values.items():
                metrics[f"{stage}/{direction}/{name}"] = value
                if stage == "test":
                    metrics[f"{stage}/{direction}/{name}_lo"] = value - 1.25
                    metrics[f"{stage}/{direction}/{name}_hi"] = value + 1.5
            metrics[f"{stage}/{direction}/n_queries"] = 800.0
    return metrics


def write_job(
    job: Path,
    overrides: list[str],
    base: float,
    tags: list[str] | None = None,
    choices=None,
    split: str | None = None,
    processed_dir: str = "/nonexistent",
) -> Path:
    """A finished job dir: metrics.json as mte.train.run wrote it before results had a kind (an old run must still
    read as a run) and .hydra/ as Hydra writes it (``split``: the composed ``data.split``)."""
    hydra_dir = job / ".hydra"
    hydra_dir.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), hydra_dir / "overrides.yaml")
    config = {"seed": 0, "tags": tags or [], "optimized_metric": "val_best/t2a/R@10", "loss": {"margin": 0.05}}
    if split is not None:
        config["data"] = {"split": split}
    OmegaConf.save(OmegaConf.create(config), hydra_dir / "config.yaml")
    hydra = {
        "hydra": {"runtime": {"choices": {"experiment": None, **(choices or {})}}, "overrides": {"task": overrides}}
    }
    OmegaConf.save(OmegaConf.create(hydra), hydra_dir / "hydra.yaml")
    payload = {
        "metrics": fake_metrics(base),
        "best_checkpoint": str(job / "checkpoints" / "best.ckpt"),  # not there: no embedding map
        "last_checkpoint": "",
        "epochs": 3,
        "processed_dir": processed_dir,
        "tags": tags or [],
    }
    (job / "metrics.json").write_text(json.dumps(payload))
    (job / "train.log").write_text("")
    return job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A 2×2 margin × dim multirun: outputs/multirun/<date>/<time>/<job num>/ (jobs 0–3)."""
    root = tmp_path / "multirun" / "2026-01-31" / "12-00-00"
    bases = {(0.05, 64): 20.0, (0.05, 128): 24.0, (0.2, 64): 30.0, (0.2, 128): 26.0}
    for num, ((margin, dim), base) in enumerate(bases.items()):
        write_job(
            root / str(num),
            [f"loss.margin={margin}", f"model.embed_dim={dim}", "data.synthetic.albums=200", "logger=none"],
            base,
        )
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] >= 400 and image.size[1] >= 300, (path, image.size)


def test_sweep_report_tables_grid_and_figures(sweep):
    report = build_report(sweep)
    text = report.markdown.read_text()
    assert report.markdown == sweep / "report" / "report.md"
    # runs are named by what varies; what all share is said once
    names = [r.name for r in report.runs]
    assert names == [
        "loss.margin=0.05, model.embed_dim=64",
        "loss.margin=0.05, model.embed_dim=128",
        "loss.margin=0.2, model.embed_dim=64",
        "loss.margin=0.2, model.embed_dim=128",
    ]
    assert "Common to all runs: `data.synthetic.albums=200`" in text and "logger=none" not in text
    # t2a table row of job 2 (base 30): test R@1 = 7.0 [5.75, 8.5], R@10 = 29.5 [28.25, 31.0], MedR = 25
    row = next(line for line in text.splitlines() if line.startswith("| loss.margin=0.2, model.embed_dim=64 |"))
    assert "7.00 [5.75, 8.50]" in row and "29.50 [28.25, 31.00]" in row and "25.00 [23.75, 26.50]" in row
    assert text.count("| loss.margin=0.2, model.embed_dim=64 |") == 3  # t2a, a2t and the runs list
    assert "## Review → audio (t2a), test" in text and "## Audio → reviews (a2t), test" in text
    # best run chosen on validation: job 2 (val_best R@10 = 31)
    assert report.best is not None and report.best.name == "loss.margin=0.2, model.embed_dim=64"
    assert "**loss.margin=0.2, model.embed_dim=64**" in text
    # the margin × dim grid of the selection metric, best cell in bold, and its test counterpart
    assert "| loss.margin \\ model.embed_dim | 64 | 128 |" in text
    assert "| 0.05 | 21.00 | 25.00 |" in text and "| 0.2 | **31.00** | 27.00 |" in text
    assert "| 0.2 | **29.50** | 25.50 |" in text
    # no paper rows here, so no paper column
    assert "paper R@1" not in text
    # figures: recall curves, one plot per swept parameter, the heatmap; no checkpoint → no embedding map
    files = {p.name for p in report.figures}
    assert files == {
        "recall_at_k.png",
        "sweep_loss.margin.png",
        "sweep_model.embed_dim.png",
        "heatmap_loss.margin_x_model.embed_dim.png",
    }
    for path in report.figures:
        _assert_png(path)
        assert f"]({path.name})" in text  # linked from report.md


def test_paper_rows_get_the_papers_numbers(tmp_path):
    root = tmp_path / "multirun"
    write_job(root / "0", ["experiment=paper/neighborhood"], 40.0, tags=["paper/neighborhood"])
    write_job(root / "1", ["experiment=paper/cca"], 10.0, tags=["paper/cca"])
    # a run that names the row only through its tag (an experiment launched under another name)
    write_job(root / "2", ["experiment=mine"], 30.0, tags=["paper/lstm"], choices={"experiment": "mine"})
    text = build_report(root, out=tmp_path / "out").markdown.read_text()
    paper = text.split("## Table 1 of the paper beside these runs")[1].split("\n## ")[0]
    rows = [line for line in paper.splitlines() if line.startswith("| ") and "---" not in line][1:]
    # Table 1's order (LSTM before neighbourhood before CCA), each with the paper's three numbers
    assert [row.split(" | ")[0] for row in rows] == ["| + LSTM", "| + neighbourhood sampling", "| CCA"]
    assert rows[0].endswith("| 9.60 / 17.34 / 22.39 |") and rows[2].endswith("| 2.54 / 6.90 / 9.74 |")
    assert "| as described |" in rows[1] and "19.95 / 31.30 / 39.20" in rows[1]
    # the album-protocol tables no longer set the paper (another protocol) beside our numbers
    t2a = text.split("## Review → audio (t2a), test, album protocol")[1].split("## Audio")[0]
    assert "paper R@1" not in t2a and "19.95" not in t2a and "(CCA)" not in t2a
    assert set(PAPER_TABLE1) == {
        "nonlinear",
        "linear_bidirectional",
        "distilbert",
        "nonlinear_bidirectional",
        "lstm",
        "neighborhood",
        "cca",
    }


def test_single_run_dir_and_missing_values(tmp_path):
    run = write_job(tmp_path / "runs" / "2026-01-31" / "12-00-00", ["model.embed_dim=64"], 20.0)
    payload = json.loads((run / "metrics.json").read_text())
    for key in [k for k in payload["metrics"] if k.startswith("test/a2t/mAP@10")]:
        del payload["metrics"][key]
    (run / "metrics.json").write_text(json.dumps(payload))
    report = build_report(run)
    text = report.markdown.read_text()
    assert [r.name for r in report.runs] == ["model.embed_dim=64"]
    assert "| model.embed_dim=64 |" in text and "—" in text  # a missing metric is a dash, not a crash
    assert [p.name for p in report.figures] == ["recall_at_k.png"]


def test_overrides_parsing():
    assert parse_overrides(["a.b=1", "+c=x", "++d=2", "~e", "experiment=paper/cca"]) == {
        "a.b": "1",
        "c": "x",
        "d": "2",
        "e": "~",
        "experiment": "paper/cca",
    }


def test_unrelated_json_and_nested_runs(tmp_path):
    write_job(tmp_path / "a" / "0", ["seed=1"], 20.0)
    write_job(tmp_path / "b" / "nested" / "0", ["seed=2"], 22.0)
    (tmp_path / "a" / "0" / "wandb").mkdir()
    (tmp_path / "a" / "0" / "wandb" / "metrics.json").write_text('{"not": "a run"}')
    runs = find_runs(tmp_path)
    assert [r.name for r in runs] == ["seed=1", "seed=2"]


def write_evaluation(run: Path, name: str, base: float, kind: bool = True, **fields) -> Path:
    """``<run>/eval/<name>/metrics.json`` as ``python -m mte.evaluate`` writes it (without ``kind``: as it did
    before results had one)."""
    split = fields.pop("split", "test")
    metrics = {k.replace("test/", f"{split}/", 1): v for k, v in fake_metrics(base).items() if k.startswith("test/")}
    for direction in DIRECTIONS:
        metrics[f"{split}/{direction}/n_gallery"] = 40.0
    payload = {"protocol": "album", "split": split, "checkpoint": str(run / "checkpoints" / "best.ckpt"),
               "processed_dir": "/nonexistent", "raw_dir": None, "bootstrap": 1000, "seed": 0, "metrics": metrics,
               **fields}
    if kind:
        payload["kind"] = "evaluation"
    out = run / "eval" / name
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps(payload))
    return out


def test_evaluations_are_listed_under_their_run_not_counted_as_runs(tmp_path, capsys):
    """A run evaluated twice (once on another MARD dir, once by an older mte without `kind`) is ONE run with two
    evaluations — the report used to say "3 run(s)"."""
    run = write_job(tmp_path / "runs" / "2026-01-31" / "12-00-00", ["model.embed_dim=64"], 20.0)
    write_evaluation(run, "test-album", 20.0, kind=False)
    write_evaluation(run, "test-track-other-1234abcd", 12.0, protocol="track", raw_dir="/data/other-mard")
    runs = find_runs(tmp_path)
    assert len(runs) == 1 and [e.name for e in runs[0].evaluations] == [
        "album protocol, test", "track protocol, test, data other-mard"]
    assert main([str(run), f"out={tmp_path / 'out'}", "map=false"]) == 0
    assert "1 run(s), 2 evaluation(s) under them" in capsys.readouterr().out
    text = (tmp_path / "out" / "report.md").read_text()
    section = text.split("## Evaluations")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| model.embed_dim=64 |") or
            line.startswith("| 〃 |")]
    assert len(rows) == 2 and "| track protocol, test, data other-mard |" in rows[1]
    assert "| 800 | 40 | 2.50 [1.25, 4.00] |" in rows[1]  # queries, gallery, t2a R@1 (base 12: 12/4 − 0.5)
    assert text.count("| model.embed_dim=64 |") == 4  # t2a, a2t, the evaluations, the runs list — not more runs
    assert "t2a resamples *albums*" in text  # the interval footnote


def test_evaluations_without_their_run_are_shown_on_their_own(tmp_path, capsys):
    run = tmp_path / "run"
    out = write_evaluation(run, "val-seed", 15.0, protocol="seed", split="val")
    report = build_report(out, out=tmp_path / "report")
    assert report.runs == [] and [e.name for e in report.orphans] == ["seed protocol, val"]
    text = report.markdown.read_text()
    assert "0 run(s) · 1 evaluation(s)" in text and "| seed protocol, val | 800 | 40 | 3.25 [2.00, 4.75] |" in text


def test_cli(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(sweep), f"out={out}", "map=false"]) == 0
    printed = capsys.readouterr().out
    assert "4 run(s)" in printed and str(out / "report.md") in printed
    assert (out / "report.md").is_file()
    with pytest.raises(SystemExit) as exc:
        main([str(sweep), "colour=blue"])
    assert exc.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "out")])  # a folder without runs: one user-error line
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: no runs below")


def test_report_never_overwrites_what_it_did_not_write(sweep, tmp_path, capsys):
    """out= naming a user's dir (their own report.md or a figure-named PNG) or a file is refused in one line and
    left as it was; an earlier report is replaced; a metric no run has and a bad reviews= are refused too."""
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "report.md").write_text("# my hand-written report\n")
    pngs = tmp_path / "figures"
    pngs.mkdir()
    (pngs / "recall_at_k.png").write_bytes(b"my figure")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for out, words in ((mine, f"refusing to overwrite {mine / 'report.md'}"),
                       (pngs, f"refusing to overwrite {pngs / 'recall_at_k.png'}"),
                       (notes, f"out={notes} exists and is not a directory")):
        with pytest.raises(SystemExit) as exc:
            main([str(sweep), f"out={out}", "map=false"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith(f"error: {words}") and err.count("\n") == 1, err
    assert (mine / "report.md").read_text() == "# my hand-written report\n" and [p.name for p in mine.iterdir()] == [
        "report.md"]
    assert (pngs / "recall_at_k.png").read_bytes() == b"my figure" and notes.read_text() == "mine"

    out = tmp_path / "out"
    assert main([str(sweep), f"out={out}", "map=false"]) == 0
    assert main([str(sweep), f"out={out}", "map=false"]) == 0  # its own earlier report: replaced
    with pytest.raises(SystemExit) as exc:
        main([str(sweep), f"out={out}", "map=false", "metric=val_best/t2a/R@100"])
    assert exc.value.code == 2 and "metric=val_best/t2a/R@100: no run below" in capsys.readouterr().err
    for bad in ("abc", "-5", "0"):
        with pytest.raises(SystemExit) as exc:
            main([str(sweep), f"out={out}", "map=false", f"reviews={bad}"])
        assert exc.value.code == 2 and f"reviews={bad}: must be a positive integer" in capsys.readouterr().err


def test_no_grid_without_a_two_parameter_sweep(tmp_path):
    """A run beside a baseline differ in two overrides, but no run sets both: the report drew a grid of no cells."""
    write_job(tmp_path / "run", ["trainer.max_epochs=1"], 20.0)
    write_job(tmp_path / "baseline", ["model=random"], 5.0)
    report = build_report(tmp_path, embedding_map=False)
    text = report.markdown.read_text()
    assert "## Runs" in text and " × " not in text and not list(report.markdown.parent.glob("heatmap_*.png"))


def test_cli_import_is_light():
    """The entry point must start fast: no Lightning, no matplotlib, no torch until a figure needs them."""
    heavy = "('pytorch_lightning', 'matplotlib', 'torch')"
    code = f"import sys, mte.report, mte.eval.report; print(sorted(m for m in {heavy} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_real_multirun_then_report(tmp_path):
    """Two real training jobs (Hydra multirun), then the report with the best run's embedding map."""
    from helpers import run_module

    sweep_dir = tmp_path / "sweep"
    run_module(
        "mte.train",
        "-m",
        "loss.margin=0.05,0.2",
        "data.synthetic.albums=200",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    )
    proc = run_module("mte.report", str(sweep_dir))
    report = sweep_dir / "report" / "report.md"
    assert str(report) in proc.stdout
    text = report.read_text()
    assert "| loss.margin=0.05 |" in text and "| loss.margin=0.2 |" in text
    assert "Common to all runs: `data.synthetic.albums=200`, `trainer.max_epochs=1`" in text
    for name in ("recall_at_k.png", "sweep_loss.margin.png", "embedding_map.png"):
        _assert_png(sweep_dir / "report" / name)
        assert f"]({name})" in text


def test_results_kind_of_old_and_new_files(tmp_path):
    """One format: a kind on every file written now; files from before it are read by their fields."""
    from mte.eval.results import read_results, result_kind, write_results

    written = write_results(tmp_path / "a" / "metrics.json", "evaluation", {"test/t2a/R@10": 1.0}, protocol="album")
    assert read_results(tmp_path / "a" / "metrics.json") == written and written["kind"] == "evaluation"
    assert not [p for p in (tmp_path / "a").iterdir() if p.name != "metrics.json"]  # no temp file left
    assert result_kind({"metrics": {}}) == "run"
    assert result_kind({"metrics": {}, "baseline": "cca"}) == "baseline"
    assert result_kind({"metrics": {}, "protocol": "album", "checkpoint": "x.ckpt"}) == "evaluation"
    with pytest.raises(ValueError, match="unknown results kind"):
        write_results(tmp_path / "b.json", "sweep", {})
    (tmp_path / "c.json").write_text('{"metrics": 3}')
    assert read_results(tmp_path / "c.json") is None


def write_manifest(processed: Path, leaky: bool) -> Path:
    """A processed dir's manifest.json with the fields prepare writes for data.split=published (``leaky``,
    ``leak``) and the split counts the report reads."""
    processed.mkdir(parents=True)
    manifest = {"format": "mte-processed", "counts": {"test_albums": 118, "val_albums": 116}}
    if leaky:
        manifest.update(leaky=True, leak={"albums_train_test": 71, "albums_train_val": 72, "albums_val_test": 15})
    (processed / "manifest.json").write_text(json.dumps(manifest))
    return processed


def paper_rows(text: str) -> dict[str, str]:
    """The paper section's table rows keyed by their run cell."""
    section = text.split("## Table 1 of the paper beside these runs")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    return {row.split(" | ")[1]: row for row in rows}


def test_paper_code_rows_seed_protocol_and_leaky_runs(tmp_path, capsys):
    """As-run rows (paper_code/<row>) are matched to the paper's rows; the paper is compared under its own protocol
    (seed), read from <run>/eval/test-seed when it exists, else the command that writes it is given; leaky runs are
    marked, from their processed dir's manifest or, when it is gone, from data.split=published."""
    root = tmp_path / "multirun"
    leaky_dir = str(write_manifest(tmp_path / "processed" / "leaky", leaky=True))
    clean_dir = str(write_manifest(tmp_path / "processed" / "clean", leaky=False))
    as_run = write_job(root / "0", ["experiment=paper_code/neighborhood", "data.split=published"], 40.0,
                       split="published", processed_dir=leaky_dir)
    write_evaluation(as_run, "test-seed", 48.0, protocol="seed")
    write_evaluation(as_run, "test-album", 40.0)  # another protocol: not the paper's column
    described = write_job(root / "1", ["experiment=paper/neighborhood", "data.split=artist"], 20.0,
                          split="artist", processed_dir=clean_dir)
    gone = write_job(root / "2", ["experiment=paper_code/nonlinear", "data.split=published"], 12.0,
                     split="published")  # its processed dir (/nonexistent) was cleaned away
    assert main([str(root), f"out={tmp_path / 'out'}", "map=false"]) == 0
    err = capsys.readouterr().err
    assert "warning: 2 paper run(s) without a seed-protocol evaluation" in err
    text = (tmp_path / "out" / "report.md").read_text()
    rows = paper_rows(text)
    assert set(rows) == {
        "experiment=paper_code/neighborhood, data.split=published",
        "experiment=paper/neighborhood, data.split=artist",
        "experiment=paper_code/nonlinear, data.split=published",
    }
    # every column names its protocol
    assert "| R@1 · seed | R@5 · seed | R@10 · seed | R@1 · album | R@10 · album |" in text
    assert "paper R@1 / R@5 / R@10 · published protocol |" in text
    run_row = rows["experiment=paper_code/neighborhood, data.split=published"]
    # seed protocol from eval/test-seed (base 48: R@1 = 11.5 [10.25, 13.0]), album R@1 from the run (base 40: 9.5)
    assert "| + neighbourhood sampling | experiment=paper_code/neighborhood, data.split=published | as run |" in run_row
    assert "| published, **leaky** | 11.50 [10.25, 13.00] | 23.50 [22.25, 25.00] | 47.50 [46.25, 49.00] |" in run_row
    assert "| 9.50 [8.25, 11.00] | 39.50 [38.25, 41.00] | 19.95 / 31.30 / 39.20 |" in run_row
    described_row = rows["experiment=paper/neighborhood, data.split=artist"]
    assert "| as described | artist | — (no seed evaluation) | — | — |" in described_row
    assert "| as run | published, **leaky** | — (no seed evaluation) |" in rows[
        "experiment=paper_code/nonlinear, data.split=published"]
    assert rows["experiment=paper_code/nonlinear, data.split=published"].startswith("| non-linear |")
    # the commands that produce the missing evaluations, for exactly the two runs without one
    commands = [line for line in text.splitlines() if line.startswith("python -m mte.evaluate ")]
    assert commands == [  # in Table 1's order: non-linear before neighbourhood
        f"python -m mte.evaluate ckpt_path={gone / 'checkpoints' / 'best.ckpt'} protocol=seed",
        f"python -m mte.evaluate ckpt_path={described / 'checkpoints' / 'best.ckpt'} protocol=seed",
    ]
    # leak sizes from the manifest; the run whose manifest is gone is leaky with its size unknown
    assert "71 of 118 test albums (60%) also in train; 72 of 116 val albums (62%) also in train" in text
    assert "data.split=published; its manifest is gone, so the size is unknown" in text
    t2a = text.split("## Review → audio (t2a), test, album protocol")[1].split("\n## ")[0]
    assert "| experiment=paper_code/neighborhood, data.split=published ⚠ leaky split |" in t2a
    assert "| experiment=paper/neighborhood, data.split=artist |" in t2a  # not leaky: not marked
    # the paper's dev set is described as what it was, and the ALBUMS caveat is there
    assert "held-out 10%" not in text and "held out 10%" not in text
    assert "*dev set*, not an album-held-out set" in text and "`pre_processed_data/featurs.csv`" in text


def test_no_paper_rows_no_paper_section(sweep):
    text = build_report(sweep, embedding_map=False).markdown.read_text()
    assert "Table 1 of the paper" not in text and "featurs.csv" not in text and "· seed" not in text


def test_paper_runs_ordered_by_split_within_a_row(tmp_path):
    """Within a Table 1 row: as described before as run, then the leaky published split, the album splits, artists."""
    root = tmp_path / "multirun"
    jobs = [("paper_code/neighborhood", "published"), ("paper/neighborhood", "artist"),
            ("paper/neighborhood", "published"), ("paper/neighborhood", "paper")]
    for num, (experiment, split) in enumerate(jobs):
        write_job(root / str(num), [f"experiment={experiment}", f"data.split={split}"], 20.0, split=split)
    rows = list(paper_rows(build_report(root, embedding_map=False).markdown.read_text()))
    assert rows == [
        "experiment=paper/neighborhood, data.split=published",
        "experiment=paper/neighborhood, data.split=paper",
        "experiment=paper/neighborhood, data.split=artist",
        "experiment=paper_code/neighborhood, data.split=published",
    ]
