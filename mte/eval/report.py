"""Reports over finished runs: markdown tables, sweep plots and a map of the joint space.

``python -m mte.report DIR`` (see :mod:`mte.report`) reads every ``metrics.json`` below ``DIR`` — a multirun dir,
a single run dir, or any folder of runs — and writes ``report.md`` plus PNG figures. It only reads what runs
already wrote (``metrics.json``, Hydra's ``.hydra/overrides.yaml``, ``config.yaml``, ``hydra.yaml``), so it
works on sweeps from any launcher, on Optuna studies and on runs copied from another machine. The one figure
that needs a model, the embedding map, loads the best run's checkpoint.

Choices that keep the report honest:

* The *best run* is chosen on the validation metric the sweep optimised (``optimized_metric``, by default
  ``val_best/t2a/R@10``), never on test numbers; tables show test numbers with their 95% bootstrap intervals.
* Run names are the overrides that differ between runs (what the sweep varied); overrides shared by every run
  are printed once above the tables.
* Paper rows (experiment ``paper/<row>``, as the paper describes it, or ``paper_code/<row>``, as the published code
  ran) get their own section with Table 1 of the paper beside them, compared under the paper's protocol
  (``protocol=seed``, from ``<run>/eval/test-seed/metrics.json``; the command that writes it when it is missing)
  and every column labelled with its protocol. The paper reported only review → audio, so only t2a.
* Runs on a leaky split (``data.split=published``: the processed dir's manifest says ``leaky``) are marked so
  wherever they appear, with the leak's size.
* ``python -m mte.evaluate`` results (``<run>/eval/*/metrics.json``, kind ``evaluation``) are listed under the run
  they evaluated, never counted as runs (:mod:`mte.eval.runs`).
* Intervals are cluster-bootstrap intervals: t2a resamples albums, not reviews (:mod:`mte.eval.bootstrap`).

Modules: :mod:`mte.eval.runs` reads and names runs, :mod:`mte.eval.figures` draws, this one writes ``report.md``.

Matplotlib runs on the Agg backend (files only, no display needed); ``torch`` and the model code are imported
only for the embedding map, so a report without it stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from mte.cli import UserError
from mte.eval.figures import (
    DIRECTION_TITLES,
    FIGURE_PATTERNS,
    plot_embedding_map,
    plot_heatmap,
    plot_parameter,
    plot_recall_curves,
)
from mte.eval.results import write_text_atomic
from mte.eval.runs import (
    PAPER_TABLE1,
    PAPER_VARIANTS,
    Evaluation,
    Run,
    _finite,
    _show,
    best_run,
    common_overrides,
    find_runs,
    grid_values,
    load_results,
    parse_overrides,
    swept_parameters,
)
from mte.paths import output_dir_entries

__all__ = ["PAPER_TABLE1", "Report", "build_report", "find_runs", "parse_overrides"]

TABLE_METRICS = ("R@1", "R@5", "R@10", "mAP@10", "MedR")
INTERVAL_NOTE = (
    "Intervals: 95% percentile bootstrap, 1000 seeded resamples. t2a resamples *albums* (all reviews of an album "
    "together — a cluster bootstrap, since reviews of one album are not independent); a2t queries are albums "
    "already (album protocol), so there it is the ordinary bootstrap."
)


# --------------------------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------------------------


def format_metric(metrics: dict[str, float], name: str, digits: int = 2) -> str:
    """``19.95 [18.10, 21.70]`` (value and 95% interval), the value alone without an interval, ``—`` if absent."""
    value = metrics.get(name)
    if not _finite(value):
        return "—"
    low, high = metrics.get(f"{name}_lo"), metrics.get(f"{name}_hi")
    text = f"{value:.{digits}f}"
    if _finite(low) and _finite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _run_label(run: Run) -> str:
    """The run's name, marked when its split leaks held-out reviews into training."""
    return _escape(run.name) + (" ⚠ leaky split" if run.leak else "")


