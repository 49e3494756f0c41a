"""``python -m mte.train [group=option …] [key=value …]`` — train one configuration (or a sweep with ``-m``).

Examples::

    python -m mte.train                                   # synthetic MARD, bag-of-words, margin loss
    python -m mte.train text=distilbert loss.bidirectional=false
    python -m mte.train -m loss.margin=0.05,0.1,0.2 model.embed_dim=64,128
    python -m mte.train experiment=neighborhood trainer=gpu

A config that cannot run as asked (mte/train/checks.py: sizes, epochs, features, a missing checkpoint or text
encoder, sampler ↔ loss contradictions, an empty train split) ends in one ``error: …`` line, exit status 2.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mte.cli import freeze_live_objects, user_errors
from mte.paths import config_dir
from mte.train import threads  # noqa: F401  (starts the CPU clock runtime.threads=auto reads)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run training; return ``optimized_metric`` so Optuna and multirun sweeps can optimise it."""
    from mte.train.run import run

    with user_errors():
        metrics = run(cfg)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
    freeze_live_objects()  # the interpreter's exit then skips a collection over every loaded module
