"""``python -m mte.report DIR [out=DIR] [metric=NAME] [map=false] [reviews=N]`` — tables and figures for runs.

``DIR`` is a multirun dir (``outputs/multirun/<date>/<time>``), a single run dir, or any folder holding runs: every
``metrics.json`` below it of kind ``run`` or ``baseline`` is a run, and each ``python -m mte.evaluate`` result
(``<run>/eval/*/metrics.json``, kind ``evaluation``) is listed under the run it evaluated. Writes ``report.md``
(test metrics with 95% intervals for both directions; Table 1 of the paper beside ``paper/<row>`` and
``paper_code/<row>`` runs under the paper's protocol, from ``<run>/eval/test-seed/`` or with the ``mte.evaluate``
command that writes it; leaky runs marked; a grid for two-parameter sweeps) and PNG figures into ``out`` (default
``DIR/report``). Options are ``key=value`` like Hydra's, so the command reads like ``python -m mte.train``; this entry
point stays plain argparse because it composes no config and should start in a second (torch and the model code load
only for the embedding map).

Examples::

    python -m mte.report outputs/multirun/2026-01-31/12-00-00
    python -m mte.report outputs/runs/2026-01-31/12-00-00 out=/tmp/report map=false
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mte.cli import UserError, user_errors

OPTIONS = {
    "out": "folder for report.md and the PNGs (default: DIR/report)",
    "metric": "selection metric for the best run, sweep plots and grid (default: the runs' optimized_metric)",
    "map": "true|false: draw the embedding map of the best run (loads its checkpoint; default true)",
    "reviews": "reviews sampled for the embedding map (default 600)",
}


def parse_options(items: list[str]) -> dict[str, str]:
    """``key=value`` items → dict; an unknown key or a missing ``=`` is an error naming the valid keys."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.lstrip("-")
        if not sep or key not in OPTIONS:
            valid = ", ".join(f"{k}=" for k in OPTIONS)
            raise ValueError(f"unknown option {item!r}; use {valid}")
        options[key] = value
    return options


def _flag(value: str) -> bool:
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mte.report",
        description="Markdown tables and PNG figures for every run (metrics.json) below DIR.",
        epilog="options: " + "; ".join(f"{k}=… {v}" for k, v in OPTIONS.items()),
    )
    parser.add_argument("dir", type=Path, help="multirun dir, run dir, or any folder holding runs")
    parser.add_argument("options", nargs="*", help="key=value (out, metric, map, reviews)")
    args = parser.parse_args(argv)
    try:
        options = parse_options(args.options)
        make_map = _flag(options.get("map", "true"))
    except ValueError as e:
        parser.error(str(e))
    reviews = options.get("reviews", "600")
    if not reviews.isdigit() or int(reviews) < 1:
        parser.error(f"reviews={reviews}: must be a positive integer (the reviews drawn on the embedding map)")
    n_reviews = int(reviews)
    if not args.dir.is_dir():
        parser.error(f"not a directory: {args.dir}")

    from mte.eval.report import build_report

    with user_errors():  # "error: no runs below DIR …", exit 2
        try:
            report = build_report(
                args.dir,
                out=Path(options["out"]) if "out" in options else None,
                metric=options.get("metric"),
                embedding_map=make_map,
                n_reviews=n_reviews,
            )
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    best = f"; best: {report.best.name}" if report.best else ""
    attached = sum(len(run.evaluations) for run in report.runs)
    evaluations = f", {attached} evaluation(s) under them" if attached else ""
    if report.orphans:
        evaluations += f", {len(report.orphans)} evaluation(s) of runs not below {args.dir}"
    print(f"{len(report.runs)} run(s){evaluations}{best}")
    print(f"report: {report.markdown}")
    for figure in report.figures:
        print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
