"""``python -m mte.prepare [data=mard data.raw_dir=PATH] [force=true] …`` — raw MARD dir → processed dir.

A thin Hydra entry point: it composes ``conf/prepare.yaml`` and calls :func:`mte.data.prepare.prepare_from_config`.
The last printed line is the processed dir's path, so scripts can do ``dir=$(python -m mte.prepare | tail -1)``.
A missing or incomplete raw dir, a dir prepare may not replace, a bad setting or a dead parsing worker prints one
line on stderr and exits with status 2.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mte.cli import user_errors
from mte.paths import config_dir


@hydra.main(config_path=str(config_dir()), config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> str:
    from mte.data.prepare import prepare_from_config

    with user_errors():
        path = prepare_from_config(cfg.data, force=bool(cfg.get("force", False)))
    print(path, flush=True)
    return str(path)


if __name__ == "__main__":
    main()
