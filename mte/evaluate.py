"""``python -m mte.evaluate ckpt_path=… [split=test] [protocol=album|track|seed] [data.raw_dir=OTHER] [out_dir=…]``.

A thin Hydra entry point over :func:`mte.eval.evaluation.evaluate` (protocol definitions:
:mod:`mte.eval.protocols`): it writes ``metrics.json`` (kind ``evaluation``, :mod:`mte.eval.results`) and
``metrics.md`` into ``<run>/eval/<split>-<protocol>[-<data tag>]/`` (or ``out_dir``), prints the summary table and
returns ``{split}/t2a/R@10`` so sweeps can use it. A bad checkpoint, processed dir or raw dir prints one ``error:``
line on stderr and exits with status 2.

Examples::

    python -m mte.evaluate ckpt_path=outputs/runs/…/checkpoints/best.ckpt
    python -m mte.evaluate ckpt_path=… protocol=seed bootstrap=0
    python -m mte.evaluate ckpt_path=… data.raw_dir=/data/other-mard     # a dir the model never saw
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mte.cli import freeze_live_objects, user_errors
from mte.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    """Evaluate; return the t2a R@10 (the number sweeps compare)."""
    from mte.eval.evaluation import evaluate_from_config

    with user_errors():
        result = evaluate_from_config(cfg)
        return result.metrics.get(f"{result.payload['split']}/t2a/R@10")
    return None  # pragma: no cover - user_errors exits


if __name__ == "__main__":
    main()
    freeze_live_objects()  # the interpreter's exit then skips a collection over every loaded module
