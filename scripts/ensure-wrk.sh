#!/bin/sh
# Installs Debian's wrk (the C load generator benchmarks/serve_peers.py drives every server
# with, so the load takes little CPU) when missing. Needs root; elsewhere it says what to
# install and carries on: serve_peers.py then exits naming it.
set -eu
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing wrk with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
else
    echo "wrk missing and cannot apt-get install it: install wrk" >&2
fi
