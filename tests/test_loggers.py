"""W&B works with no account: offline unless asked or logged in; offline files land under the run dir."""

from __future__ import annotations

import pytest

from mte.train.loggers import wandb_mode


@pytest.fixture()
def no_wandb_env(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    return tmp_path


def test_offline_without_login(no_wandb_env):
    assert wandb_mode() == "offline"


def test_online_when_logged_in_via_netrc(no_wandb_env):
    netrc = no_wandb_env / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    netrc.chmod(0o600)
    assert wandb_mode() == "online"


def test_online_with_api_key_and_explicit_mode_wins(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode() == "offline"


def test_logger_writes_under_the_given_dir_and_prints_the_sync_hint(no_wandb_env, tmp_path, capsys):
    from mte.train.loggers import finish_loggers, wandb_logger

    logger = wandb_logger(save_dir=str(tmp_path / "run"), project="mte-test")
    logger.log_metrics({"val/t2a/R@10": 12.5})
    finish_loggers([logger])
    assert "wandb sync" in capsys.readouterr().out
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/*.wandb"))
