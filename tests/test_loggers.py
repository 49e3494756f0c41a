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


@pytest.mark.slow
def test_wandb_warm_up_imports_what_wandb_init_imports_without_torch(no_wandb_env):
    """The warm-up (called before torch is imported) takes in the SDK and the launch module ``wandb.init`` imports,
    while few modules are loaded (their pydantic models walk ``sys.modules``), and starts the service in a thread;
    it must not import torch itself, or the order it exists for is gone. Without a W&B logger it does nothing."""
    import subprocess
    import sys

    code = (
        "import sys; from mte.train.loggers import WANDB_TARGET, warm_up_wandb, build_loggers\n"
        "warm_up_wandb({'csv': {'_target_': 'x'}}); print('wandb' in sys.modules)\n"
        "warm_up_wandb({'wandb': {'_target_': WANDB_TARGET}})\n"
        "print('wandb.sdk.launch.inputs.internal' in sys.modules, 'torch' in sys.modules)\n"
        "build_loggers({})  # waits for the service thread\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "True", "False"]
