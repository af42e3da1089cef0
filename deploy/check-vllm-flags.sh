#!/usr/bin/env bash
# Check deploy/vllm.service's flags (and the scale-out commands in deploy/README.md)
# against vLLM's own argument parser, without a GPU.
#
# vLLM is 9.4 GB and ~3 minutes to install, so it lives in its own venv under /tmp,
# never in the app's .venv. A venv left from an earlier run is reused.
#   bash deploy/check-vllm-flags.sh
set -euo pipefail

cd "$(dirname "$0")/.."
venv="${VLLM_CHECK_VENV:-/tmp/vllm-check-venv}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r deploy/requirements-vllm.txt -r requirements-dev.txt python-dotenv pillow

VLLM_TARGET_DEVICE=cpu "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_deploy.py -k "vllm_accepts"
