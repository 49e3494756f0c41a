#!/usr/bin/env bash
# The main job, end to end, on the embedded default: on first use it generates a small synthetic MARD, prepares it
# (cached), trains a few epochs, evaluates on the test split, prints the recall table and the run's directory.
# Extra arguments are Hydra overrides, e.g.  scripts/demo.sh text=lstm trainer.max_epochs=3
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/python -m mte.train "$@"
