#!/usr/bin/env bash
# The browser tests (tests/test_ui.py, tests/test_browser.py) drive Debian's headless Chromium through Playwright;
# Playwright's own browser download is not used. Installs chromium (and its driver) when missing; needs root or passwordless sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "install-browser: chromium already installed ($(/usr/bin/chromium --version 2>/dev/null || echo '?'))"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
/usr/bin/chromium --version
