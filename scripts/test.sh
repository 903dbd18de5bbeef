#!/usr/bin/env bash
# The test command: creates/reuses .venv, installs the pinned requirements, runs the suite.
#   scripts/test.sh                 # everything, including the tests marked slow (what CI runs)
#   scripts/test.sh --fast          # the fast tier: -m "not slow", under a minute on 2 idle cores
#   scripts/test.sh -k synthetic    # any pytest arguments, with or without --fast
source "$(dirname "$0")/_env.sh"
args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
python -m pytest -q ${args[@]+"${args[@]}"}
