#!/usr/bin/env bash
# Install Debian's headless Chromium + the version-matched chromedriver for tests/test_serve_browser.py.
# Idempotent: does nothing when both binaries are already there. Needs root (CI runs as root).
# Why Debian's packages: Selenium Manager and `playwright install` download browsers from the internet, which
# this project's machines cannot reach; Debian ships a chromedriver built from the same source as its chromium.
set -euo pipefail
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    echo "install_browser: chromium and chromedriver already installed ($(/usr/bin/chromium --version 2>/dev/null || echo '?'))"
    exit 0
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "install_browser: need root to apt-get install chromium chromium-driver" >&2; exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
echo "install_browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
