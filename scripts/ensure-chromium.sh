#!/bin/sh
# Installs Debian's chromium + chromium-driver for the browser tests when missing.
# Needs root (CI runs as root); elsewhere it says what to install and carries on,
# and the browser tests then skip, or fail under CI=true.
set -eu
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
    echo "chromium/chromedriver missing and cannot apt-get install them (not root or no apt)" >&2
fi
