"""mte.paths: the one home of the cache root (config and code agree) and of the config dir (source and wheel)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mte import paths


def _compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(paths.config_dir()), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_data_cache_dir_is_the_code_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The YAML's cache_dir and mte.paths.cache_root() are one value, with and without MTE_CACHE_DIR."""
    cfg = _compose_train("data=synthetic")
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    assert cfg.data.cache_dir == str(tmp_path / "cache") == str(paths.cache_root())
    assert cfg.data.raw_dir.startswith(str(tmp_path / "cache") + "/synthetic/")
    monkeypatch.delenv(paths.CACHE_ENV)
    assert cfg.data.cache_dir == str(Path.home() / ".cache" / "mte") == str(paths.cache_root())
    assert _compose_train("data=mard", "data.cache_dir=/elsewhere").data.cache_dir == "/elsewhere"


def _paths_module_at(package_dir: Path):
    """mte/paths.py loaded from a copy at ``package_dir/paths.py``: config_dir() looks beside that file."""
    package_dir.mkdir(parents=True)
    shutil.copy(Path(paths.__file__), package_dir / "paths.py")
    spec = importlib.util.spec_from_file_location("mte_paths_copy", package_dir / "paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_config_dir_in_a_wheel_layout_and_a_source_checkout(tmp_path: Path) -> None:
    """A wheel installs conf/ as mte/conf (setup.py maps it); a checkout has it beside mte/. Both are found."""
    wheel = _paths_module_at(tmp_path / "site-packages" / "mte")
    (tmp_path / "site-packages" / "mte" / "conf").mkdir()
    assert wheel.config_dir() == tmp_path / "site-packages" / "mte" / "conf"
    checkout = _paths_module_at(tmp_path / "repo" / "mte")
    assert checkout.config_dir() == tmp_path / "repo" / "conf"
    assert (paths.config_dir() / "train.yaml").is_file()


def test_atomic_write_gives_the_file_the_modes_of_the_umask_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    """Results, manifests and caches are read by other users of a shared dir: their mode follows the umask like any
    new file's (a temp file from tempfile.mkstemp stayed 0600); a failed write leaves the old file and no temp."""
    target = tmp_path / "metrics.json"
    old_umask = os.umask(0o022)
    try:
        paths.atomic_write(target, lambda f: f.write(b"{}"))
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        os.umask(0o077)
        paths.atomic_write(target, lambda f: f.write(b"{ }"))
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)

    def fail(f) -> None:
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        paths.atomic_write(target, fail)
    assert target.read_bytes() == b"{ }" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
