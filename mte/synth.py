"""``python -m mte.synth out=DIR [albums=N] [seed=S] [world=W] [tracks=K] [scale=full] [quirks=false]``: synthetic MARD.

Writes a raw directory in MARD's exact layout (see `mte.data.synth`). Prints a one-line summary and, as the last
line, the output directory, so scripts can capture it with ``tail -n1``. ``seed`` draws the albums and artists,
``world`` the rules linking their factors to words and sounds: ``out=B seed=2`` next to a ``seed=1`` dir gives new
artists under the same rules (an unseen-artist test set).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mte.cli import UserError, user_errors
from mte.paths import config_dir


def _quirks(value: object) -> bool | list[str]:
    """Hydra gives a bool or a ListConfig; generate() wants a bool or plain names."""
    if isinstance(value, bool):
        return value
    return [str(v) for v in OmegaConf.to_container(value)] if OmegaConf.is_config(value) else [str(value)]  # type: ignore[union-attr]


def _int(cfg: DictConfig, key: str) -> int:
    """An integer option, or a one-line error naming it (int('abc') alone would not say which option)."""
    value = cfg[key]
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be an integer, got {value!r}") from None


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="synth")
def main(cfg: DictConfig) -> None:
    """Generate the dataset; errors the user can fix (existing dir, bad value) end with one line on stderr, exit 2."""
    from mte.data.synth import FULL_SCALE, generate, summary_line

    with user_errors():
        if cfg.scale not in ("demo", "full"):
            raise UserError(f"scale must be 'demo' or 'full', got {cfg.scale!r}")
        try:
            albums = FULL_SCALE["albums"] if cfg.scale == "full" else _int(cfg, "albums")
            summary = generate(
                Path(str(cfg.out)),
                albums=albums,
                seed=_int(cfg, "seed"),
                world=_int(cfg, "world"),
                tracks_per_album=_int(cfg, "tracks"),
                quirks=_quirks(cfg.quirks),
                workers=None if cfg.workers is None else _int(cfg, "workers"),
                proportions=str(cfg.proportions),
                overwrite=bool(cfg.overwrite),
            )
        except (FileExistsError, ValueError) as err:
            raise UserError(str(err)) from None
        print(summary_line(summary))
        print(summary["out_dir"])


if __name__ == "__main__":
    main()
