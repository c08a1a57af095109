#!/usr/bin/env bash
# Quick start, command 1: set everything up and run the local stack (broker, collector, agent)
# on embedded defaults (SQLite, a private mosquitto), with four simulated offices beside this
# machine's line (--no-demo-fleet: without them). Ctrl-C stops it. Extra args go to linecheck-stack.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/linecheck-stack "$@"
