#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install mte into it.
# Idempotent: a stamp keyed by the build configuration (pyproject.toml, setup.py) + constraints skips the install
# when nothing changed. The install is editable: mte and conf/ are read from this checkout (mte.paths.config_dir).
# Usage: scripts/setup.sh [extras]   (default extras: dev)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${1:-dev}"
python="${PYTHON:-python3}"
venv="$root/.venv"
stamp="$venv/.mte-installed"
key="$(cat pyproject.toml setup.py scripts/constraints.txt | sha256sum | cut -c1-16)-$extras"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment in .venv" >&2
    "$python" -m venv "$venv"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    exit 0
fi
echo "[setup] installing mte[$extras] (torch pinned by scripts/constraints.txt)" >&2
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet -c scripts/constraints.txt "torch==2.13.0" >&2
"$venv/bin/python" -m pip install --quiet -c scripts/constraints.txt -e ".[$extras]" >&2
echo "$key" > "$stamp"
