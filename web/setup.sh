#!/usr/bin/env bash
# Set-up of the browser editor (called by ../dev.sh; safe to run again):
#   - npm ci in web/ when node_modules is missing or older than package-lock.json (npm itself comes from apt
#     when missing and we are root; installs
#     @comfyorg/litegraph, served as is at /lib/litegraph/ — no bundler, nothing third-party committed);
#   - with --with-browser (the test set-up): Debian's Chromium for the Playwright tests, installed with apt
#     when /usr/bin/chromium is missing and we are root. Never `playwright install`.
set -euo pipefail
cd "$(dirname "$0")"

with_browser=0
for arg in "$@"; do
  case "$arg" in
    --with-browser) with_browser=1 ;;
    *) echo "web/setup.sh: unknown option $arg" >&2; exit 64 ;;
  esac
done

stamp=node_modules/.package-lock.json   # npm writes it on every install
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq npm >/dev/null
    else
      echo "web/setup.sh: npm is needed to install the editor's graph library (apt-get install npm)" >&2
      exit 1
    fi
  fi
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

if [ "$with_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  else
    echo "web/setup.sh: /usr/bin/chromium is missing; install Debian's chromium package (the browser tests skip without it)" >&2
  fi
fi
