#!/usr/bin/env bash
# The test command: creates/reuses .venv, installs the pinned requirements, runs the whole suite.
#   scripts/test.sh                 # everything (a few minutes on 2 CPU cores)
#   scripts/test.sh -k synthetic    # any pytest arguments
source "$(dirname "$0")/_env.sh"
python -m pytest -q "$@"
