#!/bin/sh
# Graphviz's `dot` draws the workflow console's state machines; without it the console pages
# and `scones executions show --graph` say that `dot` is missing, and their tests fail.
exec sh "$(dirname "$0")/ensure-apt-command.sh" dot graphviz "the workflow console's graphs"