def metric_table(runs: Sequence[Run], direction: str, stage: str = "test") -> str:
    """One markdown row per run: R@1/5/10, mAP@10, MedR with intervals, all under the album protocol (the run's own
    metrics). The paper's numbers are not here: they were measured under another protocol (:func:`paper_table`)."""
    header = ["run", *TABLE_METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|"]
    for run in runs:
        cells = [_run_label(run), *(format_metric(run.metrics, f"{stage}/{direction}/{m}") for m in TABLE_METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PAPER_SPLIT = "test"
"""Which split of a paper run is set beside the paper: its test split (validation chose its epoch). The paper's
numbers are its dev set, which under the published code no epoch selection kept apart either."""

PAPER_SECTION_INTRO = (
    "Each run that reproduces a row of Table 1 — `paper/<row>` trains what the paper *describes*, `paper_code/<row>` "
    "what the published code *ran* — beside the paper's numbers. Every column says its protocol: **seed** is the "
    "paper's (`python -m mte.evaluate … protocol=seed`: one audio row per review row, a hit when a row with the same "
    "album title is in the top K); **album** is this project's (each review queries the held-out albums, an album's "
    "audio the mean of its tracks; the run's own `test/…` metrics). Ours: review → audio on the run's test split, "
    "95% intervals resampling albums. Paper: review → audio on its dev set, no intervals."
)
PAPER_NOTE = (
    "Paper: Table 1 of the published model, review → audio R@K in % on its *dev set*, not an album-held-out set: "
    "the published code shuffled descriptor *files* (2,600 test, 2,660 dev, the rest train) and made every review "
    "of a file's album a row of that file's split, so an album with several files has the same review text in "
    "train and dev (`data.split=published` rebuilds that split, leak included, and is marked leaky here). It "
    "scored one audio row per (review, file) with a hit on album-title match (`protocol=seed`)."
)
ALBUMS_NOTE = (
    "The published `Evaluation.py` read its album labels (`ALBUMS`) from another csv: `main.py --mode Dev` scores "
    "the rows of `dev-full-blind.csv` (after `dropna()`) but labels row i with row i of "
    "`pre_processed_data/featurs.csv` (`Data.pull_album()`), a file no published script writes (the training "
    "loop's visualisation indexes the same file by *training* rows). A hit is a match between labels in two orders "
    "nobody can line up now, so what Table 1 counted cannot be re-derived from the code; `protocol=seed` labels each "
    "row with its own album's title, the rule the paper states. (The committed `main.py` also calls `evaluate` with "
    "four arguments where it takes three: the numbers came from code that differs from the published one.)"
)


SPLIT_ORDER = ("published", "paper", "album", "artist")
"""Paper runs by split: the published code's leaky split first, then album splits, then unseen artists."""


def paper_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs reproducing a Table 1 row, in the paper's row order, as-described before as-run, then by split."""
    order = {row: i for i, row in enumerate(PAPER_TABLE1)}
    variants = {v: i for i, v in enumerate(PAPER_VARIANTS.values())}
    splits = {split: i for i, split in enumerate(SPLIT_ORDER)}
    rows = [r for r in runs if r.paper_row]
    return sorted(rows, key=lambda r: (order[r.paper_row], variants[r.paper_variant],
                                       splits.get(str(r.split), len(splits)), str(r.split), r.name))


def paper_table(runs: Sequence[Run], split: str = PAPER_SPLIT) -> str:
    """Table 1 rows: seed-protocol R@1/5/10 (the paper's protocol), album-protocol R@1/R@10, the paper's numbers."""
    header = [
        "Table 1 row", "run", "trains", "split",
        "R@1 · seed", "R@5 · seed", "R@10 · seed", "R@1 · album", "R@10 · album",
        "paper R@1 / R@5 / R@10 · published protocol",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([*["---"] * 4, *["---:"] * (len(header) - 4)]) + "|"]
    for run in paper_runs(runs):
        row = run.paper_row
        assert row is not None
        seed = run.seed_evaluation(split)
        seed_cells = [
            format_metric(seed.metrics, f"{split}/t2a/{m}") if seed else "— (no seed evaluation)" if m == "R@1" else "—"
            for m in ("R@1", "R@5", "R@10")
        ]
        name, numbers = PAPER_TABLE1[row]
        cells = [
            name,
            _escape(run.name),
            str(run.paper_variant),
            f"{run.split or '?'}" + (", **leaky**" if run.leak else ""),
            *seed_cells,
            format_metric(run.metrics, f"{split}/t2a/R@1"),
            format_metric(run.metrics, f"{split}/t2a/R@10"),
            " / ".join(f"{v:.2f}" for v in numbers),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_section(runs: Sequence[Run], split: str = PAPER_SPLIT) -> tuple[list[str], list[str]]:
    """The paper section's markdown lines, and warnings (paper runs without a seed-protocol evaluation)."""
    rows = paper_runs(runs)
    if not rows:
        return [], []
    lines = ["", "## Table 1 of the paper beside these runs (review → audio)", "", PAPER_SECTION_INTRO, "",
             paper_table(rows, split)]
    leaks = sorted({run.leak.detail for run in rows if run.leak})
    if leaks:
        lines += ["", "**Leaky** (`data.split=published`, the published file-level split): held-out reviews were also "
                  "training rows, word for word — " + " · ".join(leaks) + "."]
    missing = [run for run in rows if run.seed_evaluation(split) is None]
    warnings = []
    if missing:
        lines += ["", f"No seed-protocol evaluation yet for {len(missing)} of these run(s); these commands write "
                  f"them (`<run>/eval/{split}-seed/`), then run the report again:", "", "```bash",
                  *(run.seed_command(split) for run in missing), "```"]
        warnings.append(
            f"{len(missing)} paper run(s) without a seed-protocol evaluation (the paper's protocol): "
            f"the commands are in report.md"
        )
    return lines, warnings


def grid_table(runs: Sequence[Run], rows_param: str, cols_param: str, metric: str) -> str:
    """A ``rows_param × cols_param`` grid of one metric (best cell in bold); mean when cells hold several runs."""
    grid, row_values, col_values = grid_values(runs, rows_param, cols_param, metric)
    finite = [v for v in grid.values() if _finite(v)]
    top = (min if metric.endswith(("MedR", "MeanR")) else max)(finite) if finite else None
    header = [f"{rows_param} \\ {cols_param}", *(str(c) for c in col_values)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", *["---:"] * len(col_values)]) + "|"]
    for r in row_values:
        cells = []
        for c in col_values:
            value = grid.get((r, c))
            text = f"{value:.2f}" if _finite(value) else "—"
            cells.append(f"**{text}**" if value is not None and value == top else text)
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

def evaluation_table(runs: Sequence[Run], orphans: Sequence[Evaluation]) -> str:
    """One markdown row per ``mte.evaluate`` result, under its run: t2a metrics with intervals, and a2t R@10."""
    header = ["run", "evaluation", "queries", "gallery", *(f"t2a {m}" for m in TABLE_METRICS), "a2t R@10"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---", *["---:"] * (len(header) - 2)]) + "|"]
    groups = [(run.name, run.evaluations) for run in runs if run.evaluations]
    groups += [(f"(run not below this dir: `{e.payload.get('checkpoint', '?')}`)", [e]) for e in orphans]
    for name, evaluations in groups:
        for i, evaluation in enumerate(evaluations):
            m, stage = evaluation.metrics, evaluation.split
            count = m.get(f"{stage}/t2a/n_queries")
            gallery = m.get(f"{stage}/t2a/n_gallery")
            cells = [
                _escape(name) if i == 0 else "〃",
                _escape(evaluation.name),
                f"{int(count):,}" if _finite(count) else "—",
                f"{int(gallery):,}" if _finite(gallery) else "—",
                *(format_metric(m, f"{stage}/t2a/{metric}") for metric in TABLE_METRICS),
                format_metric(m, f"{stage}/a2t/R@10"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(runs: Sequence[Run]) -> list[str]:
    notes = []
    if any(r.payload.get("baseline") == "random" for r in runs):
        notes.append(
            "Random: exact expected metrics of a uniformly random ranking; its brackets are the 95% chance band "
            "(where one random ranking's score falls), not a bootstrap interval."
        )
    if any(r.payload.get("baseline") == "cca" for r in runs):
        notes.append(
            "CCA: fitted on the train split and scored on the held-out split (the paper scored its CCA on its "
            "training data, so its CCA row is optimistic)."
        )
    if any(r.paper_row for r in runs):
        notes += [PAPER_NOTE, ALBUMS_NOTE]
    if any(r.leak for r in runs):
        notes.append(
            "⚠ leaky split: `data.split=published` splits descriptor files, not albums; an album's reviews are rows "
            "of every split holding one of its files, so its held-out reviews were trained on (see the manifest's "
            "`leak`). Its numbers measure memorised text as much as retrieval."
        )
    return notes


# --------------------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    markdown: Path
    figures: list[Path]
    runs: list[Run]
    best: Run | None
    warnings: list[str] = field(default_factory=list)
    orphans: list[Evaluation] = field(default_factory=list)
    """Evaluations whose run is not below the report's dir (shown on their own)."""

    @property
    def evaluations(self) -> list[Evaluation]:
        """Every evaluation in the report: those under their runs, then the others."""
        return [e for run in self.runs for e in run.evaluations] + self.orphans


def build_report(
    root: Path,
    out: Path | None = None,
    metric: str | None = None,
    embedding_map: bool = True,
    n_reviews: int = 600,
) -> Report:
    """Write ``report.md`` and the figures for every run below ``root`` into ``out`` (default ``root/report``).

    ``metric`` is the selection metric for the best run, the sweep plots and the grid (default: the runs'
    ``optimized_metric``, i.e. ``val_best/t2a/R@10``).
    """
    root = Path(root)
    runs, orphans = load_results(root)
    if not runs and not orphans:
        raise FileNotFoundError(f"no runs below {root}: no metrics.json with metrics (is the sweep finished?)")
    if metric and runs and not any(metric in run.metrics for run in runs):
        known = sorted({key for run in runs for key in run.metrics if key.startswith("val_best/")})
        raise UserError(f"metric={metric}: no run below {root} has it; e.g. {', '.join(known[:4]) or 'none'}")
    out = Path(out) if out is not None else root / "report"
    check_report_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    for pattern in FIGURE_PATTERNS:  # figures of an earlier report here would be listed by nobody
        for stale in out.glob(pattern):
            stale.unlink()
    metric = metric or (runs[0].selection_metric if runs else "val_best/t2a/R@10")
    best = best_run(runs, metric)
    swept = swept_parameters(runs)
    figures: list[Path] = []
    warnings: list[str] = []
    recall = plot_recall_curves(runs, out)
    figures += [recall] if recall else []
    for param, values in swept.items():
        if sum(v is not None for v in values) >= 2:  # one set value against "default" is no sweep to plot
            figures.append(plot_parameter(runs, param, swept, out, metric))
    grid_params = list(swept) if len(swept) == 2 else []
    if grid_params:  # a grid needs runs that set both parameters, at two values each (not a run beside a baseline)
        _, rows, cols = grid_values(runs, grid_params[0], grid_params[1], metric)
        grid_params = grid_params if len(rows) >= 2 and len(cols) >= 2 else []
    heatmap = plot_heatmap(runs, grid_params[0], grid_params[1], metric, out) if grid_params else None
    figures += [heatmap] if heatmap else []
    map_run = best if best is not None and best.checkpoint() else best_run([r for r in runs if r.checkpoint()], metric)
    if embedding_map and map_run is not None:
        try:
            path = plot_embedding_map(map_run, out, n_reviews=n_reviews)
        except Exception as e:  # a moved processed dir or an old checkpoint must not cost the whole report
            warnings.append(f"embedding map skipped ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        else:
            figures += [path] if path else []
    paper_lines, paper_warnings = paper_section(runs)
    warnings += paper_warnings
    lines = _markdown(root, runs, best, metric, swept, grid_params, figures, out, map_run, warnings, orphans,
                      paper_lines)
    markdown = out / "report.md"
    write_text_atomic(markdown, "\n".join(lines) + "\n")
    return Report(markdown, figures, runs, best, warnings, orphans)


REPORT_TITLE = "# Retrieval report: "  # the first line of every report.md this module writes


class ReportDirError(FileExistsError, UserError):
    """A report dir holding a report.md or figures mte.report did not write; nothing was touched."""


def check_report_dir(out: Path) -> None:
    """Raise :class:`ReportDirError` (one line) unless ``out`` is missing, or a dir whose ``report.md`` and figure
    files (``FIGURE_PATTERNS``, replaced on every run) an earlier report wrote: a report.md starting with the
    report's title. A user's dir or file given as ``out=`` is never written into over their files."""
    entries = output_dir_entries(out, "out", ReportDirError)
    markdown = out / "report.md"
    figures = [name for name in entries if any(fnmatch(name, pattern) for pattern in FIGURE_PATTERNS)]
    if not markdown.exists() and not figures:
        return
    try:
        ours = markdown.read_text(encoding="utf-8").startswith(REPORT_TITLE)
    except (OSError, UnicodeDecodeError):
        ours = False
    if not ours:
        what = markdown if markdown.exists() else out / figures[0]
        raise ReportDirError(f"refusing to overwrite {what}: it was not written by python -m mte.report; choose "
                             f"another out")


def _markdown(
    root: Path,
    runs: Sequence[Run],
    best: Run | None,
    metric: str,
    swept: dict[str, list[Any]],
    grid_params: list[str],
    figures: Sequence[Path],
    out: Path,
    map_run: Run | None,
    warnings: Sequence[str],
    orphans: Sequence[Evaluation] = (),
    paper_lines: Sequence[str] = (),
) -> list[str]:
    lines = [f"{REPORT_TITLE}`{root}`", ""]
    n_evaluations = sum(len(r.evaluations) for r in runs) + len(orphans)
    evaluated = f" · {n_evaluations} evaluation(s) (`mte.evaluate`)" if n_evaluations else ""
    lines.append(
        f"{len(runs)} run(s){evaluated} · album protocol · **test split** · R@K and mAP@10 in %, MedR in ranks · "
        "95% bootstrap intervals in brackets (albums resampled, see the note below)."
    )
    common = common_overrides(runs) if len(runs) > 1 else {}
    if common:
        lines += ["", "Common to all runs: " + ", ".join(f"`{k}={v}`" for k, v in common.items())]
    if swept:
        lines += ["", "Varying: " + "; ".join(f"`{k}` ∈ {{{', '.join(map(_show, v))}}}" for k, v in swept.items())]
    if best is not None:
        lines += [
            "",
            f"Best run by `{metric}` (chosen on validation, never on test): **{_escape(best.name)}** — "
            f"{metric} = {best.metrics[metric]:.2f}; test t2a R@10 = {format_metric(best.metrics, 'test/t2a/R@10')}.",
        ]
    lines += paper_lines
    for direction, title in DIRECTION_TITLES.items():
        if runs:
            lines += ["", f"## {title}, test, album protocol", "", metric_table(runs, direction)]
    if n_evaluations:
        lines += ["", "## Evaluations (`python -m mte.evaluate`), under the run they evaluated", "",
                  "Each row is one `<run>/eval/…/metrics.json`: its split and protocol (and data, for another MARD "
                  "dir); t2a with intervals, a2t R@10.", "", evaluation_table(runs, orphans)]
    if grid_params:
        rows_param, cols_param = grid_params
        lines += [
            "",
            f"## {rows_param} × {cols_param}: `{metric}`",
            "",
            grid_table(runs, rows_param, cols_param, metric),
        ]
        test_metric = metric.replace("val_best/", "test/", 1)
        if test_metric != metric:
            lines += ["", f"`{test_metric}`:", "", grid_table(runs, rows_param, cols_param, test_metric)]
    notes = [*_notes(runs), INTERVAL_NOTE]
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    if figures:
        lines += ["", "## Figures", ""]
        for path in figures:
            caption = _caption(path, map_run)
            lines += [f"![{caption}]({path.relative_to(out) if path.is_relative_to(out) else path})", ""]
    if warnings:
        lines += ["", *(f"> {w}" for w in warnings)]
    lines += ["", "## Runs", "", "| run | dir |", "|---|---|"]
    lines += [f"| {_escape(r.name)} | `{r.path}` |" for r in runs]
    return lines


def _caption(path: Path, map_run: Run | None) -> str:
    if path.name == "recall_at_k.png":
        return "Recall@K per run"
    if path.name.startswith("sweep_"):
        return f"Metric against {path.stem.removeprefix('sweep_')}"
    if path.name.startswith("heatmap_"):
        return "Two-parameter grid"
    if path.name == "embedding_map.png" and map_run is not None:
        return f"Embedding map (PCA) of {map_run.name}"
    return path.stem
