#!/usr/bin/env bash
# The package installs and runs without the source tree: build a wheel, install it (not editable) into a fresh
# virtual environment, and from an empty directory run every entry point's config composition and a one-epoch
# training on a tiny synthetic MARD. Fails loudly on any step; prints how long each step took.
#
# Usage: scripts/check_wheel.sh            (CI runs it from .ci/run after the test suite)
# Env:   PYTHON (default python3) makes the venv; MTE_CHECK_KEEP=1 keeps the temp dirs even on success.
#
# Why a fresh venv without --system-site-packages: the point is to prove the wheel alone suffices. Borrowing
# installed packages would (a) not reach the project's .venv anyway (a venv's "system" site is the base
# interpreter's) and (b) risk importing an mte found elsewhere (an editable install, a .pth) instead of the wheel.
# Time is saved by pip's own cache instead: the torch pin resolves to the local CPU wheel, and every other wheel
# comes from the cache after the first run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/mte-wheel-check.XXXXXX")"
ok=0
finish() {
    if [ "$ok" = 1 ] && [ "${MTE_CHECK_KEEP:-0}" != 1 ]; then
        rm -rf "$work"
    else
        echo "[wheel] work dir kept: $work" >&2
    fi
}
trap finish EXIT
fail() { echo "[wheel] FAILED: $*" >&2; exit 1; }
t0=$SECONDS
step() { echo "[wheel] $(( SECONDS - t0 ))s: $*" >&2; }

# 1. Build from a copy of what git would commit (tracked + untracked-not-ignored): no stale build/, .venv or
#    outputs/ can leak into the wheel, and the source tree gets no build/ or *.egg-info.
step "copying the source tree"
src="$work/src"
mkdir -p "$src"
git -C "$root" rev-parse --git-dir >/dev/null 2>&1 || fail "$root is not a git checkout (the copy uses git ls-files)"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$src"
step "building the wheel"
"$python" -m pip wheel --no-deps -w "$work/dist" "$src" >"$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; fail "pip wheel (log: $work/build.log)"; }
wheels=("$work"/dist/mte-*.whl)
[ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] || fail "expected one mte wheel in $work/dist"
wheel="${wheels[0]}"

# 2. The wheel holds every module and every config of the source tree (a package or config group that the build
#    configuration misses would otherwise only show up when someone imports it).
"$python" - "$wheel" "$src" <<'EOF' || fail "the wheel lacks files of the source tree"
import sys, zipfile
from pathlib import Path
wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
want = {p.relative_to(src).as_posix() for p in (src / "mte").rglob("*") if p.is_file() and p.suffix != ".md"}
want |= {"mte/" + p.relative_to(src).as_posix() for p in (src / "conf").rglob("*.yaml")}
missing = sorted(want - names)
if missing:
    sys.exit(f"missing from {Path(wheel).name}: {', '.join(missing[:20])}{' …' if len(missing) > 20 else ''}")
print(f"[wheel] {Path(wheel).name}: all {len(want)} source files present", file=sys.stderr)
EOF

# 3. A fresh venv; the wheel installed with its dependencies, torch held to the pin (never an unpinned CUDA build).
step "installing the wheel into a fresh venv"
venv="$work/venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -c "$root/scripts/constraints.txt" "$wheel" >"$work/pip.log" 2>&1 \
    || { tail -n 30 "$work/pip.log" >&2; fail "pip install of the wheel (log: $work/pip.log)"; }
pinned="$(sed -n 's/^torch==//p' "$root/scripts/constraints.txt")"

# 4. Run from an empty directory, with nothing pointing at the source tree.
run_dir="$(mktemp -d "$work/cwd.XXXXXX")"
cd "$run_dir"
export MTE_CACHE_DIR="$work/cache" MTE_OUTPUT_DIR="$work/outputs"
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
py="$venv/bin/python"
"$py" - "$venv" "$pinned" <<'EOF' || fail "the installed package is not the wheel's"
import sys
from pathlib import Path
import torch
import mte
from mte.paths import config_dir
venv, pinned = Path(sys.argv[1]).resolve(), sys.argv[2]
site = Path(mte.__file__).resolve().parent
assert venv in site.parents, f"mte imported from {site}, not from the venv {venv}"
assert config_dir() == site / "conf" and (config_dir() / "train.yaml").is_file(), f"configs not in the wheel: {config_dir()}"
assert torch.__version__.split("+")[0] == pinned, f"torch {torch.__version__}, pinned {pinned}"
print(f"[wheel] mte from {site}, configs from {config_dir()}, torch {torch.__version__}", file=sys.stderr)
EOF

step "composing every entry point's config"
for module in train evaluate prepare synth export search serve; do
    "$py" -m "mte.$module" --cfg job --resolve >"$work/cfg-$module.yaml" 2>&1 \
        || { cat "$work/cfg-$module.yaml" >&2; fail "python -m mte.$module --cfg job"; }
done
grep -qF "cache_dir: $MTE_CACHE_DIR" "$work/cfg-train.yaml" || fail "data.cache_dir does not follow MTE_CACHE_DIR"
"$py" -m mte.report --help >/dev/null || fail "python -m mte.report --help"

step "training one epoch on a tiny synthetic MARD"
"$py" -m mte.train data.synthetic.albums=200 trainer.max_epochs=1 data.batch_size=32 logger=csv \
    >"$work/train.log" 2>&1 || { tail -n 40 "$work/train.log" >&2; fail "python -m mte.train"; }
mapfile -t found < <(find "$MTE_OUTPUT_DIR" -name metrics.json)
[ "${#found[@]}" = 1 ] || { tail -n 40 "$work/train.log" >&2; fail "expected one metrics.json under $MTE_OUTPUT_DIR, found ${#found[@]}"; }
"$py" - "${found[0]}" <<'EOF' || fail "metrics.json is not a finished run's"
import json, sys
metrics = json.load(open(sys.argv[1]))["metrics"]
value = metrics["test/t2a/R@10"]
assert 0 <= value <= 100, value
print(f"[wheel] {sys.argv[1]}: test/t2a/R@10 = {value:.2f}", file=sys.stderr)
EOF
[ -z "$(ls -A "$run_dir")" ] || fail "the run wrote into the working directory: $(ls -A "$run_dir" | head -5 | tr '\n' ' ')"
ok=1
step "wheel check passed"
