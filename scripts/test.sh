#!/usr/bin/env bash
# The whole test suite (slow end-to-end and browser tests included). Extra arguments go to pytest,
# e.g. -m "not slow".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
# Debian's chromium + chromedriver for the page's browser tests (needs root; without it those tests skip)
bash scripts/install_browser.sh || echo "[test] no chromium: the browser tests will be skipped" >&2
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
