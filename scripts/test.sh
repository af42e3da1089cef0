#!/usr/bin/env bash
# Set up (if needed) and run every test. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh -r requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
