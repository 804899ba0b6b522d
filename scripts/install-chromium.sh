#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser test (tests/e2e/test_standalone_dashboard.py).
# The one system package the project uses; run by `make test` and .ci/run when it is missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Chromium is needed for the dashboard's browser test: install it (Debian: apt-get install chromium)." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Not pinned to a version: Debian's security channel replaces Chromium every few weeks and drops the
# old build (a pinned version stops installing). The test records the version it ran with.
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
