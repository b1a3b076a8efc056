#!/bin/sh
# Usage: ensure-apt-command.sh COMMAND PACKAGE WHAT-FOR
# Installs Debian's PACKAGE when COMMAND is missing. Needs root (CI runs as root); elsewhere
# it says what to install and carries on, and what needs COMMAND then says it is missing.
set -eu
command_name=$1 package=$2 what_for=$3
if command -v "$command_name" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $package with apt-get ($what_for)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
else
    echo "$command_name missing and cannot apt-get install it ($what_for): install $package" >&2
fi
