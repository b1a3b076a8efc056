#!/bin/sh
# Installs Debian's graphviz (the `dot` layout program the workflow console draws state
# machines with) when missing. Needs root (CI runs as root); elsewhere it says what to
# install and carries on: the console pages and `scones executions show --graph` then say
# that `dot` is missing, and their tests fail.
set -eu
if command -v dot >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing graphviz with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
else
    echo "graphviz (dot) missing and cannot apt-get install it: install graphviz" >&2
fi
