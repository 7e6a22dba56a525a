#!/usr/bin/env bash
# Set up (if needed) and run the default test suite. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-browser.sh
exec .venv/bin/python -m pytest "$@"
