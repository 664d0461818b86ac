#!/usr/bin/env bash
# A new user's first minutes: a fresh clone, `make setup` with pip's cache off into a new venv, then
# `qa ingest seeds/` and one `qa ask`. Prints each time and the load. The clone is deleted at the end.
#   benchmarks/first_run.sh [REF]        # REF: the commit to clone (default HEAD); run from the checkout
set -euo pipefail
ref=${1:-HEAD}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
git clone -q "$(git rev-parse --show-toplevel)" "$dir/qa" && git -C "$dir/qa" checkout -q "$ref"
cd "$dir/qa"
export PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
now() { date +%s.%N; }
echo "load before: $(uptime)"
t0=$(now); make setup; t1=$(now)
echo "load after set-up: $(uptime)"
.venv/bin/qa ingest --quiet seeds/; t2=$(now)
.venv/bin/qa ask "Where will Putin travel after North Korea?"; t3=$(now)
printf 'make setup %.0f s, qa ingest seeds/ %.0f s, first qa ask %.0f s, total %.0f s\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" "$(echo "$t3 - $t0" | bc)"
echo "load at end: $(uptime)"
