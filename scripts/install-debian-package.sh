#!/usr/bin/env bash
# Installs one Debian package for the tests, once: `install-debian-package.sh <package> <binary>`.
# The project's system packages, each installed by `make test` (and so .ci/run) when its binary is
# missing: `chromium` for the dashboard's browser test, `redis-server` as the Celery broker of the
# end-to-end Airflow (tests/e2e/conftest.py).
set -euo pipefail
package="$1"
binary="$2"
if [ -x "$binary" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "$package is needed by the tests: install it (Debian: apt-get install $package), or run them on Debian." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Not pinned to a version: Debian's security channel replaces Chromium every few weeks and drops the
# old build (a pinned version stops installing). The tests record the versions they ran with.
# --no-install-recommends: no redis-tools, no fonts; and no service is started (policy-rc.d-free
# containers start none; the tests run their own redis-server on a free port either way).
$SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null
"$binary" --version
